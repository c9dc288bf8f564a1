package store_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestBackupWhileWriting: a backup taken while a writer keeps appending log
// entries is a consistent snapshot (its counter matches its rows: no
// transaction is half in it), holds what was committed before it began,
// and restores to a working database: on SQLite the copy itself, on
// PostgreSQL pg_restore of the dump into an empty database.
func TestBackupWhileWriting(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
			opts := e.Open(t)
			db := storetest.OpenMigrated(t, opts)
			var committed atomic.Int64
			appendOne := func() error {
				return db.Tx(ctx, func(tx *store.Tx) error {
					var next int64
					if err := tx.QueryRowContext(ctx, "SELECT value FROM tlog_counters WHERE name = 'next'").Scan(&next); err != nil {
						return err
					}
					if _, err := tx.ExecContext(ctx, "INSERT INTO tlog_entries (idx, kind, data, created_at) VALUES ($1, 1, $2, 0)", next, []byte("entry")); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, "UPDATE tlog_counters SET value = $1 WHERE name = 'next'", next+1)
					return err
				})
			}
			for range 50 {
				if err := appendOne(); err != nil {
					t.Fatal(err)
				}
				committed.Add(1)
			}
			before := committed.Load()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var writeErr error
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := appendOne(); err != nil {
						writeErr = err
						return
					}
					committed.Add(1)
				}
			})
			dir := t.TempDir()
			path, err := db.Backup(ctx, dir, store.BackupOptions{})
			close(stop)
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if writeErr != nil {
				t.Fatalf("the writer failed during the backup: %v", writeErr)
			}
			if _, err := os.Stat(path + ".partial"); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a partial file is left: %v", err)
			}

			// Restore and read the copy.
			var restored *store.DB
			if e.Name == "sqlite" {
				info, err := store.CheckSQLiteCopy(ctx, path)
				if err != nil {
					t.Fatal(err)
				}
				if want, _ := db.SchemaVersion(ctx); info.Schema != want {
					t.Fatalf("the copy's schema is %d, want %d", info.Schema, want)
				}
				if info.Entries < before {
					t.Fatalf("the copy has %d entries, %d were committed before the backup began", info.Entries, before)
				}
				restored = storetest.OpenMigrated(t, store.Options{DataDir: dir})
			} else {
				pgRestore, err := exec.LookPath("pg_restore")
				if err != nil {
					t.Fatalf("the PostgreSQL suite needs pg_restore beside pg_dump: %v", err)
				}
				if n, err := store.CheckPgDump(ctx, path, ""); err != nil || n < 20 {
					t.Fatalf("the dump lists %d tables' data: %v", n, err)
				}
				target := storetest.NewPostgresDatabase(t, os.Getenv(storetest.PostgresEnv))
				if out, err := exec.Command(pgRestore, "--exit-on-error", "--no-owner", "--dbname="+target, path).CombinedOutput(); err != nil {
					t.Fatalf("pg_restore: %v\n%s", err, out)
				}
				restored = storetest.OpenMigrated(t, store.Options{URL: target})
			}
			var counter, rows int64
			if err := restored.Reader().QueryRowContext(ctx, "SELECT (SELECT value FROM tlog_counters WHERE name = 'next'), (SELECT COUNT(*) FROM tlog_entries)").Scan(&counter, &rows); err != nil {
				t.Fatal(err)
			}
			if counter != rows || rows < before || rows > committed.Load() {
				t.Fatalf("restored: counter %d, rows %d; committed %d before the backup, %d in all", counter, rows, before, committed.Load())
			}
			t.Logf("%s: %d entries in the copy (%d before it began, %d by the end)", e.Name, rows, before, committed.Load())
		})
	}
}

// TestBackupErrors: a pg_dump that cannot be found, and a copy that is no
// database or is damaged, are reported.
func TestBackupErrors(t *testing.T) {
	ctx := context.Background()
	for _, e := range storetest.Engines(t) {
		if e.Name != "postgres" {
			continue
		}
		db := storetest.OpenMigrated(t, e.Open(t))
		dir := t.TempDir()
		if _, err := db.Backup(ctx, dir, store.BackupOptions{PgDump: "/nonexistent/pg_dump"}); !errors.Is(err, store.ErrNoPgDump) {
			t.Fatalf("a missing pg_dump: %v", err)
		}
		if _, err := db.Backup(ctx, dir, store.BackupOptions{PgDump: "false"}); err == nil {
			t.Fatal("a failing pg_dump was not reported")
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("a failed dump left %v", left)
		}
		notDump := filepath.Join(dir, "x.pgdump")
		os.WriteFile(notDump, []byte("PGDMP? no"), 0o600)
		if _, err := store.CheckPgDump(ctx, notDump, ""); err == nil {
			t.Fatal("a file that is no dump passed")
		}
		os.Remove(notDump)
	}
	dir := t.TempDir()
	notDB := filepath.Join(dir, "x.db")
	os.WriteFile(notDB, []byte(strings.Repeat("not a database ", 500)), 0o600)
	if _, err := store.CheckSQLiteCopy(ctx, notDB); err == nil {
		t.Fatal("a file that is no database passed")
	}
	if _, err := store.CheckSQLiteCopy(ctx, filepath.Join(dir, "missing.db")); err == nil {
		t.Fatal("a missing file passed")
	}
	// A SQLite database that is not civstack's.
	other := filepath.Join(dir, "other.db")
	odb, err := sql.Open("sqlite", "file:"+other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := odb.Exec("CREATE TABLE notes (x TEXT)"); err != nil {
		t.Fatal(err)
	}
	odb.Close()
	if _, err := store.CheckSQLiteCopy(ctx, other); err == nil || !strings.Contains(err.Error(), "not a civstack database") {
		t.Fatalf("another program's database: %v", err)
	}
	db := storetest.OpenMigrated(t, store.Options{DataDir: t.TempDir()})
	path, err := db.Backup(ctx, dir, store.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CheckSQLiteCopy(ctx, path); err != nil {
		t.Fatalf("a fresh copy: %v", err)
	}
	// Damage a page in the middle of the copy.
	b, _ := os.ReadFile(path)
	for i := len(b) / 2; i < len(b)/2+4096 && i < len(b); i++ {
		b[i] ^= 0xA5
	}
	os.WriteFile(path, b, 0o600)
	if _, err := store.CheckSQLiteCopy(ctx, path); err == nil {
		t.Fatal("a damaged copy passed")
	} else {
		t.Logf("damaged copy: %v", err)
	}
}

// TestRestore: a backup put back replaces what came after it, on each
// engine; on SQLite the replaced database is kept beside; on PostgreSQL a
// dump cut short, or one whose SQL fails, changes nothing.
func TestRestore(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
			opts := e.Open(t)
			db := storetest.OpenMigrated(t, opts)
			entries := func(db *store.DB) (n int64) {
				t.Helper()
				if err := db.Reader().QueryRowContext(ctx, "SELECT COUNT(*) FROM tlog_entries").Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			add := func(db *store.DB, n int) {
				t.Helper()
				err := db.Tx(ctx, func(tx *store.Tx) error {
					for range n {
						if _, err := tx.ExecContext(ctx, "INSERT INTO tlog_entries (idx, kind, data, created_at) VALUES ((SELECT COALESCE(MAX(idx), -1) + 1 FROM tlog_entries), 1, $1, 0)", []byte("e")); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			add(db, 30)
			dir := t.TempDir()
			path, err := db.Backup(ctx, dir, store.BackupOptions{})
			if err != nil {
				t.Fatal(err)
			}
			add(db, 12)
			if _, err := db.Reader().ExecContext(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}

			if e.Name == "sqlite" {
				db.Close()
				replaced, err := store.ReplaceSQLite(opts.DataDir, path, "20261206T050000Z")
				if err != nil {
					t.Fatal(err)
				}
				restored := storetest.OpenMigrated(t, opts)
				if n := entries(restored); n != 30 {
					t.Fatalf("restored %d entries, want the backup's 30", n)
				}
				kept, err := store.CheckSQLiteCopy(ctx, replaced)
				if err != nil || kept.Schema == 0 {
					t.Fatalf("the replaced database %s: %v", replaced, err)
				}
				old, err := sql.Open("sqlite", "file:"+replaced+"?mode=ro")
				if err != nil {
					t.Fatal(err)
				}
				defer old.Close()
				var n int64
				if err := old.QueryRow("SELECT COUNT(*) FROM tlog_entries").Scan(&n); err != nil || n != 42 {
					t.Fatalf("the replaced database holds %d entries (%v), want 42", n, err)
				}
				return
			}

			// PostgreSQL. A table the backup does not know (a later
			// migration's) goes too: the schema is the backup's.
			if _, err := db.Reader().ExecContext(ctx, "CREATE TABLE later_migration (x INT)"); err != nil {
				t.Fatal(err)
			}
			// A dump cut short fails, and nothing changes.
			b, _ := os.ReadFile(path)
			short := filepath.Join(t.TempDir(), "short.pgdump")
			os.WriteFile(short, b[:len(b)*2/3], 0o600)
			if err := db.RestorePostgres(ctx, short, store.RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "nothing was changed") {
				t.Fatalf("a dump cut short: %v", err)
			} else {
				t.Logf("a dump cut short: %v", err)
			}
			if n := entries(db); n != 42 {
				t.Fatalf("after a failed restore %d entries, want 42", n)
			}
			// A backup a newer civstack made is refused, and nothing changes.
			if _, err := db.Reader().ExecContext(ctx, "INSERT INTO goose_db_version (version_id, is_applied) VALUES (999, true)"); err != nil {
				t.Fatal(err)
			}
			newer, err := db.Backup(ctx, t.TempDir(), store.BackupOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Reader().ExecContext(ctx, "DELETE FROM goose_db_version WHERE version_id = 999"); err != nil {
				t.Fatal(err)
			}
			if err := db.RestorePostgres(ctx, newer, store.RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "newer than this civstack knows") {
				t.Fatalf("a newer backup: %v", err)
			}
			if n := entries(db); n != 42 {
				t.Fatalf("after a refused restore %d entries, want 42", n)
			}
			if err := db.RestorePostgres(ctx, path, store.RestoreOptions{PgRestore: "/nonexistent/pg_restore"}); err == nil || !strings.Contains(err.Error(), "pg_restore not found") {
				t.Fatalf("no pg_restore: %v", err)
			}
			if err := db.RestorePostgres(ctx, path, store.RestoreOptions{}); err != nil {
				t.Fatal(err)
			}
			if n := entries(db); n != 30 {
				t.Fatalf("restored %d entries, want the backup's 30", n)
			}
			var later bool
			if err := db.Reader().QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE tablename = 'later_migration')").Scan(&later); err != nil || later {
				t.Fatalf("a table the backup does not hold survived the restore: %v %v", later, err)
			}
			if v, err := db.SchemaVersion(ctx); err != nil || v == 0 {
				t.Fatalf("schema after the restore: %d %v", v, err)
			}
			add(db, 1) // the restored database takes writes
		})
	}
}
