package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	xtlog "golang.org/x/mod/sumdb/tlog"
)

// Entry is one transfer in an account's history, with the account's posted
// balance after it.
type Entry struct {
	Transfer
	Pending bool  // a reservation (not in the posted balance)
	Delta   int64 // what the transfer did to the posted balance
	Balance int64 // posted balance after the transfer
}

// walker reads an account's transfers newest first by following each
// transfer's link to the account's previous one.
type walker struct {
	account ID
	conn    *sql.Conn
	stmt    *sql.Stmt
}

func (e *Engine) walker(ctx context.Context, account ID) (*walker, error) {
	conn, err := e.db.Reader().Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	stmt, err := conn.PrepareContext(ctx, "SELECT "+transferRow+" FROM ledger_transfers WHERE id = $1")
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("history: %w", err)
	}
	return &walker{account: account, conn: conn, stmt: stmt}, nil
}

func (w *walker) close() { w.stmt.Close(); w.conn.Close() }

// at reads the transfer id, which must involve the account.
func (w *walker) at(ctx context.Context, id ID) (*record, error) {
	r, err := scanRecord(w.stmt.QueryRowContext(ctx, id[:]).Scan)
	if err != nil {
		return nil, fmt.Errorf("history of %s at %s: %w", w.account, id, err)
	}
	if r.Debit != w.account && r.Credit != w.account {
		return nil, fmt.Errorf("history of %s: transfer %s is not the account's", w.account, r.ID)
	}
	return r, nil
}

// marks returns the account's marks after (or at, with inclusive) ts,
// oldest first, at most limit.
func (e *Engine) marks(ctx context.Context, account ID, ts int64, inclusive bool, limit int) ([]mark, error) {
	op := ">"
	if inclusive {
		op = ">="
	}
	rows, err := e.db.Reader().QueryContext(ctx, "SELECT ts, id FROM ledger_marks WHERE account = $1 AND ts "+op+" $2 ORDER BY ts LIMIT $3", account[:], ts, limit)
	if err != nil {
		return nil, fmt.Errorf("history marks: %w", err)
	}
	defer rows.Close()
	var out []mark
	for rows.Next() {
		m := mark{account: account}
		var id []byte
		if err := rows.Scan(&m.ts, &id); err != nil {
			return nil, err
		}
		copy(m.id[:], id)
		out = append(out, m)
	}
	return out, rows.Err()
}

// nanos is t in nanoseconds since 1970, which is how transfers' instants
// are kept. A time no int64 of nanoseconds holds (before 1678 or after
// 2262, as a caller may ask for "every year") is the first or the last
// instant kept, never one wrapped around to another century. The first is
// one after the smallest int64, so that one before it is still earlier.
func nanos(t time.Time) int64 {
	switch {
	case t.Before(firstInstant):
		return math.MinInt64 + 1
	case t.After(lastInstant):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var firstInstant, lastInstant = time.Unix(0, math.MinInt64+1), time.Unix(0, math.MaxInt64)

// BalanceAt returns an account's posted balance (credits minus debits) as of
// time at (transfers stamped at or before it).
func (e *Engine) BalanceAt(ctx context.Context, id ID, at time.Time) (int64, error) {
	a, err := e.Account(ctx, id)
	if err != nil {
		return 0, err
	}
	t := nanos(at)
	if a.last <= t {
		return a.Balance(), nil
	}
	// The newest transfer at or before t is at most markEvery steps back
	// from the first mark after t.
	from := a.lastID
	ms, err := e.marks(ctx, id, t, false, 1)
	if err != nil {
		return 0, err
	}
	if len(ms) > 0 {
		from = ms[0].id
	}
	w, err := e.walker(ctx, id)
	if err != nil {
		return 0, err
	}
	defer w.close()
	for next := from; next != (ID{}); {
		r, err := w.at(ctx, next)
		if err != nil {
			return 0, err
		}
		prev, after := r.side(id)
		if r.Timestamp.UnixNano() <= t {
			return after, nil
		}
		next = prev
	}
	return 0, nil
}

// History lists an account's transfers stamped in [from, to), oldest first,
// each with the posted balance after it; at most limit entries.
func (e *Engine) History(ctx context.Context, id ID, from, to time.Time, limit int) ([]Entry, error) {
	a, err := e.Account(ctx, id)
	if err != nil {
		return nil, err
	}
	lo, hi := nanos(from), nanos(to)
	if limit <= 0 || a.last < lo || hi <= lo {
		return nil, nil
	}
	// Marks cut the account's transfers from lo on into runs of at most
	// markEvery; each run is read by walking back from its end.
	want := limit/markEvery + 2
	ends, err := e.marks(ctx, id, lo, true, want)
	if err != nil {
		return nil, err
	}
	if len(ends) < want && (len(ends) == 0 || ends[len(ends)-1].id != a.lastID) {
		ends = append(ends, mark{account: id, ts: a.last, id: a.lastID})
	}
	w, err := e.walker(ctx, id)
	if err != nil {
		return nil, err
	}
	defer w.close()
	var out []Entry
	floor := lo - 1 // the run before the first ends before lo
	for _, end := range ends {
		var run []Entry
		for next := end.id; next != (ID{}); {
			r, err := w.at(ctx, next)
			if err != nil {
				return nil, err
			}
			if ts := r.Timestamp.UnixNano(); ts <= floor || ts < lo {
				break
			}
			prev, after := r.side(id)
			en := Entry{Transfer: r.Transfer, Pending: r.Flags&(Pending|VoidPending) != 0, Balance: after}
			if !en.Pending {
				if r.Credit == id {
					en.Delta = r.Amount
				} else {
					en.Delta = -r.Amount
				}
			}
			run = append(run, en)
			next = prev
		}
		for i := len(run) - 1; i >= 0; i-- {
			if run[i].Timestamp.UnixNano() >= hi || len(out) == limit {
				return out, nil
			}
			out = append(out, run[i])
		}
		floor = end.ts
	}
	return out, nil
}

// Reverse corrects a posted transfer with a new one (id) that moves the same
// amount back, coded CodeReversal and referring to the original. Transfers
// are never changed or deleted.
func (e *Engine) Reverse(ctx context.Context, original, id ID) (Result, error) {
	t, err := e.Transfer(ctx, original)
	if err != nil {
		return 0, err
	}
	if t.Flags&(Pending|VoidPending) != 0 {
		return 0, fmt.Errorf("%w: only posted transfers can be reversed; void a pending one", ErrInvalid)
	}
	rs, err := e.Submit(ctx, []Transfer{{ID: id, Debit: t.Credit, Credit: t.Debit, Amount: t.Amount, Ledger: t.Ledger,
		Code: CodeReversal, Reference: "reverses:" + original.String()}})
	if err != nil {
		return 0, err
	}
	return rs[0], nil
}

// record reads a stored transfer; refused ones are not found.
func (e *Engine) record(ctx context.Context, id ID) (*record, error) {
	r, err := scanRecord(e.db.Reader().QueryRowContext(ctx, "SELECT "+transferRow+" FROM ledger_transfers WHERE id = $1", id[:]).Scan)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && r.state == stateFailed) {
		return nil, fmt.Errorf("transfer %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("transfer: %w", err)
	}
	return r, nil
}

// Transfer returns a stored transfer.
func (e *Engine) Transfer(ctx context.Context, id ID) (*Transfer, error) {
	r, err := e.record(ctx, id)
	if err != nil {
		return nil, err
	}
	return &r.Transfer, nil
}

// Proof shows that a transfer is in its batch, whose root is in the
// transparency log: a receipt carries it so that anyone can check the
// payment was recorded, with the log's inclusion proof for LogIndex.
type Proof struct {
	Batch    int64
	Position int64 // the transfer's leaf in the batch tree
	Count    int64
	Leaf     xtlog.Hash // hash of the transfer's canonical encoding
	Path     xtlog.RecordProof
	Root     xtlog.Hash
	LogIndex int64 // the transparency-log entry holding Root
}

// Check verifies the proof's path from Leaf to Root.
func (p *Proof) Check() error {
	return xtlog.CheckRecord(p.Path, p.Count, p.Root, p.Position, p.Leaf)
}

// ProveTransfer builds a transfer's batch inclusion proof.
func (e *Engine) ProveTransfer(ctx context.Context, id ID) (*Proof, error) {
	r, err := e.record(ctx, id)
	if err != nil {
		return nil, err
	}
	p := Proof{Batch: r.batch}
	var firstTS int64
	var root, leaves []byte
	err = e.db.Reader().QueryRowContext(ctx, "SELECT first_ts, count, root, hashes, log_index FROM ledger_batches WHERE batch = $1", r.batch).
		Scan(&firstTS, &p.Count, &root, &leaves, &p.LogIndex)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("batch %d of transfer %s: %w", r.batch, id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("batch: %w", err)
	}
	p.Position = r.Timestamp.UnixNano() - firstTS
	if p.Position < 0 || p.Position >= p.Count || int64(len(leaves)) != 32*p.Count {
		return nil, fmt.Errorf("ledger: batch %d does not hold transfer %s", r.batch, id)
	}
	copy(p.Root[:], root)
	tree, n, err := batchTree(leaves)
	if err != nil {
		return nil, err
	}
	if p.Path, err = xtlog.ProveRecord(n, p.Position, tree); err != nil {
		return nil, err
	}
	copy(p.Leaf[:], leaves[32*p.Position:32*p.Position+32])
	return &p, nil
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

// Issue creates digital cash: the issuer's account pays a wallet. It is an
// ordinary transfer, recorded and logged like any other.
func (e *Engine) Issue(ctx context.Context, id, issuer, to ID, amount int64, reference string) (Result, error) {
	rs, err := e.Submit(ctx, []Transfer{{ID: id, Debit: issuer, Credit: to, Amount: amount, Code: CodeIssuance, Reference: reference}})
	if err != nil {
		return 0, err
	}
	return rs[0], nil
}

// Redeem destroys digital cash: a wallet pays it back to the issuer.
func (e *Engine) Redeem(ctx context.Context, id, from, issuer ID, amount int64, reference string) (Result, error) {
	rs, err := e.Submit(ctx, []Transfer{{ID: id, Debit: from, Credit: issuer, Amount: amount, Code: CodeRedemption, Reference: reference}})
	if err != nil {
		return 0, err
	}
	return rs[0], nil
}
