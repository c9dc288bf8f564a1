package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path/filepath"

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
	if db.dialect == SQLite {
		unlock, err := lockFile(filepath.Join(db.dir, "migrate.lock"))
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
	var results []*goose.MigrationResult
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
