package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// The storage conformance suite: the same assertions on every engine. It runs
// on SQLite always and on PostgreSQL when CIVSTACK_TEST_POSTGRES is set.

func TestConformance(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			t.Run("migrations", func(t *testing.T) { testMigrations(t, e) })
			t.Run("placeholders", func(t *testing.T) { testPlaceholders(t, storetest.OpenMigrated(t, e.Open(t))) })
			t.Run("types", func(t *testing.T) { testTypes(t, storetest.OpenMigrated(t, e.Open(t))) })
			t.Run("atomicity", func(t *testing.T) { testAtomicity(t, storetest.OpenMigrated(t, e.Open(t))) })
			t.Run("conflict", func(t *testing.T) { testConflict(t, storetest.OpenMigrated(t, e.Open(t))) })
			t.Run("batches", func(t *testing.T) { testBatches(t, storetest.OpenMigrated(t, e.Open(t))) })
			t.Run("two processes", func(t *testing.T) { testTwoProcesses(t, e) })
			t.Run("lease", func(t *testing.T) { testLease(t, e) })
		})
	}
}

func testMigrations(t *testing.T, e storetest.Engine) {
	ctx := context.Background()
	db := storetest.OpenMigrated(t, e.Open(t))
	v, err := db.SchemaVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v < 1 {
		t.Fatalf("schema version %d after migrate", v)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if v2, _ := db.SchemaVersion(ctx); v2 != v {
		t.Fatalf("second migrate changed version %d -> %d", v, v2)
	}
	// What migrate status shows before the database exists is what it
	// shows once it does, all applied.
	ms, _, err := db.Migrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	known := store.KnownMigrations(db.Dialect())
	if len(known) != len(ms) || known[len(known)-1].Version != v {
		t.Fatalf("%d migrations known, %d in the database, the newest %d", len(known), len(ms), v)
	}
	for i, m := range ms {
		if !m.Applied || known[i].Version != m.Version || known[i].Name != m.Name || known[i].Applied {
			t.Fatalf("migration %d: known as %+v, in the database %+v", i, known[i], m)
		}
	}
	for _, table := range []string{"people", "passkeys", "organisations", "org_roles", "memberships", "api_tokens", "sessions", "ceremonies", "setup_tokens", "meta"} {
		var n int
		if err := db.Reader().QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
			t.Errorf("table %s: %v", table, err)
		}
	}
}

// Both drivers must bind $N by number, not by order of appearance. (A bare
// parameter in a SELECT list has no type on PostgreSQL, so shared SQL casts.)
func testPlaceholders(t *testing.T, db *store.DB) {
	var a, b int64
	if err := db.Reader().QueryRow("SELECT CAST($2 AS BIGINT), CAST($1 AS BIGINT)", int64(10), int64(20)).Scan(&a, &b); err != nil {
		t.Fatal(err)
	}
	if a != 20 || b != 10 {
		t.Fatalf("SELECT $2, $1 with (10, 20) = (%d, %d), want (20, 10)", a, b)
	}
	var c int64
	if err := db.Reader().QueryRow("SELECT CAST($1 AS BIGINT) + CAST($1 AS BIGINT)", int64(21)).Scan(&c); err != nil {
		t.Fatal(err)
	}
	if c != 42 {
		t.Fatalf("$1 + $1 = %d", c)
	}
}

func testTypes(t *testing.T, db *store.DB) {
	ctx := context.Background()
	blob := []byte{0, 1, 2, 255, 0}
	const big = int64(1) << 60
	err := db.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO people (id, handle, display_name, demo, created_at) VALUES ($1, $2, $3, $4, $5)",
			"p1", blob, "Zoë 😀", true, big)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var gotBlob []byte
	var name string
	var demo bool
	var at int64
	err = db.Reader().QueryRowContext(ctx, "SELECT handle, display_name, demo, created_at FROM people WHERE id = $1", "p1").Scan(&gotBlob, &name, &demo, &at)
	if err != nil {
		t.Fatal(err)
	}
	if string(gotBlob) != string(blob) || name != "Zoë 😀" || !demo || at != big {
		t.Fatalf("round trip = %v %q %v %d", gotBlob, name, demo, at)
	}
	var n int
	if err := db.Reader().QueryRowContext(ctx, "SELECT COUNT(*) FROM people WHERE handle = $1 AND demo = $2", blob, true).Scan(&n); err != nil || n != 1 {
		t.Fatalf("match on blob and bool: n=%d err=%v", n, err)
	}
}

func testAtomicity(t *testing.T, db *store.DB) {
	ctx := context.Background()
	boom := errors.New("boom")
	err := db.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ($1, $2)", "a", "1"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Tx returned %v, want boom", err)
	}
	func() {
		defer func() { recover() }()
		db.Tx(ctx, func(tx *store.Tx) error {
			tx.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ($1, $2)", "b", "1")
			panic("half-way")
		})
	}()
	// A statement that fails mid-transaction rolls back the earlier ones.
	err = db.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ($1, $2)", "c", "1"); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ($1, $2)", "c", "2")
		return err
	})
	if !store.IsConflict(err) {
		t.Fatalf("duplicate insert error %v is not a conflict", err)
	}
	var n int
	if err := db.Reader().QueryRowContext(ctx, "SELECT COUNT(*) FROM meta").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows survived failed transactions", n)
	}
	// On SQLite the reader pool is read-only.
	if db.Dialect() == store.SQLite {
		if _, err := db.Reader().ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ('x', 'y')"); err == nil {
			t.Fatal("write through the SQLite reader succeeded")
		}
	}
}

func testConflict(t *testing.T, db *store.DB) {
	ctx := context.Background()
	ins := func() error {
		return db.Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ($1, $2)", "k", "v")
			return err
		})
	}
	if err := ins(); err != nil {
		t.Fatal(err)
	}
	err := ins()
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second insert = %v, want ErrConflict", err)
	}
	// ON CONFLICT DO NOTHING behaves the same on both engines.
	err = db.Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING", "k", "w")
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 0 {
			return fmt.Errorf("ON CONFLICT DO NOTHING affected %d rows", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Two civstack processes on one database: each has its own pool. They
// migrate at the same time, then race read-modify-write transactions on one
// row; serializable transactions with retries must lose no update.
func testTwoProcesses(t *testing.T, e storetest.Engine) {
	ctx := context.Background()
	opts := e.Open(t)
	var dbs [2]*store.DB
	for i := range dbs {
		db, err := store.Open(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, db := range dbs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = db.Migrate(ctx) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("process %d migrate: %v", i, err)
		}
	}
	if err := dbs[0].Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ('counter', '0')")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	const perWorker, workers = 25, 4
	errc := make(chan error, workers*2)
	for _, db := range dbs {
		for w := 0; w < workers; w++ {
			wg.Go(func() {
				for i := 0; i < perWorker; i++ {
					err := db.Tx(ctx, func(tx *store.Tx) error {
						var v string
						if err := tx.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = 'counter'").Scan(&v); err != nil {
							return err
						}
						var n int
						fmt.Sscan(v, &n)
						_, err := tx.ExecContext(ctx, "UPDATE meta SET value = $1 WHERE name = 'counter'", fmt.Sprint(n+1))
						return err
					})
					if err != nil {
						errc <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("increment: %v", err)
	}
	var v string
	if err := dbs[1].Reader().QueryRowContext(ctx, "SELECT value FROM meta WHERE name = 'counter'").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprint(2 * workers * perWorker); v != want {
		t.Fatalf("counter = %s after concurrent increments, want %s (lost updates)", v, want)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := store.Open(ctx, store.Options{URL: "postgres://nobody@127.0.0.1:1/none?connect_timeout=2"}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("unreachable PostgreSQL: %v", err)
	}
	if _, err := store.Open(ctx, store.Options{URL: "mysql://x"}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("bad URL: %v", err)
	}
	// A data directory that cannot be created (its parent is a file): this
	// fails for root too, unlike a read-only directory.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Open(ctx, store.Options{DataDir: filepath.Join(file, "data")}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("uncreatable data dir: %v", err)
	}
	// A read-only directory is refused by the write probe (root ignores
	// permissions, so this part runs only for other users).
	if !isRoot() {
		dir := t.TempDir()
		if err := chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		defer chmod(dir, 0o700)
		if _, err := store.Open(ctx, store.Options{DataDir: dir}); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("read-only data dir: %v", err)
		}
	}
}

// Exactly one process holds a lease; when it lets go or dies, another can
// take it.
func testLease(t *testing.T, e storetest.Engine) {
	ctx := context.Background()
	opts := e.Open(t)
	a, b := storetest.OpenMigrated(t, opts), storetest.OpenMigrated(t, opts)
	la, err := a.TryLease(ctx, "integrator")
	if err != nil || la == nil {
		t.Fatalf("first lease: %v %v", la, err)
	}
	if err := la.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if lb, err := b.TryLease(ctx, "integrator"); err != nil || lb != nil {
		t.Fatalf("second process got the lease too: %v %v", lb, err)
	}
	if lo, err := b.TryLease(ctx, "other job"); err != nil || lo == nil {
		t.Fatalf("another lease name: %v %v", lo, err)
	} else {
		lo.Release()
	}
	la.Release()
	la.Release()
	lb, err := b.TryLease(ctx, "integrator")
	if err != nil || lb == nil {
		t.Fatalf("lease after release: %v %v", lb, err)
	}
	if e.Name == "postgres" {
		// A holder whose process dies (its connection drops) loses the lease,
		// and finds out.
		if _, err := a.Reader().ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks
			WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`); err != nil {
			t.Fatal(err)
		}
		if err := lb.Check(ctx); err == nil {
			t.Fatal("a dead lease still checks out")
		}
		var lc store.Lease
		for i := 0; i < 50 && lc == nil; i++ {
			lc, err = a.TryLease(ctx, "integrator")
			time.Sleep(20 * time.Millisecond)
		}
		if lc == nil {
			t.Fatalf("lease not freed by the holder's death: %v", err)
		}
		lc.Release()
	} else {
		lb.Release()
	}
	testSharedLease(t, a, b)
}

// Any number of processes hold a lease shared; while one does, nobody
// takes it exclusively, and while somebody has it exclusively, nobody
// takes it shared.
func testSharedLease(t *testing.T, a, b *store.DB) {
	ctx := context.Background()
	sa, err := a.TryLeaseShared(ctx, "nodes")
	if err != nil || sa == nil {
		t.Fatalf("shared lease: %v %v", sa, err)
	}
	sb, err := b.TryLeaseShared(ctx, "nodes")
	if err != nil || sb == nil {
		t.Fatalf("a second shared holder: %v %v", sb, err)
	}
	if x, err := b.TryLease(ctx, "nodes"); err != nil || x != nil {
		t.Fatalf("exclusive lease while two hold it shared: %v %v", x, err)
	}
	sa.Release()
	if x, err := a.TryLease(ctx, "nodes"); err != nil || x != nil {
		t.Fatalf("exclusive lease while one still holds it shared: %v %v", x, err)
	}
	sb.Release()
	x, err := a.TryLease(ctx, "nodes")
	if err != nil || x == nil {
		t.Fatalf("exclusive lease once nobody holds it shared: %v %v", x, err)
	}
	if s, err := b.TryLeaseShared(ctx, "nodes"); err != nil || s != nil {
		t.Fatalf("shared lease while it is held exclusively: %v %v", s, err)
	}
	x.Release()
	s, err := b.TryLeaseShared(ctx, "nodes")
	if err != nil || s == nil {
		t.Fatalf("shared lease after the exclusive one: %v %v", s, err)
	}
	s.Release()
}

// metaBatch collects meta rows from many callers and inserts them at flush.
type metaBatch struct {
	rows    []string
	flushes *int
	fail    bool
}

func (b *metaBatch) Flush(ctx context.Context, tx *store.Tx) error {
	*b.flushes++
	for _, r := range b.rows {
		if _, err := tx.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ($1, 'batched')", r); err != nil {
			return err
		}
	}
	if b.fail {
		return errors.New("flush failed")
	}
	return nil
}

func testBatches(t *testing.T, db *store.DB) {
	ctx := context.Background()
	count := func() int {
		var n int
		db.Reader().QueryRowContext(ctx, "SELECT COUNT(*) FROM meta WHERE value = 'batched'").Scan(&n)
		return n
	}
	flushes := 0
	err := db.Tx(ctx, func(tx *store.Tx) error {
		for _, name := range []string{"b1", "b2", "b3"} {
			b := tx.Batch("meta", func() store.Flusher { return &metaBatch{flushes: &flushes} }).(*metaBatch)
			b.rows = append(b.rows, name)
		}
		if count() != 0 {
			return errors.New("a batch was written before the flush")
		}
		return nil
	})
	if err != nil || flushes != 1 || count() != 3 {
		t.Fatalf("one batch of three: err %v, %d flushes, %d rows", err, flushes, count())
	}
	// A failing flush rolls back the transaction, its own rows included.
	err = db.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ('direct', 'batched')"); err != nil {
			return err
		}
		b := tx.Batch("meta", func() store.Flusher { return &metaBatch{flushes: &flushes, fail: true} }).(*metaBatch)
		b.rows = append(b.rows, "b4")
		return nil
	})
	if err == nil || count() != 3 {
		t.Fatalf("failed flush: err %v, %d rows", err, count())
	}
	// A function that fails is never flushed.
	before := flushes
	db.Tx(ctx, func(tx *store.Tx) error {
		tx.Batch("meta", func() store.Flusher { return &metaBatch{flushes: &flushes} })
		return errors.New("no")
	})
	if flushes != before {
		t.Fatal("a batch of a failed transaction was flushed")
	}
}
