package exchange

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestDPADeferred: the DPA's overview lists the deferred accesses whose
// deferral ends soonest (at most DPAOverview, soonest first, whatever
// order they were made in) and counts all of them; Accesses with
// Deferred pages through every one still deferred, newest first, of the
// agency asked for. Records in the index and in the log's tail alike; an
// access whose deferral has ended, and any not deferred, are left out.
func TestDPADeferred(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, l, _ := auditExchange(t, db, 1)
		covert(t, ex, 90*Day, "p1")
		ask := func(a Ask) int64 {
			t.Helper()
			a.Citizen, a.Officer = "p1", "o"
			return released(t, ex, db, a)
		}
		// Deferrals of 1 to 89 days in a shuffled order, among accesses
		// not deferred; one deferred by a millisecond that has ended by
		// the time the DPA looks.
		n := DPAOverview + 12
		var days []int
		for i := range n {
			days = append(days, 1+(i*37)%89)
		}
		type deferred struct {
			idx   int64
			until time.Duration
		}
		var want []deferred
		for i, d := range days {
			want = append(want, deferred{ask(Ask{Requester: "police", Purpose: "COVERT", LegalBasis: "§9", Defer: time.Duration(d) * Day}), time.Duration(d) * Day})
			if i%5 == 0 {
				ask(Ask{Requester: "tax", Purpose: "AUDIT", LegalBasis: "§1"})
			}
			if i == 5 { // a few in the index, more than an overview's worth in the log's rows only
				if _, _, err := l.Integrate(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		ask(Ask{Requester: "police", Purpose: "COVERT", LegalBasis: "§9", Defer: time.Millisecond})
		time.Sleep(5 * time.Millisecond)
		var indexed int
		if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM ex_access WHERE defer_until > 0`).Scan(&indexed); err != nil || indexed == 0 || indexed >= n {
			t.Fatalf("want some deferred records indexed and some in the tail: %d of %d (%v)", indexed, n, err)
		}

		v, err := ex.DPA(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v.DeferredCount != n {
			t.Fatalf("the overview counts %d deferred accesses, want %d", v.DeferredCount, n)
		}
		soonest := slices.Clone(want)
		slices.SortStableFunc(soonest, func(a, b deferred) int {
			if a.until != b.until {
				return int(a.until - b.until)
			}
			return int(a.idx - b.idx)
		})
		var got, wantOverview []string
		for _, a := range v.Deferred {
			got = append(got, fmt.Sprint(a.LogIndex))
		}
		for _, d := range soonest[:DPAOverview] {
			wantOverview = append(wantOverview, fmt.Sprint(d.idx))
		}
		if !slices.Equal(got, wantOverview) {
			t.Fatalf("the overview's deferred accesses (log entries):\n%v\nwant the %d soonest visible:\n%v", got, DPAOverview, wantOverview)
		}
		for i := 1; i < len(v.Deferred); i++ {
			if v.Deferred[i].DeferUntil < v.Deferred[i-1].DeferUntil {
				t.Fatalf("the overview's deferred accesses are not soonest first at %d", i)
			}
		}

		// Every one still deferred, page by page, newest first.
		var pages []int64
		var before int64
		for {
			as, err := ex.Accesses(ctx, AccessQuery{Agency: "police", Deferred: true, Before: before, Limit: 7})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range as {
				if a.Agency != "police" || !a.Deferred(time.Now()) {
					t.Fatalf("entry %d on the deferred pages: %s, deferred until %v", a.LogIndex, a.Agency, a.Until())
				}
				pages = append(pages, a.LogIndex)
			}
			if len(as) < 7 {
				break
			}
			before = as[len(as)-1].LogIndex
		}
		var wantPages []int64
		for _, d := range slices.Backward(want) {
			wantPages = append(wantPages, d.idx)
		}
		if !slices.Equal(pages, wantPages) {
			t.Fatalf("the deferred pages (log entries):\n%v\nwant every one still deferred, newest first:\n%v", pages, wantPages)
		}
		if as, err := ex.Accesses(ctx, AccessQuery{Agency: "tax", Deferred: true, Limit: 100}); err != nil || len(as) != 0 {
			t.Fatalf("the tax office's deferred accesses: %d %v, want none", len(as), err)
		}
		if _, err := ex.Accesses(ctx, AccessQuery{Deferred: true}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("no page size: %v, want ErrInvalid", err)
		}
	})
}

// released submits a for the "income" field of auditExchange's service,
// which must be released, and returns its log entry.
func released(t testing.TB, ex *Exchange, db *store.DB, a Ask) int64 {
	t.Helper()
	ctx := context.Background()
	a.Service, a.Fields = "income", []string{"income"}
	r, err := ex.Submit(ctx, a)
	if err != nil || r.State != Released {
		t.Fatalf("release: %+v %v", r, err)
	}
	var idx int64
	if err := db.Reader().QueryRowContext(ctx, `SELECT MAX(idx) FROM tlog_entries`).Scan(&idx); err != nil {
		t.Fatal(err)
	}
	return idx
}

// covert puts in force, on auditExchange's exchange, a policy that lets
// the police read income for purpose COVERT (legal basis §9), deferred
// up to maxDeferral, and gives each citizen an income to read.
func covert(t testing.TB, ex *Exchange, maxDeferral time.Duration, citizens ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := ex.CreatePolicy(ctx, Policy{Requester: "police", Service: "income", Fields: []string{"income"}, Purpose: "COVERT", LegalBasis: "§9",
		MaxDeferral: maxDeferral, Retention: Day}, "t"); err != nil {
		t.Fatal(err)
	}
	for _, p := range citizens {
		if err := ex.SetValues(ctx, "holder", "income", p, map[string]string{"income": "7"}); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkDPAOverview: the DPA's whole overview (counts, the deferred
// accesses visible soonest and how many, the recent ones, the denied
// requests, the policies) against what the overview read before for its
// deferred part alone (every access still deferred, sorted by deadline;
// the baseline, in the same run), with 4,000 deferred accesses among
// 8,000, all integrated and indexed.
func BenchmarkDPAOverview(b *testing.B) {
	ctx := context.Background()
	db := storetest.OpenMigrated(b, store.Options{DataDir: b.TempDir()}) // SQLite
	ex, l, _ := auditExchange(b, db, 0)
	const n = 8000
	var citizens []string
	for c := range 100 {
		citizens = append(citizens, fmt.Sprint("p", c))
	}
	covert(b, ex, 90*Day, citizens...)
	releaseIndexed(b, ex, l, n, func(i int) Ask {
		if i%2 == 0 {
			return Ask{Requester: "tax", Citizen: citizens[i%100], Purpose: "AUDIT", LegalBasis: "§1"}
		}
		return Ask{Requester: "police", Citizen: citizens[i%100], Purpose: "COVERT", LegalBasis: "§9", Defer: time.Duration(1+i%89) * Day}
	})
	var all, overview time.Duration
	runs := 0
	for b.Loop() {
		t0 := time.Now()
		deferred, err := ex.accesses(ctx, filter{deferredAt: time.Now().UnixMilli()})
		slices.SortStableFunc(deferred, func(a, b *Access) int { return cmp.Compare(a.DeferUntil, b.DeferUntil) })
		t1 := time.Now()
		v, err2 := ex.DPA(ctx)
		all, overview, runs = all+t1.Sub(t0), overview+time.Since(t1), runs+1
		if err != nil || err2 != nil || len(deferred) != n/2 || v.DeferredCount != n/2 || len(v.Deferred) != DPAOverview || v.Deferred[0].DeferUntil != deferred[0].DeferUntil {
			b.Fatalf("%d deferred, the overview %d of %d (%v, %v)", len(deferred), len(v.Deferred), v.DeferredCount, err, err2)
		}
	}
	b.ReportMetric(float64(all.Microseconds())/1000/float64(runs), "ms-all-deferred/op")
	b.ReportMetric(float64(overview.Microseconds())/1000/float64(runs), "ms-overview/op")
	b.ReportMetric(float64(all)/float64(overview), "all-deferred/overview")
}
