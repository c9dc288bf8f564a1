package ledger

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/civstack/civstack/internal/store"
)

// errIDTaken means a transfer id assumed new was already in the database:
// the group is run again with every id looked up.
var errIDTaken = errors.New("a transfer id assumed new is taken")

// markEvery is how often an account's transfer is also written to
// ledger_marks: history walks start from the nearest mark.
const markEvery = 64

// groupState is the working copy a group validates against and what it
// writes. Accounts are copies: the engine's cache changes only after commit.
type groupState struct {
	accounts  map[ID]*Account
	existing  map[ID]*record // transfers already stored, or accepted or refused earlier in this group
	changedAc map[ID]bool    // balances changed
	changedMd map[ID]bool    // flags or profile changed
	changedPd map[ID]*record // stored pending transfers this group resolved
	newOnes   []*record      // applied, in order
	failed    []*record      // refused and remembered
	marks     []mark
	now       time.Time
	zone      *time.Location // the engine's: whose days day counts
	day       int64          // today (dayOf in zone)
	firstTS   int64          // timestamp of the group's first transfer
	batch     int64          // this group's batch number, if it applies any transfer
	gen       int64          // ledger generation this group leaves
	profiles  map[string]Limits
	reserve   *reservation // the engine's (SetReserved), as the group began
	except    bool         // the request being applied may not move reserved accounts (SubmitExcept)

	results [][]Result
	expired []int
	errs    []error
}

type mark struct {
	account ID
	ts      int64
	id      ID
}

// undo remembers what a linked chain changed, to roll it back.
type undo struct {
	accounts map[ID]Account
	pendings map[ID]record
	added    int // len(newOnes) at the chain's start
	marks    int
	ids      []ID
}

func (g *groupState) saveAccount(u *undo, a *Account) {
	if u == nil {
		return
	}
	if _, ok := u.accounts[a.ID]; !ok {
		u.accounts[a.ID] = *a
	}
}

func (g *groupState) rollback(u *undo) {
	for id, a := range u.accounts {
		*g.accounts[id] = a
	}
	for id, p := range u.pendings {
		*g.existing[id] = p
	}
	for _, id := range u.ids {
		delete(g.existing, id)
	}
	g.newOnes = g.newOnes[:u.added]
	g.marks = g.marks[:u.marks]
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
	case len(t.Reference) > MaxReference:
		return ReferenceTooLong
	case t.Amount < 0:
		return AmountMustBePositive
	case t.Flags&^(Linked|Pending|PostPending|VoidPending) != 0:
		return ReservedFlag
	case t.Flags&(PostPending|VoidPending) == PostPending|VoidPending,
		t.Flags&Pending != 0 && t.Flags&(PostPending|VoidPending) != 0:
		return FlagsAreMutuallyExclusive
	case t.Timeout != 0 && t.Flags&Pending == 0:
		return TimeoutReservedForPending
	case t.Timeout < 0 || t.Timeout%time.Second != 0:
		return TimeoutReservedForPending
	case t.Timeout > maxTimeout:
		return TimeoutTooLong
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

// maxTimeout is the longest a pending transfer may wait (TigerBeetle's u32 seconds).
const maxTimeout = math.MaxUint32 * time.Second

// sameAs compares a replayed transfer with the stored one; zero fields of a
// post or void mean "as the pending transfer". An identical replay returns
// the first result: Exists if it was applied, its refusal if it was refused.
func sameAs(t *Transfer, s *record) Result {
	resolving := t.Flags&(PostPending|VoidPending) != 0 && s.state != stateFailed
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
	if s.state == stateFailed {
		return s.result
	}
	return Exists
}

// remembered reports whether a refusal is stored, so that retrying the same
// id returns it again instead of succeeding later (TigerBeetle's
// id_already_failed): refusals that depend on the ledger's state. Refusals
// of the transfer's own fields would recur anyway, and a linked event that
// failed because of another may be retried.
func remembered(r Result) bool {
	switch r {
	case DebitAccountNotFound, CreditAccountNotFound, LedgerMismatch, DebitAccountClosed, CreditAccountClosed,
		ExceedsCredits, ExceedsDebits, Overflow, PendingNotFound, PendingNotPending, PendingAlreadyPosted,
		PendingAlreadyVoided, PendingExpired, ExceedsPendingAmount, PendingHasDifferentAccounts,
		PendingHasDifferentLedger, ExceedsPerPaymentLimit, ExceedsDailyLimit, ExceedsBalanceCap:
		return true
	}
	return false
}

// limitsOf is a's wallet limits among profiles, if it has a profile.
func limitsOf(profiles map[string]Limits, a *Account) (Limits, bool) {
	if a.Profile == "" {
		return Limits{}, false
	}
	l, ok := profiles[a.Profile]
	return l, ok
}

// isReserved reports whether the request being applied may not move one
// of the accounts.
func (g *groupState) isReserved(dr, cr *Account) bool {
	return g.except && (g.reserved(dr) || g.reserved(cr))
}

// reserved is the engine's predicate's answer for a, asked once per account
// and kept with it (its id, kind and owner never change). With no predicate
// every account is reserved: SubmitExcept refuses before it gets here.
func (g *groupState) reserved(a *Account) bool {
	r := g.reserve
	if r == nil {
		return true
	}
	if a.reservedGen != r.gen {
		a.reservedGen, a.reservedAns = r.gen, r.fn(a)
	}
	return a.reservedAns
}

// balanceRules is how the accounts' balance rules and wallet limits
// (profiles, counting the daily limit on day) answer t, a transfer that
// moves an amount from dr to cr (not a post or void): OK, or the refusal.
func balanceRules(t *Transfer, dr, cr *Account, day int64, profiles map[string]Limits) Result {
	dTotal, ok1 := addOK(dr.DebitsPending, dr.DebitsPosted)
	dTotal, ok2 := addOK(dTotal, t.Amount)
	cTotal, ok3 := addOK(cr.CreditsPending, cr.CreditsPosted)
	cTotal, ok4 := addOK(cTotal, t.Amount)
	if !(ok1 && ok2 && ok3 && ok4) {
		return Overflow
	}
	// Wallet limits first: they do not depend on the balance.
	if l, ok := limitsOf(profiles, dr); ok {
		if l.PerPayment > 0 && t.Amount > l.PerPayment {
			return ExceedsPerPaymentLimit
		}
		if l.PerDay > 0 && dr.debitedOn(day)+t.Amount > l.PerDay {
			return ExceedsDailyLimit
		}
	}
	if l, ok := limitsOf(profiles, cr); ok && l.BalanceCap > 0 {
		if cTotal-cr.DebitsPosted > l.BalanceCap {
			return ExceedsBalanceCap
		}
	}
	if dr.Flags&DebitsMustNotExceedCredits != 0 && dTotal > dr.CreditsPosted {
		return ExceedsCredits
	}
	if cr.Flags&CreditsMustNotExceedDebits != 0 && cTotal > cr.DebitsPosted {
		return ExceedsDebits
	}
	return OK
}

// one applies a single transfer to the working state.
func (g *groupState) one(t Transfer, u *undo) Result {
	if r := check(&t); r != OK {
		return r
	}
	if s, ok := g.existing[t.ID]; ok {
		return sameAs(&t, s)
	}
	if t.Flags&(PostPending|VoidPending) != 0 {
		return g.resolve(t, u)
	}
	dr, cr := g.accounts[t.Debit], g.accounts[t.Credit]
	switch {
	case dr == nil:
		return DebitAccountNotFound
	case cr == nil:
		return CreditAccountNotFound
	case g.isReserved(dr, cr):
		return AccountReserved
	case dr.Ledger != cr.Ledger || (t.Ledger != 0 && t.Ledger != dr.Ledger):
		return LedgerMismatch
	case dr.Flags&Closed != 0:
		return DebitAccountClosed
	case cr.Flags&Closed != 0:
		return CreditAccountClosed
	}
	t.Ledger = dr.Ledger
	if r := balanceRules(&t, dr, cr, g.day, g.profiles); r != OK {
		return r
	}
	g.saveAccount(u, dr)
	g.saveAccount(u, cr)
	r := &record{Transfer: t}
	if t.Flags&Pending != 0 {
		dr.DebitsPending += t.Amount
		cr.CreditsPending += t.Amount
		r.state = statePending
		if t.Timeout > 0 {
			r.expiresAt = g.now.Add(t.Timeout).UnixMilli()
		}
	} else {
		dr.DebitsPosted += t.Amount
		cr.CreditsPosted += t.Amount
	}
	if dr.day != g.day {
		dr.day, dr.dayDebits = g.day, 0
	}
	dr.dayDebits += t.Amount
	g.add(r, dr, cr, u)
	return OK
}

// add appends an applied transfer: its timestamp, its links to each
// account's previous transfer, and the balances after it.
func (g *groupState) add(r *record, dr, cr *Account, u *undo) {
	r.Timestamp = time.Unix(0, g.firstTS+int64(len(g.newOnes))).UTC()
	ts := r.Timestamp.UnixNano()
	r.batch = g.batch
	r.debitPrev, r.creditPrev = dr.lastID, cr.lastID
	r.debitAfter, r.creditAfter = dr.Balance(), cr.Balance()
	for _, a := range [2]*Account{dr, cr} {
		a.last, a.lastID = ts, r.ID
		a.transfers++
		if a.transfers%markEvery == 0 {
			g.marks = append(g.marks, mark{a.ID, ts, r.ID})
		}
	}
	g.changedAc[dr.ID], g.changedAc[cr.ID] = true, true
	g.existing[r.ID] = r
	g.newOnes = append(g.newOnes, r)
	if u != nil {
		u.ids = append(u.ids, r.ID)
	}
}

// refuse remembers a refused transfer (see remembered).
func (g *groupState) refuse(t Transfer, res Result) {
	if !remembered(res) {
		return
	}
	if _, ok := g.existing[t.ID]; ok {
		return
	}
	r := &record{Transfer: t, state: stateFailed, result: res}
	g.existing[t.ID] = r
	g.failed = append(g.failed, r)
}

// release gives back what a pending transfer reserved on its accounts, and
// to the debit account's daily total what it will not spend after all.
func (g *groupState) release(p *record, dr, cr *Account, unspent int64) {
	dr.DebitsPending -= p.Amount
	cr.CreditsPending -= p.Amount
	if dayOf(p.Timestamp.In(g.zone)) == g.day && dr.day == g.day {
		dr.dayDebits = max(0, dr.dayDebits-unspent)
	}
}

// resolve posts or voids a pending transfer.
func (g *groupState) resolve(t Transfer, u *undo) Result {
	p, ok := g.existing[t.PendingID]
	if !ok || p.state == stateFailed {
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
	if p.expiresAt != 0 && g.now.UnixMilli() >= p.expiresAt {
		return PendingExpired
	}
	if (t.Debit != ID{} && t.Debit != p.Debit) || (t.Credit != ID{} && t.Credit != p.Credit) {
		return PendingHasDifferentAccounts
	}
	if t.Ledger != 0 && t.Ledger != p.Ledger {
		return PendingHasDifferentLedger
	}
	dr, cr := g.accounts[p.Debit], g.accounts[p.Credit]
	if dr == nil || cr == nil {
		return PendingNotFound
	}
	if g.isReserved(dr, cr) {
		return AccountReserved
	}
	post := t.Flags&PostPending != 0
	amount := t.Amount
	if amount == 0 {
		amount = p.Amount
	}
	if amount > p.Amount || (!post && amount != p.Amount) {
		return ExceedsPendingAmount
	}
	if post && dr.Flags&Closed != 0 {
		return DebitAccountClosed
	}
	if post && cr.Flags&Closed != 0 {
		return CreditAccountClosed
	}
	g.saveAccount(u, dr)
	g.saveAccount(u, cr)
	if u != nil {
		if _, seen := u.pendings[p.ID]; !seen {
			u.pendings[p.ID] = *p
		}
	}
	unspent := p.Amount
	if post {
		unspent = p.Amount - amount
	}
	g.release(p, dr, cr, unspent)
	if post {
		dr.DebitsPosted += amount
		cr.CreditsPosted += amount
		p.state = statePosted
	} else {
		p.state = stateVoided
	}
	if p.Timestamp.UnixNano() < g.firstTS { // stored before this group
		g.changedPd[p.ID] = p
	}
	t.Debit, t.Credit, t.Ledger, t.Amount = p.Debit, p.Credit, p.Ledger, amount
	g.add(&record{Transfer: t}, dr, cr, u)
	return OK
}

// transfers applies one request's transfers in order, chain by chain.
func (g *groupState) transfers(ts []Transfer) []Result {
	res := make([]Result, len(ts))
	for i := 0; i < len(ts); {
		// A chain runs from i to the first transfer without Linked.
		end := i
		for end < len(ts) && ts[end].Flags&Linked != 0 {
			end++
		}
		if end == len(ts) { // the last transfer is linked: the chain is open
			for k := i; k < end; k++ {
				res[k] = LinkedEventFailed
			}
			res[end-1] = LinkedEventChainOpen
			break
		}
		if end == i {
			if res[i] = g.one(ts[i], nil); !res[i].Applied() {
				g.refuse(ts[i], res[i])
			}
			i++
			continue
		}
		u := &undo{accounts: map[ID]Account{}, pendings: map[ID]record{}, added: len(g.newOnes), marks: len(g.marks)}
		failed := -1
		for k := i; k <= end; k++ {
			if res[k] = g.one(ts[k], u); !res[k].Applied() {
				failed = k
				break
			}
		}
		if failed >= 0 {
			g.rollback(u)
			for k := i; k <= end; k++ {
				if k != failed {
					res[k] = LinkedEventFailed
				}
			}
			g.refuse(ts[failed], res[failed])
		}
		i = end + 1
	}
	return res
}

// expire releases every stored pending transfer whose time has passed.
func (g *groupState) expire(candidates []ID) int {
	n := 0
	now := g.now.UnixMilli()
	for _, id := range candidates {
		p := g.existing[id]
		if p == nil || p.state != statePending || p.expiresAt == 0 || p.expiresAt > now {
			continue // resolved earlier in this group, or not due
		}
		dr, cr := g.accounts[p.Debit], g.accounts[p.Credit]
		if dr == nil || cr == nil {
			continue
		}
		g.release(p, dr, cr, p.Amount)
		p.state = stateExpired
		g.changedAc[dr.ID], g.changedAc[cr.ID] = true, true
		g.changedPd[p.ID] = p
		n++
	}
	return n
}

// applyTx validates the group's requests in order and writes what passed.
// full asks for every transfer id to be looked up; otherwise only ids the
// recent filter may have seen are.
func (e *Engine) applyTx(ctx context.Context, tx *store.Tx, group []*request, full bool) (*groupState, error) {
	w := &writer{ctx: ctx, tx: tx}
	now := e.now().UTC()
	g := &groupState{accounts: map[ID]*Account{}, existing: map[ID]*record{}, changedAc: map[ID]bool{}, changedMd: map[ID]bool{}, changedPd: map[ID]*record{},
		now: now, zone: e.zone, day: dayOf(now.In(e.zone)), profiles: e.profiles, reserve: e.reserve.Load(),
		results: make([][]Result, len(group)), expired: make([]int, len(group)), errs: make([]error, len(group))}
	// Every group changes ledger_clock first: on PostgreSQL the row lock
	// orders groups of several processes before any work is done. It also
	// reserves a timestamp for every transfer the group may store and a
	// batch number (unused ones are gaps: timestamps need only be unique
	// and increasing).
	reserve := int64(1)
	for _, r := range group {
		if r.op == opTransfers {
			reserve += int64(len(r.transfers))
		}
	}
	var lastTS, batches int64
	rows, err := w.query(clockStart, now.UnixNano(), reserve)
	if err != nil {
		return nil, fmt.Errorf("ledger clock: %w", err)
	}
	if !rows.Next() {
		rows.Close()
		return nil, fmt.Errorf("ledger clock: no row: %w", rows.Err())
	}
	err = rows.Scan(&lastTS, &batches, &g.gen)
	rows.Close()
	if err != nil {
		return nil, fmt.Errorf("ledger clock: %w", err)
	}
	if g.gen-1 != e.gen {
		clear(e.cache) // another process wrote since our last group
	}
	g.firstTS, g.batch = lastTS-reserve+1, batches

	// What the group refers to.
	lookup := map[ID]bool{}
	accounts := map[ID]bool{}
	var expiring [][]ID
	for _, r := range group {
		switch r.op {
		case opTransfers:
			for i := range r.transfers {
				t := &r.transfers[i]
				if t.PendingID != (ID{}) {
					lookup[t.PendingID] = true
				}
				if full || e.recent.mayContain(t.ID) {
					lookup[t.ID] = true
				}
				accounts[t.Debit], accounts[t.Credit] = true, true
			}
		case opClose, opProfile:
			accounts[r.account] = true
		case opExpire:
			ids, err := dueTransfers(w, now)
			if err != nil {
				return nil, err
			}
			for _, id := range ids {
				lookup[id] = true
			}
			expiring = append(expiring, ids)
		}
	}
	delete(lookup, ID{})
	if err := g.loadTransfers(w, lookup); err != nil {
		return nil, err
	}
	for _, s := range g.existing { // pending transfers bring their accounts
		if s.state != stateFailed {
			accounts[s.Debit], accounts[s.Credit] = true, true
		}
	}
	delete(accounts, ID{})
	var missing []ID
	for id := range accounts {
		if c := e.cache[id]; c != nil {
			a := *c
			g.accounts[id] = &a
		} else {
			missing = append(missing, id)
		}
	}
	if err := g.loadAccounts(w, missing); err != nil {
		return nil, err
	}

	for i, r := range group {
		switch r.op {
		case opTransfers:
			g.except = r.except
			g.results[i] = g.transfers(r.transfers)
			g.except = false
		case opClose, opProfile:
			a := g.accounts[r.account]
			if a == nil {
				g.errs[i] = fmt.Errorf("account %s: %w", r.account, ErrNotFound)
				continue
			}
			if r.op == opClose {
				a.Flags |= Closed
			} else {
				a.Profile = r.profile
			}
			g.changedMd[a.ID] = true
		case opExpire:
			g.expired[i] = g.expire(expiring[0])
			expiring = expiring[1:]
		}
	}
	if err := g.write(w); err != nil {
		return nil, err
	}
	for i, r := range group {
		if r.after != nil {
			if err := r.after(ctx, tx, g.results[i]); err != nil {
				return nil, fmt.Errorf("work after transfers: %w", err)
			}
		}
	}
	return g, nil
}
