package ledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestSubmitExcept: a caller that may not move some accounts has every
// transfer touching one refused (a plain one, either side; a post or void of
// a pending one; a chain holding one, as a whole), and nothing it refused is
// remembered: the same transfer from a caller that may still goes through.
// Requests of both kinds in one group keep their own rule, and the
// predicate is asked once per account.
func TestSubmitExcept(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e, _ := start(t, db)
		issuer := account(t, e, ledger.KindIssuer, 0, "")
		kept := account(t, e, ledger.KindWallet, ledger.DebitsMustNotExceedCredits, "")
		free := account(t, e, ledger.KindWallet, ledger.DebitsMustNotExceedCredits, "")
		if _, err := e.SubmitExcept(ctx, []ledger.Transfer{{ID: newID(), Debit: issuer, Credit: free, Amount: 1}}); err == nil {
			t.Fatal("SubmitExcept ran with no accounts reserved")
		}
		asked := map[ledger.ID]int{}
		e.SetReserved(func(a *ledger.Account) bool { asked[a.ID]++; return a.ID == kept })
		except := func(ts ...ledger.Transfer) []ledger.Result {
			t.Helper()
			rs, err := e.SubmitExcept(ctx, ts)
			if err != nil {
				t.Fatal(err)
			}
			return rs
		}
		tr := func(debit, credit ledger.ID, amount int64) ledger.Transfer {
			return ledger.Transfer{ID: newID(), Debit: debit, Credit: credit, Amount: amount, Code: ledger.CodeIssuance}
		}
		want(t, "fund both", submit(t, e, tr(issuer, kept, 100), tr(issuer, free, 100)), ledger.OK, ledger.OK)

		into, out := tr(issuer, kept, 5), tr(kept, issuer, 5)
		want(t, "into and out of the reserved account", except(into, out, tr(issuer, free, 5)), ledger.AccountReserved, ledger.AccountReserved, ledger.OK)
		chain := []ledger.Transfer{tr(issuer, free, 1), tr(free, kept, 1)}
		chain[0].Flags = ledger.Linked
		want(t, "a chain through it", except(chain...), ledger.LinkedEventFailed, ledger.AccountReserved)

		hold := tr(kept, free, 10)
		hold.Flags, hold.Timeout = ledger.Pending, time.Hour
		want(t, "a pending transfer by the service", submit(t, e, hold), ledger.OK)
		for _, flag := range []ledger.TransferFlags{ledger.PostPending, ledger.VoidPending} {
			want(t, "resolve it", except(ledger.Transfer{ID: newID(), PendingID: hold.ID, Flags: flag}), ledger.AccountReserved)
		}

		// Not remembered: the service's own retry of the same transfers works.
		want(t, "the service, same ids", submit(t, e, into, out), ledger.OK, ledger.OK)
		want(t, "the service posts it", submit(t, e, ledger.Transfer{ID: newID(), PendingID: hold.ID, Flags: ledger.PostPending}), ledger.OK)

		// Both kinds of request at once, grouped by the engine.
		errs := make(chan error, 40)
		for i := range 40 {
			go func() {
				var rs []ledger.Result
				var err error
				if i%2 == 0 {
					rs, err = e.SubmitExcept(ctx, []ledger.Transfer{tr(issuer, kept, 1)})
					if err == nil && rs[0] != ledger.AccountReserved {
						err = errors.New("a back-office transfer into the reserved account: " + rs[0].String())
					}
				} else {
					rs, err = e.Submit(ctx, []ledger.Transfer{tr(issuer, kept, 1)})
					if err == nil && rs[0] != ledger.OK {
						err = errors.New("a service's transfer refused: " + rs[0].String())
					}
				}
				errs <- err
			}()
		}
		for range 40 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if got := balance(t, e, kept).Balance(); got != 100+5-5-10+20 {
			t.Fatalf("the reserved account holds %d", got)
		}
		// The predicate is asked once per account the engine holds (again
		// only if its cache had to be dropped), not for each of the 40-odd
		// transfers into kept; a new predicate is asked again.
		if asked[kept] < 1 || asked[kept] > 3 || asked[free] > 3 || asked[issuer] > 3 {
			t.Fatalf("the predicate was asked %v", asked)
		}
		e.SetReserved(func(a *ledger.Account) bool { return a.ID == free })
		want(t, "another predicate", except(tr(issuer, kept, 1), tr(issuer, free, 1)), ledger.OK, ledger.AccountReserved)
	})
}

// TestEnsureAccount: an account that exists under the id a service derives
// is the service's only if it is the same account; its profile may differ.
func TestEnsureAccount(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e, _ := start(t, db)
		a := ledger.Account{ID: newID(), Ledger: ledger.LedgerCash, Kind: ledger.KindWallet, Owner: "amira", Flags: ledger.DebitsMustNotExceedCredits, Profile: "basic"}
		for range 2 {
			if err := e.EnsureAccount(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.SetProfile(ctx, a.ID, "verified"); err != nil {
			t.Fatal(err)
		}
		if err := e.EnsureAccount(ctx, a); err != nil {
			t.Fatalf("after a move to another tier: %v", err)
		}
		for _, change := range []func(*ledger.Account){
			func(x *ledger.Account) { x.Owner = "mallory" },
			func(x *ledger.Account) { x.Kind = ledger.KindIssuer },
			func(x *ledger.Account) { x.Ledger = ledger.LedgerPoints },
			func(x *ledger.Account) { x.Flags = 0 },
		} {
			other := a
			change(&other)
			if err := e.EnsureAccount(ctx, other); !errors.Is(err, ledger.ErrExists) {
				t.Fatalf("ensure %+v over %+v: %v", other, a, err)
			}
		}
	})
}
