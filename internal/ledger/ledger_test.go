package ledger_test

import (
	"context"
	"crypto/rand"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the zone test runs where the system has no zone database

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newID() ledger.ID {
	var id ledger.ID
	rand.Read(id[:])
	return id
}

func start(t testing.TB, db *store.DB) (*ledger.Engine, *clock) {
	return startIn(t, db, time.UTC, time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC))
}

// startIn starts an engine whose daily limits count loc's days, its clock at at.
func startIn(t testing.TB, db *store.DB, loc *time.Location, at time.Time) (*ledger.Engine, *clock) {
	c := &clock{t: at}
	e := ledger.New(db, c.now, nil)
	e.SetZone(loc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e, c
}

func account(t testing.TB, e *ledger.Engine, kind ledger.Kind, flags ledger.AccountFlags, profile string) ledger.ID {
	t.Helper()
	id := newID()
	if err := e.CreateAccount(context.Background(), ledger.Account{ID: id, Ledger: ledger.LedgerCash, Kind: kind, Owner: "o", Flags: flags, Profile: profile}); err != nil {
		t.Fatal(err)
	}
	return id
}

func submit(t testing.TB, e *ledger.Engine, ts ...ledger.Transfer) []ledger.Result {
	t.Helper()
	rs, err := e.Submit(context.Background(), ts)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func want(t testing.TB, what string, got []ledger.Result, want ...ledger.Result) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: result %d is %s, want %s (all: %v)", what, i, got[i], want[i], got)
		}
	}
}

func balance(t testing.TB, e *ledger.Engine, id ledger.ID) *ledger.Account {
	t.Helper()
	a, err := e.Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestSemantics(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e, clk := start(t, db)
		issuer := account(t, e, ledger.KindIssuer, ledger.CreditsMustNotExceedDebits, "")
		amira := account(t, e, ledger.KindWallet, ledger.DebitsMustNotExceedCredits, "basic")
		shop := account(t, e, ledger.KindMerchant, ledger.DebitsMustNotExceedCredits, "")

		issue := ledger.Transfer{ID: newID(), Debit: issuer, Credit: amira, Amount: 5_000_00, Code: ledger.CodeIssuance}
		want(t, "issue", submit(t, e, issue), ledger.OK)
		want(t, "replay", submit(t, e, issue), ledger.Exists)
		other := issue
		other.Amount = 1
		want(t, "same id, other amount", submit(t, e, other), ledger.ExistsWithDifferentAmount)
		if a := balance(t, e, amira); a.Balance() != 5_000_00 {
			t.Fatalf("balance %d", a.Balance())
		}

		pay := func(amount int64) ledger.Transfer {
			return ledger.Transfer{ID: newID(), Debit: amira, Credit: shop, Amount: amount, Code: ledger.CodePayment}
		}
		want(t, "over the per-payment limit", submit(t, e, pay(2_000_01)), ledger.ExceedsPerPaymentLimit)
		want(t, "two payments", submit(t, e, pay(2_000_00), pay(2_000_00)), ledger.OK, ledger.OK)
		want(t, "redeem more than the shop holds", submit(t, e, ledger.Transfer{ID: newID(), Debit: shop, Credit: issuer, Amount: 4_000_01, Code: ledger.CodeRedemption}), ledger.ExceedsCredits)
		want(t, "everything goes back to the issuer", submit(t, e, ledger.Transfer{ID: newID(), Debit: amira, Credit: issuer, Amount: 1_000_00}, ledger.Transfer{ID: newID(), Debit: shop, Credit: issuer, Amount: 4_000_00}), ledger.OK, ledger.OK)
		want(t, "bad input", submit(t, e,
			ledger.Transfer{ID: newID(), Debit: amira, Credit: shop, Amount: 0},
			ledger.Transfer{ID: newID(), Debit: amira, Credit: amira, Amount: 1},
			ledger.Transfer{ID: newID(), Debit: newID(), Credit: shop, Amount: 1},
			ledger.Transfer{ID: ledger.ID{}, Debit: amira, Credit: shop, Amount: 1},
			ledger.Transfer{ID: newID(), Debit: amira, Credit: shop, Amount: -5},
		), ledger.AmountMustBePositive, ledger.AccountsMustBeDifferent, ledger.DebitAccountNotFound, ledger.IDMustNotBeZero, ledger.AmountMustBePositive)

		if a := balance(t, e, issuer); a.Balance() != 0 {
			t.Fatalf("issuer balance %d after everything came back", a.Balance())
		}
		// The daily limit: 5,000 a day; 5,000 spent (4,000 paid, 1,000 redeemed).
		want(t, "top up", submit(t, e, ledger.Transfer{ID: newID(), Debit: issuer, Credit: amira, Amount: 4_000_00}), ledger.OK)
		want(t, "over the daily limit", submit(t, e, pay(1)), ledger.ExceedsDailyLimit)
		clk.add(24 * time.Hour)
		want(t, "next day", submit(t, e, pay(1_000_01)), ledger.OK)
		// Balance cap 10,000 on a basic wallet.
		want(t, "over the balance cap", submit(t, e, ledger.Transfer{ID: newID(), Debit: issuer, Credit: amira, Amount: 10_000_00}), ledger.ExceedsBalanceCap)

		// Linked chains: all or nothing.
		before := balance(t, e, shop).Balance()
		a, b := pay(100), pay(1_000_000_00)
		a.Flags = ledger.Linked
		want(t, "chain fails", submit(t, e, a, b), ledger.LinkedEventFailed, ledger.ExceedsPerPaymentLimit)
		if balance(t, e, shop).Balance() != before {
			t.Fatal("a failed chain moved money")
		}
		open := pay(100)
		open.Flags = ledger.Linked
		want(t, "open chain", submit(t, e, open), ledger.LinkedEventChainOpen)

		// Two-phase: reserve, post part, and a pending that times out.
		hold := pay(500_00)
		hold.Flags, hold.Timeout = ledger.Pending, time.Minute
		want(t, "pending", submit(t, e, hold), ledger.OK)
		if a := balance(t, e, amira); a.DebitsPending != 500_00 {
			t.Fatalf("pending %d", a.DebitsPending)
		}
		post := ledger.Transfer{ID: newID(), PendingID: hold.ID, Amount: 300_00, Flags: ledger.PostPending}
		tooMuch := ledger.Transfer{ID: newID(), PendingID: hold.ID, Amount: 600_00, Flags: ledger.PostPending}
		want(t, "post too much", submit(t, e, tooMuch), ledger.ExceedsPendingAmount)
		want(t, "post part", submit(t, e, post), ledger.OK)
		want(t, "post again", submit(t, e, ledger.Transfer{ID: newID(), PendingID: hold.ID, Flags: ledger.PostPending}), ledger.PendingAlreadyPosted)
		want(t, "void after post", submit(t, e, ledger.Transfer{ID: newID(), PendingID: hold.ID, Flags: ledger.VoidPending}), ledger.PendingAlreadyPosted)
		if a := balance(t, e, amira); a.DebitsPending != 0 {
			t.Fatalf("pending after post %d", a.DebitsPending)
		}
		hold2 := pay(100_00)
		hold2.Flags, hold2.Timeout = ledger.Pending, time.Minute
		want(t, "pending 2", submit(t, e, hold2), ledger.OK)
		clk.add(2 * time.Minute)
		want(t, "post expired", submit(t, e, ledger.Transfer{ID: newID(), PendingID: hold2.ID, Flags: ledger.PostPending}), ledger.PendingExpired)
		n, err := e.Expire(context.Background())
		if err != nil || n != 1 {
			t.Fatalf("expire: %d %v", n, err)
		}
		if a := balance(t, e, amira); a.DebitsPending != 0 {
			t.Fatalf("pending after expiry %d", a.DebitsPending)
		}
		want(t, "void expired", submit(t, e, ledger.Transfer{ID: newID(), PendingID: hold2.ID, Flags: ledger.VoidPending}), ledger.PendingExpired)
		want(t, "unknown pending", submit(t, e, ledger.Transfer{ID: newID(), PendingID: newID(), Flags: ledger.VoidPending}), ledger.PendingNotFound)
		if _, err := e.Submit(context.Background(), make([]ledger.Transfer, ledger.MaxBatch+1)); err == nil {
			t.Fatal("a request over the maximum was accepted")
		}
	})
}

// TestDailyLimitInZone: with the city's zone set, a daily limit starts again
// at the city's midnight, not UTC's, and a hold of yesterday voided today
// gives nothing back to today's count.
func TestDailyLimitInZone(t *testing.T) {
	// A zone behind UTC, where the city's day and UTC's have the same date
	// for part of the day and not for the rest.
	newYork, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	late := time.Date(2026, 11, 25, 4, 30, 0, 0, time.UTC) // 23:30 on the 24th in New York (UTC-5)
	for _, tc := range []struct {
		zone      *time.Location
		nextDayOK bool // an hour later (00:30 in New York, 05:30 UTC): a new day?
	}{{newYork, true}, {time.UTC, false}} {
		t.Run(tc.zone.String(), func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, db *store.DB) {
				e, clk := startIn(t, db, tc.zone, late)
				issuer := account(t, e, ledger.KindIssuer, ledger.CreditsMustNotExceedDebits, "")
				amira := account(t, e, ledger.KindWallet, ledger.DebitsMustNotExceedCredits, "basic")
				shop := account(t, e, ledger.KindMerchant, ledger.DebitsMustNotExceedCredits, "")
				want(t, "top up", submit(t, e, ledger.Transfer{ID: newID(), Debit: issuer, Credit: amira, Amount: 10_000_00, Code: ledger.CodeIssuance}), ledger.OK)
				pay := func(amount int64) ledger.Transfer {
					return ledger.Transfer{ID: newID(), Debit: amira, Credit: shop, Amount: amount, Code: ledger.CodePayment}
				}
				hold := pay(1_000_00)
				hold.Flags, hold.Timeout = ledger.Pending, time.Hour*3
				want(t, "a day's limit", submit(t, e, pay(2_000_00), pay(2_000_00), hold), ledger.OK, ledger.OK, ledger.OK)
				want(t, "over it", submit(t, e, pay(1)), ledger.ExceedsDailyLimit)
				if got := balance(t, e, amira).Debited(clk.now().In(tc.zone)); got != 5_000_00 {
					t.Fatalf("debited today %d, want 5,000.00", got)
				}

				clk.add(time.Hour)
				void := ledger.Transfer{ID: newID(), PendingID: hold.ID, Flags: ledger.VoidPending}
				if tc.nextDayOK {
					if got := balance(t, e, amira).Debited(clk.now().In(tc.zone)); got != 0 {
						t.Fatalf("debited on the new day %d, want 0", got)
					}
					want(t, "the city's new day", submit(t, e, pay(2_000_00), pay(2_000_00), pay(1_000_00)), ledger.OK, ledger.OK, ledger.OK)
					want(t, "void yesterday's hold", submit(t, e, void), ledger.OK)
					want(t, "over the new day's, the void counted on its own day", submit(t, e, pay(1)), ledger.ExceedsDailyLimit)
				} else {
					// Still the same UTC day: the void gives the hold back.
					want(t, "void the hold", submit(t, e, void), ledger.OK)
					want(t, "what the void gave back", submit(t, e, pay(1_000_00)), ledger.OK)
					want(t, "still the same day", submit(t, e, pay(1)), ledger.ExceedsDailyLimit)
				}
			})
		})
	}
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"00000000000000000000000000000001", "", "xyz", "0000000000000000000000000000000g", "00000000000000000000000000000000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ledger.ParseID(s)
		if err == nil && (id == (ledger.ID{}) || len(s) != 32) {
			t.Fatalf("ParseID(%q) = %v", s, id)
		}
	})
}

func TestParseProfiles(t *testing.T) {
	got, err := ledger.ParseProfiles(strings.NewReader(`{"basic": {"per_payment": 200000, "per_day": 500000, "balance_cap": 1000000}, "open": {}}`))
	if err != nil || got["basic"] != (ledger.Limits{PerPayment: 200000, PerDay: 500000, BalanceCap: 1000000}) || got["open"] != (ledger.Limits{}) {
		t.Fatalf("%+v %v", got, err)
	}
	for _, bad := range []string{`{"basic": {"per_paymnt": 1}}`, `{"Basic": {}}`, `{"x": {"per_day": -1}}`, `[]`, `{"a": {}} {}`, ``, `{"` + strings.Repeat("a", 33) + `": {}}`} {
		if _, err := ledger.ParseProfiles(strings.NewReader(bad)); !errors.Is(err, ledger.ErrInvalid) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func FuzzParseProfiles(f *testing.F) {
	f.Add(`{"basic": {"per_payment": 1, "per_day": 2, "balance_cap": 3}}`)
	f.Add(`{"": {}}`)
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ledger.ParseProfiles(strings.NewReader(s))
		if err != nil {
			return
		}
		for name, l := range ps {
			if name == "" || l.PerDay < 0 || l.PerPayment < 0 || l.BalanceCap < 0 {
				t.Fatalf("accepted %q: %+v", name, l)
			}
		}
	})
}

func TestUnknownProfileInUse(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e, _ := start(t, db)
		account(t, e, ledger.KindWallet, 0, "basic")
		if err := e.CheckProfiles(context.Background()); err != nil {
			t.Fatal(err)
		}
		other := ledger.New(db, time.Now, map[string]ledger.Limits{"verified": {}})
		if err := other.CheckProfiles(context.Background()); !errors.Is(err, ledger.ErrInvalid) || !strings.Contains(err.Error(), `"basic"`) {
			t.Fatalf("a dropped profile in use: %v", err)
		}
	})
}

// Bad input gets its own result and changes nothing.
func TestBadInput(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		e, _ := start(t, db)
		issuer := account(t, e, ledger.KindIssuer, 0, "")
		big := account(t, e, ledger.KindWallet, 0, "")
		w := account(t, e, ledger.KindWallet, ledger.DebitsMustNotExceedCredits, "")
		want(t, "near the top", submit(t, e, ledger.Transfer{ID: newID(), Debit: issuer, Credit: big, Amount: math.MaxInt64 - 10}), ledger.OK)
		before, err := e.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want(t, "bad input", submit(t, e,
			ledger.Transfer{ID: newID(), Debit: issuer, Credit: big, Amount: 11},
			ledger.Transfer{ID: newID(), Debit: issuer, Credit: w, Amount: 1, Flags: 1 << 9},
			ledger.Transfer{ID: newID(), Debit: issuer, Credit: w, Amount: 1, Flags: ledger.Pending, Timeout: 1 << 33 * time.Second},
			ledger.Transfer{ID: newID(), Debit: issuer, Credit: w, Amount: 1, Flags: ledger.Pending, Timeout: 1500 * time.Millisecond},
			ledger.Transfer{ID: newID(), Debit: issuer, Credit: w, Amount: 1, Reference: strings.Repeat("x", 65)},
			ledger.Transfer{ID: newID(), Debit: issuer, Credit: w, Amount: 1, Timeout: time.Second},
			ledger.Transfer{ID: newID(), Debit: issuer, Credit: w, Amount: 1, Flags: ledger.PostPending},
			ledger.Transfer{ID: newID(), Debit: issuer, Credit: w, Amount: 1, PendingID: newID()},
			ledger.Transfer{ID: newID(), Flags: ledger.PostPending | ledger.VoidPending, PendingID: newID()},
			ledger.Transfer{ID: newID(), Debit: w, Credit: issuer, Amount: 1},
		), ledger.Overflow, ledger.ReservedFlag, ledger.TimeoutTooLong, ledger.TimeoutReservedForPending, ledger.ReferenceTooLong,
			ledger.TimeoutReservedForPending, ledger.PendingIDRequired, ledger.PendingIDMustBeZero, ledger.FlagsAreMutuallyExclusive, ledger.ExceedsCredits)
		after, err := e.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after.Transfers != before.Transfers || len(after.Problems) > 0 {
			t.Fatalf("refused transfers changed the ledger: %d → %d transfers, %v", before.Transfers, after.Transfers, after.Problems)
		}
		if after.Refused != before.Refused+2 {
			t.Fatalf("%d refusals remembered, want the two that depend on the ledger's state", after.Refused-before.Refused)
		}
		if a := balance(t, e, w); a.CreditsPosted != 0 || a.DebitsPending != 0 {
			t.Fatalf("wallet changed: %+v", a)
		}
	})
}

// TestSubmitThen: work after transfers commits with them, sees their
// results, and its failure leaves neither the transfers nor the work.
func TestSubmitThen(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, "CREATE TABLE after_marks (tag TEXT NOT NULL)")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		e, _ := start(t, db)
		issuer := account(t, e, ledger.KindIssuer, 0, "")
		wallet := account(t, e, ledger.KindWallet, ledger.DebitsMustNotExceedCredits, "")
		mark := func(tag string) ledger.After {
			return func(ctx context.Context, tx *store.Tx, rs []ledger.Result) error {
				if rs[0] != ledger.OK {
					return nil
				}
				_, err := tx.ExecContext(ctx, "INSERT INTO after_marks(tag) VALUES ($1)", tag)
				return err
			}
		}
		count := func(tag string) int {
			var n int
			if err := db.Reader().QueryRowContext(ctx, "SELECT COUNT(*) FROM after_marks WHERE tag = $1", tag).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		tr := ledger.Transfer{ID: newID(), Debit: issuer, Credit: wallet, Amount: 500, Ledger: ledger.LedgerCash, Code: ledger.CodeIssuance}
		rs, err := e.SubmitThen(ctx, []ledger.Transfer{tr}, mark("after-ok"))
		if err != nil || rs[0] != ledger.OK || count("after-ok") != 1 {
			t.Fatalf("SubmitThen = %v, %v; marks %d", rs, err, count("after-ok"))
		}
		// A retry sees Exists, and the work (which writes only on OK) is not redone.
		rs, err = e.SubmitThen(ctx, []ledger.Transfer{tr}, mark("after-ok"))
		if err != nil || rs[0] != ledger.Exists || count("after-ok") != 1 {
			t.Fatalf("retry = %v, %v; marks %d", rs, err, count("after-ok"))
		}
		// Failing work takes the transfer with it.
		tr2 := ledger.Transfer{ID: newID(), Debit: issuer, Credit: wallet, Amount: 7, Ledger: ledger.LedgerCash, Code: ledger.CodeIssuance}
		_, err = e.SubmitThen(ctx, []ledger.Transfer{tr2}, func(ctx context.Context, tx *store.Tx, rs []ledger.Result) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO after_marks(tag) VALUES ($1)", "after-fail"); err != nil {
				return err
			}
			return errors.New("disk on fire")
		})
		if err == nil || !strings.Contains(err.Error(), "disk on fire") {
			t.Fatalf("failing work: err %v", err)
		}
		if _, err := e.Transfer(ctx, tr2.ID); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("transfer of the failed group: %v, want not found", err)
		}
		if count("after-fail") != 0 {
			t.Error("the failed work's row was kept")
		}
		a, err := e.Account(ctx, wallet)
		if err != nil || a.Balance() != 500 {
			t.Fatalf("balance %v %v, want 500", a, err)
		}
		audit, err := e.Check(ctx)
		if err != nil || len(audit.Problems) > 0 {
			t.Fatalf("check: %v %v", err, audit)
		}
	})
}
