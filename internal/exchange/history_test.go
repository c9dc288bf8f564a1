package exchange

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestHistory: paging through an agency's history, at any page size,
// shows each of its requests exactly once (rows and direct releases, from
// the index and from the tail past it), newest first, every page full but
// the last, and none of another agency's; a collected request says until
// when it may be kept even when its record falls on another page; a record
// missing from the database is left out without losing the rest; and a
// cursor that String did not write is refused.
func TestHistory(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, l, _ := auditExchange(t, db, 1)
		for _, p := range []Policy{
			{Requester: "tax", Service: "income", Fields: []string{"income"}, Purpose: "ASK", LegalBasis: "§2", Consent: true, Retention: 2 * Day},
			{Requester: "police", Service: "income", Fields: []string{"income"}, Purpose: "AUDIT", LegalBasis: "§1", Retention: Day},
		} {
			if _, err := ex.CreatePolicy(ctx, p, "t"); err != nil {
				t.Fatal(err)
			}
		}
		submit := func(org, purpose string) *Request {
			t.Helper()
			basis := "§1"
			if purpose == "ASK" {
				basis = "§2"
			}
			r, err := ex.Submit(ctx, Ask{Requester: org, Officer: "o", Citizen: "p1", Service: "income", Fields: []string{"income"}, Purpose: purpose, LegalBasis: basis})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		want := map[string]string{} // tax's requests: id → what it is
		var asked []string          // consent requests, collected at the end
		for i := range 36 {
			switch i % 6 {
			case 0, 3:
				want[submit("tax", "AUDIT").ID] = "direct"
			case 1:
				r := submit("tax", "ASK")
				want[r.ID], asked = "collected", append(asked, r.ID)
			case 2:
				want[submit("tax", "NONE").ID] = "denied"
			case 4:
				r := submit("tax", "ASK")
				if _, err := ex.Decide(ctx, "p1", r.ID, false); err != nil {
					t.Fatal(err)
				}
				want[r.ID] = "refused"
			case 5:
				submit("police", "AUDIT")
				want[submit("tax", "ASK").ID] = "waiting"
			}
			if i == 17 { // the first half's records go into the index, the rest stay in the tail
				if _, _, err := l.Integrate(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Collected last: their records are the newest entries, far from
		// their rows (asked early), as when consent takes days.
		for _, id := range asked {
			if _, err := ex.Decide(ctx, "p1", id, true); err != nil {
				t.Fatal(err)
			}
			if _, err := ex.Collect(ctx, "tax", id); err != nil {
				t.Fatal(err)
			}
		}
		var indexed int
		if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM ex_access WHERE requester_org = 'tax'`).Scan(&indexed); err != nil || indexed == 0 || indexed >= 12+len(asked) {
			t.Fatalf("want some of tax's records indexed and some in the tail: %d indexed of %d (%v)", indexed, 12+len(asked), err)
		}

		walk := func(org string, limit int) ([]*Request, []int) {
			t.Helper()
			var all []*Request
			var sizes []int
			before := ""
			for page := 0; ; page++ {
				p, err := ex.History(ctx, org, before, limit)
				if err != nil {
					t.Fatalf("%s's page %d of %d: %v", org, page, limit, err)
				}
				all, sizes = append(all, p.Requests...), append(sizes, len(p.Requests))
				if p.Next == "" {
					return all, sizes
				}
				if page > 200 {
					t.Fatalf("%s's history of %d a page does not end", org, limit)
				}
				before = p.Next
			}
		}
		check := func(limit int, want map[string]string) {
			t.Helper()
			all, sizes := walk("tax", limit)
			seen := map[string]bool{}
			for i, r := range all {
				kind, ok := want[r.ID]
				switch {
				case !ok:
					t.Errorf("page size %d: %s (%s) is not one of tax's requests", limit, r.ID, r.State)
				case seen[r.ID]:
					t.Errorf("page size %d: %s shown twice", limit, r.ID)
				case i > 0 && r.Created.After(all[i-1].Created):
					t.Errorf("page size %d: %s (%s) after an older one", limit, r.ID, r.Created)
				}
				seen[r.ID] = true
				wantState := map[string]string{"direct": Released, "collected": Released, "denied": Denied, "refused": RefusedConsent, "waiting": AwaitConsent}[kind]
				if ok && (r.State != wantState || (r.State == Released) == r.RetainUntil.IsZero()) {
					t.Errorf("page size %d: %s (%s) is %s, keep until %v", limit, r.ID, kind, r.State, r.RetainUntil)
				}
			}
			if len(seen) != len(want) {
				t.Errorf("page size %d: %d of %d requests shown", limit, len(seen), len(want))
			}
			for i, n := range sizes {
				if (i < len(sizes)-1 && n != limit) || n == 0 || n > limit {
					t.Errorf("page size %d: pages of %v", limit, sizes)
					break
				}
			}
		}
		for _, limit := range []int{1, 2, 5, 7, 30, 100} {
			check(limit, want)
		}
		if got, _ := walk("police", 4); len(got) != 6 || slices.ContainsFunc(got, func(r *Request) bool { return r.Requester != "police" }) {
			t.Errorf("police's history: %d requests", len(got))
		}

		// A direct release in the middle (indexed): its record gone from its log row.
		var gone string
		var idx int64
		if err := db.Reader().QueryRowContext(ctx, `SELECT log_index, request_id FROM ex_access WHERE requester_org = 'tax' ORDER BY log_index LIMIT 1 OFFSET 3`).Scan(&idx, &gone); err != nil || want[gone] != "direct" {
			t.Fatalf("the fourth of tax's records: %s (%s) %v", gone, want[gone], err)
		}
		if err := db.Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE tlog_entries SET opening = NULL WHERE idx = $1`, idx)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		delete(want, gone)
		for _, limit := range []int{1, 2, 3, 100} {
			all, _ := walk("tax", limit)
			if len(all) != len(want) || slices.ContainsFunc(all, func(r *Request) bool { return r.ID == gone }) {
				t.Errorf("page size %d with a record missing: %d of %d shown", limit, len(all), len(want))
			}
		}

		for _, bad := range []string{"x", "1.2", "01.2.a", "1.-2.a", "0.0.", "9223372036854775808.1.a", fmt.Sprintf("1.1.%0101d", 0)} {
			if _, err := ex.History(ctx, "tax", bad, 10); !errors.Is(err, ErrInvalid) {
				t.Errorf("cursor %q: %v", bad, err)
			}
		}
		if _, err := ex.History(ctx, "tax", "", 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("a page of none: %v", err)
		}
	})
}

// FuzzHistoryCursor: a cursor from outside never panics the parser, and
// one it takes is written back the same.
func FuzzHistoryCursor(f *testing.F) {
	for _, s := range []string{"", "1700000000000.42.0195f6a0-7d4b-7c2e-9a57-2d1f0b6c8e11", "0.5.", "9223372036854775807.9223372036854775807.", "1.1.a.b", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseHistoryCursor(s)
		if err != nil || s == "" {
			return
		}
		if c.String() != s || c.done() {
			t.Fatalf("%q read as %+v", s, c)
		}
	})
}
