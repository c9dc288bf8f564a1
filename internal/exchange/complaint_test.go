package exchange

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/text"
)

// TestComplaints: a citizen complains to the DPA about an access she can
// see, once (of 8 complaints sent at once, one is kept); not about another
// citizen's, one still hidden from her, or none, all alike; her words are
// checked; the DPA lists the open ones, oldest first and page by page, each
// with its access as the DPA sees it, and answers each once; she reads the
// answer beside her access, and only her own complaints. Records in the
// index and in the log's tail alike.
func TestComplaints(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, l, _ := auditExchange(t, db, 1)
		covert(t, ex, 90*Day, "p1", "p2")
		ask := func(a Ask) int64 {
			t.Helper()
			a.Officer = "Officer Ode"
			return released(t, ex, db, a)
		}
		audit1 := ask(Ask{Requester: "tax", Citizen: "p1", Purpose: "AUDIT", LegalBasis: "§1"})
		if _, _, err := l.Integrate(ctx); err != nil { // audit1 in the index, the rest in the log's tail
			t.Fatal(err)
		}
		audit2 := ask(Ask{Requester: "tax", Citizen: "p2", Purpose: "AUDIT", LegalBasis: "§1"})
		hidden := ask(Ask{Requester: "police", Citizen: "p1", Purpose: "COVERT", LegalBasis: "§9", Defer: 30 * Day})
		shown := ask(Ask{Requester: "police", Citizen: "p1", Purpose: "COVERT", LegalBasis: "§9", Defer: time.Millisecond})
		time.Sleep(5 * time.Millisecond) // shown's deferral ends

		// Only her own accesses she can see, and each once.
		for _, idx := range []int64{audit2, hidden, 1 << 40, -1, math.MaxInt64} {
			if _, err := ex.Complain(ctx, "p1", idx, "Why?"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("p1's complaint about log entry %d: %v, want ErrNotFound", idx, err)
			}
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		kept, refused := 0, 0
		for range 8 {
			wg.Go(func() {
				c, err := ex.Complain(ctx, "p1", audit1, "  Why did the tax office read my income?\r\nI was not told.  ")
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					kept++
				case errors.Is(err, ErrDecided) && c != nil && c.Message == "Why did the tax office read my income?\nI was not told.":
					refused++
				default:
					t.Errorf("a complaint sent at once: %+v %v", c, err)
				}
			})
		}
		wg.Wait()
		if kept != 1 || refused != 7 {
			t.Fatalf("8 complaints about one access sent at once: %d kept, %d refused; want 1 and 7", kept, refused)
		}
		if _, err := ex.Complain(ctx, "p1", shown, ""); err != nil {
			t.Fatalf("a complaint without words about an access no longer hidden: %v", err)
		}
		for name, words := range map[string]string{
			"NUL": "a\x00b", "an escape": "a\x1bb", "not UTF-8": "a\xffb", "too long": strings.Repeat("a", ComplaintMax+1),
		} {
			if _, err := ex.Complain(ctx, "p2", audit2, words); !errors.Is(err, ErrInvalid) {
				t.Fatalf("words %s: %v, want ErrInvalid", name, err)
			}
		}
		if _, err := ex.Complain(ctx, "p2", audit2, strings.Repeat("é", ComplaintMax)); err != nil {
			t.Fatalf("words of %d characters: %v", ComplaintMax, err)
		}

		mine, err := ex.ComplaintsOf(ctx, "p1", 0, math.MaxInt64)
		if err != nil || len(mine) != 2 || mine[audit1] == nil || mine[shown] == nil || !mine[audit1].Open() {
			t.Fatalf("p1's complaints: %v %v", mine, err)
		}
		if theirs, err := ex.ComplaintsOf(ctx, "p2", 0, math.MaxInt64); err != nil || len(theirs) != 1 || theirs[audit2] == nil {
			t.Fatalf("p2's complaints: %v %v", theirs, err)
		}
		if some, err := ex.ComplaintsOf(ctx, "p1", audit1+1, shown); err != nil || len(some) != 1 || some[shown] == nil {
			t.Fatalf("p1's complaints from entry %d to %d: %v %v", audit1+1, shown, some, err)
		}

		// The DPA: the open ones, oldest first, a page at a time.
		if n, err := ex.OpenComplaints(ctx); err != nil || n != 3 {
			t.Fatalf("open complaints: %d %v, want 3", n, err)
		}
		var order []int64
		after := ""
		for {
			cs, err := ex.Complaints(ctx, ComplaintQuery{After: after, Limit: 2})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cs {
				if c.Access == nil || c.Access.LogIndex != c.LogIndex || c.Access.Officer != "Officer Ode" || len(c.Access.FieldLabels) != 1 {
					t.Fatalf("complaint %d's access for the DPA: %+v", c.LogIndex, c.Access)
				}
				order = append(order, c.LogIndex)
				after = c.ID
			}
			if len(cs) < 2 {
				break
			}
		}
		if len(order) != 3 || order[0] != audit1 || order[1] != shown || order[2] != audit2 {
			t.Fatalf("open complaints' accesses in order: %v, want %d, %d, %d", order, audit1, shown, audit2)
		}
		if _, err := ex.Complaints(ctx, ComplaintQuery{After: "nope", Limit: 2}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("after an unknown complaint: %v", err)
		}
		if _, err := ex.Complaints(ctx, ComplaintQuery{}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("no page size: %v", err)
		}

		// Answered once.
		id := mine[audit1].ID
		if _, err := ex.AnswerComplaint(ctx, id, "dpa-1", " \n "); !errors.Is(err, ErrInvalid) {
			t.Fatalf("an empty answer: %v", err)
		}
		if _, err := ex.AnswerComplaint(ctx, "nope", "dpa-1", "Checked."); !errors.Is(err, ErrNotFound) {
			t.Fatalf("an answer to no complaint: %v", err)
		}
		c, err := ex.AnswerComplaint(ctx, id, "dpa-1", "We checked: the audit was lawful.")
		if err != nil || c.Open() || c.Answer != "We checked: the audit was lawful." {
			t.Fatalf("answer: %+v %v", c, err)
		}
		if _, err := ex.AnswerComplaint(ctx, id, "dpa-1", "Again."); !errors.Is(err, ErrDecided) {
			t.Fatalf("a second answer: %v", err)
		}
		if n, err := ex.OpenComplaints(ctx); err != nil || n != 2 {
			t.Fatalf("open complaints after an answer: %d %v", n, err)
		}
		if cs, err := ex.Complaints(ctx, ComplaintQuery{Answered: true, Limit: 10}); err != nil || len(cs) != 1 || cs[0].ID != id || cs[0].Access == nil {
			t.Fatalf("answered complaints: %v %v", cs, err)
		}
		if _, err := ex.Complaints(ctx, ComplaintQuery{After: id, Limit: 2}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("after an answered complaint: %v", err)
		}
		mine, err = ex.ComplaintsOf(ctx, "p1", audit1, audit1)
		if err != nil || mine[audit1] == nil || mine[audit1].Answer != "We checked: the audit was lawful." || mine[audit1].Answered.IsZero() || mine[audit1].AnsweredBy != "" {
			t.Fatalf("p1 reads the answer (and not who at the DPA gave it): %+v %v", mine[audit1], err)
		}
		if again, err := ex.Complain(ctx, "p1", audit1, "Again"); !errors.Is(err, ErrDecided) || again == nil || again.Answer == "" || again.AnsweredBy != "" {
			t.Fatalf("p1's second complaint, once answered: %+v %v", again, err)
		}
		// The DPA's file: every complaint, open or answered, by access,
		// a page at a time, with who answered.
		var file []*Complaint
		for from := int64(-1); ; {
			cs, err := ex.ComplaintsByEntry(ctx, from, 2)
			if err != nil {
				t.Fatal(err)
			}
			file = append(file, cs...)
			if len(cs) < 2 {
				break
			}
			from = cs[len(cs)-1].LogIndex
		}
		if len(file) != 3 || file[0].LogIndex != audit1 || file[1].LogIndex != audit2 || file[2].LogIndex != shown ||
			file[0].AnsweredBy != "dpa-1" || file[0].Answer == "" || !file[1].Open() || file[2].Access == nil || file[2].Access.Officer != "Officer Ode" {
			t.Fatalf("every complaint by access (want %d, %d, %d, the first answered by dpa-1): %+v", audit1, audit2, shown, file)
		}
		if _, err := ex.ComplaintsByEntry(ctx, -1, 0); !errors.Is(err, ErrInvalid) {
			t.Fatalf("no page size: %v", err)
		}
		// Her list: by access, the newest first, without the officer.
		byHer, err := ex.ComplaintsBy(ctx, "p1", 10)
		if err != nil || len(byHer) != 2 || byHer[0].LogIndex != shown || byHer[1].LogIndex != audit1 || byHer[1].Answer == "" || byHer[1].AnsweredBy != "" {
			t.Fatalf("p1's list of complaints: %v %v", byHer, err)
		}
		for _, c := range byHer {
			if c.Access == nil || c.Access.Officer != "" || c.Access.AgencyName == "" {
				t.Fatalf("p1's complaint %d: its access %+v", c.LogIndex, c.Access)
			}
		}
		if one, err := ex.ComplaintsBy(ctx, "p1", 1); err != nil || len(one) != 1 || one[0].LogIndex != shown {
			t.Fatalf("p1's newest complaint: %v %v", one, err)
		}
		if theirs, err := ex.ComplaintsBy(ctx, "p2", 10); err != nil || len(theirs) != 1 || theirs[0].LogIndex != audit2 {
			t.Fatalf("p2's list of complaints: %v %v", theirs, err)
		}
		if _, err := ex.ComplaintsBy(ctx, "p1", 0); !errors.Is(err, ErrInvalid) {
			t.Fatalf("no list size: %v", err)
		}
		for who, want := range map[string]int{"p1": 1, "p2": 0, "p3": 0} {
			if n, err := ex.AnsweredSince(ctx, who, time.Now().Add(-time.Hour)); err != nil || n != want {
				t.Fatalf("%s's complaints answered in the last hour: %d %v, want %d", who, n, err, want)
			}
		}
		if n, err := ex.AnsweredSince(ctx, "p1", time.Now().Add(time.Hour)); err != nil || n != 0 {
			t.Fatalf("p1's complaints answered after the next hour: %d %v", n, err)
		}
		if v, err := ex.DPA(ctx); err != nil || v.OpenComplaints != 2 {
			t.Fatalf("the DPA's overview counts %v open complaints (%v), want 2", v, err)
		}

		// A record that no longer reads leaves its complaint without an
		// access (the DPA's page says so), and the others as they were.
		if err := db.Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE tlog_entries SET opening = NULL WHERE idx = $1`, audit2)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		open, err := ex.Complaints(ctx, ComplaintQuery{Limit: 10})
		if err != nil || len(open) != 2 || open[0].LogIndex != shown || open[0].Access == nil || open[1].LogIndex != audit2 || open[1].Access != nil {
			t.Fatalf("open complaints, one about a record that no longer reads: %v %v", open, err)
		}
	})
}

// TestForgetComplaints: an answered complaint is deleted once the exchange
// has kept it for KeepComplaints after the answer (another's too, a batch
// at a time); one answered later, and one still open however old, are
// kept; the citizen may then complain about that access again. The
// exchange refuses to keep them for less than MinKeepComplaints or more
// than MaxKeepComplaints.
func TestForgetComplaints(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		var at atomic.Int64
		at.Store(time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC).UnixMilli())
		now := func() time.Time { return time.UnixMilli(at.Add(1)) } // a millisecond a reading
		later := func(d time.Duration) { at.Add(d.Milliseconds()) }
		ex, _, _ := clockedExchange(t, db, 1, now)
		if ex.ComplaintsKept() != KeepComplaints {
			t.Fatalf("kept %v by default, want %v", ex.ComplaintsKept(), KeepComplaints)
		}
		covert(t, ex, 90*Day, "p1", "p2")
		ask := func(citizen string) int64 {
			return released(t, ex, db, Ask{Requester: "tax", Officer: "o", Citizen: citizen, Purpose: "AUDIT", LegalBasis: "§1"})
		}
		a1, a2, a3, b1 := ask("p1"), ask("p1"), ask("p1"), ask("p2")
		complain := func(person string, idx int64, answer string) {
			t.Helper()
			c, err := ex.Complain(ctx, person, idx, "Why?")
			if err != nil {
				t.Fatal(err)
			}
			if answer != "" {
				if _, err := ex.AnswerComplaint(ctx, c.ID, "dpa-1", answer); err != nil {
					t.Fatal(err)
				}
			}
		}
		complain("p1", a1, "Lawful.")
		complain("p2", b1, "Lawful too.")
		complain("p1", a3, "") // never answered
		later(40 * Day)
		complain("p1", a2, "Lawful, later.")

		later(KeepComplaints - 40*Day - time.Hour) // not yet
		if n, err := ex.ForgetComplaints(ctx); err != nil || n != 0 {
			t.Fatalf("forgot %d complaints an hour early (%v)", n, err)
		}
		defer func(n int64) { forgetBatch = n }(forgetBatch)
		forgetBatch = 1
		later(2 * time.Hour)
		if n, err := ex.ForgetComplaints(ctx); err != nil || n != 2 {
			t.Fatalf("forgot %d complaints kept their time, a batch of 1 at a time (%v), want 2", n, err)
		}
		mine, err := ex.ComplaintsOf(ctx, "p1", 0, math.MaxInt64)
		if err != nil || len(mine) != 2 || mine[a2] == nil || mine[a3] == nil || !mine[a3].Open() {
			t.Fatalf("p1's complaints after the sweep: %v %v, want the one answered later and the open one", mine, err)
		}
		if theirs, err := ex.ComplaintsOf(ctx, "p2", 0, math.MaxInt64); err != nil || len(theirs) != 0 {
			t.Fatalf("p2's complaints after the sweep: %v %v", theirs, err)
		}
		if n, err := ex.OpenComplaints(ctx); err != nil || n != 1 {
			t.Fatalf("open complaints after the sweep: %d %v", n, err)
		}
		if _, err := ex.Complain(ctx, "p1", a1, "Again?"); err != nil {
			t.Fatalf("a complaint about an access whose complaint was forgotten: %v", err)
		}
		if n, err := ex.ForgetComplaints(ctx); err != nil || n != 0 {
			t.Fatalf("a second sweep forgot %d (%v)", n, err)
		}

		for _, keep := range []time.Duration{MinKeepComplaints - Day, MaxKeepComplaints + Day, -Day} {
			if _, err := New(Deps{DB: db, Log: ex.log, Secret: ex.secret, Now: now, KeepComplaints: keep}); err == nil || !strings.Contains(err.Error(), "answered complaints kept") {
				t.Fatalf("complaints kept %v: %v", keep, err)
			}
		}
	})
}

// FuzzCheckWords: whatever a citizen or the DPA sends, checkWords never
// panics, and what it keeps is trimmed, valid UTF-8 of at most
// ComplaintMax characters, with no control character but line feeds and
// tabs, no line or paragraph separator and no bidirectional override, and
// is kept as it is when checked again.
func FuzzCheckWords(f *testing.F) {
	for _, s := range []string{"", "Why?", " a\r\nb ", "a\x00b", "\xff", strings.Repeat("é", ComplaintMax), "\t\u0085x", "\u2028", "Why \u202eyhw", "\u200fلماذا؟"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := checkWords(s, "words", true)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("%q: %v, want ErrInvalid", s, err)
			}
			return
		}
		if !utf8.ValidString(got) || utf8.RuneCountInString(got) > ComplaintMax || got != strings.TrimSpace(got) ||
			strings.ContainsFunc(got, func(r rune) bool {
				return unicode.IsControl(r) && r != '\n' && r != '\t' || r == '\u2028' || r == '\u2029' || text.Reorders(r)
			}) {
			t.Fatalf("%q kept as %q", s, got)
		}
		if again, err := checkWords(got, "words", true); err != nil || again != got {
			t.Fatalf("%q checked again: %q %v", got, again, err)
		}
	})
}
