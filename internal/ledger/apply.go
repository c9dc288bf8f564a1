package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"time"

	xtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/tlog"
)

// Pending transfer states, stored in ledger_transfers.state.
const (
	stateNone    = 0 // not a pending transfer
	statePending = 1
	statePosted  = 2
	stateVoided  = 3
	stateExpired = 4
)

// stored is a transfer as the ledger holds it.
type stored struct {
	Transfer
	state     int
	expiresAt int64 // Unix ms; 0 for none
}

// batchState is the working copy a batch validates against.
type batchState struct {
	accounts  map[ID]*Account
	existing  map[ID]*stored // transfers already in the ledger, or accepted earlier in this batch
	daily     map[ID]int64   // debits today, for accounts with a daily limit
	changedAc map[ID]bool
	changedPd map[ID]bool
	newOnes   []*stored
	day       int64
	now       time.Time
	profiles  map[string]Limits
}

// undo remembers what a linked chain changed, to roll it back.
type undo struct {
	accounts map[ID]Account
	pendings map[ID]stored
	daily    map[ID]int64
	added    int // len(newOnes) at the chain's start
	ids      []ID
}

func (b *batchState) saveAccount(u *undo, a *Account) {
	if u == nil {
		return
	}
	if _, ok := u.accounts[a.ID]; !ok {
		u.accounts[a.ID] = *a
	}
}

func (b *batchState) rollback(u *undo) {
	for id, a := range u.accounts {
		*b.accounts[id] = a
	}
	for id, p := range u.pendings {
		*b.existing[id] = p
	}
	for id, d := range u.daily {
		b.daily[id] = d
	}
	for _, id := range u.ids {
		delete(b.existing, id)
	}
	b.newOnes = b.newOnes[:u.added]
}

func addOK(a, b int64) (int64, bool) {
	if b > 0 && a > math.MaxInt64-b {
		return 0, false
	}
	return a + b, true
}

// check validates what a transfer says on its own.
func check(t *Transfer) Result {
	switch {
	case t.ID == (ID{}):
		return IDMustNotBeZero
	case len(t.Reference) > 64:
		return ReferenceTooLong
	case t.Amount < 0:
		return AmountMustBePositive
	case t.Flags&(PostPending|VoidPending) == PostPending|VoidPending,
		t.Flags&Pending != 0 && t.Flags&(PostPending|VoidPending) != 0:
		return FlagsAreMutuallyExclusive
	case t.Timeout != 0 && t.Flags&Pending == 0:
		return TimeoutReservedForPending
	case t.Timeout < 0 || t.Timeout%time.Second != 0:
		return TimeoutReservedForPending
	}
	if t.Flags&(PostPending|VoidPending) != 0 {
		if t.PendingID == (ID{}) {
			return PendingIDRequired
		}
		return OK
	}
	switch {
	case t.PendingID != (ID{}):
		return PendingIDMustBeZero
	case t.Amount == 0:
		return AmountMustBePositive
	case t.Debit == t.Credit:
		return AccountsMustBeDifferent
	}
	return OK
}

// sameAs compares a replayed transfer with the stored one; zero fields of a
// post or void mean "as the pending transfer".
func sameAs(t *Transfer, s *stored) Result {
	resolving := t.Flags&(PostPending|VoidPending) != 0
	switch {
	case t.Flags != s.Flags:
		return ExistsWithDifferentFlags
	case t.PendingID != s.PendingID:
		return ExistsWithDifferentPendingID
	case t.Timeout != s.Timeout:
		return ExistsWithDifferentTimeout
	case t.Debit != s.Debit && !(resolving && t.Debit == ID{}):
		return ExistsWithDifferentDebit
	case t.Credit != s.Credit && !(resolving && t.Credit == ID{}):
		return ExistsWithDifferentCredit
	case t.Amount != s.Amount && !(resolving && t.Amount == 0):
		return ExistsWithDifferentAmount
	case t.Ledger != s.Ledger && t.Ledger != 0: // 0 means "the accounts' ledger"
		return ExistsWithDifferentLedger
	case t.Code != s.Code:
		return ExistsWithDifferentCode
	case t.Reference != s.Reference:
		return ExistsWithDifferentReference
	}
	return Exists
}

// one applies a single transfer to the working state.
func (b *batchState) one(t Transfer, u *undo) Result {
	if r := check(&t); r != OK {
		return r
	}
	if s, ok := b.existing[t.ID]; ok {
		return sameAs(&t, s)
	}
	if t.Flags&(PostPending|VoidPending) != 0 {
		return b.resolve(t, u)
	}
	dr, cr := b.accounts[t.Debit], b.accounts[t.Credit]
	switch {
	case dr == nil:
		return DebitAccountNotFound
	case cr == nil:
		return CreditAccountNotFound
	case dr.Ledger != cr.Ledger || (t.Ledger != 0 && t.Ledger != dr.Ledger):
		return LedgerMismatch
	case dr.Flags&Closed != 0:
		return DebitAccountClosed
	case cr.Flags&Closed != 0:
		return CreditAccountClosed
	}
	t.Ledger = dr.Ledger
	// Balance rules.
	dTotal, ok1 := addOK(dr.DebitsPending, dr.DebitsPosted)
	dTotal, ok2 := addOK(dTotal, t.Amount)
	cTotal, ok3 := addOK(cr.CreditsPending, cr.CreditsPosted)
	cTotal, ok4 := addOK(cTotal, t.Amount)
	if !(ok1 && ok2 && ok3 && ok4) {
		return Overflow
	}
	// Wallet limits first: they do not depend on the balance.
	if l, ok := b.profiles[dr.Profile]; ok && dr.Profile != "" {
		if l.PerPayment > 0 && t.Amount > l.PerPayment {
			return ExceedsPerPaymentLimit
		}
		if l.PerDay > 0 && b.daily[dr.ID]+t.Amount > l.PerDay {
			return ExceedsDailyLimit
		}
	}
	if l, ok := b.profiles[cr.Profile]; ok && cr.Profile != "" && l.BalanceCap > 0 {
		if cr.CreditsPosted+cr.CreditsPending+t.Amount-cr.DebitsPosted > l.BalanceCap {
			return ExceedsBalanceCap
		}
	}
	if dr.Flags&DebitsMustNotExceedCredits != 0 && dTotal > dr.CreditsPosted {
		return ExceedsCredits
	}
	if cr.Flags&CreditsMustNotExceedDebits != 0 && cTotal > cr.DebitsPosted {
		return ExceedsDebits
	}
	b.saveAccount(u, dr)
	b.saveAccount(u, cr)
	s := &stored{Transfer: t}
	if t.Flags&Pending != 0 {
		dr.DebitsPending += t.Amount
		cr.CreditsPending += t.Amount
		s.state = statePending
		if t.Timeout > 0 {
			s.expiresAt = b.now.Add(t.Timeout).UnixMilli()
		}
	} else {
		dr.DebitsPosted += t.Amount
		cr.CreditsPosted += t.Amount
	}
	if l, ok := b.profiles[dr.Profile]; ok && dr.Profile != "" && l.PerDay > 0 {
		if u != nil {
			if _, seen := u.daily[dr.ID]; !seen {
				u.daily[dr.ID] = b.daily[dr.ID]
			}
		}
		b.daily[dr.ID] += t.Amount
	}
	b.changedAc[dr.ID], b.changedAc[cr.ID] = true, true
	b.add(s, u)
	return OK
}

func (b *batchState) add(s *stored, u *undo) {
	b.existing[s.ID] = s
	b.newOnes = append(b.newOnes, s)
	if u != nil {
		u.ids = append(u.ids, s.ID)
	}
}

// resolve posts or voids a pending transfer.
func (b *batchState) resolve(t Transfer, u *undo) Result {
	p, ok := b.existing[t.PendingID]
	if !ok {
		return PendingNotFound
	}
	switch p.state {
	case statePending:
	case statePosted:
		return PendingAlreadyPosted
	case stateVoided:
		return PendingAlreadyVoided
	case stateExpired:
		return PendingExpired
	default:
		return PendingNotPending
	}
	if p.expiresAt != 0 && b.now.UnixMilli() >= p.expiresAt {
		return PendingExpired
	}
	if (t.Debit != ID{} && t.Debit != p.Debit) || (t.Credit != ID{} && t.Credit != p.Credit) {
		return PendingHasDifferentAccounts
	}
	if t.Ledger != 0 && t.Ledger != p.Ledger {
		return PendingHasDifferentLedger
	}
	dr, cr := b.accounts[p.Debit], b.accounts[p.Credit]
	if dr == nil || cr == nil {
		return PendingNotFound
	}
	post := t.Flags&PostPending != 0
	amount := t.Amount
	if amount == 0 {
		amount = p.Amount
	}
	if amount > p.Amount {
		return ExceedsPendingAmount
	}
	if !post && amount != p.Amount {
		return ExceedsPendingAmount
	}
	if post && (dr.Flags&Closed != 0 || cr.Flags&Closed != 0) {
		if dr.Flags&Closed != 0 {
			return DebitAccountClosed
		}
		return CreditAccountClosed
	}
	b.saveAccount(u, dr)
	b.saveAccount(u, cr)
	if u != nil {
		if _, seen := u.pendings[p.ID]; !seen {
			u.pendings[p.ID] = *p
		}
	}
	dr.DebitsPending -= p.Amount
	cr.CreditsPending -= p.Amount
	if post {
		dr.DebitsPosted += amount
		cr.CreditsPosted += amount
		p.state = statePosted
	} else {
		p.state = stateVoided
	}
	b.changedAc[dr.ID], b.changedAc[cr.ID], b.changedPd[p.ID] = true, true, true
	t.Debit, t.Credit, t.Ledger, t.Amount = p.Debit, p.Credit, p.Ledger, amount
	b.add(&stored{Transfer: t}, u)
	return OK
}

// applyTx validates the batch's requests in order and writes what passed.
func (e *Engine) applyTx(ctx context.Context, tx *store.Tx, batch []*request) ([][]Result, error) {
	now := e.now().UTC()
	b := &batchState{accounts: map[ID]*Account{}, existing: map[ID]*stored{}, daily: map[ID]int64{},
		changedAc: map[ID]bool{}, changedPd: map[ID]bool{}, day: now.Unix() / 86400, now: now, profiles: e.profiles}
	if err := b.load(ctx, tx, batch); err != nil {
		return nil, err
	}
	out := make([][]Result, len(batch))
	for ri, r := range batch {
		res := make([]Result, len(r.transfers))
		for i := 0; i < len(r.transfers); {
			// A chain runs from i to the first transfer without Linked.
			end := i
			for end < len(r.transfers) && r.transfers[end].Flags&Linked != 0 {
				end++
			}
			if end == len(r.transfers) { // the last transfer is linked: the chain is open
				for k := i; k < end; k++ {
					res[k] = LinkedEventFailed
				}
				res[end-1] = LinkedEventChainOpen
				break
			}
			if end == i {
				res[i] = b.one(r.transfers[i], nil)
				i++
				continue
			}
			u := &undo{accounts: map[ID]Account{}, pendings: map[ID]stored{}, daily: map[ID]int64{}, added: len(b.newOnes)}
			failed := -1
			for k := i; k <= end; k++ {
				if res[k] = b.one(r.transfers[k], u); !res[k].Applied() {
					failed = k
					break
				}
			}
			if failed >= 0 {
				b.rollback(u)
				for k := i; k <= end; k++ {
					if k != failed {
						res[k] = LinkedEventFailed
					}
				}
			}
			i = end + 1
		}
		out[ri] = res
	}
	return out, b.write(ctx, tx, now)
}

// load reads every account, transfer, pending transfer and daily total the
// batch refers to.
func (b *batchState) load(ctx context.Context, tx *store.Tx, batch []*request) error {
	ids := map[ID]bool{}
	accounts := map[ID]bool{}
	for _, r := range batch {
		for _, t := range r.transfers {
			ids[t.ID] = true
			if t.PendingID != (ID{}) {
				ids[t.PendingID] = true
			}
			accounts[t.Debit], accounts[t.Credit] = true, true
		}
	}
	if err := b.loadTransfers(ctx, tx, keys(ids)); err != nil {
		return err
	}
	for _, s := range b.existing { // pending transfers bring their accounts
		accounts[s.Debit], accounts[s.Credit] = true, true
	}
	delete(accounts, ID{})
	if err := b.loadAccounts(ctx, tx, keys(accounts)); err != nil {
		return err
	}
	var limited []ID
	for id, a := range b.accounts {
		if l, ok := b.profiles[a.Profile]; ok && a.Profile != "" && l.PerDay > 0 {
			limited = append(limited, id)
		}
	}
	return b.loadDaily(ctx, tx, limited)
}

func keys(m map[ID]bool) [][]byte {
	out := make([][]byte, 0, len(m))
	for id := range m {
		out = append(out, append([]byte(nil), id[:]...))
	}
	return out
}

// inList runs query (with a trailing "IN (" or "= ANY(") over ids in chunks.
func inList(ctx context.Context, tx *store.Tx, query string, ids [][]byte, extra []any, each func(scan func(...any) error) error) error {
	const chunk = 200
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		var q strings.Builder
		args := append([]any{}, extra...)
		if tx.Dialect() == store.Postgres {
			q.WriteString(query + " = ANY($" + fmt.Sprint(len(args)+1) + "::bytea[])")
			args = append(args, part)
		} else {
			q.WriteString(query + " IN (")
			for i, id := range part {
				if i > 0 {
					q.WriteString(", ")
				}
				args = append(args, id)
				fmt.Fprintf(&q, "$%d", len(args))
			}
			q.WriteString(")")
		}
		rows, err := tx.QueryContext(ctx, q.String(), args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			if err := each(rows.Scan); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}

// transferColumns are the stored columns of a transfer, in scanTransfer's order.
const transferColumns = "id, debit, credit, amount, pending_id, ledger, code, flags, timeout, reference, ts, state, expires_at"

// scanTransfer reads one row of transferColumns.
func scanTransfer(scan func(...any) error) (*stored, error) {
	var s stored
	var id, dr, cr, pid []byte
	var ledger, ts, timeout int64
	var code, flags int
	if err := scan(&id, &dr, &cr, &s.Amount, &pid, &ledger, &code, &flags, &timeout, &s.Reference, &ts, &s.state, &s.expiresAt); err != nil {
		return nil, err
	}
	copy(s.ID[:], id)
	copy(s.Debit[:], dr)
	copy(s.Credit[:], cr)
	copy(s.PendingID[:], pid)
	s.Ledger, s.Code, s.Flags = uint32(ledger), uint16(code), TransferFlags(flags)
	s.Timeout, s.Timestamp = time.Duration(timeout)*time.Second, time.Unix(0, ts).UTC()
	return &s, nil
}

func (b *batchState) loadTransfers(ctx context.Context, tx *store.Tx, ids [][]byte) error {
	return inList(ctx, tx, "SELECT "+transferColumns+" FROM ledger_transfers WHERE id", ids, nil, func(scan func(...any) error) error {
		s, err := scanTransfer(scan)
		if err != nil {
			return err
		}
		b.existing[s.ID] = s
		return nil
	})
}

func (b *batchState) loadAccounts(ctx context.Context, tx *store.Tx, ids [][]byte) error {
	return inList(ctx, tx, "SELECT "+accountColumns+" FROM ledger_accounts WHERE id", ids, nil, func(scan func(...any) error) error {
		a, err := scanAccount(scanner(scan))
		if err != nil {
			return err
		}
		b.accounts[a.ID] = a
		return nil
	})
}

type scanner func(...any) error

func (s scanner) Scan(dest ...any) error { return s(dest...) }

func (b *batchState) loadDaily(ctx context.Context, tx *store.Tx, ids []ID) error {
	raw := make([][]byte, len(ids))
	for i, id := range ids {
		raw[i] = append([]byte(nil), id[:]...)
	}
	return inList(ctx, tx, "SELECT account, debited FROM ledger_daily WHERE day = $1 AND account", raw, []any{b.day}, func(scan func(...any) error) error {
		var id []byte
		var d int64
		if err := scan(&id, &d); err != nil {
			return err
		}
		var a ID
		copy(a[:], id)
		b.daily[a] = d
		return nil
	})
}

// encode is a transfer's canonical encoding, hashed into the batch root.
func encode(s *stored) []byte {
	out := make([]byte, 0, 128)
	out = append(out, s.ID[:]...)
	out = append(out, s.Debit[:]...)
	out = append(out, s.Credit[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(s.Amount))
	out = append(out, s.PendingID[:]...)
	out = binary.BigEndian.AppendUint32(out, s.Ledger)
	out = binary.BigEndian.AppendUint16(out, s.Code)
	out = binary.BigEndian.AppendUint16(out, uint16(s.Flags))
	out = binary.BigEndian.AppendUint64(out, uint64(s.Timeout/time.Second))
	out = binary.BigEndian.AppendUint64(out, uint64(s.Timestamp.UnixNano()))
	sum := sha256.Sum256([]byte(s.Reference))
	return append(out, sum[:]...)
}

// write stores the batch: new transfers, pending states, balances, daily
// totals, and the batch's Merkle root in the transparency log.
func (b *batchState) write(ctx context.Context, tx *store.Tx, now time.Time) error {
	if len(b.newOnes) == 0 && len(b.changedPd) == 0 {
		return nil
	}
	var last, batchNo int64
	if err := tx.QueryRowContext(ctx, "UPDATE ledger_clock SET batches = batches + 1 WHERE id = 1 RETURNING last_ts, batches").Scan(&last, &batchNo); err != nil {
		return fmt.Errorf("ledger clock: %w", err)
	}
	firstTS := max(now.UnixNano(), last+1)
	for i, s := range b.newOnes {
		s.Timestamp = time.Unix(0, firstTS+int64(i)).UTC()
	}
	if err := insertTransfers(ctx, tx, b.newOnes, batchNo); err != nil {
		return err
	}
	for id := range b.changedPd {
		if _, err := tx.ExecContext(ctx, "UPDATE ledger_transfers SET state = $1 WHERE id = $2", b.existing[id].state, id[:]); err != nil {
			return fmt.Errorf("resolve pending: %w", err)
		}
	}
	changed := make([]*Account, 0, len(b.changedAc))
	for id := range b.changedAc {
		changed = append(changed, b.accounts[id])
	}
	if err := updateBalances(ctx, tx, changed); err != nil {
		return err
	}
	for id, d := range b.daily {
		if !b.changedAc[id] {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO ledger_daily (account, day, debited) VALUES ($1, $2, $3)
			ON CONFLICT (account, day) DO UPDATE SET debited = $3`, id[:], b.day, d); err != nil {
			return fmt.Errorf("daily totals: %w", err)
		}
	}
	if len(b.newOnes) == 0 {
		return nil // expiries only: no transfer to log
	}
	lastTS := firstTS + int64(len(b.newOnes)) - 1
	if _, err := tx.ExecContext(ctx, "UPDATE ledger_clock SET last_ts = $1 WHERE id = 1", lastTS); err != nil {
		return fmt.Errorf("ledger clock: %w", err)
	}
	// The batch's Merkle root over its transfers' canonical encodings.
	leaves := make([]byte, 0, 32*len(b.newOnes))
	for _, s := range b.newOnes {
		h := xtlog.RecordHash(encode(s))
		leaves = append(leaves, h[:]...)
	}
	root, err := batchRoot(leaves)
	if err != nil {
		return err
	}
	entry := &tlog.Entry{Kind: tlog.KindLedgerBatch, Time: now, Count: uint32(len(b.newOnes)), Root: root}
	binary.BigEndian.PutUint64(entry.BatchID[8:], uint64(batchNo))
	data, err := entry.Marshal()
	if err != nil {
		return err
	}
	logIndex, err := tlog.Sequence(ctx, tx, now, data)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO ledger_batches (batch, log_index, root, count, first_ts, hashes) VALUES ($1, $2, $3, $4, $5, $6)",
		batchNo, logIndex, root[:], len(b.newOnes), firstTS, leaves); err != nil {
		return fmt.Errorf("store batch: %w", err)
	}
	return nil
}

// leafReader serves stored hashes of a tree built over given leaf hashes.
type leafReader struct{ stored []xtlog.Hash }

func (r *leafReader) ReadHashes(ids []int64) ([]xtlog.Hash, error) {
	out := make([]xtlog.Hash, len(ids))
	for i, id := range ids {
		if id < 0 || id >= int64(len(r.stored)) {
			return nil, fmt.Errorf("batch tree hash %d missing", id)
		}
		out[i] = r.stored[id]
	}
	return out, nil
}

// batchTree builds the stored hashes of the Merkle tree over leaf hashes.
func batchTree(leaves []byte) (*leafReader, int64, error) {
	r := &leafReader{}
	n := int64(len(leaves) / 32)
	for i := int64(0); i < n; i++ {
		hs, err := xtlog.StoredHashesForRecordHash(i, xtlog.Hash(leaves[32*i:32*i+32]), r)
		if err != nil {
			return nil, 0, err
		}
		r.stored = append(r.stored, hs...)
	}
	return r, n, nil
}

func batchRoot(leaves []byte) (xtlog.Hash, error) {
	r, n, err := batchTree(leaves)
	if err != nil {
		return xtlog.Hash{}, err
	}
	return xtlog.TreeHash(n, r)
}

func insertTransfers(ctx context.Context, tx *store.Tx, ts []*stored, batchNo int64) error {
	if len(ts) == 0 {
		return nil
	}
	if tx.Dialect() == store.Postgres {
		n := len(ts)
		ids, drs, crs, pids := make([][]byte, n), make([][]byte, n), make([][]byte, n), make([][]byte, n)
		amounts, ledgers, codes, flags, timeouts, stamps, states, expires := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		refs := make([]string, n)
		for i, s := range ts {
			ids[i], drs[i], crs[i], pids[i] = s.ID[:], s.Debit[:], s.Credit[:], s.PendingID[:]
			amounts[i], ledgers[i], codes[i], flags[i] = s.Amount, int64(s.Ledger), int64(s.Code), int64(s.Flags)
			timeouts[i], stamps[i], states[i], expires[i] = int64(s.Timeout/time.Second), s.Timestamp.UnixNano(), int64(s.state), s.expiresAt
			refs[i] = s.Reference
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO ledger_transfers (id, debit, credit, amount, pending_id, ledger, code, flags,
			timeout, reference, ts, state, expires_at, batch)
			SELECT *, $14::bigint FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bigint[], $5::bytea[], $6::bigint[], $7::bigint[],
				$8::bigint[], $9::bigint[], $10::text[], $11::bigint[], $12::bigint[], $13::bigint[])`,
			ids, drs, crs, amounts, pids, ledgers, codes, flags, timeouts, refs, stamps, states, expires, batchNo)
		if err != nil {
			return fmt.Errorf("store transfers: %w", err)
		}
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO ledger_transfers (id, debit, credit, amount, pending_id, ledger, code, flags,
		timeout, reference, ts, state, expires_at, batch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`)
	if err != nil {
		return fmt.Errorf("store transfers: %w", err)
	}
	defer stmt.Close()
	for _, s := range ts {
		if _, err := stmt.ExecContext(ctx, s.ID[:], s.Debit[:], s.Credit[:], s.Amount, s.PendingID[:], int64(s.Ledger), int(s.Code), int(s.Flags),
			int64(s.Timeout/time.Second), s.Reference, s.Timestamp.UnixNano(), s.state, s.expiresAt, batchNo); err != nil {
			return fmt.Errorf("store transfer: %w", err)
		}
	}
	return nil
}

// updateBalances writes each changed account's balances once per batch.
func updateBalances(ctx context.Context, tx *store.Tx, accounts []*Account) error {
	if len(accounts) == 0 {
		return nil
	}
	if tx.Dialect() == store.Postgres {
		n := len(accounts)
		ids := make([][]byte, n)
		dp, dP, cp, cP := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		for i, a := range accounts {
			ids[i] = append([]byte(nil), a.ID[:]...)
			dp[i], dP[i], cp[i], cP[i] = a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted
		}
		_, err := tx.ExecContext(ctx, `UPDATE ledger_accounts a SET debits_pending = v.dp, debits_posted = v.dpo,
			credits_pending = v.cp, credits_posted = v.cpo
			FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) AS v(id, dp, dpo, cp, cpo) WHERE a.id = v.id`,
			ids, dp, dP, cp, cP)
		if err != nil {
			return fmt.Errorf("update balances: %w", err)
		}
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `UPDATE ledger_accounts SET debits_pending = $1, debits_posted = $2,
		credits_pending = $3, credits_posted = $4 WHERE id = $5`)
	if err != nil {
		return fmt.Errorf("update balances: %w", err)
	}
	defer stmt.Close()
	for _, a := range accounts {
		if _, err := stmt.ExecContext(ctx, a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted, a.ID[:]); err != nil {
			return fmt.Errorf("update balances: %w", err)
		}
	}
	return nil
}
