package exchange

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestServiceChanges: a holder changing its service's fields keeps what is
// stored true to them. A field a policy in force names cannot be removed
// (until the policy is retired; then its values go with it); a field's
// new type must fit every value stored under it, and the refusal says how
// many do not without showing any. A holder removes what it holds about a
// citizen, field by field or all at once, and only in its own services.
func TestServiceChanges(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, _, _ := auditExchange(t, db, 0)
		fields := func(fs ...Field) Service {
			return Service{ID: "register", Name: "Register", Fields: fs}
		}
		address := Field{Name: "address", Label: "Address", Type: "text"}
		size := Field{Name: "household", Label: "Household size", Type: "text"}
		moved := Field{Name: "moved_on", Label: "Moved on", Type: "date"}
		publish := func(s Service) error { _, err := ex.PublishService(ctx, "holder", s); return err }
		if err := publish(fields(address, size, moved)); err != nil {
			t.Fatal(err)
		}
		set := func(person string, v map[string]string) {
			t.Helper()
			if err := ex.SetValues(ctx, "holder", "register", person, v); err != nil {
				t.Fatal(err)
			}
		}
		set("p1", map[string]string{"address": "Via Roma 1", "household": "3", "moved_on": "2020-02-01"})
		set("p2", map[string]string{"address": "Via Po 2", "household": "three", "moved_on": "2021-03-04"})
		set("p3", map[string]string{"household": "4 or 5"})
		stored := func(where string, args ...any) int {
			t.Helper()
			var n int
			if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM ex_values WHERE service_id = 'register' AND `+where, args...).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		published := func() []Field {
			t.Helper()
			svc, err := ex.Service(ctx, "register")
			if err != nil {
				t.Fatal(err)
			}
			return svc.Fields
		}
		refused := func(what string, err error, want ...string) {
			t.Helper()
			if !errors.Is(err, ErrInUse) {
				t.Fatalf("%s: want ErrInUse, got %v", what, err)
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("%s: %q does not say %q", what, err, w)
				}
			}
			for _, value := range []string{"three", "4 or 5", "Via", "p2", "p3"} {
				if strings.Contains(err.Error(), value) {
					t.Fatalf("%s: the refusal shows a stored value or a citizen (%q): %v", what, value, err)
				}
			}
			if got := published(); len(got) != 3 || got[1] != size {
				t.Fatalf("%s: the refused change was published: %+v", what, got)
			}
		}

		// A policy in force names moved_on: it stays.
		pol, err := ex.CreatePolicy(ctx, Policy{Requester: "tax", Service: "register", Fields: []string{"address", "moved_on"}, Purpose: "RESIDENCE", LegalBasis: "§3", Retention: Day}, "t")
		if err != nil {
			t.Fatal(err)
		}
		refused("removing a field a policy names", publish(fields(address, size)), `"moved_on"`, pol.ID, "RESIDENCE", "retires that policy first")
		if n := stored(`field = 'moved_on'`); n != 2 {
			t.Fatalf("a refused removal deleted values: %d left of 2", n)
		}

		// household becomes a number: two of three values are not.
		number := size
		number.Type = "number"
		refused("a type two values do not fit", publish(fields(address, number, moved)), `"household"`, "type number", "2 of its stored values do not fit", "must be a number")
		if err := ex.RemoveValues(ctx, "holder", "register", "p3", []string{"household"}); err != nil {
			t.Fatal(err)
		}
		refused("a type one value does not fit", publish(fields(address, number, moved)), "1 of its stored values does not fit")
		set("p2", map[string]string{"household": "3"})
		if err := publish(fields(address, number, moved)); err != nil {
			t.Fatalf("every value fits the new type: %v", err)
		}
		if got := published(); got[1] != number {
			t.Fatalf("household was not changed: %+v", got)
		}
		if err := ex.SetValues(ctx, "holder", "register", "p1", map[string]string{"household": "three"}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a value the new type refuses was stored: %v", err)
		}
		// A relabelled field of the same type is not checked again, and
		// passes; a field added under a name with stale values is.
		relabelled := address
		relabelled.Label = "Home address"
		if err := publish(fields(relabelled, number, moved)); err != nil {
			t.Fatal(err)
		}
		if err := db.Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO ex_values (service_id, person_id, field, value, updated_at) VALUES ('register', 'p1', 'flag', 'maybe', 0)`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		flag := Field{Name: "flag", Label: "Flag", Type: "bool"}
		if err := publish(fields(relabelled, number, moved, flag)); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "must be true or false") {
			t.Fatalf("a new field over a stale value that does not fit: %v", err)
		}

		// Retired, the policy no longer holds moved_on, and its values go.
		if err := ex.RetirePolicy(ctx, pol.ID, "op"); err != nil {
			t.Fatal(err)
		}
		if err := publish(fields(relabelled, number)); err != nil {
			t.Fatalf("removing a field no policy in force names: %v", err)
		}
		if n := stored(`field = 'moved_on'`); n != 0 {
			t.Fatalf("%d values of the removed field are still stored", n)
		}
		if _, err := ex.CreatePolicy(ctx, Policy{Requester: "tax", Service: "register", Fields: []string{"moved_on"}, Purpose: "RESIDENCE", LegalBasis: "§3", Retention: Day}, "t"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a policy naming a removed field: %v", err)
		}

		// Removing values: only in one's own service, only fields it has.
		for _, c := range []struct {
			holder, service string
			fields          []string
			want            error
		}{
			{"tax", "register", nil, ErrNotFound},
			{"holder", "no-such", nil, ErrNotFound},
			{"holder", "register", []string{"address", "moved_on"}, ErrInvalid},
		} {
			if err := ex.RemoveValues(ctx, c.holder, c.service, "p1", c.fields); !errors.Is(err, c.want) {
				t.Errorf("%s removing %v from %s: want %v, got %v", c.holder, c.fields, c.service, c.want, err)
			}
		}
		if n := stored(`person_id = 'p1'`); n != 3 {
			t.Fatalf("a refused removal removed something: %d of p1's 3 values left", n)
		}
		if err := ex.RemoveValues(ctx, "holder", "register", "p1", []string{"address"}); err != nil {
			t.Fatal(err)
		}
		if n, a := stored(`person_id = 'p1'`), stored(`person_id = 'p1' AND field = 'address'`); n != 2 || a != 0 {
			t.Fatalf("removing p1's address: %d values left, address %d", n, a)
		}
		if err := ex.RemoveValues(ctx, "holder", "register", "p1", nil); err != nil {
			t.Fatal(err)
		}
		if n, others := stored(`person_id = 'p1'`), stored(`person_id = 'p2'`); n != 0 || others != 2 {
			t.Fatalf("removing all of p1's values: p1 has %d left, p2 %d of 2", n, others)
		}
		if err := ex.RemoveValues(ctx, "holder", "register", "nobody-any-more", nil); err != nil {
			t.Fatalf("removing what is not there: %v", err)
		}
	})
}

// TestWithdrawService: a holder withdraws a service no policy in force
// names; its values go, nobody may ask for it, set values in it or put a
// policy on it, and its id stays the holder's, who may publish it again.
// Rolling the schema back drops the tombstones of withdrawn services.
func TestWithdrawService(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, _, _ := auditExchange(t, db, 0)
		address := Field{Name: "address", Label: "Address", Type: "text"}
		for _, id := range []string{"register", "old-register"} {
			if _, err := ex.PublishService(ctx, "holder", Service{ID: id, Name: "Register " + id, Fields: []Field{address}}); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"p1", "p2"} {
				if err := ex.SetValues(ctx, "holder", id, p, map[string]string{"address": "Via Roma 1"}); err != nil {
					t.Fatal(err)
				}
			}
		}
		pol, err := ex.CreatePolicy(ctx, Policy{Requester: "tax", Service: "register", Fields: []string{"address"}, Purpose: "RESIDENCE", LegalBasis: "§3", Retention: Day}, "t")
		if err != nil {
			t.Fatal(err)
		}
		values := func(id string) int {
			t.Helper()
			var n int
			if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM ex_values WHERE service_id = $1`, id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		listed := func(id string) bool {
			t.Helper()
			ss, err := ex.Services(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return slices.ContainsFunc(ss, func(s *Service) bool { return s.ID == id })
		}
		if err := ex.WithdrawService(ctx, "tax", "register"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("another organisation withdraws the service: %v", err)
		}
		if err := ex.WithdrawService(ctx, "holder", "register"); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), pol.ID) {
			t.Fatalf("withdrawing a service a policy in force names: %v", err)
		}
		if n := values("register"); n != 2 || !listed("register") {
			t.Fatalf("a refused withdrawal: %d values of 2 left, listed %v", n, listed("register"))
		}
		if err := ex.RetirePolicy(ctx, pol.ID, "op"); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"register", "old-register"} {
			if err := ex.WithdrawService(ctx, "holder", id); err != nil {
				t.Fatalf("withdraw %s: %v", id, err)
			}
			if n := values(id); n != 0 || listed(id) {
				t.Fatalf("withdrawn %s: %d values left, listed %v", id, n, listed(id))
			}
		}
		if svc, err := ex.Service(ctx, "register"); err != nil || svc.WithdrawnAt.IsZero() || svc.Name != "Register register" {
			t.Fatalf("the tombstone: %+v %v", svc, err)
		}
		if err := ex.WithdrawService(ctx, "holder", "register"); !errors.Is(err, ErrDecided) {
			t.Fatalf("withdrawn twice: %v", err)
		}
		if _, err := ex.Submit(ctx, Ask{Requester: "tax", Officer: "o", Citizen: "p1", Service: "register", Fields: []string{"address"}, Purpose: "RESIDENCE", LegalBasis: "§3"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a request for a withdrawn service: %v", err)
		}
		if err := ex.SetValues(ctx, "holder", "register", "p1", map[string]string{"address": "x"}); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "withdrawn") {
			t.Fatalf("values for a withdrawn service: %v", err)
		}
		if _, err := ex.CreatePolicy(ctx, Policy{Requester: "tax", Service: "register", Fields: []string{"address"}, Purpose: "RESIDENCE", LegalBasis: "§3", Retention: Day}, "t"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "withdrawn") {
			t.Fatalf("a policy on a withdrawn service: %v", err)
		}
		if _, err := ex.PublishService(ctx, "tax", Service{ID: "register", Name: "Mine now", Fields: []Field{address}}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "another organisation") {
			t.Fatalf("another organisation takes a withdrawn service's id: %v", err)
		}
		// Its holder publishes it again: listed, empty, fed again.
		if svc, err := ex.PublishService(ctx, "holder", Service{ID: "register", Name: "Register again", Fields: []Field{address}}); err != nil || !svc.WithdrawnAt.IsZero() || !listed("register") || values("register") != 0 {
			t.Fatalf("published again: %+v %v", svc, err)
		}
		if err := ex.SetValues(ctx, "holder", "register", "p1", map[string]string{"address": "Via Po 2"}); err != nil {
			t.Fatal(err)
		}
		// Back to the schema before withdrawals: the tombstone goes, the
		// published service stays.
		if _, err := db.MigrateDown(ctx, 18); err != nil {
			t.Fatal(err)
		}
		var ids []string
		rows, err := db.Reader().QueryContext(ctx, `SELECT id FROM ex_services WHERE id IN ('register', 'old-register')`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		rows.Close()
		if !slices.Equal(ids, []string{"register"}) {
			t.Fatalf("after migrate down: %v, want only the published register", ids)
		}
	})
}

// TestStats: the operator's counters count each outcome once, when it
// commits, and nothing that was refused.
func TestStats(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, _, _ := auditExchange(t, db, 0)
		consentPolicies(t, ex, "tax")
		feedIncome(t, ex, "p1")
		ask := func(purpose string) *Request {
			t.Helper()
			r, err := ex.Submit(ctx, Ask{Requester: "tax", Officer: "o", Citizen: "p1", Service: "income", Fields: []string{"income"}, Purpose: purpose, LegalBasis: map[string]string{"AUDIT": "§1", "ASK": "§2", "OTHER": "§9"}[purpose]})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		must := func(_ *Request, err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		ask("AUDIT")
		ask("OTHER")
		ask("OTHER")
		collected, refused, withdrawn := ask("ASK"), ask("ASK"), ask("ASK")
		must(ex.Decide(ctx, "p1", collected.ID, true))
		must(ex.Decide(ctx, "p1", refused.ID, false))
		must(ex.Decide(ctx, "p1", withdrawn.ID, true))
		must(ex.Withdraw(ctx, "p1", withdrawn.ID))
		// The same answer again (a form sent twice): nothing changes, and
		// none of these counts.
		same := func(what string, r *Request, err error, state string) {
			t.Helper()
			if !errors.Is(err, ErrSameAnswer) || !errors.Is(err, ErrDecided) || r == nil || r.State != state {
				t.Fatalf("%s: %+v %v", what, r, err)
			}
		}
		r, err := ex.Decide(ctx, "p1", collected.ID, true)
		same("approved twice", r, err, Consented)
		r, err = ex.Decide(ctx, "p1", refused.ID, false)
		same("refused twice", r, err, RefusedConsent)
		r, err = ex.Withdraw(ctx, "p1", withdrawn.ID)
		same("withdrawn twice", r, err, RefusedConsent)
		if _, err := ex.Decide(ctx, "p1", withdrawn.ID, false); errors.Is(err, ErrSameAnswer) || !errors.Is(err, ErrDecided) {
			t.Fatalf("refusing what was withdrawn is another answer: %v", err)
		}
		must(ex.Collect(ctx, "tax", collected.ID))
		// Refused: none of these counts.
		if _, err := ex.Decide(ctx, "p1", refused.ID, true); err == nil {
			t.Fatal("a second answer was taken")
		}
		if _, err := ex.Withdraw(ctx, "p1", collected.ID); err == nil {
			t.Fatal("a collected consent was withdrawn")
		}
		if _, err := ex.Collect(ctx, "tax", collected.ID); err == nil {
			t.Fatal("collected twice")
		}
		if _, err := ex.Submit(ctx, Ask{Requester: "tax", Citizen: "p1", Service: "income", Fields: []string{"income"}, Purpose: "AUDIT", LegalBasis: "§1"}); err == nil {
			t.Fatal("a request without an officer was taken")
		}
		want := Stats{Released: 2, Denied: 2, Asked: 3, Given: 2, Refused: 1, Withdrawn: 1}
		if got := ex.Stats(); got != want {
			t.Fatalf("stats %+v, want %+v", got, want)
		}
	})
}

// BenchmarkRefit: what a change of a field's type costs in the write
// transaction (every value stored under the field is checked, holding the
// write lock), against a change of labels only (nothing to check) in the
// same run. SQLite; a register of 100,000 citizens with two fields each.
func BenchmarkRefit(b *testing.B) {
	ctx := context.Background()
	db := storetest.OpenMigrated(b, store.Options{DataDir: b.TempDir()}) // SQLite
	ex, _, _ := auditExchange(b, db, 0)
	const citizens = 100_000
	address := Field{Name: "address", Label: "Address", Type: "text"}
	size := Field{Name: "household", Label: "Household size", Type: "text"}
	publish := func(fs ...Field) {
		b.Helper()
		if _, err := ex.PublishService(ctx, "holder", Service{ID: "register", Name: "Register", Fields: fs}); err != nil {
			b.Fatal(err)
		}
	}
	publish(address, size)
	if err := db.Tx(ctx, func(tx *store.Tx) error {
		var rows [][]any
		for i := range citizens {
			p := fmt.Sprint("p", i)
			rows = append(rows, []any{"register", p, "address", "Via Roma " + fmt.Sprint(i), 0}, []any{"register", p, "household", fmt.Sprint(1 + i%7), 0})
			if len(rows) >= 1000 || i == citizens-1 {
				if err := tx.InsertRows(ctx, "ex_values", []string{"service_id", "person_id", "field", "value", "updated_at"}, rows); err != nil {
					return err
				}
				rows = rows[:0]
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	number := size
	number.Type = "number"
	relabelled := address
	var labels, types time.Duration
	runs := 0
	for b.Loop() {
		relabelled.Label = fmt.Sprint("Address ", runs)
		t0 := time.Now()
		publish(relabelled, size) // labels only
		t1 := time.Now()
		publish(relabelled, number) // 100,000 values checked as numbers
		labels, types, runs = labels+t1.Sub(t0), types+time.Since(t1), runs+1
		publish(relabelled, size) // back to text (100,000 checked again), untimed
	}
	b.ReportMetric(float64(labels.Microseconds())/1000/float64(runs), "ms-labels/op")
	b.ReportMetric(float64(types.Microseconds())/1000/float64(runs), "ms-retype/op")
	b.ReportMetric(float64(types)/float64(labels), "retype/labels")
}
