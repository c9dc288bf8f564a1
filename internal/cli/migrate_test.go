package cli

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

// TestMigrateCommand: status, up and down on a SQLite data directory; down
// needs --to and refuses while a node runs (one that holds the integrator
// lease, and one that does not); no node starts while it runs; a
// database a newer civstack migrated is refused by up and by serve's
// migration, and shown by status.
func TestMigrateCommand(t *testing.T) {
	data := t.TempDir()
	code, out, _ := run(t, nil, "migrate", "status", "--data", data)
	if code != 0 || !regexp.MustCompile(`\n30 +00030_payment_code_misses_per_shop\.sql +pending\n`).MatchString(out) || !strings.Contains(out, "30 pending") ||
		!strings.Contains(out, "civstack.db does not exist yet") {
		t.Fatalf("status of a new database: %d %q", code, out)
	}
	if left, _ := os.ReadDir(data); len(left) != 0 {
		t.Fatalf("status made %v", left)
	}
	if code, out, _ = run(t, nil, "migrate", "up", "--data", data); code != 0 || !strings.Contains(out, "from version 0 to 30") {
		t.Fatalf("up: %d %q", code, out)
	}
	if code, out, _ = run(t, nil, "migrate", "--data", data, "up"); code != 0 || !strings.Contains(out, "up to date (version 30)") {
		t.Fatalf("up again: %d %q", code, out)
	}
	code, _, stderr := run(t, nil, "migrate", "down", "--data", data)
	oneLine(t, "down without --to", code, 2, stderr, "needs --to VERSION")
	code, _, stderr = run(t, nil, "migrate", "sideways", "--data", data)
	oneLine(t, "unknown subcommand", code, 2, stderr, `unknown migrate command "sideways"`)
	code, _, stderr = run(t, nil, "migrate", "down", "--to", "0", "--data", data)
	oneLine(t, "down to 0", code, 1, stderr, "want version 1 or later")

	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lease, err := db.TryLease(ctx, tlog.LeaseName)
	if err != nil || lease == nil {
		t.Fatalf("lease: %v %v", lease, err)
	}
	code, _, stderr = run(t, nil, "migrate", "down", "--to", "11", "--data", data)
	oneLine(t, "down while a node runs", code, 1, stderr, "stop every node first")
	lease.Release()
	// A node that does not integrate (another holds the lease) still holds
	// the nodes' lease shared.
	present, err := db.TryLeaseShared(ctx, nodesLease)
	if err != nil || present == nil {
		t.Fatalf("nodes lease: %v %v", present, err)
	}
	code, _, stderr = run(t, nil, "migrate", "down", "--to", "11", "--data", data)
	oneLine(t, "down while a node that does not integrate runs", code, 1, stderr, "stop every node first")
	present.Release()
	// While a command that needs every node stopped runs, no node starts.
	alone, err := db.TryLease(ctx, nodesLease)
	if err != nil || alone == nil {
		t.Fatalf("nodes lease, exclusively: %v %v", alone, err)
	}
	code, _, stderr = run(t, nil, "demo", "--data", data)
	oneLine(t, "a node starting during migrate down", code, 1, stderr, "is running on SQLite at "+data+"/civstack.db: start again when it has finished")
	alone.Release()
	if code, out, _ = run(t, nil, "migrate", "down", "--to", "11", "--data", data); code != 0 || !strings.Contains(out, "undid migration 30\nundid migration 29\nundid migration 28\nundid migration 27\nundid migration 26\nundid migration 25\nundid migration 24\nundid migration 23\nundid migration 22\nundid migration 21\nundid migration 20\nundid migration 19\nundid migration 18\nundid migration 17\nundid migration 16\nundid migration 15\nundid migration 14\nundid migration 13\nundid migration 12\n") || !strings.Contains(out, "at version 11") {
		t.Fatalf("down to 11: %d %q", code, out)
	}
	if v, err := db.SchemaVersion(ctx); err != nil || v != 11 {
		t.Fatalf("version after down: %d %v", v, err)
	}
	if code, out, _ = run(t, nil, "migrate", "status", "--data", data); code != 0 || !strings.Contains(out, "19 pending") {
		t.Fatalf("status after down: %d %q", code, out)
	}
	if code, out, _ = run(t, nil, "migrate", "up", "--data", data); code != 0 || !strings.Contains(out, "from version 11 to 30") {
		t.Fatalf("up after down: %d %q", code, out)
	}

	// A newer civstack's migration 99.
	if err := db.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES (99, true)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run(t, nil, "migrate", "up", "--data", data)
	oneLine(t, "up on a newer schema", code, 1, stderr, "at version 99, this build knows up to 30")
	if err := db.Migrate(ctx); err == nil || !strings.Contains(err.Error(), "newer than this civstack") {
		t.Fatalf("serve's migration on a newer schema: %v", err)
	}
	if code, out, _ = run(t, nil, "migrate", "status", "--data", data); code != 0 || !strings.Contains(out, "at version 99, newer than this civstack") {
		t.Fatalf("status of a newer schema: %d %q", code, out)
	}
}

// A node whose share of the nodes' lease was lost (PostgreSQL ended its
// connection) takes it again, so migrate down keeps seeing it.
func TestPresenceHeldAgainOnPostgres(t *testing.T) {
	base := os.Getenv(storetest.PostgresEnv)
	if base == "" {
		t.Skipf("PostgreSQL suite skipped: set %s to run it", storetest.PostgresEnv)
	}
	ctx := context.Background()
	db := storetest.OpenMigrated(t, store.Options{URL: storetest.NewPostgresDatabase(t, base)})
	l, err := db.TryLeaseShared(ctx, nodesLease)
	if err != nil || l == nil {
		t.Fatalf("nodes lease: %v %v", l, err)
	}
	p := &presence{lease: l}
	defer p.release()
	logs := &syncBuf{}
	holdCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.hold(holdCtx, db, 20*time.Millisecond, slog.New(slog.NewTextHandler(logs, nil)))
	}()
	defer func() { stop(); <-done }()
	holders := func() []int { return sharedLeaseHolders(t, db) }
	before := holders()
	if len(before) != 1 {
		t.Fatalf("holders of the nodes' lease: %v", before)
	}
	if _, err := db.Reader().ExecContext(ctx, `SELECT pg_terminate_backend($1)`, before[0]); err != nil {
		t.Fatal(err)
	}
	var after []int
	for i := 0; i < 250; i++ {
		// The node logs the lease after PostgreSQL grants it: wait for both.
		if after = holders(); len(after) == 1 && after[0] != before[0] && strings.Contains(logs.String(), "nodes lease taken again") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(after) != 1 || after[0] == before[0] || !strings.Contains(logs.String(), "nodes lease taken again") {
		t.Fatalf("holders after the connection died: %v (before %v); logs %q", after, before, logs.String())
	}
	if x, err := db.TryLease(ctx, nodesLease); err != nil || x != nil {
		t.Fatalf("exclusive lease while the node holds its share again: %v %v", x, err)
	}
}

// sharedLeaseHolders lists the backends that hold an advisory lock shared
// in db's PostgreSQL database (the nodes' lease is the only one taken so).
func sharedLeaseHolders(t *testing.T, db *store.DB) (pids []int) {
	t.Helper()
	rows, err := db.Reader().QueryContext(context.Background(), `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock' AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return pids
}

// TestCommandsNeedTheirDatabase: the commands that read or change a
// node's database refuse a data directory without one (a typo in --data)
// with one line, and make nothing there; migrate up makes it.
func TestCommandsNeedTheirDatabase(t *testing.T) {
	data := filepath.Join(t.TempDir(), "civstak-data")
	for _, args := range [][]string{{"migrate", "down", "--to", "1"}, {"log", "reindex"}, {"keys", "rotate", "document"}, {"backup", "--out", filepath.Join(t.TempDir(), "b")}} {
		code, _, stderr := run(t, nil, append(args, "--data", data)...)
		oneLine(t, strings.Join(args[:2], " "), code, 1, stderr, "no civstack database in "+data)
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Fatalf("%s made %s: %v", strings.Join(args[:2], " "), data, err)
		}
	}
	if code, out, _ := run(t, nil, "migrate", "up", "--data", data); code != 0 || !strings.Contains(out, "from version 0 to") {
		t.Fatalf("up: %d %q", code, out)
	}
	if code, _, stderr := run(t, nil, "log", "reindex", "--data", data, "--quiet"); code != 0 {
		t.Fatalf("reindex once the database is made: %d %q", code, stderr)
	}
}
