package ledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

func TestQueriesAndOperations(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e, clk := start(t, db)
		issuer := account(t, e, ledger.KindIssuer, 0, "")
		li := account(t, e, ledger.KindMerchant, ledger.DebitsMustNotExceedCredits, "")
		jonas := account(t, e, ledger.KindWallet, ledger.DebitsMustNotExceedCredits, "basic")

		t0 := clk.now()
		if r, err := e.Issue(ctx, newID(), issuer, jonas, 3_000_00, "top-up"); err != nil || r != ledger.OK {
			t.Fatalf("issue: %v %v", r, err)
		}
		clk.add(time.Hour)
		t1 := clk.now()
		pay := ledger.Transfer{ID: newID(), Debit: jonas, Credit: li, Amount: 12_50, Code: ledger.CodePayment, Reference: "dumplings"}
		want(t, "pay", submit(t, e, pay), ledger.OK)
		clk.add(time.Hour)
		hold := ledger.Transfer{ID: newID(), Debit: jonas, Credit: li, Amount: 5_00, Flags: ledger.Pending}
		want(t, "hold", submit(t, e, hold), ledger.OK)

		if b, _ := e.BalanceAt(ctx, jonas, t0.Add(-time.Second)); b != 0 {
			t.Fatalf("balance before anything: %d", b)
		}
		if b, _ := e.BalanceAt(ctx, jonas, t1.Add(-time.Second)); b != 3_000_00 {
			t.Fatalf("balance after the issue: %d", b)
		}
		h, err := e.History(ctx, jonas, t1, t1.Add(24*time.Hour), 100)
		if err != nil || len(h) != 2 {
			t.Fatalf("history: %+v %v", h, err)
		}
		if h[0].Delta != -12_50 || h[0].Balance != 2_987_50 || !h[1].Pending || h[1].Balance != 2_987_50 || h[0].Reference != "dumplings" {
			t.Fatalf("history entries: %+v", h)
		}

		// Times no int64 of nanoseconds holds (before 1678, after 2262)
		// mean "from the first" and "to the last", never a wrapped-around
		// instant.
		long, far := time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
		if h, err := e.History(ctx, jonas, long, far, 100); err != nil || len(h) != 3 {
			t.Fatalf("history over every year: %d entries, %v", len(h), err)
		}
		if h, err := e.History(ctx, jonas, time.Time{}, t1, 100); err != nil || len(h) != 1 || h[0].Delta != 3_000_00 {
			t.Fatalf("history from year 1: %+v, %v", h, err)
		}
		if h, _ := e.History(ctx, jonas, far, far.AddDate(1, 0, 0), 100); len(h) != 0 {
			t.Fatalf("history after year 9999: %+v", h)
		}
		if h, _ := e.History(ctx, jonas, long, long.AddDate(1, 0, 0), 100); len(h) != 0 {
			t.Fatalf("history in year 1000: %+v", h)
		}
		for at, want := range map[time.Time]int64{long: 0, {}: 0, far: 2_987_50} {
			if b, err := e.BalanceAt(ctx, jonas, at); err != nil || b != want {
				t.Fatalf("balance at %v: %d, %v (want %d)", at, b, err, want)
			}
		}

		// Reversal is a new, linked-by-reference transfer.
		rid := newID()
		if r, err := e.Reverse(ctx, pay.ID, rid); err != nil || r != ledger.OK {
			t.Fatalf("reverse: %v %v", r, err)
		}
		if a := balance(t, e, jonas); a.Balance() != 3_000_00 {
			t.Fatalf("balance after reversal %d", a.Balance())
		}
		if _, err := e.Reverse(ctx, hold.ID, newID()); !errors.Is(err, ledger.ErrInvalid) {
			t.Fatalf("reversing a pending transfer: %v", err)
		}

		// A receipt's proof: the transfer is in its batch, the batch in the log.
		p, err := e.ProveTransfer(ctx, pay.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Check(); err != nil {
			t.Fatalf("batch proof: %v", err)
		}
		var data []byte
		if err := db.Reader().QueryRow("SELECT data FROM tlog_entries WHERE idx = $1", p.LogIndex).Scan(&data); err != nil {
			t.Fatal(err)
		}
		entry, err := tlog.Parse(data)
		if err != nil || entry.Kind != tlog.KindLedgerBatch || entry.Root != p.Root || int64(entry.Count) != p.Count {
			t.Fatalf("log entry %+v does not hold the batch root (%v)", entry, err)
		}
		p.Leaf[0] ^= 1
		if p.Check() == nil {
			t.Fatal("a tampered proof checks")
		}

		// Tiers and closing.
		if r, _ := e.Issue(ctx, newID(), issuer, jonas, 8_000_00, ""); r != ledger.ExceedsBalanceCap {
			t.Fatalf("basic wallet over its cap: %v", r)
		}
		if err := e.SetProfile(ctx, jonas, "verified"); err != nil {
			t.Fatal(err)
		}
		if r, _ := e.Issue(ctx, newID(), issuer, jonas, 8_000_00, ""); r != ledger.OK {
			t.Fatalf("verified wallet: %v", r)
		}
		if err := e.SetProfile(ctx, jonas, "platinum"); !errors.Is(err, ledger.ErrInvalid) {
			t.Fatalf("unknown profile: %v", err)
		}
		if err := e.Close(ctx, li); err != nil {
			t.Fatal(err)
		}
		want(t, "pay a closed account", submit(t, e, ledger.Transfer{ID: newID(), Debit: jonas, Credit: li, Amount: 1}), ledger.CreditAccountClosed)
		want(t, "post to a closed account", submit(t, e, ledger.Transfer{ID: newID(), PendingID: hold.ID, Flags: ledger.PostPending}), ledger.CreditAccountClosed)
		want(t, "void a pending of a closed account", submit(t, e, ledger.Transfer{ID: newID(), PendingID: hold.ID, Flags: ledger.VoidPending}), ledger.OK)
		if err := e.Close(ctx, newID()); !errors.Is(err, ledger.ErrNotFound) {
			t.Fatalf("close nothing: %v", err)
		}
		// Mixed ledgers are refused.
		points := newID()
		if err := e.CreateAccount(ctx, ledger.Account{ID: points, Ledger: ledger.LedgerPoints, Kind: ledger.KindWallet, Owner: "o"}); err != nil {
			t.Fatal(err)
		}
		want(t, "mixed ledgers", submit(t, e, ledger.Transfer{ID: newID(), Debit: issuer, Credit: points, Amount: 1}), ledger.LedgerMismatch)
		if err := e.CreateAccount(ctx, ledger.Account{ID: points, Ledger: ledger.LedgerPoints, Kind: ledger.KindWallet}); !errors.Is(err, ledger.ErrExists) {
			t.Fatalf("duplicate account: %v", err)
		}
		if err := e.CreateAccount(ctx, ledger.Account{ID: newID(), Ledger: 99}); !errors.Is(err, ledger.ErrInvalid) {
			t.Fatalf("unknown ledger: %v", err)
		}
	})
}

// A long history crosses many marks (every 64th transfer of an account):
// every window of History and every BalanceAt agrees with a model kept by
// the test, for an account that is debited and credited in turn.
func TestLongHistory(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e, clk := start(t, db)
		issuer := account(t, e, ledger.KindIssuer, 0, "")
		a := account(t, e, ledger.KindWallet, ledger.DebitsMustNotExceedCredits, "")
		b := account(t, e, ledger.KindWallet, 0, "")
		type step struct {
			at      time.Time
			delta   int64
			balance int64
		}
		var model []step
		var bal int64
		for i := 0; i < 300; i++ {
			clk.add(time.Second)
			var tr ledger.Transfer
			switch {
			case i%3 == 0:
				tr = ledger.Transfer{ID: newID(), Debit: issuer, Credit: a, Amount: int64(100 + i)}
			case i%3 == 1:
				tr = ledger.Transfer{ID: newID(), Debit: a, Credit: b, Amount: int64(1 + i%7)}
			default:
				// Transfers of other accounts interleave and must not appear.
				want(t, "other", submit(t, e, ledger.Transfer{ID: newID(), Debit: issuer, Credit: b, Amount: 5}), ledger.OK)
				continue
			}
			want(t, "transfer", submit(t, e, tr), ledger.OK)
			d := tr.Amount
			if tr.Debit == a {
				d = -d
			}
			bal += d
			model = append(model, step{clk.now(), d, bal})
		}
		if got := balance(t, e, a); got.Balance() != bal || got.Transfers() != int64(len(model)) {
			t.Fatalf("account: balance %d, %d transfers; want %d, %d", got.Balance(), got.Transfers(), bal, len(model))
		}
		windows := [][2]int{{0, len(model)}, {0, 1}, {63, 65}, {64, 200}, {127, 129}, {10, 11}, {150, len(model)}, {len(model) - 1, len(model)}}
		for _, w := range windows {
			for _, limit := range []int{1000, 7, 64, 65} {
				from, to := model[w[0]].at, model[w[1]-1].at.Add(time.Nanosecond)
				h, err := e.History(ctx, a, from, to, limit)
				if err != nil {
					t.Fatal(err)
				}
				n := min(w[1]-w[0], limit)
				if len(h) != n {
					t.Fatalf("history [%d, %d) limit %d: %d entries, want %d", w[0], w[1], limit, len(h), n)
				}
				for k, en := range h {
					m := model[w[0]+k]
					if en.Delta != m.delta || en.Balance != m.balance || !en.Timestamp.Before(m.at.Add(time.Second)) || en.Timestamp.Before(m.at) {
						t.Fatalf("history [%d, %d) entry %d: %+v, want %+v", w[0], w[1], k, en, m)
					}
				}
			}
		}
		if h, _ := e.History(ctx, a, model[len(model)-1].at.Add(time.Second), clk.now().Add(time.Hour), 10); len(h) != 0 {
			t.Fatalf("history after the last transfer: %d entries", len(h))
		}
		for i, m := range model {
			if got, err := e.BalanceAt(ctx, a, m.at.Add(500*time.Millisecond)); err != nil || got != m.balance {
				t.Fatalf("balance after step %d: %d, %v; want %d", i, got, err, m.balance)
			}
			prev := int64(0)
			if i > 0 {
				prev = model[i-1].balance
			}
			if got, _ := e.BalanceAt(ctx, a, m.at.Add(-time.Nanosecond)); got != prev {
				t.Fatalf("balance before step %d: %d, want %d", i, got, prev)
			}
		}
	})
}
