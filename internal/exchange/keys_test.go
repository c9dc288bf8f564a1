package exchange

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

// TestIdempotencyKeys: a retry with the same key answers with the first
// request (replayed, without values) and never releases, records or asks
// the citizen again, also when the tries run at once; a key given again
// for another ask is refused.
func TestIdempotencyKeys(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, _, _ := auditExchange(t, db, 0)
		consentPolicies(t, ex, "tax")
		feedIncome(t, ex, "p1")
		entries := func() int {
			t.Helper()
			var n int
			if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM tlog_entries WHERE kind = $1`, int(tlog.KindDataAccess)).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		ask := func(org, purpose, key string) Ask {
			basis := map[string]string{"AUDIT": "§1", "ASK": "§2", "OTHER": "§9"}[purpose]
			return Ask{Requester: org, Officer: "o", Citizen: "p1", Service: "income", Fields: []string{"income"}, Purpose: purpose, LegalBasis: basis, Key: key}
		}
		submit := func(a Ask) *Request {
			t.Helper()
			r, err := ex.Submit(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}

		// A direct release: the retry gets the request, without values, and
		// nothing is released or recorded again.
		first := submit(ask("tax", "AUDIT", "k1"))
		if first.State != Released || first.Values["income"] != "7" || first.Replayed {
			t.Fatalf("first try: %+v", first)
		}
		records, stats := entries(), ex.Stats()
		again := submit(ask("tax", "AUDIT", "k1"))
		if again.ID != first.ID || !again.Replayed || again.Values != nil || again.State != Released || again.PolicyID != first.PolicyID || !again.RetainUntil.Equal(first.RetainUntil) {
			t.Fatalf("retry: %+v, first %+v", again, first)
		}
		if entries() != records || ex.Stats() != stats {
			t.Fatalf("a retry released again: %d access entries (was %d), stats %+v (was %+v)", entries(), records, ex.Stats(), stats)
		}
		// Keys are each agency's own.
		if other := submit(ask("police", "AUDIT", "k1")); other.ID == first.ID || other.Replayed || other.State != Denied {
			t.Fatalf("another agency's k1: %+v", other)
		}
		// The same key for another ask is refused, and changes nothing.
		if _, err := ex.Submit(ctx, ask("tax", "OTHER", "k1")); !errors.Is(err, ErrKeyReused) {
			t.Fatalf("k1 for another purpose: %v, want ErrKeyReused", err)
		}
		if _, err := ex.Submit(ctx, ask("tax", "AUDIT", strings.Repeat("k", MaxKey+1))); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a key of %d bytes: %v", MaxKey+1, err)
		}

		// Consent: the citizen is asked once, however often the agency
		// retries; a replay shows the request as it stands now.
		asked := submit(ask("tax", "ASK", "k2"))
		if again := submit(ask("tax", "ASK", "k2")); again.ID != asked.ID || !again.Replayed || again.State != AwaitConsent {
			t.Fatalf("retry of a consent request: %+v", again)
		}
		if pending, err := ex.Pending(ctx, "p1", "", 10); err != nil || len(pending) != 1 {
			t.Fatalf("the citizen is asked %d times (%v), want once", len(pending), err)
		}
		if _, err := ex.Decide(ctx, "p1", asked.ID, true); err != nil {
			t.Fatal(err)
		}
		if again := submit(ask("tax", "ASK", "k2")); again.ID != asked.ID || again.State != Consented || again.Values != nil {
			t.Fatalf("retry after consent: %+v", again)
		}
		// Denied: the same denial.
		denied := submit(ask("tax", "OTHER", "k3"))
		if again := submit(ask("tax", "OTHER", "k3")); denied.State != Denied || again.ID != denied.ID || !again.Replayed || again.Reason != denied.Reason {
			t.Fatalf("retry of a denial: %+v, first %+v", again, denied)
		}

		// Tries at once: one releases, the others answer with it.
		records = entries()
		const tries = 8
		got := make([]*Request, tries)
		errs := make([]error, tries)
		var wg sync.WaitGroup
		for i := range tries {
			wg.Go(func() {
				got[i], errs[i] = ex.Submit(ctx, ask("tax", "AUDIT", "k4"))
			})
		}
		wg.Wait()
		released := 0
		for i := range tries {
			if errs[i] != nil || got[i].ID != got[0].ID || got[i].State != Released {
				t.Fatalf("try %d: %+v %v (first %+v)", i, got[i], errs[i], got[0])
			}
			if !got[i].Replayed {
				released++
				if got[i].Values["income"] != "7" {
					t.Fatalf("the try that released has no values: %+v", got[i])
				}
			} else if got[i].Values != nil {
				t.Fatalf("a replay carries values: %+v", got[i])
			}
		}
		if released != 1 || entries() != records+1 {
			t.Fatalf("%d tries released, %d access entries added; want 1 and 1", released, entries()-records)
		}
	})
}

// TestForgetKeys: a key is remembered for KeyLife, longer than a request
// can stay open; then the sweep forgets it (the request stays), and the
// same key makes a new request. Keys younger than KeyLife stay.
func TestForgetKeys(t *testing.T) {
	if KeyLife <= AnswerWithin+CollectWithin {
		t.Fatalf("KeyLife %v is not longer than a request can stay open", KeyLife)
	}
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, _, _ := auditExchange(t, db, 0)
		feedIncome(t, ex, "p1")
		at := time.Now()
		ex.now = func() time.Time { return at }
		ask := func(key string) *Request {
			t.Helper()
			r, err := ex.Submit(ctx, Ask{Requester: "tax", Officer: "o", Citizen: "p1", Service: "income", Fields: []string{"income"}, Purpose: "AUDIT", LegalBasis: "§1", Key: key})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		forget := func(want int64) {
			t.Helper()
			if n, err := ex.ForgetKeys(ctx); err != nil || n != want {
				t.Fatalf("forget keys at %v: %d %v, want %d", at, n, err, want)
			}
		}
		asked := []*Request{ask("old-0"), ask("old-1"), ask("old-2")}
		// A batch more, written as the exchange writes keys (a request each
		// would take minutes): they name the first request.
		err := db.Tx(ctx, func(tx *store.Tx) error {
			for i := range forgetBatch {
				k, err := keyFor(fmt.Sprintf("extra-%d", i), asked[0])
				if err != nil {
					return err
				}
				if err := k.claim(ctx, tx, asked[0].ID, at); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		at = at.Add(Day)
		young := ask("young")

		at = at.Add(KeyLife - Day - time.Minute)
		forget(0)
		if again := ask("old-0"); again.ID != asked[0].ID || !again.Replayed {
			t.Fatalf("a key of %v ago is forgotten: %+v", KeyLife-time.Minute, again)
		}
		at = at.Add(2 * time.Minute)
		forget(int64(len(asked)) + forgetBatch) // more than one batch
		forget(0)
		again := ask("old-0")
		if again.ID == asked[0].ID || again.Replayed || again.State != Released || again.Values["income"] != "7" {
			t.Fatalf("a forgotten key is replayed: %+v", again)
		}
		if r, err := ex.RequestFor(ctx, "tax", asked[1].ID); err != nil || r.ID != asked[1].ID {
			t.Fatalf("a forgotten key's request: %v %v", r, err)
		}
		if r := ask("young"); r.ID != young.ID || !r.Replayed {
			t.Fatalf("a key a day younger is forgotten: %+v", r)
		}
	})
}
