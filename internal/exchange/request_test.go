package exchange

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestPolicyTwins: a policy that says exactly what one in force says (its
// fields in any order) is refused, naming the one in force, so that
// retiring a policy never leaves a twin allowing the same access; sent 8
// times at once, one is created. A policy that differs in anything, or
// one like a retired policy, is created.
func TestPolicyTwins(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, _, _ := auditExchange(t, db, 0)
		if _, err := ex.PublishService(ctx, "holder", Service{ID: "register", Name: "Register", Fields: []Field{
			{Name: "address", Label: "Address", Type: "text"}, {Name: "household", Label: "Household", Type: "number"}}}); err != nil {
			t.Fatal(err)
		}
		base := Policy{Requester: "tax", Service: "register", Fields: []string{"address", "household"}, Purpose: "RESIDENCE", LegalBasis: "§3", Retention: 30 * Day}
		const tries = 8
		created := make([]*Policy, tries)
		errs := make([]error, tries)
		var wg sync.WaitGroup
		for i := range tries {
			wg.Go(func() {
				created[i], errs[i] = ex.CreatePolicy(ctx, base, "t")
			})
		}
		wg.Wait()
		var first *Policy
		for i := range tries {
			switch {
			case errs[i] == nil && first == nil:
				first = created[i]
			case errs[i] == nil:
				t.Fatalf("two twins created: %s and %s", first.ID, created[i].ID)
			case !errors.Is(errs[i], ErrPolicyInForce):
				t.Fatalf("try %d: %v", i, errs[i])
			}
		}
		if first == nil {
			t.Fatal("no policy created")
		}
		twin := base
		twin.Fields = []string{"household", "address"}
		if _, err := ex.CreatePolicy(ctx, twin, "t"); !errors.Is(err, ErrPolicyInForce) || !strings.Contains(err.Error(), first.ID) {
			t.Fatalf("the twin with its fields in another order: %v", err)
		}
		for what, p := range map[string]Policy{
			"fewer fields":        {Requester: "tax", Service: "register", Fields: []string{"address"}, Purpose: "RESIDENCE", LegalBasis: "§3", Retention: 30 * Day},
			"another retention":   {Requester: "tax", Service: "register", Fields: []string{"address", "household"}, Purpose: "RESIDENCE", LegalBasis: "§3", Retention: 60 * Day},
			"another agency":      {Requester: "police", Service: "register", Fields: []string{"address", "household"}, Purpose: "RESIDENCE", LegalBasis: "§3", Retention: 30 * Day},
			"consent needed":      {Requester: "tax", Service: "register", Fields: []string{"address", "household"}, Purpose: "RESIDENCE", LegalBasis: "§3", Consent: true, Retention: 30 * Day},
			"another legal basis": {Requester: "tax", Service: "register", Fields: []string{"address", "household"}, Purpose: "RESIDENCE", LegalBasis: "§4", Retention: 30 * Day},
		} {
			if _, err := ex.CreatePolicy(ctx, p, "t"); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		if err := ex.RetirePolicy(ctx, first.ID, "t"); err != nil {
			t.Fatal(err)
		}
		if _, err := ex.CreatePolicy(ctx, base, "t"); err != nil {
			t.Fatalf("like a retired policy: %v", err)
		}
	})
}

// TestTextLimits: names, labels, values, an officer's name and a legal
// basis are limited in characters, not bytes (a name in Chinese script of
// 40 characters is 120 bytes and may ask), and each limit says which one
// was crossed. They are text: a line with no control character (a value
// may also hold line breaks and tabs) and, but for a value, no
// bidirectional override (the marks LRM and RLM may be in it), refused
// with ErrInvalid before anything is written, on PostgreSQL too, which
// stores no NUL.
func TestTextLimits(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, _, _ := auditExchange(t, db, 0)
		svc := func(name, label string, fields int) error {
			s := Service{ID: "register", Name: name}
			for i := range fields {
				s.Fields = append(s.Fields, Field{Name: fmt.Sprintf("f%d", i), Label: label, Type: "text"})
			}
			_, err := ex.PublishService(ctx, "holder", s)
			return err
		}
		for _, c := range []struct {
			name, label string
			fields      int
			want        string
		}{
			{strings.Repeat("Ж", 101), "Адрес", 1, "a name of up to 100 characters"},
			{"Реестр", strings.Repeat("Ж", 101), 1, "a label of up to 100 characters"},
			{"Реестр", " ", 1, "a label of up to 100 characters"},
			{"Реестр", "Адрес", 101, "1 to 100 fields"},
			{"Реестр", "Адрес", 0, "1 to 100 fields"},
			{"Реестр\nзаписей", "Адрес", 1, "the service's name holds a control character"},
			{"Реестр", "Адрес\x1b[2J", 1, `field "f0"'s label holds a control character`},
			{"Реестр", "Ад\x00рес", 1, `field "f0"'s label holds a control character`},
			{"Ре\xffестр", "Адрес", 1, "the service's name is not valid UTF-8"},
			{"Реестр\u202d", "Адрес", 1, "the service's name holds a bidirectional override"},
		} {
			if err := svc(c.name, c.label, c.fields); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("service %.10q, label %.10q, %d fields: want %q, got %v", c.name, c.label, c.fields, c.want, err)
			}
		}
		// An error quotes a bad name shortened, whatever its length.
		_, err := ex.PublishService(ctx, "holder", Service{ID: "register", Name: "Реестр", Fields: []Field{{Name: strings.Repeat("Ж", 5000), Label: "Адрес", Type: "text"}}})
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `field "`+strings.Repeat("Ж", 40)+`…": names are`) || len(err.Error()) > 300 {
			t.Errorf("a field's name of 5,000 characters: %.300v", err)
		}
		if err := svc(strings.Repeat("Ж", 100), strings.Repeat("Ж", 100), 100); err != nil {
			t.Fatalf("a service at every limit (in Cyrillic, two bytes a character): %v", err)
		}
		if err := ex.SetValues(ctx, "holder", "register", "p1", map[string]string{"f0": strings.Repeat("Ж", 1000)}); err != nil {
			t.Fatalf("a value of 1,000 characters: %v", err)
		}
		if err := ex.SetValues(ctx, "holder", "register", "p1", map[string]string{"f0": strings.Repeat("Ж", 1001)}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "longer than 1000 characters") {
			t.Fatalf("a value of 1,001 characters: %v", err)
		}
		long := strings.Repeat("§", 200) // 400 bytes
		if _, err := ex.CreatePolicy(ctx, Policy{Requester: "tax", Service: "income", Fields: []string{"income"}, Purpose: "LONG", LegalBasis: long, Retention: Day}, "t"); err != nil {
			t.Fatalf("a legal basis of 200 characters: %v", err)
		}
		if _, err := ex.CreatePolicy(ctx, Policy{Requester: "tax", Service: "income", Fields: []string{"income"}, Purpose: "LONG", LegalBasis: long + "x", Retention: Day}, "t"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a legal basis of 201 characters: %v", err)
		}
		for _, basis := range []string{"§1\x00", "§1\n§2", "\x1b[31m§1"} {
			if _, err := ex.CreatePolicy(ctx, Policy{Requester: "tax", Service: "income", Fields: []string{"income"}, Purpose: "CTRL", LegalBasis: basis, Retention: Day}, "t"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "the legal basis holds a control character") {
				t.Errorf("a legal basis of %q: %v", basis, err)
			}
		}
		if _, err := ex.CreatePolicy(ctx, Policy{Requester: "tax", Service: "income", Fields: []string{"income", "income"}, Purpose: "TWICE", LegalBasis: "§1", Retention: Day}, "t"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `names the field "income" twice`) {
			t.Fatalf("a policy naming a field twice: %v", err)
		}
		if err := ex.SetValues(ctx, "holder", "income", "p1", map[string]string{"income": "7"}); err != nil {
			t.Fatal(err)
		}
		// A value may run over lines; no other control character, and no
		// NUL, which PostgreSQL would refuse deep in the transaction.
		if err := ex.SetValues(ctx, "holder", "register", "p1", map[string]string{"f0": "Via Zamboni 33\r\n\t40126 Bologna"}); err != nil {
			t.Fatalf("a value over two lines: %v", err)
		}
		for _, v := range []string{"Via\x00Zamboni", "Via\x1b[2JZamboni", "Via\u0085Zamboni"} {
			if err := ex.SetValues(ctx, "holder", "register", "p1", map[string]string{"f0": v}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "holds a control character") {
				t.Errorf("a value of %q: %v", v, err)
			}
		}
		for _, person := range []string{"p\x00", "p\n1", "p\xff"} {
			if err := ex.SetValues(ctx, "holder", "income", person, map[string]string{"income": "7"}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "the citizen's id") {
				t.Errorf("values for the citizen %q: %v", person, err)
			}
			if err := ex.RemoveValues(ctx, "holder", "income", person, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "the citizen's id") {
				t.Errorf("removing values of the citizen %q: %v", person, err)
			}
		}
		ask := Ask{Requester: "tax", Officer: strings.Repeat("王", 40), Citizen: "p1", Service: "income", Fields: []string{"income"}, Purpose: "LONG", LegalBasis: long}
		if r, err := ex.Submit(ctx, ask); err != nil || r.State != Released {
			t.Fatalf("an officer of 40 characters in 120 bytes: %+v %v", r, err)
		}
		// A right-to-left name may carry the marks LRM and RLM.
		rtl := ask
		rtl.Officer = "\u200fفاطمة الزهراء (ID 7)\u200e"
		if r, err := ex.Submit(ctx, rtl); err != nil || r.State != Released {
			t.Fatalf("an officer's name in Arabic with RLM and LRM: %+v %v", r, err)
		}
		for _, c := range []struct {
			change func(*Ask)
			want   string
		}{
			{func(a *Ask) { a.Officer = strings.Repeat("o", 101) }, "officer's name is longer than 100 characters"},
			{func(a *Ask) { a.Officer = strings.Repeat("😀", 70) }, "officer's name is longer than 100 characters"}, // 280 bytes
			{func(a *Ask) { a.LegalBasis = long + "x" }, "legal basis is longer than 200 characters"},
			{func(a *Ask) { a.Purpose = strings.Repeat("P", 41) }, "purpose code is at most 40 characters"},
			{func(a *Ask) { a.Officer = " " }, "a request names the officer"},
			{func(a *Ask) { a.Fields = []string{"income", ""} }, `"" is not a field's name`},
			{func(a *Ask) { a.Fields = []string{"Income"} }, `"Income" is not a field's name`},
			{func(a *Ask) { a.Fields = []string{strings.Repeat("x", 50000)} }, `"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…" is not a field's name`},
			{func(a *Ask) { a.Officer = "Eva\x00Lind" }, "the officer's name holds a control character"},
			{func(a *Ask) { a.Officer = "Eva\nLind" }, "the officer's name holds a control character"},
			{func(a *Ask) { a.Citizen = "p1\x00" }, "the citizen's id holds a control character"},
			{func(a *Ask) { a.Service = "income\x00" }, "the service's id holds a control character"},
			{func(a *Ask) { a.Purpose = "LONG\x00" }, "the purpose code holds a control character"},
			{func(a *Ask) { a.LegalBasis = "\x1b[8m§1" }, "the legal basis holds a control character"},
			{func(a *Ask) { a.LegalBasis = "§1\xff" }, "the legal basis is not valid UTF-8"},
			{func(a *Ask) { a.Officer = "Eva Lind \u202eytuped" }, "the officer's name holds a bidirectional override"},
			{func(a *Ask) { a.LegalBasis = "\u2067§1\u2069" }, "the legal basis holds a bidirectional override"},
		} {
			a := ask
			c.change(&a)
			if _, err := ex.Submit(ctx, a); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("want %q, got %v", c.want, err)
			}
		}
	})
}

// TestReleaseRechecksConsent: a collection decided on a consent that is
// withdrawn, or runs out, before its release commits releases nothing
// and logs nothing (the release's own transaction checks the consent
// again, not only Collect before it).
func TestReleaseRechecksConsent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, _, _ := auditExchange(t, db, 0)
		consentPolicies(t, ex, "tax")
		feedIncome(t, ex, "p1")
		entries := func() int {
			var n int
			if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM tlog_entries`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		for _, c := range []struct {
			name      string
			meanwhile func(id string) error
		}{
			{"withdrawn", func(id string) error { _, err := ex.Withdraw(ctx, "p1", id); return err }},
			{"run out", func(id string) error {
				return db.Tx(ctx, func(tx *store.Tx) error {
					_, err := tx.ExecContext(ctx, `UPDATE ex_requests SET decided_at = $1 WHERE id = $2`, time.Now().Add(-CollectWithin-time.Second).UnixMilli(), id)
					return err
				})
			}},
		} {
			r, err := ex.Submit(ctx, Ask{Requester: "tax", Officer: "o", Citizen: "p1", Service: "income", Fields: []string{"income"}, Purpose: "ASK", LegalBasis: "§2"})
			if err != nil || r.State != AwaitConsent {
				t.Fatalf("%s: ask: %+v %v", c.name, r, err)
			}
			if _, err := ex.Decide(ctx, "p1", r.ID, true); err != nil {
				t.Fatalf("%s: approve: %v", c.name, err)
			}
			r, err = ex.RequestFor(ctx, "tax", r.ID)
			if err != nil || r.State != Consented {
				t.Fatalf("%s: read back: %+v %v", c.name, r, err)
			}
			svc, pol, reason, err := ex.decide(ctx, r)
			if err != nil || reason != "" {
				t.Fatalf("%s: decide: %q %v", c.name, reason, err)
			}
			before := entries()
			if err := c.meanwhile(r.ID); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if err := ex.release(ctx, r, svc, pol, consentGiven, nil); !errors.Is(err, ErrDecided) || r.Values != nil {
				t.Fatalf("%s: released %v (%v), want ErrDecided", c.name, r.Values, err)
			}
			if n := entries(); n != before {
				t.Fatalf("%s: %d log entries, was %d", c.name, n, before)
			}
		}
	})
}

// TestPastRequests: a citizen's past requests are their own that asked
// for consent and ended with nothing released (refused, withdrawn,
// cancelled, lapsed either way), newest asked first, at most the limit;
// not what is still open, released or denied, nor another citizen's.
func TestPastRequests(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, _, _ := auditExchange(t, db, 0)
		consentPolicies(t, ex, "tax")
		feedIncome(t, ex, "p1", "p2")
		// ask makes a request of person's, asked ago, and ends it by then.
		ask := func(person, purpose string, ago time.Duration, then func(id string) error) string {
			t.Helper()
			r, err := ex.Submit(ctx, Ask{Requester: "tax", Officer: "o", Citizen: person, Service: "income", Fields: []string{"income"}, Purpose: purpose, LegalBasis: "§2"})
			if err != nil {
				t.Fatal(err)
			}
			if then != nil {
				if err := then(r.ID); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.Tx(ctx, func(tx *store.Tx) error {
				_, err := tx.ExecContext(ctx, `UPDATE ex_requests SET created_at = $1 WHERE id = $2`, time.Now().Add(-ago).UnixMilli(), r.ID)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return r.ID
		}
		approve := func(id string) error { _, err := ex.Decide(ctx, "p1", id, true); return err }
		decidedAgo := func(ago time.Duration) func(string) error {
			return func(id string) error {
				if err := approve(id); err != nil {
					return err
				}
				return db.Tx(ctx, func(tx *store.Tx) error {
					_, err := tx.ExecContext(ctx, `UPDATE ex_requests SET decided_at = $1 WHERE id = $2`, time.Now().Add(-ago).UnixMilli(), id)
					return err
				})
			}
		}
		refused := ask("p1", "ASK", 5*time.Hour, func(id string) error { _, err := ex.Decide(ctx, "p1", id, false); return err })
		withdrawn := ask("p1", "ASK", 4*time.Hour, func(id string) error {
			if err := approve(id); err != nil {
				return err
			}
			_, err := ex.Withdraw(ctx, "p1", id)
			return err
		})
		cancelled := ask("p1", "ASK", 3*time.Hour, func(id string) error { _, err := ex.Cancel(ctx, "tax", id); return err })
		unanswered := ask("p1", "ASK", AnswerWithin+time.Minute, nil)
		uncollected := ask("p1", "ASK", 40*Day, decidedAgo(CollectWithin+time.Minute))
		ask("p1", "ASK", 40*Day, decidedAgo(CollectWithin-time.Hour)) // approved a while ago, still open
		waiting := ask("p1", "ASK", time.Hour, nil)
		collected := ask("p1", "ASK", 2*time.Hour, func(id string) error {
			if err := approve(id); err != nil {
				return err
			}
			_, err := ex.Collect(ctx, "tax", id)
			return err
		})
		ask("p1", "NONE", time.Hour, nil) // denied: no policy
		other := ask("p2", "ASK", 6*time.Hour, func(id string) error { _, err := ex.Decide(ctx, "p2", id, false); return err })
		// Two asked in the same millisecond, between the withdrawn and the
		// refused: the id puts them in order, the larger first.
		tie := []string{
			ask("p1", "ASK", 0, func(id string) error { _, err := ex.Cancel(ctx, "tax", id); return err }),
			ask("p1", "ASK", 0, func(id string) error { _, err := ex.Decide(ctx, "p1", id, false); return err }),
		}
		if err := db.Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE ex_requests SET created_at = $1 WHERE id IN ($2, $3)`, time.Now().Add(-270*time.Minute).UnixMilli(), tie[0], tie[1])
			return err
		}); err != nil {
			t.Fatal(err)
		}
		slices.Sort(tie)

		ids := func(rs []*Request) []string {
			var out []string
			for _, r := range rs {
				out = append(out, r.ID)
			}
			return out
		}
		all := []string{cancelled, withdrawn, tie[1], tie[0], refused, unanswered, uncollected}
		for _, c := range []struct {
			person string
			limit  int
			want   []string
		}{
			{"p1", 20, all},
			{"p1", 2, all[:2]},
			{"p1", 4, all[:4]},
			{"p2", 20, []string{other}},
			{"p3", 20, nil},
		} {
			got, err := ex.Past(ctx, c.person, "", c.limit)
			if err != nil || !slices.Equal(ids(got), c.want) {
				t.Errorf("%s's past %d: %v %v, want %v", c.person, c.limit, ids(got), err, c.want)
			}
		}
		// Page by page, from where each page ended, every one shows once,
		// in order, whatever the page size.
		for size := 1; size <= len(all)+1; size++ {
			var seen []string
			for before, pages := "", 0; ; pages++ {
				page, err := ex.Past(ctx, "p1", before, size)
				if err != nil || pages > len(all) {
					t.Fatalf("size %d, after %v: %v (page %d)", size, seen, err, pages)
				}
				seen = append(seen, ids(page)...)
				if len(page) < size {
					break
				}
				before = page[len(page)-1].ID
			}
			if !slices.Equal(seen, all) {
				t.Errorf("pages of %d: %v, want %v", size, seen, all)
			}
		}
		// A place to list on from is one of the citizen's own past requests.
		for what, bad := range map[string]string{"another's": other, "a waiting one": waiting, "a collected one": collected, "made up": "nonsense"} {
			if _, err := ex.Past(ctx, "p1", bad, 20); !errors.Is(err, ErrInvalid) {
				t.Errorf("listing on from %s: %v", what, err)
			}
		}
		got, _ := ex.Past(ctx, "p1", "", 20)
		for i, want := range []struct {
			state     string
			withdrawn bool
		}{{Cancelled, false}, {RefusedConsent, true}, {RefusedConsent, false}, {Cancelled, false}, {RefusedConsent, false}, {Lapsed, false}, {Lapsed, false}} {
			if got[i].State != want.state || got[i].Withdrawn() != want.withdrawn {
				t.Errorf("past %d: %s (withdrawn %v), want %s (withdrawn %v)", i, got[i].State, got[i].Withdrawn(), want.state, want.withdrawn)
			}
		}
		if _, err := ex.Past(ctx, "p1", "", 0); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a list of none: %v", err)
		}
		gone, stop := context.WithCancel(ctx)
		stop()
		if _, err := ex.Past(gone, "p1", got[0].ID, 20); errors.Is(err, ErrInvalid) || !errors.Is(err, context.Canceled) {
			t.Fatalf("listing on while the store fails: %v, want the store's error", err)
		}
		if _, err := ex.DeniedBy(gone, "", got[0].ID, 20); errors.Is(err, ErrInvalid) || !errors.Is(err, context.Canceled) {
			t.Fatalf("the DPA's paging while the store fails: %v, want the store's error", err)
		}
	})
}

// askedAt submits a request of org about citizen that needs consent and
// dates it at.
func askedAt(t *testing.T, db *store.DB, ex *Exchange, org, citizen string, at time.Time) string {
	t.Helper()
	ctx := context.Background()
	r, err := ex.Submit(ctx, Ask{Requester: org, Officer: "o", Citizen: citizen, Service: "income", Fields: []string{"income"}, Purpose: "ASK", LegalBasis: "§2"})
	if err != nil || r.State != AwaitConsent {
		t.Fatalf("ask: %+v %v", r, err)
	}
	if err := db.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE ex_requests SET created_at = $1 WHERE id = $2`, at.UnixMilli(), r.ID)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return r.ID
}

// consentPolicies lets each of orgs ask for income with consent (purpose
// ASK, legal basis §2).
func consentPolicies(t *testing.T, ex *Exchange, orgs ...string) {
	t.Helper()
	for _, org := range orgs {
		if _, err := ex.CreatePolicy(context.Background(), Policy{Requester: org, Service: "income", Fields: []string{"income"}, Purpose: "ASK", LegalBasis: "§2", Consent: true, Retention: Day}, "t"); err != nil {
			t.Fatal(err)
		}
	}
}

// feedIncome has the holder's income service hold 7 for each of persons.
func feedIncome(t *testing.T, ex *Exchange, persons ...string) {
	t.Helper()
	for _, p := range persons {
		if err := ex.SetValues(context.Background(), "holder", "income", p, map[string]string{"income": "7"}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSameAnswerAtOnce: a citizen's answer sent 8 times at once is taken
// once; the other sends are told it was given (ErrSameAnswer), and the
// counters count it once.
func TestSameAnswerAtOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, _, _ := auditExchange(t, db, 0)
		consentPolicies(t, ex, "tax")
		for _, approve := range []bool{true, false} {
			id := askedAt(t, db, ex, "tax", "p1", time.Now())
			before := ex.Stats()
			const tries = 8
			errs := make([]error, tries)
			var wg sync.WaitGroup
			for i := range tries {
				wg.Go(func() { _, errs[i] = ex.Decide(ctx, "p1", id, approve) })
			}
			wg.Wait()
			taken := 0
			for i, err := range errs {
				switch {
				case err == nil:
					taken++
				case !errors.Is(err, ErrSameAnswer):
					t.Fatalf("approve %v, try %d: %v", approve, i, err)
				}
			}
			after := ex.Stats()
			if taken != 1 || after.Given+after.Refused != before.Given+before.Refused+1 {
				t.Fatalf("approve %v: taken %d times; given and refused %d, then %d", approve, taken, before.Given+before.Refused, after.Given+after.Refused)
			}
		}
	})
}

// expectPages lists on from the last request shown, at every page size
// from 1 to one past len(want), and wants want's ids in that order.
func expectPages(t *testing.T, list func(after string, size int) ([]*Request, error), want []string) {
	t.Helper()
	for size := 1; size <= len(want)+1; size++ {
		var seen []string
		for after, pages := "", 0; ; pages++ {
			page, err := list(after, size)
			if err != nil || pages > len(want) {
				t.Fatalf("size %d, after %v: %v (page %d)", size, seen, err, pages)
			}
			for _, r := range page {
				seen = append(seen, r.ID)
			}
			if len(page) < size {
				break
			}
			after = page[len(page)-1].ID
		}
		if !slices.Equal(seen, want) {
			t.Errorf("pages of %d: %v, want %v", size, seen, want)
		}
	}
}

// TestOpenForPages: an agency's open requests, listed on from the last one
// shown, come each once, oldest asked first, whatever the page size, also
// when several were asked in the same millisecond (the id orders those);
// lapsed, closed and another agency's are left out.
func TestOpenForPages(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, _, _ := auditExchange(t, db, 0)
		consentPolicies(t, ex, "tax", "police")
		base := time.Now().Add(-time.Hour)
		var want []string
		for i, n := range []int{1, 3, 1, 2} { // four moments, three and two of them shared
			var same []string
			for range n {
				same = append(same, askedAt(t, db, ex, "tax", "p1", base.Add(time.Duration(i)*time.Minute)))
			}
			slices.Sort(same)
			want = append(want, same...)
		}
		askedAt(t, db, ex, "tax", "p1", base.Add(-AnswerWithin))            // lapsed
		cancelled := askedAt(t, db, ex, "tax", "p1", base.Add(time.Second)) // cancelled below
		other := askedAt(t, db, ex, "police", "p1", base.Add(time.Minute))  // another agency's
		if _, err := ex.Cancel(ctx, "tax", cancelled); err != nil {
			t.Fatal(err)
		}
		expectPages(t, func(after string, size int) ([]*Request, error) { return ex.OpenFor(ctx, "tax", after, size) }, want)
		if _, err := ex.OpenFor(ctx, "tax", other, 10); !errors.Is(err, ErrInvalid) {
			t.Errorf("listing on from another agency's request: %v", err)
		}
	})
}

// TestPendingPages: a citizen's open requests (from any agency; waiting
// for her answer, or approved and not yet collected), listed on from the
// last one shown, come each once, oldest asked first, whatever the page
// size; refused, collected, lapsed and another citizen's are left out,
// and her home's count is of those waiting for her answer only.
func TestPendingPages(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, _, _ := auditExchange(t, db, 0)
		consentPolicies(t, ex, "tax", "police")
		base := time.Now().Add(-time.Hour)
		var want []string
		for i, org := range []string{"tax", "police", "tax", "tax", "police"} {
			want = append(want, askedAt(t, db, ex, org, "p1", base.Add(time.Duration(i)*time.Minute)))
		}
		same := []string{askedAt(t, db, ex, "tax", "p1", base.Add(5*time.Minute)), askedAt(t, db, ex, "police", "p1", base.Add(5*time.Minute))}
		slices.Sort(same)
		want = append(want, same...)
		approved := want[1]
		if _, err := ex.Decide(ctx, "p1", approved, true); err != nil {
			t.Fatal(err)
		}
		refused := askedAt(t, db, ex, "tax", "p1", base.Add(time.Second))
		collected := askedAt(t, db, ex, "police", "p1", base.Add(2*time.Second))
		for id, approve := range map[string]bool{refused: false, collected: true} {
			if _, err := ex.Decide(ctx, "p1", id, approve); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := ex.Collect(ctx, "police", collected); err != nil {
			t.Fatal(err)
		}
		askedAt(t, db, ex, "tax", "p1", base.Add(-AnswerWithin))        // lapsed
		other := askedAt(t, db, ex, "tax", "p2", base.Add(time.Minute)) // another citizen's
		expectPages(t, func(after string, size int) ([]*Request, error) { return ex.Pending(ctx, "p1", after, size) }, want)
		if _, err := ex.Pending(ctx, "p1", other, 10); !errors.Is(err, ErrInvalid) {
			t.Errorf("listing on from another citizen's request: %v", err)
		}
		if _, err := ex.Pending(ctx, "p1", "", 0); !errors.Is(err, ErrInvalid) {
			t.Errorf("a list of none: %v", err)
		}
		for citizen, n := range map[string]int{"p1": len(want) - 1, "p2": 1, "p3": 0} { // p1's approved one does not ask
			if got, err := ex.Asking(ctx, citizen); err != nil || got != n {
				t.Errorf("%s is asked by %d requests (%v), want %d", citizen, got, err, n)
			}
		}
	})
}

// TestOpenUnder: what the operator is told before retiring a policy. The
// count is of the requests asked under it that still wait for the
// citizen's answer or for collection (not lapsed, not closed, not
// another policy's); and, as the confirmation says, once the policy is
// retired such a request is collected only if another policy in force
// allows it.
func TestOpenUnder(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, _, _ := auditExchange(t, db, 0)
		policy := func(org string) string {
			t.Helper()
			p, err := ex.CreatePolicy(ctx, Policy{Requester: org, Service: "income", Fields: []string{"income"}, Purpose: "ASK", LegalBasis: "§2", Consent: true, Retention: Day}, "t")
			if err != nil {
				t.Fatal(err)
			}
			return p.ID
		}
		tax, police := policy("tax"), policy("police")
		feedIncome(t, ex, "p1", "p2")
		count := func(what, id string, want int) {
			t.Helper()
			if n, err := ex.OpenUnder(ctx, id); err != nil || n != want {
				t.Errorf("%s: %d open (%v), want %d", what, n, err, want)
			}
		}
		count("no request yet", tax, 0)
		decide := func(person, id string, approve bool) {
			t.Helper()
			if _, err := ex.Decide(ctx, person, id, approve); err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now()
		askedAt(t, db, ex, "tax", "p1", now.Add(-time.Hour)) // waiting
		approved := askedAt(t, db, ex, "tax", "p2", now.Add(-time.Hour))
		decide("p2", approved, true)
		decide("p1", askedAt(t, db, ex, "tax", "p1", now.Add(-time.Minute)), false) // refused
		collected := askedAt(t, db, ex, "tax", "p1", now.Add(-time.Minute))
		decide("p1", collected, true)
		if _, err := ex.Collect(ctx, "tax", collected); err != nil {
			t.Fatal(err)
		}
		askedAt(t, db, ex, "tax", "p1", now.Add(-AnswerWithin-time.Minute)) // lapsed unanswered
		uncollected := askedAt(t, db, ex, "tax", "p2", now)
		decide("p2", uncollected, true)
		if err := db.Tx(ctx, func(tx *store.Tx) error { // approved, then not collected in time
			_, err := tx.ExecContext(ctx, `UPDATE ex_requests SET created_at = $1, decided_at = $2 WHERE id = $3`,
				now.Add(-40*Day).UnixMilli(), now.Add(-CollectWithin-time.Minute).UnixMilli(), uncollected)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		askedAt(t, db, ex, "police", "p1", now.Add(-time.Hour))
		count("the tax office's policy", tax, 2)
		count("the police's policy", police, 1)
		count("no such policy", "nope", 0)

		if err := ex.RetirePolicy(ctx, tax, "t"); err != nil {
			t.Fatal(err)
		}
		count("the tax office's policy, retired", tax, 2)
		if _, err := ex.Collect(ctx, "tax", approved); !errors.Is(err, ErrInvalid) {
			t.Fatalf("collecting under the retired policy alone: %v", err)
		}
		if p, err := ex.Policy(ctx, tax); err != nil || p.Active || p.RequesterName == "" {
			t.Fatalf("the retired policy: %+v %v", p, err)
		}
		if _, err := ex.Policy(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("no such policy: %v", err)
		}
		successor := policy("tax")
		if r, err := ex.Collect(ctx, "tax", approved); err != nil || r.State != Released {
			t.Fatalf("collecting under the policy in force since: %+v %v", r, err)
		}
		// The access record names the policy it was released under.
		accesses, err := ex.ForCitizen(ctx, "p2")
		if i := slices.IndexFunc(accesses, func(v *Verified) bool { return v.Request == approved }); err != nil || i < 0 || accesses[i].Policy != successor {
			t.Fatalf("the access collected under the successor: %v (index %d of %d)", err, i, len(accesses))
		}
		count("the tax office's policy, one collected under its successor", tax, 1)
	})
}
