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

// TestForCitizenPage: the citizen's accesses a page at a time are
// ForCitizen's list cut into pages, at every page size: newest first,
// each record once, records in the index and in the tail alike, another
// citizen's and deferred ones left out, each verified as on the whole
// list. A place that is no log index, or no size, is refused.
func TestForCitizenPage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, l, _ := auditExchange(t, db, 1)
		if _, err := ex.CreatePolicy(ctx, Policy{Requester: "police", Service: "income", Fields: []string{"income"}, Purpose: "COVERT", LegalBasis: "§9",
			MaxDeferral: 30 * Day, Retention: Day}, "t"); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"p1", "p2"} {
			if err := ex.SetValues(ctx, "holder", "income", p, map[string]string{"income": "7"}); err != nil {
				t.Fatal(err)
			}
		}
		ask := func(a Ask) {
			t.Helper()
			a.Officer, a.Service, a.Fields = "o", "income", []string{"income"}
			if r, err := ex.Submit(ctx, a); err != nil || r.State != Released {
				t.Fatalf("release: %+v %v", r, err)
			}
		}
		var deferred int
		for i := range 14 {
			switch i % 7 {
			case 3:
				ask(Ask{Requester: "tax", Citizen: "p2", Purpose: "AUDIT", LegalBasis: "§1"})
			case 5:
				ask(Ask{Requester: "police", Citizen: "p1", Purpose: "COVERT", LegalBasis: "§9", Defer: 10 * Day})
				deferred++
			default:
				ask(Ask{Requester: "tax", Citizen: "p1", Purpose: "AUDIT", LegalBasis: "§1"})
			}
			if i == 6 { // the first half in the index, the second in the log's rows only
				if _, _, err := l.Integrate(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		var indexed int
		if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM ex_access WHERE person_id = 'p1'`).Scan(&indexed); err != nil || indexed == 0 || indexed >= 12 {
			t.Fatalf("want some of p1's records indexed and some in the tail: %d indexed of 12 (%v)", indexed, err)
		}

		all, err := ex.ForCitizen(ctx, "p1")
		if err != nil || len(all) != 12-deferred {
			t.Fatalf("the whole list: %d records (want %d) %v", len(all), 12-deferred, err)
		}
		status := func(vs []*Verified) []string {
			var out []string
			for _, v := range vs {
				out = append(out, fmt.Sprintf("%d %s %s %s", v.LogIndex, v.personID, v.Purpose, v.Status))
			}
			return out
		}
		want := status(all)
		for i := 1; i < len(all); i++ {
			if all[i].LogIndex >= all[i-1].LogIndex {
				t.Fatalf("the whole list is not newest first: %v", want)
			}
		}
		for limit := 1; limit <= len(all)+1; limit++ {
			var got []*Verified
			var before int64
			for page := 0; ; page++ {
				if page > len(all)+1 {
					t.Fatalf("pages of %d do not end", limit)
				}
				vs, err := ex.ForCitizenPage(ctx, "p1", before, limit)
				if err != nil || len(vs) > limit {
					t.Fatalf("page %d of %d: %d records %v", page, limit, len(vs), err)
				}
				got = append(got, vs...)
				if len(vs) < limit || vs[len(vs)-1].LogIndex == 0 {
					break // entry 0 has nothing below it (and before 0 is the newest)
				}
				before = vs[len(vs)-1].LogIndex
			}
			if g := status(got); !slices.Equal(g, want) {
				t.Fatalf("pages of %d:\n%v\nwant\n%v", limit, g, want)
			}
		}
		for _, bad := range []struct {
			before int64
			limit  int
		}{{-1, 5}, {0, 0}, {3, -2}} {
			if _, err := ex.ForCitizenPage(ctx, "p1", bad.before, bad.limit); !errors.Is(err, ErrInvalid) {
				t.Fatalf("before %d, limit %d: %v, want ErrInvalid", bad.before, bad.limit, err)
			}
		}
		if vs, err := ex.ForCitizenPage(ctx, "p1", all[len(all)-2].LogIndex, 5); err != nil || len(vs) != 1 || vs[0].LogIndex != all[len(all)-1].LogIndex {
			t.Fatalf("below the second oldest: %d records %v", len(vs), err)
		}
		if vs, err := ex.ForCitizenPage(ctx, "p1", 1<<40, 3); err != nil || !slices.Equal(status(vs), want[:3]) {
			t.Fatalf("below a place past the log's end: %v %v", status(vs), err)
		}
	})
}
