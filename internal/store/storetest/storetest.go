// Package storetest opens fresh civstack databases for tests: an embedded
// SQLite database in a temporary directory always, and a throwaway PostgreSQL
// database when CIVSTACK_TEST_POSTGRES holds a connection URL. Suites call
// Each so the same assertions run on every engine available.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"

	"github.com/civstack/civstack/internal/store"
)

// PostgresEnv names the variable holding the PostgreSQL URL for tests.
const PostgresEnv = "CIVSTACK_TEST_POSTGRES"

// Engine is one database engine a suite can run on.
type Engine struct {
	Name string
	// URL opens a brand-new, empty database and returns the Options that
	// reach it; every call gives another database, dropped when t ends.
	Open func(t testing.TB) store.Options
}

// Engines lists SQLite, and PostgreSQL when PostgresEnv is set. When it is
// not, it says so in the test log so that a skipped PostgreSQL run is visible.
func Engines(t testing.TB) []Engine {
	es := []Engine{{Name: "sqlite", Open: func(t testing.TB) store.Options {
		return store.Options{DataDir: t.TempDir()}
	}}}
	if base := os.Getenv(PostgresEnv); base != "" {
		es = append(es, Engine{Name: "postgres", Open: func(t testing.TB) store.Options {
			return store.Options{URL: NewPostgresDatabase(t, base)}
		}})
	} else {
		t.Logf("PostgreSQL suite skipped: set %s to a connection URL to run it", PostgresEnv)
	}
	return es
}

// Each runs fn as a subtest per engine, with a migrated, empty database.
func Each(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	for _, e := range Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			fn(t, OpenMigrated(t, e.Open(t)))
		})
	}
}

// OpenMigrated opens the database o names, migrates it, and closes it when
// t ends.
func OpenMigrated(t testing.TB, o store.Options) *store.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return db
}

// NewPostgresDatabase creates an empty database on the server base names and
// returns its URL; the database is dropped when t ends. A server that cannot
// be reached fails the test: a requested PostgreSQL run never skips.
func NewPostgresDatabase(t testing.TB, base string) string {
	t.Helper()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("%s: %v", PostgresEnv, err)
	}
	defer admin.Close()
	var b [6]byte
	rand.Read(b[:])
	name := "civstack_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create test database on %s: %v", PostgresEnv, err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer admin.Close()
		admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", PostgresEnv, err)
	}
	u.Path = "/" + name
	return u.String()
}
