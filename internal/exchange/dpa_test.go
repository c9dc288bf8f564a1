package exchange

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	civtlog "github.com/civstack/civstack/internal/tlog"
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

		// The overview read the log's tail once for its counts and both
		// lists: the newest accesses as a list of its own, every entry of
		// the tail seen even when no list wants more of it.
		recent, err := ex.accesses(ctx, filter{limit: DPAOverview, labelled: true})
		if err != nil || len(recent) != DPAOverview || len(v.Recent) != DPAOverview {
			t.Fatalf("the newest accesses: %d, the overview's %d (%v)", len(recent), len(v.Recent), err)
		}
		for i, a := range recent {
			if v.Recent[i].LogIndex != a.LogIndex || !slices.Equal(v.Recent[i].FieldLabels, a.FieldLabels) {
				t.Fatalf("the overview's newest accesses differ at %d: entry %d, want %d", i, v.Recent[i].LogIndex, a.LogIndex)
			}
		}
		total := 0
		for _, s := range v.Summary {
			total += s.Count
		}
		if all, err := ex.accesses(ctx, filter{}); err != nil || total != len(all) {
			t.Fatalf("the overview counts %d accesses, the list holds %d (%v)", total, len(all), err)
		}
		cur, err := ex.cursor(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var tail, seen int
		if err := db.QueryRowRead(ctx, `SELECT COUNT(*) FROM tlog_entries WHERE idx >= $1 AND kind = $2`, cur, int(civtlog.KindDataAccess)).Scan(&tail); err != nil || tail <= DPAOverview {
			t.Fatalf("want a tail longer than an overview: %d (%v)", tail, err)
		}
		if ls, err := ex.listsAt(ctx, cur, func(*opening) { seen++ }, filter{limit: 1}); err != nil || len(ls[0]) != 1 || seen != tail {
			t.Fatalf("a list of 1 with every entry seen: %d listed, %d of %d seen (%v)", len(ls[0]), seen, tail, err)
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

// covertCitizens is covert for n citizens, p0 to p(n-1), whom it returns.
func covertCitizens(t testing.TB, ex *Exchange, n int, maxDeferral time.Duration) []string {
	t.Helper()
	var citizens []string
	for c := range n {
		citizens = append(citizens, fmt.Sprint("p", c))
	}
	covert(t, ex, maxDeferral, citizens...)
	return citizens
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
	citizens := covertCitizens(b, ex, 100, 90*Day)
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

// TestAccessesByTime: a range of days of up to ByTimeWithin, read through
// the accesses' time index, lists what a longer or open range, read
// newest first, lists for the same days: the same accesses, in the same
// order, page by page, of one agency or all, from the index and the log's
// tail alike. A longer or open range that holds few accesses (up to
// ByTimeRows) is read through the time index too, and lists what it lists
// read newest first. Any range, recent or far back, lists what the list
// of every access holds in those days, whichever way it is read.
func TestAccessesByTime(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var ticks atomic.Int64 // the clock runs 12 hours a reading
		ex, l, _ := clockedExchange(t, db, 0, func() time.Time { return t0.Add(time.Duration(ticks.Add(1)) * 12 * time.Hour) })
		covert(t, ex, 90*Day, "p1", "p2")
		for i := range 120 {
			a := Ask{Requester: "tax", Officer: "o", Citizen: "p1", Service: "income", Fields: []string{"income"}, Purpose: "AUDIT", LegalBasis: "§1"}
			if i%3 == 0 {
				a.Requester, a.Citizen, a.Purpose, a.LegalBasis = "police", "p2", "COVERT", "§9"
			}
			if r, err := ex.Submit(ctx, a); err != nil || r.State != Released {
				t.Fatalf("release %d: %+v %v", i, r, err)
			}
			if i == 80 { // the rest in the log's tail
				if _, _, err := l.Integrate(ctx); err != nil {
					t.Fatal(err)
				}
				if err := ex.FlushIndex(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		all, err := ex.Accesses(ctx, AccessQuery{Limit: 1000})
		if err != nil || len(all) != 120 {
			t.Fatalf("every access: %d %v", len(all), err)
		}
		first, last := all[len(all)-1].When(), all[0].When()
		if last.Sub(first) < ByTimeWithin+30*Day {
			t.Fatalf("the accesses span %v, want more than a long range", last.Sub(first))
		}
		// pages lists q's accesses, n to a page, as log entries.
		pages := func(q AccessQuery, n int) []int64 {
			t.Helper()
			var out []int64
			q.Limit = n
			for page := 0; ; page++ {
				if page > len(all)+1 {
					t.Fatalf("%+v: pages of %d do not end", q, n)
				}
				as, err := ex.Accesses(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				for _, a := range as {
					if (q.Agency != "" && a.Agency != q.Agency) || (!q.From.IsZero() && a.When().Before(q.From)) || (!q.To.IsZero() && !a.When().Before(q.To)) {
						t.Fatalf("%+v: entry %d of %s at %v", q, a.LogIndex, a.Agency, a.When())
					}
					out = append(out, a.LogIndex)
				}
				if len(as) < n || as[len(as)-1].LogIndex == 0 {
					return out // entry 0 has nothing below it (and Before 0 is the newest)
				}
				q.Before = as[len(as)-1].LogIndex
			}
		}
		// newestFirst is pages with a longer or open range read newest
		// first, whatever it holds.
		newestFirst := func(q AccessQuery, n int) []int64 {
			t.Helper()
			ex.byTimeRows = 0
			defer func() { ex.byTimeRows = ByTimeRows }()
			return pages(q, n)
		}
		from := first.Add(5 * Day)
		for _, org := range []string{"", "police", "tax"} {
			for _, days := range []time.Duration{8 * Day, 30 * Day, ByTimeWithin} {
				short := AccessQuery{Agency: org, From: from, To: from.Add(days)}
				// The same days as a longer range, cut to them by hand.
				var want []int64
				for _, ix := range newestFirst(AccessQuery{Agency: org, From: from, To: from.Add(ByTimeWithin + 20*Day)}, 1000) {
					if i := slices.IndexFunc(all, func(a *Access) bool { return a.LogIndex == ix }); all[i].When().Before(short.To) {
						want = append(want, ix)
					}
				}
				if len(want) == 0 {
					t.Fatalf("%q over %v: no access to compare", org, days)
				}
				for _, n := range []int{1, 7, 1000} {
					if got := pages(short, n); !slices.Equal(got, want) {
						t.Fatalf("%q over %v, %d a page: %v, want %v", org, days, n, got, want)
					}
				}
			}
			// Longer and open ranges of up to ByTimeRows accesses.
			for _, q := range []AccessQuery{
				{Agency: org, From: from, To: from.Add(ByTimeWithin + 20*Day)},
				{Agency: org, From: from.Add(30 * Day)},
				{Agency: org, To: from.Add(30 * Day)},
			} {
				want := newestFirst(q, 1000)
				if len(want) < 5 {
					t.Fatalf("%+v: %d accesses to compare", q, len(want))
				}
				for _, n := range []int{1, 7, 1000} {
					if got := pages(q, n); !slices.Equal(got, want) {
						t.Fatalf("%+v, %d a page: %v, want %v", q, n, got, want)
					}
				}
			}
			// Whatever a range holds, and wherever it lies (recent or far
			// back, short or long, open at one end), its pages list the
			// accesses of every access's list in those days, in its order.
			for _, rows := range []int{0, 3, ByTimeRows} {
				ex.byTimeRows = rows
				for _, q := range []AccessQuery{
					{Agency: org, From: from, To: from.Add(8 * Day)},
					{Agency: org, From: last.Add(-30 * Day), To: last.Add(time.Millisecond)},
					{Agency: org, From: last.Add(-30 * Day), To: last.Add(-5 * Day)},
					{Agency: org, From: from, To: from.Add(ByTimeWithin + 20*Day)},
					{Agency: org, From: last.Add(-30 * Day)},
					{Agency: org, To: from.Add(30 * Day)},
				} {
					var want []int64
					for _, a := range all {
						if (org == "" || a.Agency == org) && (q.From.IsZero() || !a.When().Before(q.From)) && (q.To.IsZero() || a.When().Before(q.To)) {
							want = append(want, a.LogIndex)
						}
					}
					if len(want) < 2 {
						t.Fatalf("%+v: %d accesses to compare", q, len(want))
					}
					for _, n := range []int{1, 2, 7, 1000} {
						if got := pages(q, n); !slices.Equal(got, want) {
							t.Fatalf("%+v, %d a page, by time up to %d: %v, want %v", q, n, rows, got, want)
						}
					}
				}
				ex.byTimeRows = ByTimeRows
			}
		}
		// How each range is read, with ranges of more than 3 accesses
		// counted as large: by time when small, or large, far back and
		// short; newest first when large and recent, or far back and long.
		ms := func(t time.Time) int64 { return t.UnixMilli() }
		if _, _, err := l.Integrate(ctx); err != nil { // every access in the index, where ranges are counted
			t.Fatal(err)
		}
		if err := ex.FlushIndex(ctx); err != nil {
			t.Fatal(err)
		}
		cur, err := ex.cursor(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The newest access of a month far back: its next page lists from
		// below it.
		i := slices.IndexFunc(all, func(a *Access) bool { return a.When().Before(from.Add(30 * Day)) })
		for _, c := range []struct {
			name     string
			f        filter
			want, at bool // by time with 3, by time with ByTimeRows
		}{
			{"far back, short", filter{from: ms(from), to: ms(from.Add(8 * Day))}, true, true},
			{"recent, short", filter{from: ms(last.Add(-30 * Day)), to: ms(last) + 1}, false, true},
			{"far back, long", filter{from: ms(from), to: ms(from.Add(ByTimeWithin + 20*Day))}, false, true},
			{"since a day", filter{from: ms(last.Add(-30 * Day))}, false, true},
			{"before a day", filter{to: ms(from.Add(30 * Day))}, false, true},
			{"far back, short, the page below its newest", filter{from: ms(from), to: ms(from.Add(30 * Day)), before: all[i].LogIndex}, false, true},
		} {
			for _, rows := range []int{3, ByTimeRows} {
				ex.byTimeRows = rows
				got, err := ex.byTime(ctx, cur, c.f)
				if want := map[int]bool{3: c.want, ByTimeRows: c.at}[rows]; err != nil || got != want {
					t.Errorf("%s, large above %d: by time %v (%v), want %v", c.name, rows, got, err, want)
				}
			}
			ex.byTimeRows = ByTimeRows
		}
	})
}

// BenchmarkDPADays: a month of one agency's accesses, and of every
// agency's, a year back among 40,000, with a million newer index rows
// after them (SQLite, daysWorld): read by time (the accesses' time
// indexes, then sorted; what Accesses does for a range far back that
// holds at most ByTimeRows, or spans at most ByTimeWithin) against read
// newest first (what it did before migration 00027; the baseline, in the
// same run), the first page of 50. Both must list the same accesses.
func BenchmarkDPADays(b *testing.B) {
	ctx := context.Background()
	ex, from, _, _ := daysWorld(b)
	month := filter{from: from.UnixMilli(), to: from.Add(30 * Day).UnixMilli(), limit: 50, labelled: true}
	var byTime, newest time.Duration
	runs := 0
	for b.Loop() {
		for _, org := range []string{"police", ""} {
			f := month
			f.org = org
			t0 := time.Now()
			fast, err := ex.accesses(ctx, filter{org: f.org, from: f.from, to: f.to, limit: f.limit, labelled: true, byTime: true})
			t1 := time.Now()
			slow, err2 := ex.accesses(ctx, f)
			byTime, newest = byTime+t1.Sub(t0), newest+time.Since(t1)
			if err != nil || err2 != nil || len(fast) != 50 || len(slow) != 50 {
				b.Fatalf("%q: %d by time, %d newest first (%v, %v)", org, len(fast), len(slow), err, err2)
			}
			for i := range fast {
				if fast[i].LogIndex != slow[i].LogIndex || fast[i].Time >= f.to || (org != "" && fast[i].Agency != org) {
					b.Fatalf("%q: access %d is entry %d by time, %d newest first", org, i, fast[i].LogIndex, slow[i].LogIndex)
				}
			}
		}
		runs += 2
	}
	b.ReportMetric(float64(byTime.Microseconds())/1000/float64(runs), "ms-by-time/op")
	b.ReportMetric(float64(newest.Microseconds())/1000/float64(runs), "ms-newest-first/op")
	b.ReportMetric(float64(newest)/float64(byTime), "newest-first/by-time")
}

// daysWorld is an exchange (SQLite) whose clock runs 20 minutes a
// reading, with 40,000 accesses (a quarter the police's, the rest the tax
// office's) over more than a year and a half, integrated and indexed, and
// a million newer index rows after them (a quarter the police's, one a
// millisecond from the last access's time on). It returns the exchange,
// 30 days after the first access, the last access's time (Unix ms) and
// the number of newer rows.
func daysWorld(b *testing.B) (*Exchange, time.Time, int64, int64) {
	b.Helper()
	ctx := context.Background()
	db := storetest.OpenMigrated(b, store.Options{DataDir: b.TempDir()}) // SQLite
	// The exchange's clock runs 20 minutes a reading (about one a release).
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var ticks atomic.Int64
	ex, l, _ := clockedExchange(b, db, 0, func() time.Time { return t0.Add(time.Duration(ticks.Add(1)) * 20 * time.Minute) })
	const n, newer = 40000, 1000000
	citizens := covertCitizens(b, ex, 100, 90*Day)
	releaseIndexed(b, ex, l, n, func(i int) Ask {
		if i%4 == 0 {
			return Ask{Requester: "police", Citizen: citizens[i%100], Purpose: "COVERT", LegalBasis: "§9"}
		}
		return Ask{Requester: "tax", Citizen: citizens[i%100], Purpose: "AUDIT", LegalBasis: "§1"}
	})
	var first, last, top int64
	if err := db.Reader().QueryRowContext(ctx, `SELECT MIN(at), MAX(at), MAX(log_index) FROM ex_access`).Scan(&first, &last, &top); err != nil {
		b.Fatal(err)
	}
	from := time.UnixMilli(first).Add(30 * Day)
	if time.UnixMilli(last).Sub(from) < 365*Day {
		b.Fatalf("the accesses span %v, want over a year after the month read", time.UnixMilli(last).Sub(time.UnixMilli(first)))
	}
	// A busier node: a million newer index rows after them, every one
	// read past by newest first. They are rows only (no log entry, which
	// the month's page never opens); the index's cursor is moved past
	// them, so that no tail is read.
	if err := db.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
			INSERT INTO ex_access (log_index, request_id, person_id, requester_org, purpose, at, defer_until)
			SELECT $2 + i, 'r' || i, 'p' || (i % 100), CASE WHEN i % 4 = 0 THEN 'police' ELSE 'tax' END, 'AUDIT', $3 + i, 0 FROM n`, newer, top, last); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE ex_index_state SET value = $1 WHERE name = 'indexed'`, top+newer+1)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	return ex, from, last, newer
}

// BenchmarkDPARanges: ranges of time in daysWorld that Accesses reads
// otherwise than it did before they were counted (each case checked to
// hold what it says). Through the time indexes, since they hold at most
// ByTimeRows accesses though they are longer than ByTimeWithin or open at
// one end (before: newest first): every access before a day two months
// after the first, the police's over 200 days a year back, and the
// police's from a moment among the newest rows (about 25, fewer than a
// page). Newest first, since they hold more than ByTimeRows: the police's
// accesses of the last minutes, among the newest rows, a short range
// (before: by time, sorting all 250,000 of them), and every access from a
// year back, as before (it now pays for counting ByTimeRows+1). The
// baseline, in the same run, is each read as before; both must list the
// same first page of 50. It reports each case's ratio.
//
//	go test ./internal/exchange -run '^$' -bench DPARanges -benchtime 10x -count 3
func BenchmarkDPARanges(b *testing.B) {
	ctx := context.Background()
	ex, from, last, newer := daysWorld(b)
	cases := []struct {
		name       string
		q          AccessQuery
		large, was bool // more than ByTimeRows; read by time before
	}{
		{"before", AccessQuery{To: from.Add(30 * Day)}, false, false},
		{"police-200d", AccessQuery{Agency: "police", From: from, To: from.Add(200 * Day)}, false, false},
		{"police-since", AccessQuery{Agency: "police", From: time.UnixMilli(last + newer - 100)}, false, false},
		{"police-minutes", AccessQuery{Agency: "police", From: time.UnixMilli(last + 1), To: time.UnixMilli(last + newer + 1)}, true, true},
		{"dense", AccessQuery{From: time.UnixMilli(last).Add(-365 * Day)}, true, false},
	}
	filterOf := func(q AccessQuery, byTime bool) filter {
		f := filter{org: q.Agency, limit: 50, labelled: true, byTime: byTime}
		if !q.From.IsZero() {
			f.from = q.From.UnixMilli()
		}
		if !q.To.IsZero() {
			f.to = q.To.UnixMilli()
		}
		return f
	}
	cur, err := ex.cursor(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range cases {
		n, err := ex.countIndexed(ctx, cur, filterOf(c.q, false), ByTimeRows+1)
		if err != nil || (n > ByTimeRows) != c.large {
			b.Fatalf("%s holds %d accesses (%v)", c.name, n, err)
		}
	}
	now := make([]time.Duration, len(cases))
	before := make([]time.Duration, len(cases))
	runs := 0
	for b.Loop() {
		for i, c := range cases {
			q := c.q
			q.Limit = 50
			t0 := time.Now()
			got, err := ex.Accesses(ctx, q)
			t1 := time.Now()
			want, err2 := ex.accesses(ctx, filterOf(c.q, c.was))
			now[i], before[i] = now[i]+t1.Sub(t0), before[i]+time.Since(t1)
			if err != nil || err2 != nil || len(got) == 0 || len(got) != len(want) {
				b.Fatalf("%s: %d, as before %d (%v, %v)", c.name, len(got), len(want), err, err2)
			}
			for j := range got {
				if got[j].LogIndex != want[j].LogIndex {
					b.Fatalf("%s: access %d is entry %d, as before %d", c.name, j, got[j].LogIndex, want[j].LogIndex)
				}
			}
		}
		runs++
	}
	for i, c := range cases {
		b.ReportMetric(float64(now[i].Microseconds())/1000/float64(runs), "ms-"+c.name+"/op")
		b.ReportMetric(float64(before[i])/float64(now[i]), c.name+"-before/now")
	}
}
