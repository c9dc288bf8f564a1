package store

import (
	"context"
	"database/sql"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"sync"
)

// SQLite parses every statement that database/sql runs without preparing it
// first, and modernc.org/sqlite keeps no cache: for the ledger's small groups
// that parsing was a tenth of the time. Write transactions on SQLite can
// therefore run statements through a cache of statements prepared once on
// the writer connection. A statement cannot be prepared on the writer pool
// while a transaction holds its only connection, so a miss is prepared in
// the transaction for this use and remembered; once the transaction is over,
// the DB prepares what was missed for next time. PostgreSQL needs none of
// this: pgx caches prepared statements per connection by itself.

// maxPrepared bounds the cache; queries past it are prepared per use.
const maxPrepared = 512

type preparedCache struct {
	mu     sync.Mutex
	stmts  map[string]*sql.Stmt
	missed map[string]bool
}

func (c *preparedCache) get(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stmts[query]
	if st == nil && len(c.stmts)+len(c.missed) < maxPrepared {
		if c.missed == nil {
			c.missed = map[string]bool{}
		}
		c.missed[query] = true
	}
	return st
}

// prepareMissed prepares the statements transactions missed; it runs when
// the writer connection is free.
func (db *DB) prepareMissed(ctx context.Context) {
	c := &db.prepared
	c.mu.Lock()
	missed := c.missed
	c.missed = nil
	c.mu.Unlock()
	for q := range missed {
		st, err := db.write.PrepareContext(ctx, q)
		if err != nil {
			continue // the statement will be prepared per use
		}
		c.mu.Lock()
		if c.stmts == nil {
			c.stmts = map[string]*sql.Stmt{}
		}
		if c.stmts[q] == nil {
			c.stmts[q] = st
		} else {
			st.Close()
		}
		c.mu.Unlock()
	}
}

func (c *preparedCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.stmts {
		st.Close()
	}
	c.stmts = nil
}

// Stmt returns query prepared for this transaction: on SQLite from the
// cache of statements prepared once, on PostgreSQL prepared per use (pgx
// caches them). Statements are closed with the transaction.
func (tx *Tx) Stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if tx.db != nil && tx.dialect == SQLite {
		if st := tx.db.prepared.get(query); st != nil {
			return tx.StmtContext(ctx, st), nil
		}
	}
	return tx.PrepareContext(ctx, query)
}

// ExecPrepared runs a statement through Stmt on SQLite, directly on PostgreSQL.
func (tx *Tx) ExecPrepared(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if tx.dialect != SQLite {
		return tx.ExecContext(ctx, query, args...)
	}
	st, err := tx.Stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// QueryPrepared runs a query through Stmt on SQLite, directly on PostgreSQL.
func (tx *Tx) QueryPrepared(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if tx.dialect != SQLite {
		return tx.QueryContext(ctx, query, args...)
	}
	st, err := tx.Stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowPrepared is QueryPrepared for a query of one row. If the
// statement cannot be prepared, the query runs directly (its Row then
// carries the same error).
func (tx *Tx) QueryRowPrepared(ctx context.Context, query string, args ...any) *sql.Row {
	if tx.dialect == SQLite {
		if st, err := tx.Stmt(ctx, query); err == nil {
			return st.QueryRowContext(ctx, args...)
		}
	}
	return tx.QueryRowContext(ctx, query, args...)
}

// PaddedIn returns SQLite's positional placeholders for an IN list of vals
// (at least one), padded to the next power of two, and vals padded to match
// by repeating the last value (IN ignores repeats): a few statement shapes,
// each prepared once, serve lists of any length. Positional (?) for the
// reason InsertRows gives; PostgreSQL takes the list as one array instead.
func PaddedIn[T any](vals []T) (string, []any) {
	k := bits.Len(uint(len(vals) - 1))
	if k >= len(inLists) {
		k = len(inLists) - 1 // past 2¹¹ values: unpadded
	}
	ph := inLists[k]
	n := 1 << k
	if len(vals) > n {
		ph, n = strings.Repeat("?, ", len(vals)-1)+"?", len(vals)
	}
	args := make([]any, n)
	for i := range args {
		args[i] = vals[min(i, len(vals)-1)]
	}
	return ph, args
}

// PaddedQuery is PaddedIn with the statement around the list: head, the
// placeholders, tail, each shape's text built once.
func PaddedQuery[T any](head, tail string, vals []T) (string, []any) {
	ph, args := PaddedIn(vals)
	k := queryShape{head, tail, len(args)}
	if q, ok := paddedQueries.Load(k); ok {
		return q.(string), args
	}
	q := head + ph + tail
	if len(args) <= 1<<(len(inLists)-1) {
		paddedQueries.Store(k, q)
	}
	return q, args
}

type queryShape struct {
	head, tail string
	n          int
}

var paddedQueries sync.Map // queryShape → string

// inLists[k] is 2^k positional placeholders.
var inLists = func() (l [12]string) {
	for k := range l {
		l[k] = strings.Repeat("?, ", (1<<k)-1) + "?"
	}
	return l
}()

// readStmts caches statements prepared on the SQLite read pool (database/sql
// prepares a *sql.Stmt lazily on each pooled connection it runs on).
type readStmts struct {
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

// QueryRowRead runs a one-row query on the read side, prepared once on
// SQLite (hot lookups: tokens, payment devices, merchants), directly on
// PostgreSQL, whose driver caches prepared statements itself.
func (db *DB) QueryRowRead(ctx context.Context, query string, args ...any) *sql.Row {
	if st := db.readStmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return db.read.QueryRowContext(ctx, query, args...)
}

// QueryRead is QueryRowRead for queries of many rows.
func (db *DB) QueryRead(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := db.readStmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return db.read.QueryContext(ctx, query, args...)
}

// readStmt returns query prepared on the SQLite read pool, or nil (on
// PostgreSQL, past the cache's bound, or if it does not prepare: the
// caller then runs it unprepared and gets the error from there).
func (db *DB) readStmt(ctx context.Context, query string) *sql.Stmt {
	if db.dialect != SQLite {
		return nil
	}
	c := &db.readPrepared
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stmts[query]
	if st == nil && len(c.stmts) < maxPrepared {
		var err error
		if st, err = db.read.PrepareContext(ctx, query); err != nil {
			return nil
		}
		if c.stmts == nil {
			c.stmts = map[string]*sql.Stmt{}
		}
		c.stmts[query] = st
	}
	return st
}

func (c *readStmts) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.stmts {
		st.Close()
	}
	c.stmts = nil
}

// InsertRows inserts rows (each the values of cols, in order) into table in
// multi-row statements: a few statements for a batch instead of one per
// row. On SQLite the parameters are positional (?): modernc.org/sqlite looks
// up the name of every numbered parameter ($N) by a linear search, so a
// statement of n numbered parameters costs O(n²) to bind. Its statements
// stay at 512 parameters and are prepared once per shape; PostgreSQL takes
// up to 8192. Table and column names are the caller's constants, never
// outside input.
func (tx *Tx) InsertRows(ctx context.Context, table string, cols []string, rows [][]any) error {
	maxParams := 512
	if tx.dialect == Postgres {
		maxParams = 8192
	}
	per := max(1, maxParams/max(1, len(cols)))
	head := "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES "
	for start := 0; start < len(rows); start += per {
		chunk := rows[start:min(start+per, len(rows))]
		var q strings.Builder
		q.WriteString(head)
		args := make([]any, 0, len(chunk)*len(cols))
		for i, r := range chunk {
			if len(r) != len(cols) {
				return fmt.Errorf("insert into %s: a row has %d values for %d columns", table, len(r), len(cols))
			}
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteByte('(')
			for j, v := range r {
				if j > 0 {
					q.WriteString(", ")
				}
				args = append(args, v)
				if tx.dialect == SQLite {
					q.WriteByte('?')
				} else {
					q.WriteString("$" + strconv.Itoa(len(args)))
				}
			}
			q.WriteByte(')')
		}
		if _, err := tx.ExecPrepared(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("insert into %s: %w", table, err)
		}
	}
	return nil
}
