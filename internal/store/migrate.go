package store

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/civstack/civstack/internal/filelock"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations
var migrations embed.FS

// Migrate brings the schema up to date. Several processes may call it at once
// on one database: on PostgreSQL a session advisory lock, on SQLite an
// exclusive lock on a file in the data directory, lets one apply the
// migrations while the others wait, then find nothing left to do.
func (db *DB) Migrate(ctx context.Context) error { return db.migrate(ctx, 0) }

// MigrateTo applies the migrations up to version only (tests of data
// migrations start from an older schema with data in it).
func (db *DB) MigrateTo(ctx context.Context, version int64) error {
	if version <= 0 {
		return fmt.Errorf("migrate to version %d: want a positive version", version)
	}
	return db.migrate(ctx, version)
}

// migrate applies the migrations up to version (0: all).
func (db *DB) migrate(ctx context.Context, version int64) error {
	return db.withProvider(ctx, func(p *goose.Provider) error {
		if err := db.checkNotNewer(ctx, p); err != nil {
			return err
		}
		var results []*goose.MigrationResult
		var err error
		if version > 0 {
			results, err = p.UpTo(ctx, version)
		} else {
			results, err = p.Up(ctx)
		}
		if err != nil {
			return fmt.Errorf("migrate %s: %w", db.dialect, err)
		}
		for _, r := range results {
			db.logger.Info("applied migration", "version", r.Source.Version, "file", r.Source.Path)
		}
		return nil
	})
}

// ErrSchemaNewer is returned when the database's schema is newer than
// every migration this build knows: a newer civstack migrated it.
var ErrSchemaNewer = errors.New("the database's schema is newer than this civstack")

// checkNotNewer refuses a database a newer build has migrated.
func (db *DB) checkNotNewer(ctx context.Context, p *goose.Provider) error {
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("schema version: %w", err)
	}
	if known := latest(p); current > known {
		return fmt.Errorf("%w: it is at version %d, this build knows up to %d; run the newer civstack, or roll the database back with its \"civstack migrate down --to %d\"",
			ErrSchemaNewer, current, known, known)
	}
	return nil
}

// KnownVersion is the newest migration this build knows for dialect d: a
// database (or a backup) past it was migrated by a newer civstack.
func KnownVersion(d Dialect) int64 {
	entries, _ := fs.ReadDir(migrations, "migrations/"+string(d))
	var v int64
	for _, e := range entries {
		head, _, _ := strings.Cut(e.Name(), "_")
		if n, err := strconv.ParseInt(head, 10, 64); err == nil {
			v = max(v, n)
		}
	}
	return v
}

// KnownMigrations lists the migrations this civstack has for dialect d,
// oldest first, none applied: the status of a database not made yet.
func KnownMigrations(d Dialect) []Migration {
	entries, _ := fs.ReadDir(migrations, "migrations/"+string(d))
	var out []Migration
	for _, e := range entries {
		head, _, _ := strings.Cut(e.Name(), "_")
		if n, err := strconv.ParseInt(head, 10, 64); err == nil && strings.HasSuffix(e.Name(), ".sql") {
			out = append(out, Migration{Version: n, Name: e.Name()})
		}
	}
	slices.SortFunc(out, func(a, b Migration) int { return cmp.Compare(a.Version, b.Version) })
	return out
}

func latest(p *goose.Provider) int64 {
	var v int64
	for _, s := range p.ListSources() {
		v = max(v, s.Version)
	}
	return v
}

// MigrateDown undoes, newest first, every applied migration after version
// (each in its own transaction: a failing one leaves the schema at the
// version before it) and returns the versions it undid. It is for rolling
// a node back to an older civstack, which knows only the migrations up to
// version; the node must be stopped. Contract: the data the undone
// migrations moved is moved back (an access record stays an access record
// in the older schema); what only the newer schema holds is dropped.
func (db *DB) MigrateDown(ctx context.Context, version int64) ([]int64, error) {
	if version < 1 {
		return nil, fmt.Errorf("migrate down to version %d: want version 1 or later (to remove a node's data, remove its database)", version)
	}
	var undone []int64
	err := db.withProvider(ctx, func(p *goose.Provider) error {
		if version > latest(p) {
			return fmt.Errorf("migrate down to version %d: this build knows up to version %d", version, latest(p))
		}
		if err := db.checkNotNewer(ctx, p); err != nil {
			return err
		}
		results, err := p.DownTo(ctx, version)
		for _, r := range results {
			if r.Error == nil {
				undone = append(undone, r.Source.Version)
				db.logger.Info("undid migration", "version", r.Source.Version, "file", r.Source.Path)
			}
		}
		if err != nil {
			return fmt.Errorf("migrate %s down: %w", db.dialect, err)
		}
		return nil
	})
	return undone, err
}

// Migration is one migration this build knows, and whether the database
// has it.
type Migration struct {
	Version   int64
	Name      string // the file's name
	Applied   bool
	AppliedAt time.Time
}

// Migrations lists the migrations this build knows, oldest first, with
// whether each is applied; newer is the database's version if a newer
// build migrated it past them (0 otherwise).
func (db *DB) Migrations(ctx context.Context) (ms []Migration, newer int64, err error) {
	err = db.withProvider(ctx, func(p *goose.Provider) error {
		st, err := p.Status(ctx)
		if err != nil {
			return fmt.Errorf("migrations: %w", err)
		}
		for _, s := range st {
			ms = append(ms, Migration{Version: s.Source.Version, Name: filepath.Base(s.Source.Path), Applied: s.State == goose.StateApplied, AppliedAt: s.AppliedAt})
		}
		current, err := p.GetDBVersion(ctx)
		if err != nil {
			return fmt.Errorf("schema version: %w", err)
		}
		if current > latest(p) {
			newer = current
		}
		return nil
	})
	return ms, newer, err
}

// withProvider runs fn with a goose provider for this database's
// migrations, holding SQLite's migration lock (PostgreSQL's is taken by
// the provider itself for each run).
func (db *DB) withProvider(ctx context.Context, fn func(*goose.Provider) error) error {
	if db.dialect == SQLite {
		unlock, err := filelock.Lock(filepath.Join(db.dir, "migrate.lock"))
		if err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		defer unlock()
	}
	sub, err := fs.Sub(migrations, "migrations/"+string(db.dialect))
	if err != nil {
		return fmt.Errorf("migrations for %s: %w", db.dialect, err)
	}
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	dialect := goose.DialectSQLite3
	if db.dialect == Postgres {
		dialect = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, db.write, sub, opts...)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	return fn(p)
}

// SchemaVersion reports the newest applied migration.
func (db *DB) SchemaVersion(ctx context.Context) (int64, error) {
	var v int64
	err := db.read.QueryRowContext(ctx, "SELECT COALESCE(MAX(version_id), 0) FROM goose_db_version WHERE is_applied = $1", true).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return v, nil
}
