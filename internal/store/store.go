// Package store owns the connection to civstack's SQL database: it opens
// embedded SQLite (the default, in the data directory) or PostgreSQL, applies
// the per-dialect goose migrations, and runs write transactions with retries on
// serialization failures. Every other package writes one SQL text with $N
// placeholders that both engines accept.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// Dialect names the SQL engine behind a DB.
type Dialect string

// The engines civstack runs on.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// Sentinel errors callers match with errors.Is.
var (
	// ErrNotFound is returned when a row that must exist does not.
	ErrNotFound = errors.New("not found")
	// ErrConflict is returned when a write breaks a uniqueness rule.
	ErrConflict = errors.New("already exists")
	// ErrUnavailable wraps failures to reach or open the database.
	ErrUnavailable = errors.New("database unavailable")
)

// Options say which database to open.
type Options struct {
	// URL is a postgres:// or postgresql:// connection URL. Empty means the
	// embedded SQLite database in DataDir.
	URL string
	// DataDir holds civstack.db when URL is empty.
	DataDir string
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
}

// DB is an open civstack database. It is safe for concurrent use.
type DB struct {
	dialect Dialect
	write   *sql.DB // SQLite: a single connection; PostgreSQL: the pool
	read    *sql.DB // SQLite: a read-only pool; PostgreSQL: the same pool
	logger  *slog.Logger
	dir     string // SQLite: the data directory
	url     string // PostgreSQL: the connection URL (for pg_dump)

	prepared     preparedCache // SQLite: statements prepared on the writer (prepared.go)
	readPrepared readStmts     // SQLite: statements prepared on the read pool
}

// Open connects to the database Options name and checks it answers. It does
// not migrate; call Migrate.
func Open(ctx context.Context, o Options) (*DB, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if o.URL != "" {
		return openPostgres(ctx, o.URL, logger)
	}
	return openSQLite(ctx, o.DataDir, logger)
}

func openPostgres(ctx context.Context, rawURL string, logger *slog.Logger) (*DB, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("%w: --db must be a postgres:// URL", ErrUnavailable)
	}
	// Writes get a pool of their own, so that a write transaction (often
	// one that many requests wait on, like a log batch) never queues for a
	// connection behind a crowd of reads. Each keeps as many idle as open:
	// under load, closing idle connections and opening new ones (a backend
	// process each) made every statement wait milliseconds.
	open := func(n int) (*sql.DB, error) {
		p, err := sql.Open("pgx", rawURL)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		p.SetMaxOpenConns(n)
		p.SetMaxIdleConns(n)
		p.SetConnMaxIdleTime(5 * time.Minute)
		return p, nil
	}
	write, err := open(8)
	if err != nil {
		return nil, err
	}
	read, err := open(16)
	if err != nil {
		write.Close()
		return nil, err
	}
	db := &DB{dialect: Postgres, write: write, read: read, logger: logger, url: rawURL}
	// A first connection may take longer than a readiness check allows
	// (a server starting, a busy machine); the error says why it failed.
	if err := db.ping(ctx, 15*time.Second); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: cannot reach PostgreSQL at %s: %v", ErrUnavailable, redactURL(u), rootCause(err))
	}
	return db, nil
}

func openSQLite(ctx context.Context, dir string, logger *slog.Logger) (*DB, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: no data directory given", ErrUnavailable)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: cannot create data directory %s: %v", ErrUnavailable, dir, rootCause(err))
	}
	if err := checkWritable(dir); err != nil {
		return nil, fmt.Errorf("%w: data directory %s is not writable: %v", ErrUnavailable, dir, rootCause(err))
	}
	path := filepath.Join(dir, SQLiteFile)
	common := "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)"
	// The writer keeps up to 128 MiB of pages (batches touch many) and its
	// statement journals in memory. (Checkpoints from a connection of their
	// own, off the commit path, measured no faster: docs/ledger.md.)
	write, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_txlock=immediate&_pragma=cache_size(-131072)&_pragma=temp_store(MEMORY)&"+common)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	// One writer: SQLite serialises writes anyway, and a single connection
	// turns lock contention into queueing instead of SQLITE_BUSY errors.
	write.SetMaxOpenConns(1)
	write.SetConnMaxIdleTime(0)
	write.SetConnMaxLifetime(0)
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("%w: cannot open %s: %v", ErrUnavailable, path, rootCause(err))
	}
	read, err := sql.Open("sqlite", "file:"+path+"?_pragma=query_only(1)&"+common)
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	// Readers stay open: the pool's default keeps two idle, and closing
	// and reopening the others under load cost a sixth of the exchange's
	// time (a SQLite connection is a file open, a schema read and a fresh
	// page cache).
	read.SetMaxOpenConns(8)
	read.SetMaxIdleConns(8)
	return &DB{dialect: SQLite, write: write, read: read, logger: logger, dir: dir}, nil
}

// checkWritable proves that dir accepts new files, so that a read-only data
// directory fails at start with a clear message instead of at first write.
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// Dialect reports the engine.
func (db *DB) Dialect() Dialect { return db.dialect }

// Reader returns the pool for queries outside a write transaction. On SQLite
// it is read-only: writing through it fails.
func (db *DB) Reader() *sql.DB { return db.read }

// Ping checks that the database answers within ctx, and within 3 seconds.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.ping(ctx, 3*time.Second); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, rootCause(err))
	}
	return nil
}

// ping asks the database for one row within timeout; the error is the
// driver's.
func (db *DB) ping(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var one int
	return db.read.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Close releases all connections.
func (db *DB) Close() error {
	db.prepared.close()
	db.readPrepared.close()
	err := db.write.Close()
	if db.read != db.write {
		err = errors.Join(err, db.read.Close())
	}
	return err
}

// Tx is a write transaction. It is a *sql.Tx that also knows its engine, for
// the few statements that are faster written per engine.
type Tx struct {
	*sql.Tx
	dialect Dialect
	db      *DB
	batches []Flusher
	byKey   map[any]Flusher
}

// Flusher is work a transaction collects from many callers (rows of many
// requests in one ledger group) and writes at once, just before it commits.
type Flusher interface {
	Flush(ctx context.Context, tx *Tx) error
}

// Batch returns this transaction's Flusher for key, made by mk on first
// use. Contract: every batch is flushed, in the order they were made, after
// the transaction's function returns nil and before the commit; a flush
// error rolls the transaction back. A retried transaction starts with no
// batches.
func (tx *Tx) Batch(key any, mk func() Flusher) Flusher {
	if f, ok := tx.byKey[key]; ok {
		return f
	}
	if tx.byKey == nil {
		tx.byKey = map[any]Flusher{}
	}
	f := mk()
	tx.byKey[key] = f
	tx.batches = append(tx.batches, f)
	return f
}

// Dialect reports the engine the transaction runs on.
func (tx *Tx) Dialect() Dialect { return tx.dialect }

// Touch runs one write statement on its own, at the engine's default
// isolation (READ COMMITTED on PostgreSQL, where a concurrent writer of the
// same row waits and re-checks the WHERE clause instead of failing), once,
// without retries. Contract: only for bookkeeping that may lose a race and
// be skipped (last-used times), never for state that must stay consistent.
func (db *DB) Touch(ctx context.Context, query string, args ...any) error {
	if _, err := db.write.ExecContext(ctx, query, args...); err != nil {
		return classify(fmt.Errorf("touch: %w", err))
	}
	return nil
}

// Tx runs fn in a write transaction and commits if fn returns nil. Contract:
// fn may run more than once (the whole transaction is retried when the engine
// reports a serialization failure, a deadlock or a busy database), so fn must
// not have side effects outside tx; everything fn wrote commits together or
// not at all.
func (db *DB) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	const attempts = 30
	for i := 1; ; i++ {
		err := db.tryTx(ctx, fn)
		if err == nil || !retryable(err) || i == attempts {
			return err
		}
		db.logger.Debug("retrying transaction", "attempt", i, "err", err)
		// Exponential backoff with jitter, so that transactions that collided
		// do not collide again in lockstep.
		backoff := min(time.Millisecond<<min(i, 7), 100*time.Millisecond)
		backoff = backoff/2 + rand.N(backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
}

func (db *DB) tryTx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	// PostgreSQL runs write transactions SERIALIZABLE so that both engines
	// give the same guarantees (SQLite serialises writers by construction),
	// as CockroachDB does by default; conflicts surface as 40001 and retry.
	var opts *sql.TxOptions
	if db.dialect == Postgres {
		opts = &sql.TxOptions{Isolation: sql.LevelSerializable}
	}
	sqlTx, err := db.write.BeginTx(ctx, opts)
	if err != nil {
		return classify(fmt.Errorf("begin: %w", err))
	}
	tx := &Tx{Tx: sqlTx, dialect: db.dialect, db: db}
	if db.dialect == SQLite {
		defer db.prepareMissed(ctx)
	}
	defer func() {
		if p := recover(); p != nil {
			tx.Rollback()
			panic(p)
		}
		if err != nil {
			tx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return classify(err)
	}
	for _, b := range tx.batches {
		if err = b.Flush(ctx, tx); err != nil {
			return classify(err)
		}
	}
	if err = tx.Commit(); err != nil {
		return classify(fmt.Errorf("commit: %w", err))
	}
	return nil
}

// redactURL drops the password from a connection URL for messages.
func redactURL(u *url.URL) string {
	c := *u
	c.RawQuery = ""
	return c.Redacted()
}

// rootCause trims driver chatter to the innermost message.
func rootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			break
		}
		err = next
	}
	// On one line: a driver that tried several ways (pgx's TLS, then
	// plain) says each on a line of its own, often the same words.
	var lines []string
	for l := range strings.Lines(err.Error()) {
		if l = strings.TrimSpace(l); l != "" && !slices.Contains(lines, l) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}
