package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	xtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/store"
)

// Entry is one transfer in an account's history, with the account's posted
// balance after it.
type Entry struct {
	Transfer
	Pending bool  // a reservation (not in the posted balance)
	Delta   int64 // what the transfer did to the posted balance
	Balance int64 // posted balance after the transfer
}

// postedSQL selects the transfers that change posted balances: plain
// transfers and posts of pending ones (flags without Pending and Void).
const postedSQL = "(flags & 10) = 0"

// BalanceAt returns an account's posted balance (credits minus debits) as of
// time at (transfers stamped at or before it).
func (e *Engine) BalanceAt(ctx context.Context, id ID, at time.Time) (int64, error) {
	if _, err := e.Account(ctx, id); err != nil {
		return 0, err
	}
	var credited, debited int64
	err := e.db.Reader().QueryRowContext(ctx, `SELECT
		COALESCE((SELECT SUM(amount) FROM ledger_transfers WHERE credit = $1 AND ts <= $2 AND `+postedSQL+`), 0),
		COALESCE((SELECT SUM(amount) FROM ledger_transfers WHERE debit = $1 AND ts <= $2 AND `+postedSQL+`), 0)`,
		id[:], at.UnixNano()).Scan(&credited, &debited)
	if err != nil {
		return 0, fmt.Errorf("balance at: %w", err)
	}
	return credited - debited, nil
}

// History lists an account's transfers stamped in [from, to), oldest first,
// each with the posted balance after it; at most limit entries.
func (e *Engine) History(ctx context.Context, id ID, from, to time.Time, limit int) ([]Entry, error) {
	start, err := e.BalanceAt(ctx, id, from.Add(-time.Nanosecond))
	if err != nil {
		return nil, err
	}
	rows, err := e.db.Reader().QueryContext(ctx, "SELECT "+transferColumns+` FROM ledger_transfers
		WHERE (debit = $1 OR credit = $1) AND ts >= $2 AND ts < $3 ORDER BY ts LIMIT $4`,
		id[:], from.UnixNano(), to.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer rows.Close()
	var out []Entry
	balance := start
	for rows.Next() {
		s, err := scanTransfer(rows.Scan)
		if err != nil {
			return nil, err
		}
		t := s.Transfer
		en := Entry{Transfer: t, Pending: t.Flags&(Pending|VoidPending) != 0}
		if !en.Pending {
			if t.Credit == id {
				en.Delta = t.Amount
			} else {
				en.Delta = -t.Amount
			}
		}
		balance += en.Delta
		en.Balance = balance
		out = append(out, en)
	}
	return out, rows.Err()
}

// Close closes an account: it takes no more transfers, except voids of its
// pending ones. Closing twice is not an error.
func (e *Engine) Close(ctx context.Context, id ID) error {
	return e.db.Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE ledger_accounts SET flags = flags | $1 WHERE id = $2", int(Closed), id[:])
		if err != nil {
			return fmt.Errorf("close account: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("account %s: %w", id, ErrNotFound)
		}
		return nil
	})
}

// SetProfile moves an account to another limit profile (a citizen who
// proves their identity moves up a tier).
func (e *Engine) SetProfile(ctx context.Context, id ID, profile string) error {
	if _, ok := e.profiles[profile]; profile != "" && !ok {
		return fmt.Errorf("%w: unknown limit profile %q", ErrInvalid, profile)
	}
	return e.db.Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE ledger_accounts SET profile = $1 WHERE id = $2", profile, id[:])
		if err != nil {
			return fmt.Errorf("set profile: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("account %s: %w", id, ErrNotFound)
		}
		return nil
	})
}

// Reverse corrects a posted transfer with a new one (id) that moves the same
// amount back, coded CodeReversal and referring to the original. Transfers
// are never changed or deleted.
func (e *Engine) Reverse(ctx context.Context, original, id ID) (Result, error) {
	t, err := e.transfer(ctx, original)
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

func (e *Engine) transfer(ctx context.Context, id ID) (*Transfer, error) {
	s, err := scanTransfer(e.db.Reader().QueryRowContext(ctx, "SELECT "+transferColumns+" FROM ledger_transfers WHERE id = $1", id[:]).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("transfer %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &s.Transfer, nil
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
	var p Proof
	var ts, firstTS int64
	var root, leaves []byte
	err := e.db.Reader().QueryRowContext(ctx, `SELECT t.batch, t.ts, b.first_ts, b.count, b.root, b.hashes, b.log_index
		FROM ledger_transfers t JOIN ledger_batches b ON b.batch = t.batch WHERE t.id = $1`, id[:]).
		Scan(&p.Batch, &ts, &firstTS, &p.Count, &root, &leaves, &p.LogIndex)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("transfer %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	p.Position = ts - firstTS
	copy(p.Root[:], root)
	r, n, err := batchTree(leaves)
	if err != nil {
		return nil, err
	}
	if p.Path, err = xtlog.ProveRecord(n, p.Position, r); err != nil {
		return nil, err
	}
	copy(p.Leaf[:], leaves[32*p.Position:32*p.Position+32])
	return &p, nil
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
