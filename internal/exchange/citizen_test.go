package exchange

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

// TestForCitizenPage: the citizen's accesses a page at a time are
// ForCitizen's list cut into pages, at every page size: newest first,
// each record once, records in the index and in the tail alike, another
// citizen's and deferred ones left out, each verified as on the whole
// list. ForCitizenBy's pages are that list's records of one agency (none
// of an agency that made none). A place that is no log index, or no
// size, is refused.
func TestForCitizenPage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, l, _ := auditExchange(t, db, 1)
		covert(t, ex, 30*Day, "p1", "p2")
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
			case 1:
				ask(Ask{Requester: "police", Citizen: "p1", Purpose: "COVERT", LegalBasis: "§9"})
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
		// Every page of limit records, from the newest: agency "" through
		// ForCitizenPage, any other through ForCitizenBy.
		pages := func(agency string, limit int) []*Verified {
			t.Helper()
			var got []*Verified
			var before int64
			for page := 0; ; page++ {
				if page > len(all)+1 {
					t.Fatalf("pages of %d do not end", limit)
				}
				var vs []*Verified
				var err error
				if agency == "" {
					vs, err = ex.ForCitizenPage(ctx, "p1", before, limit)
				} else {
					vs, err = ex.ForCitizenBy(ctx, "p1", agency, before, limit)
				}
				if err != nil || len(vs) > limit {
					t.Fatalf("%q page %d of %d: %d records %v", agency, page, limit, len(vs), err)
				}
				got = append(got, vs...)
				if len(vs) < limit || vs[len(vs)-1].LogIndex == 0 {
					break // entry 0 has nothing below it (and before 0 is the newest)
				}
				before = vs[len(vs)-1].LogIndex
			}
			return got
		}
		for limit := 1; limit <= len(all)+1; limit++ {
			if g := status(pages("", limit)); !slices.Equal(g, want) {
				t.Fatalf("pages of %d:\n%v\nwant\n%v", limit, g, want)
			}
		}
		for agency, n := range map[string]int{"tax": 8, "police": 2, "health": 0} {
			var of []*Verified
			for _, v := range all {
				if v.Agency == agency {
					of = append(of, v)
				}
			}
			if len(of) != n {
				t.Fatalf("%s made %d of p1's visible accesses, want %d", agency, len(of), n)
			}
			for limit := 1; limit <= len(of)+1; limit++ {
				if g, w := status(pages(agency, limit)), status(of); !slices.Equal(g, w) {
					t.Fatalf("%s's pages of %d:\n%v\nwant\n%v", agency, limit, g, w)
				}
			}
		}
		if _, err := ex.ForCitizenBy(ctx, "p1", "tax", -1, 5); !errors.Is(err, ErrInvalid) {
			t.Fatalf("an agency's page below -1: %v, want ErrInvalid", err)
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

// TestDisclosed: the accesses whose deferral has ended since a given time
// are the citizen's own, once deferred, now visible, newest first, in the
// index and the tail alike, each verified; one still deferred, one never
// deferred, another citizen's and one whose deferral ended before that
// time are left out. News counts them, and what the citizen can see of
// what was made since a given time, reading the log's tail once.
// FirstPage lists what the first page and Disclosed list.
func TestDisclosed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, l, _ := auditExchange(t, db, 1)
		covert(t, ex, 30*Day, "p1", "p2")
		ask := func(citizen string, defer_ time.Duration) int64 {
			t.Helper()
			a := Ask{Requester: "police", Officer: "o", Citizen: citizen, Service: "income", Fields: []string{"income"}, Purpose: "COVERT", LegalBasis: "§9", Defer: defer_}
			if defer_ == 0 {
				a.Requester, a.Purpose, a.LegalBasis = "tax", "AUDIT", "§1"
			}
			if r, err := ex.Submit(ctx, a); err != nil || r.State != Released {
				t.Fatalf("release: %+v %v", r, err)
			}
			var idx int64
			if err := db.Reader().QueryRowContext(ctx, `SELECT MAX(idx) FROM tlog_entries`).Scan(&idx); err != nil {
				t.Fatal(err)
			}
			return idx
		}
		early := ask("p1", time.Millisecond) // ended before since
		time.Sleep(5 * time.Millisecond)
		since := time.Now()
		time.Sleep(2 * time.Millisecond)
		first := ask("p1", time.Millisecond)
		ask("p1", 0)
		ask("p1", 10*Day)
		ask("p2", time.Millisecond)
		if _, _, err := l.Integrate(ctx); err != nil { // those so far in the index, the rest in the tail
			t.Fatal(err)
		}
		second := ask("p1", time.Millisecond)
		time.Sleep(5 * time.Millisecond)

		got, err := ex.Disclosed(ctx, "p1", since, 10)
		if err != nil {
			t.Fatal(err)
		}
		var idx []int64
		for _, v := range got {
			idx = append(idx, v.LogIndex)
			if v.personID != "p1" || v.DeferUntil == 0 || v.Deferred(time.Now()) || v.Status == "" || (v.LogIndex == first && !v.Verified) {
				t.Fatalf("entry %d: person %s, deferred until %d, %q", v.LogIndex, v.personID, v.DeferUntil, v.Status)
			}
		}
		if !slices.Equal(idx, []int64{second, first}) {
			t.Fatalf("disclosed since: entries %v, want %v", idx, []int64{second, first})
		}
		if got, err := ex.Disclosed(ctx, "p1", since.Add(-time.Hour), 10); err != nil || len(got) != 3 || got[2].LogIndex != early {
			t.Fatalf("disclosed in the last hour: %d %v, want 3 ending with entry %d", len(got), err, early)
		}
		if got, err := ex.Disclosed(ctx, "p1", since.Add(-time.Hour), 1); err != nil || len(got) != 1 || got[0].LogIndex != second {
			t.Fatalf("the newest one disclosed: %d %v", len(got), err)
		}
		// FirstPage reads what the two lists read, each access on both
		// verified once.
		statuses := func(vs []*Verified) []string {
			var out []string
			for _, v := range vs {
				out = append(out, fmt.Sprintf("%d %s", v.LogIndex, v.Status))
			}
			return out
		}
		for _, from := range []time.Time{since, since.Add(-time.Hour), time.Now()} {
			for limit := 1; limit <= 7; limit++ {
				for dl := 1; dl <= 4; dl++ {
					page, disclosed, err := ex.FirstPage(ctx, "p1", limit, from, dl)
					wantPage, err2 := ex.ForCitizenPage(ctx, "p1", 0, limit)
					wantDisclosed, err3 := ex.Disclosed(ctx, "p1", from, dl)
					if err != nil || err2 != nil || err3 != nil {
						t.Fatal(err, err2, err3)
					}
					if !slices.Equal(statuses(page), statuses(wantPage)) || !slices.Equal(statuses(disclosed), statuses(wantDisclosed)) {
						t.Fatalf("the first page of %d, %d disclosed since %v:\n%v\n%v\nwant\n%v\n%v", limit, dl, from, statuses(page), statuses(disclosed), statuses(wantPage), statuses(wantDisclosed))
					}
					for _, d := range disclosed {
						if i := slices.IndexFunc(page, func(v *Verified) bool { return v.LogIndex == d.LogIndex }); i >= 0 && page[i] != d {
							t.Fatalf("entry %d on both lists verified twice", d.LogIndex)
						}
					}
				}
			}
		}
		for _, bad := range [][2]int{{0, 1}, {1, 0}, {-1, -1}} {
			if _, _, err := ex.FirstPage(ctx, "p1", bad[0], since, bad[1]); !errors.Is(err, ErrInvalid) {
				t.Fatalf("a first page of %d and %d disclosed: %v, want ErrInvalid", bad[0], bad[1], err)
			}
		}
		// News: the accesses made since then that p1 can see,
		// the two disclosed and the one never deferred; not the one
		// still deferred nor p2's. From an hour before, the early one too.
		for _, c := range []struct {
			since             time.Time
			disclosed, recent int
		}{{since, 2, 3}, {since.Add(-time.Hour), 3, 4}, {time.Now(), 0, 0}} {
			if news, err := ex.News(ctx, "p1", c.since, c.since); err != nil || news != (HomeNews{Disclosed: c.disclosed, Recent: c.recent}) {
				t.Fatalf("the home's news since %v: %+v (%v), want %d disclosed and %d recent", c.since, news, err, c.disclosed, c.recent)
			}
		}
		if got, err := ex.Disclosed(ctx, "p1", time.Now(), 10); err != nil || len(got) != 0 {
			t.Fatalf("disclosed from now on: %d %v, want none", len(got), err)
		}
		if _, err := ex.Disclosed(ctx, "p1", since, 0); !errors.Is(err, ErrInvalid) {
			t.Fatalf("no size: %v, want ErrInvalid", err)
		}
	})
}

// BenchmarkHomeNews: the counts on a citizen's home (News: the log's tail
// read once, the index's rows counted) against what the home read before
// (the baseline, in the same run: the two lists of records it counted,
// each reading the tail), for a citizen with 400 accesses
// among 4,000 indexed ones, and a tail of 4,000 more not yet indexed (a
// busy second of the integrator's). Both must count the same.
func BenchmarkHomeNews(b *testing.B) {
	ctx := context.Background()
	ex := tailWorld(b)
	since := time.Now().Add(-time.Hour)
	var news, before time.Duration
	runs := 0
	for b.Loop() {
		t0 := time.Now()
		n, err := ex.News(ctx, "p1", since, since)
		t1 := time.Now()
		disclosed, err2 := ex.accesses(ctx, ex.disclosedCounted("p1", since))
		recent, err3 := ex.accesses(ctx, ex.recentCounted("p1", since))
		news, before, runs = news+t1.Sub(t0), before+time.Since(t1), runs+1
		if err != nil || err2 != nil || err3 != nil || n.Disclosed != len(disclosed) || n.Recent != len(recent) || n.Recent != 800 {
			b.Fatalf("news %+v, before %d and %d (%v, %v, %v)", n, len(disclosed), len(recent), err, err2, err3)
		}
	}
	b.ReportMetric(float64(news.Microseconds())/1000/float64(runs), "ms-news/op")
	b.ReportMetric(float64(before.Microseconds())/1000/float64(runs), "ms-before/op")
	b.ReportMetric(float64(before)/float64(news), "before/news")
}

// BenchmarkOlderPage: an older page of a citizen's accesses (51 records
// below her 100 newest indexed ones, each verified), which no longer reads
// the log's tail past the index (none of its entries can be on it),
// against the same page and the read of that tail (the baseline, in the
// same run: what the page read before), with tailWorld's tail of 4,000.
func BenchmarkOlderPage(b *testing.B) {
	ctx := context.Background()
	ex := tailWorld(b)
	cur, err := ex.cursor(ctx)
	if err != nil {
		b.Fatal(err)
	}
	newest, err := ex.ForCitizenPage(ctx, "p1", cur, 100)
	if err != nil || len(newest) != 100 {
		b.Fatalf("p1's newest indexed accesses: %d %v", len(newest), err)
	}
	before := newest[99].LogIndex
	f := filter{person: "p1", before: before}
	var page, tail time.Duration
	runs := 0
	for b.Loop() {
		t0 := time.Now()
		older, err := ex.ForCitizenPage(ctx, "p1", before, 51)
		t1 := time.Now()
		read := 0
		err2 := ex.eachTail(ctx, cur, func(idx int64, _, _ []byte, o *opening) bool {
			if f.matchHeader(idx, o) {
				b.Fatalf("entry %d of the tail is on a page below %d", idx, before)
			}
			read++
			return true
		})
		page, tail, runs = page+t1.Sub(t0), tail+time.Since(t1), runs+1
		if err != nil || err2 != nil || len(older) != 51 || !older[50].Verified || older[0].LogIndex >= before || read != 4000 {
			b.Fatalf("%d older records, %d of the tail read (%v, %v)", len(older), read, err, err2)
		}
	}
	b.ReportMetric(float64(page.Microseconds())/1000/float64(runs), "ms-page/op")
	b.ReportMetric(float64(page+tail)/float64(page), "before/now")
}

// BenchmarkFirstPage: the first page of a citizen's accesses and the
// deferred ones disclosed lately (51 of each, as the page asks), read
// together by FirstPage (the log's tail once, an access on both verified
// once), against the two lists read one after the other (the baseline,
// in the same run: what the page read before), with tailWorld's tail of
// 4,000. Both must list the same.
//
//	go test ./internal/exchange -run '^$' -bench FirstPage -benchtime 20x -count 3
func BenchmarkFirstPage(b *testing.B) {
	ctx := context.Background()
	ex := tailWorld(b)
	since := time.Now().Add(-DisclosedWithin)
	same := func(a, b []*Verified) bool {
		return slices.EqualFunc(a, b, func(v, w *Verified) bool { return v.LogIndex == w.LogIndex && v.Status == w.Status })
	}
	var together, apart time.Duration
	runs := 0
	for b.Loop() {
		t0 := time.Now()
		page, disclosed, err := ex.FirstPage(ctx, "p1", 51, since, 51)
		t1 := time.Now()
		page2, err2 := ex.ForCitizenPage(ctx, "p1", 0, 51)
		disclosed2, err3 := ex.Disclosed(ctx, "p1", since, 51)
		together, apart, runs = together+t1.Sub(t0), apart+time.Since(t1), runs+1
		if err != nil || err2 != nil || err3 != nil || len(page) != 51 || len(disclosed) != 51 || !same(page, page2) || !same(disclosed, disclosed2) {
			b.Fatalf("first page %d and %d disclosed, apart %d and %d (%v, %v, %v)", len(page), len(disclosed), len(page2), len(disclosed2), err, err2, err3)
		}
	}
	b.ReportMetric(float64(together.Microseconds())/1000/float64(runs), "ms-together/op")
	b.ReportMetric(float64(apart.Microseconds())/1000/float64(runs), "ms-apart/op")
	b.ReportMetric(float64(apart)/float64(together), "apart/together")
}

// tailWorld is an exchange (SQLite) with 4,000 accesses to 10 citizens,
// integrated and indexed (half of them the police's, deferred a
// millisecond; each citizen has both agencies'), and a tail of 4,000 more
// not yet indexed (a busy second of the integrator's).
func tailWorld(b *testing.B) *Exchange {
	b.Helper()
	ctx := context.Background()
	db := storetest.OpenMigrated(b, store.Options{DataDir: b.TempDir()}) // SQLite
	ex, l, _ := auditExchange(b, db, 0)
	citizens := covertCitizens(b, ex, 10, 30*Day)
	ask := func(i int) Ask {
		if i%2 == 0 {
			return Ask{Requester: "police", Citizen: citizens[(i/2)%10], Purpose: "COVERT", LegalBasis: "§9", Defer: time.Millisecond}
		}
		return Ask{Requester: "tax", Citizen: citizens[(i/2)%10], Purpose: "AUDIT", LegalBasis: "§1"}
	}
	releaseIndexed(b, ex, l, 4000, ask)
	for i := range 4000 { // the tail
		a := ask(i)
		a.Officer, a.Service, a.Fields = "o", "income", []string{"income"}
		if r, err := ex.Submit(ctx, a); err != nil || r.State != Released {
			b.Fatalf("release: %+v %v", r, err)
		}
	}
	return ex
}

// BenchmarkCitizenPage: the first page of a citizen's accesses (51
// records, as the page asks: 50 and whether there are older ones)
// against the whole list (the baseline, in the same run), for a citizen
// with 2,000 accesses among 4,000 in the log, all integrated and indexed,
// each verified with its inclusion proof. It reports both times and
// their ratio.
//
//	go test ./internal/exchange -run '^$' -bench CitizenPage -benchtime 20x
func BenchmarkCitizenPage(b *testing.B) {
	ctx := context.Background()
	db := storetest.OpenMigrated(b, store.Options{DataDir: b.TempDir()}) // SQLite
	ex, l, _ := auditExchange(b, db, 0)
	const citizens, each = 2, 2000
	for c := range citizens {
		if err := ex.SetValues(ctx, "holder", "income", fmt.Sprint("p", c), map[string]string{"income": "7"}); err != nil {
			b.Fatal(err)
		}
	}
	releaseIndexed(b, ex, l, citizens*each, func(i int) Ask {
		return Ask{Requester: "tax", Citizen: fmt.Sprint("p", i%citizens), Purpose: "AUDIT", LegalBasis: "§1"}
	})
	var whole, page time.Duration
	n := 0
	for b.Loop() {
		t0 := time.Now()
		all, err := ex.ForCitizen(ctx, "p0")
		t1 := time.Now()
		first, err2 := ex.ForCitizenPage(ctx, "p0", 0, 51)
		whole, page, n = whole+t1.Sub(t0), page+time.Since(t1), n+1
		if err != nil || err2 != nil || len(all) != each || len(first) != 51 || !first[50].Verified || all[50].LogIndex != first[50].LogIndex {
			b.Fatalf("%d and %d records (%v, %v)", len(all), len(first), err, err2)
		}
	}
	b.ReportMetric(float64(whole.Microseconds())/1000/float64(n), "ms-whole-list/op")
	b.ReportMetric(float64(page.Microseconds())/1000/float64(n), "ms-first-page/op")
	b.ReportMetric(float64(whole)/float64(page), "whole/page")
}

// releaseIndexed releases n asks (of income; ask(i) gives the requester,
// citizen, purpose, legal basis and deferral of the i-th) from 8
// requesters at once, so that the group commit takes many at a time, then
// integrates them all and indexes every one (none is left in the tail).
func releaseIndexed(b *testing.B, ex *Exchange, l *tlog.Log, n int, ask func(i int) Ask) {
	b.Helper()
	ctx := context.Background()
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			for i := w; i < n; i += 8 {
				a := ask(i)
				a.Officer, a.Service, a.Fields = "o", "income", []string{"income"}
				if r, err := ex.Submit(ctx, a); err != nil || r.State != Released {
					errs <- fmt.Errorf("release %d: %+v %w", i, r, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	// Integrate takes at most tlog.MaxIntegrate entries at a time.
	for {
		_, made, err := l.Integrate(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if !made {
			break
		}
	}
	if err := ex.FlushIndex(ctx); err != nil {
		b.Fatal(err)
	}
}
