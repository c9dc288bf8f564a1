package ledger

import (
	"bytes"
	"context"
	"fmt"

	xtlog "golang.org/x/mod/sumdb/tlog"
)

// Audit is what Check found.
type Audit struct {
	Accounts  int
	Transfers int64 // applied transfers (refused ones are not counted)
	Refused   int64
	Batches   int64
	// Problems lists every inconsistency, one sentence each; empty when the
	// ledger is sound.
	Problems []string
}

// maxProblems bounds Audit.Problems.
const maxProblems = 100

func (a *Audit) problem(format string, args ...any) {
	if len(a.Problems) < maxProblems {
		a.Problems = append(a.Problems, fmt.Sprintf(format, args...))
	}
}

// sums is what an account's stored transfers add up to.
type sums struct {
	debitsPending, debitsPosted, creditsPending, creditsPosted int64
	last, count                                                int64
	lastID                                                     ID
}

// Check reads the whole ledger and recomputes it from its transfers: every
// account's posted and pending balances equal the sums of its transfers;
// every ledger balances (debits equal credits); no account with a balance
// rule breaks it; each account's history links run unbroken from its newest
// transfer with the stored balance after each; and each batch's Merkle root
// is the one recomputed from its transfers. It only reads; run it on a quiet
// ledger (under load it sees one consistent snapshot only on PostgreSQL).
func (e *Engine) Check(ctx context.Context) (*Audit, error) {
	audit := &Audit{}
	rows, err := e.db.Reader().QueryContext(ctx, "SELECT "+accountColumns+" FROM ledger_accounts")
	if err != nil {
		return nil, fmt.Errorf("check accounts: %w", err)
	}
	accounts := map[ID]*Account{}
	for rows.Next() {
		a, err := scanAccount(rows.Scan)
		if err != nil {
			rows.Close()
			return nil, err
		}
		accounts[a.ID] = a
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	audit.Accounts = len(accounts)

	got := map[ID]*sums{}
	for id := range accounts {
		got[id] = &sums{}
	}
	batches := map[int64][]xtlog.Hash{}
	rows, err = e.db.Reader().QueryContext(ctx, "SELECT "+transferRow+" FROM ledger_transfers ORDER BY ts")
	if err != nil {
		return nil, fmt.Errorf("check transfers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRecord(rows.Scan)
		if err != nil {
			audit.problem("%v", err)
			continue
		}
		if r.state == stateFailed {
			audit.Refused++
			continue
		}
		audit.Transfers++
		dr, cr := got[r.Debit], got[r.Credit]
		if dr == nil || cr == nil {
			audit.problem("transfer %s names an account that does not exist", r.ID)
			continue
		}
		batches[r.batch] = append(batches[r.batch], xtlog.RecordHash(encode(&r.Transfer)))
		switch {
		case r.Flags&Pending != 0:
			if r.state == statePending {
				dr.debitsPending += r.Amount
				cr.creditsPending += r.Amount
			}
		case r.Flags&VoidPending != 0:
		default: // ordinary transfers and posts
			dr.debitsPosted += r.Amount
			cr.creditsPosted += r.Amount
		}
		ts := r.Timestamp.UnixNano()
		for _, side := range [2]struct {
			s     *sums
			id    ID
			prev  ID
			after int64
		}{{dr, r.Debit, r.debitPrev, r.debitAfter}, {cr, r.Credit, r.creditPrev, r.creditAfter}} {
			if side.prev != side.s.lastID {
				audit.problem("transfer %s: the history link of account %s skips a transfer", r.ID, side.id)
			}
			if side.after != side.s.creditsPosted-side.s.debitsPosted {
				audit.problem("transfer %s: balance after it on account %s is %d, its transfers give %d", r.ID, side.id, side.after, side.s.creditsPosted-side.s.debitsPosted)
			}
			side.s.last, side.s.lastID = ts, r.ID
			side.s.count++
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("check transfers: %w", err)
	}

	totals := map[uint32]*sums{}
	for id, a := range accounts {
		s := got[id]
		if a.DebitsPending != s.debitsPending || a.DebitsPosted != s.debitsPosted || a.CreditsPending != s.creditsPending || a.CreditsPosted != s.creditsPosted {
			audit.problem("account %s holds debits %d/%d and credits %d/%d (pending/posted), its transfers give %d/%d and %d/%d",
				id, a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted, s.debitsPending, s.debitsPosted, s.creditsPending, s.creditsPosted)
		}
		if a.last != s.last || a.lastID != s.lastID || a.transfers != s.count {
			audit.problem("account %s records %d transfers ending at %d, the ledger holds %d ending at %d", id, a.transfers, a.last, s.count, s.last)
		}
		if a.Flags&DebitsMustNotExceedCredits != 0 && a.DebitsPending+a.DebitsPosted > a.CreditsPosted {
			audit.problem("account %s is overdrawn", id)
		}
		if a.Flags&CreditsMustNotExceedDebits != 0 && a.CreditsPending+a.CreditsPosted > a.DebitsPosted {
			audit.problem("account %s is over-credited", id)
		}
		t := totals[a.Ledger]
		if t == nil {
			t = &sums{}
			totals[a.Ledger] = t
		}
		t.debitsPending += a.DebitsPending
		t.debitsPosted += a.DebitsPosted
		t.creditsPending += a.CreditsPending
		t.creditsPosted += a.CreditsPosted
	}
	for ledger, t := range totals {
		if t.debitsPending != t.creditsPending || t.debitsPosted != t.creditsPosted {
			audit.problem("ledger %d does not balance: debits %d/%d, credits %d/%d", ledger, t.debitsPending, t.debitsPosted, t.creditsPending, t.creditsPosted)
		}
	}

	rows, err = e.db.Reader().QueryContext(ctx, "SELECT batch, root, count FROM ledger_batches")
	if err != nil {
		return nil, fmt.Errorf("check batches: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var batch, count int64
		var root []byte
		if err := rows.Scan(&batch, &root, &count); err != nil {
			return nil, err
		}
		audit.Batches++
		leaves := batches[batch]
		delete(batches, batch)
		if int64(len(leaves)) != count {
			audit.problem("batch %d records %d transfers, the ledger holds %d", batch, count, len(leaves))
			continue
		}
		if sum := merkleRoot(leaves); !bytes.Equal(sum[:], root) {
			audit.problem("batch %d: its transfers do not hash to its root", batch)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("check batches: %w", err)
	}
	for batch := range batches {
		audit.problem("batch %d holds transfers but has no root", batch)
	}
	return audit, nil
}
