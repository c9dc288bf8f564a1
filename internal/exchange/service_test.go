package exchange

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// TestRetypeWhileStoring: a change of a field's type reads the stored
// values off the write lock, so the service's row carries a mark while it
// does: a value stored meanwhile must fit the new type too, another change
// of the service's fields waits, and a refusal, a failure or a withdrawal
// removes the mark. A mark whose node went down (older than pendingStale)
// is replaced by the next change.
func TestRetypeWhileStoring(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now := time.Now()
		ex, _, _ := clockedExchange(t, db, 0, func() time.Time { return now })
		address := Field{Name: "address", Label: "Address", Type: "text"}
		size := Field{Name: "household", Label: "Household size", Type: "text"}
		number := size
		number.Type = "number"
		publish := func(fs ...Field) error {
			_, err := ex.PublishService(ctx, "holder", Service{ID: "register", Name: "Register", Fields: fs})
			return err
		}
		set := func(person, field, v string) error {
			return ex.SetValues(ctx, "holder", "register", person, map[string]string{field: v})
		}
		must := func(what string, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		inUse := func(what string, err error, want string) {
			t.Helper()
			if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), want) {
				t.Fatalf("%s: want ErrInUse saying %q, got %v", what, want, err)
			}
		}
		published := func() Field {
			t.Helper()
			svc, err := ex.Service(ctx, "register")
			must("the service", err)
			return svc.Fields[1]
		}
		marked := func() bool {
			t.Helper()
			var n int
			must("the mark", db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM ex_services WHERE id = 'register' AND pending IS NOT NULL`).Scan(&n))
			return n == 1
		}
		must("publish", publish(address, size))
		must("p1", set("p1", "household", "3"))

		// While the values are read: a value the new type refuses is
		// refused, one it takes is stored, other fields are as before,
		// and another change of the fields waits.
		during := 0
		ex.hook = func(point string) error {
			if point != "retype-check" {
				return nil
			}
			during++
			if !marked() {
				t.Error("no mark while the values are read")
			}
			inUse("a value the new type refuses", set("p2", "household", "three"), `the field "household" is being changed to the type number`)
			if err := set("p2", "household", "4"); err != nil {
				t.Errorf("a value both types take: %v", err)
			}
			if err := set("p2", "address", "anything"); err != nil {
				t.Errorf("a field the change leaves alone: %v", err)
			}
			relabelled := address
			relabelled.Label = "Home"
			inUse("another change meanwhile", publish(relabelled, size), "is still checking the stored values")
			return nil
		}
		must("household becomes a number", publish(address, number))
		if during != 1 || published() != number || marked() {
			t.Fatalf("after the change: checked %d times, household %+v, marked %v", during, published(), marked())
		}
		if err := set("p2", "household", "three"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a value the published type refuses: %v", err)
		}
		ex.hook = nil

		// A refusal removes the mark.
		must("back to text", publish(address, size))
		must("p3", set("p3", "household", "four"))
		inUse("a type a value does not fit", publish(address, number), "1 of its stored values does not fit")
		if marked() || published() != size {
			t.Fatalf("after a refusal: marked %v, household %+v", marked(), published())
		}
		must("a value of the old type once the change is refused", set("p4", "household", "five"))
		for _, p := range []string{"p3", "p4"} {
			must("removing "+p, ex.RemoveValues(ctx, "holder", "register", p, nil))
		}

		// So does a failure while the values are read.
		gone := errors.New("the read pool went away")
		ex.hook = func(point string) error { return gone }
		if err := publish(address, number); !errors.Is(err, gone) || marked() || published() != size {
			t.Fatalf("a failure while checking: %v, marked %v, household %+v", err, marked(), published())
		}

		// And a caller who gives up meanwhile.
		gaveUp, cancel := context.WithCancel(ctx)
		ex.hook = func(point string) error { cancel(); return nil }
		if _, err := ex.PublishService(gaveUp, "holder", Service{ID: "register", Name: "Register", Fields: []Field{address, number}}); !errors.Is(err, context.Canceled) || marked() || published() != size {
			t.Fatalf("a change given up while checking: %v, marked %v, household %+v", err, marked(), published())
		}

		// A withdrawal meanwhile wins: the change is not published.
		ex.hook = func(point string) error { return ex.WithdrawService(ctx, "holder", "register") }
		inUse("a withdrawal while checking", publish(address, number), "changed or withdrawn while its values were checked")
		var withdrawn, fields string
		must("the withdrawn service", db.Reader().QueryRowContext(ctx, `SELECT CASE WHEN withdrawn_at IS NULL THEN 'no' ELSE 'yes' END, fields FROM ex_services WHERE id = 'register'`).Scan(&withdrawn, &fields))
		if withdrawn != "yes" || strings.Contains(fields, "number") || marked() {
			t.Fatalf("after a withdrawal while checking: withdrawn %s, fields %s, marked %v", withdrawn, fields, marked())
		}
		ex.hook = nil
		must("published again", publish(address, size))

		// A mark left by a node that went down holds until it is stale,
		// then the next change replaces it.
		crashed := &pendingFields{Token: "crashed", Since: now.UnixMilli(), Fields: []Field{number}}
		must("a crashed change's mark", db.Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE ex_services SET pending = $1 WHERE id = 'register'`, crashed.text())
			return err
		}))
		inUse("a value while a crashed change's mark holds", set("p5", "household", "nine"), "type number")
		relabelled := size
		relabelled.Label = "People at home"
		inUse("a change while the mark is fresh", publish(address, relabelled), "is still checking")
		now = now.Add(pendingStale + time.Second)
		must("a change once the mark is stale", publish(address, relabelled))
		if marked() || published() != relabelled {
			t.Fatalf("after replacing a stale mark: marked %v, household %+v", marked(), published())
		}
		must("a value once the stale mark is gone", set("p5", "household", "nine"))
	})
}

// TestRetypeRace: holders' systems store values while a field's type
// changes back and forth. Whenever the change to a number is published, no
// stored value under the field may be anything else, whichever way the
// writes and the check interleave (a write that slips in before the mark
// makes the check refuse the change; one after it must fit the new type).
func TestRetypeRace(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, size, number, publish := householdRegister(t, db)
		const citizens = 20_000 // so that reading them takes a while
		storeValues(t, db, citizens, func(int) map[string]string { return map[string]string{"household": "1"} })
		words := func() int {
			t.Helper()
			var n int
			if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM ex_values WHERE service_id = 'register' AND value = 'seven'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var stored, refused atomic.Int64
		var checking atomic.Bool
		ex.hook = func(point string) error {
			checking.Store(point == "retype-check" || checking.Load())
			return nil
		}
		for w := range 3 {
			wg.Go(func() {
				for i := w; ; i += 3 {
					select {
					case <-stop:
						return
					default:
					}
					// Words mostly while the values are read; now and
					// then before (and the change is refused).
					v := fmt.Sprint(i % 9)
					if (checking.Load() && i%4 == 0) || i%97 == 0 {
						v = "seven"
					}
					err := ex.SetValues(ctx, "holder", "register", fmt.Sprintf("p%06d", (i*7919)%citizens), map[string]string{"household": v})
					switch {
					case err == nil:
						stored.Add(1)
					case errors.Is(err, ErrInUse) || errors.Is(err, ErrInvalid):
						refused.Add(1)
					default:
						t.Error(err)
						return
					}
				}
			})
		}
		published, declined := 0, 0
		for round := 0; published < 4 && round < 40; round++ {
			if err := db.Tx(ctx, func(tx *store.Tx) error {
				_, err := tx.ExecContext(ctx, `DELETE FROM ex_values WHERE service_id = 'register' AND value = 'seven'`)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			err := publish(number)
			checking.Store(false)
			switch {
			case err == nil:
				published++
				if n := words(); n != 0 {
					t.Errorf("household is a number, yet %d stored values are words", n)
				}
			case errors.Is(err, ErrInUse) && strings.Contains(err.Error(), "of its stored values"):
				declined++
			default:
				t.Fatal(err)
			}
			if err := publish(size); err != nil {
				t.Fatal(err)
			}
		}
		close(stop)
		wg.Wait()
		t.Logf("changes to a number: %d published, %d refused; values: %d stored, %d refused", published, declined, stored.Load(), refused.Load())
		if published == 0 || stored.Load() == 0 || refused.Load() == 0 {
			t.Fatalf("the race was not run: %d changes published, %d values stored, %d refused", published, stored.Load(), refused.Load())
		}
	})
}

// TestRetypeAfterAWrite: a holder's system stores a value the new type
// refuses, and before it commits, the holder changes the field's type.
// The change waits for the write (on SQLite for the one write lock, on
// PostgreSQL for the row the write holds) and then refuses, instead of
// marking the row, reading the values without the word and publishing a
// type the word, committed after, does not fit.
func TestRetypeAfterAWrite(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, _, number, publish := householdRegister(t, db)
		inside, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		ex.hook = func(point string) error {
			if point == "set-values" {
				once.Do(func() { close(inside) })
				<-release
			}
			return nil
		}
		wrote := make(chan error, 1)
		go func() {
			wrote <- ex.SetValues(ctx, "holder", "register", "p1", map[string]string{"household": "seven"})
		}()
		<-inside
		changed := make(chan error, 1)
		go func() { changed <- publish(number) }()
		select {
		case err := <-changed:
			close(release)
			t.Fatalf("the change did not wait for the write in flight: %v (the write then: %v)", err, <-wrote)
		case <-time.After(200 * time.Millisecond):
		}
		close(release)
		if err := <-wrote; err != nil {
			t.Fatalf("the write: %v", err)
		}
		err := <-changed
		var words int
		if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM ex_values WHERE value = 'seven'`).Scan(&words); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "1 of its stored values does not fit") || words != 1 {
			t.Fatalf("the change after the write: %v (%d words stored)", err, words)
		}
	})
}

// TestMisfitsByChunk: the check of a new type reads the stored values a
// chunk at a time and counts every one that does not fit, across chunks,
// exactly once.
func TestMisfitsByChunk(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		other := Field{Name: "note", Label: "Note", Type: "text"}
		_, _, number, publish := householdRegister(t, db, other)
		const citizens = 2*misfitChunk + 1
		storeValues(t, db, citizens, func(i int) map[string]string {
			v := "many" // p004095, the first chunk's last, too
			if i%3 == 1 {
				v = "2"
			}
			return map[string]string{"household": v, "note": "a note"}
		})
		want := citizens - (citizens+1)/3
		err := publish(number, other)
		if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), fmt.Sprintf(": %d of its stored values do not fit", want)) {
			t.Fatalf("want %d of %d values counted, got %v", want, citizens, err)
		}
	})
}

// householdRegister publishes the holder's register with a text field,
// household, and then fields, and returns the exchange, the field, the
// field as a number, and a publish of the register's fields.
func householdRegister(t testing.TB, db *store.DB, fields ...Field) (*Exchange, Field, Field, func(...Field) error) {
	t.Helper()
	ex, _, _ := auditExchange(t, db, 0)
	size := Field{Name: "household", Label: "Household size", Type: "text"}
	number := size
	number.Type = "number"
	publish := func(fs ...Field) error {
		_, err := ex.PublishService(context.Background(), "holder", Service{ID: "register", Name: "Register", Fields: fs})
		return err
	}
	if err := publish(append([]Field{size}, fields...)...); err != nil {
		t.Fatal(err)
	}
	return ex, size, number, publish
}

// storeValues stores the register's values for citizens 0 to n-1 straight
// into the table, a thousand rows a statement: values(i) gives citizen i's
// fields and values.
func storeValues(t testing.TB, db *store.DB, n int, values func(i int) map[string]string) {
	t.Helper()
	ctx := context.Background()
	if err := db.Tx(ctx, func(tx *store.Tx) error {
		var rows [][]any
		for i := range n {
			for f, v := range values(i) {
				rows = append(rows, []any{"register", fmt.Sprintf("p%06d", i), f, v, 0})
			}
			if len(rows) >= 1000 || i == n-1 {
				if err := tx.InsertRows(ctx, "ex_values", []string{"service_id", "person_id", "field", "value", "updated_at"}, rows); err != nil {
					return err
				}
				rows = rows[:0]
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
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

// BenchmarkRefit: what a change of a field's type costs, against a change
// of labels only (nothing to check) in the same run, and how long another
// holder's write waits meanwhile: the longest of a writer storing values in
// another service throughout, while each kind of change runs, and while
// the stored values are checked inside a write transaction, as they were
// before the check moved off the write lock (the baseline). SQLite; a
// register of 100,000 citizens with two fields each.
func BenchmarkRefit(b *testing.B) {
	ctx := context.Background()
	db := storetest.OpenMigrated(b, store.Options{DataDir: b.TempDir()}) // SQLite
	address := Field{Name: "address", Label: "Address", Type: "text"}
	ex, size, number, publishing := householdRegister(b, db, address)
	publish := func(fs ...Field) {
		b.Helper()
		if err := publishing(fs...); err != nil {
			b.Fatal(err)
		}
	}
	const citizens = 100_000
	storeValues(b, db, citizens, func(i int) map[string]string {
		return map[string]string{"address": fmt.Sprint("Via Roma ", i), "household": fmt.Sprint(1 + i%7)}
	})
	relabelled := address
	if _, err := ex.PublishService(ctx, "other-holder", Service{ID: "other", Name: "Other", Fields: []Field{address}}); err != nil {
		b.Fatal(err)
	}
	// The writer: phase says which change runs (0: none), waits holds the
	// longest write seen in each.
	const none, labelsOnly, retyping, inLock = 0, 1, 2, 3
	var phase atomic.Int32
	var mu sync.Mutex
	waits := [4]time.Duration{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			at, t0 := phase.Load(), time.Now()
			if err := ex.SetValues(ctx, "other-holder", "other", fmt.Sprint("q", i%1000), map[string]string{"address": fmt.Sprint("Via Po ", i)}); err != nil {
				b.Error(err)
				return
			}
			d := time.Since(t0)
			mu.Lock()
			waits[at] = max(waits[at], d)
			mu.Unlock()
		}
	})
	timed := func(p int32, f func()) time.Duration {
		phase.Store(p)
		t0 := time.Now()
		f()
		d := time.Since(t0)
		phase.Store(none)
		time.Sleep(time.Millisecond) // a write begun under p ends under p's count
		return d
	}
	var labels, types time.Duration
	runs := 0
	for b.Loop() {
		relabelled.Label = fmt.Sprint("Address ", runs)
		labels += timed(labelsOnly, func() { publish(size, relabelled) })
		types += timed(retyping, func() { publish(number, relabelled) }) // 100,000 values checked as numbers
		publish(size, relabelled)                                        // back to text (checked again), untimed
		timed(inLock, func() {
			if err := db.Tx(ctx, func(tx *store.Tx) error {
				return refit(ctx, tx, "register", []Field{size, relabelled}, []Field{number, relabelled})
			}); err != nil {
				b.Fatal(err)
			}
		})
		runs++
	}
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(labels.Microseconds())/1000/float64(runs), "ms-labels/op")
	b.ReportMetric(float64(types.Microseconds())/1000/float64(runs), "ms-retype/op")
	b.ReportMetric(float64(types)/float64(labels), "retype/labels")
	b.ReportMetric(float64(waits[labelsOnly].Microseconds())/1000, "ms-write-max-labels")
	b.ReportMetric(float64(waits[retyping].Microseconds())/1000, "ms-write-max-retype")
	b.ReportMetric(float64(waits[inLock].Microseconds())/1000, "ms-write-max-in-lock")
	b.ReportMetric(float64(waits[inLock])/float64(max(waits[retyping], 1)), "in-lock/retype-wait")
}
