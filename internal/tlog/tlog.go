// Package tlog owns civstack's transparency log: an append-only Merkle log in
// the style of Certificate Transparency and Go's checksum database, served as
// C2SP tlog-tiles with C2SP tlog-checkpoints signed as C2SP signed notes
// (Ed25519). Entries are sequenced inside the database transaction of the
// event they record (Sequence), so the event and its entry commit together or
// not at all; the integrator (Integrate, run by one process at a time) turns
// sequenced entries into stored hashes and signs a checkpoint. Tiles, entry
// bundles and proofs are read from the stored hashes. Hashing, tiles and
// proofs come from golang.org/x/mod/sumdb/tlog.
package tlog

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/store"
)

// Sentinel errors.
var (
	// ErrNotFound: the tile, bundle, entry or checkpoint is not (yet) published.
	ErrNotFound = errors.New("not in the log")
	// ErrBadRequest: a proof or tile was asked for with impossible arguments.
	ErrBadRequest = errors.New("bad log request")
)

// Log is one transparency log in a civstack database. It is safe for
// concurrent use; only one process should Integrate at a time (see Leader).
type Log struct {
	db     *store.DB
	origin string
	signer note.Signer
	now    func() time.Time
	upper  hashCache // stored hashes of upper tree levels, for proofs
	hooks  atomic.Pointer[[]IntegrateHook]
	counts entryCounts // what Counts counted so far
}

// IntegrateHook runs inside Integrate's transaction after the entries
// [from, to) are hashed, so that what it writes commits with the checkpoint
// that covers them (the data exchange indexes its access records there:
// a citizen finds a record once it can be verified). Contract: it must only
// write its own tables, keep its own cursor (another process may have
// integrated without it, so from is not necessarily where it stopped), and
// fail only when the database does; an error rolls the integration back.
type IntegrateHook func(ctx context.Context, tx *store.Tx, from, to int64) error

// OnIntegrate adds a hook to every later integration by this Log.
func (l *Log) OnIntegrate(h IntegrateHook) {
	for {
		old := l.hooks.Load()
		var hs []IntegrateHook
		if old != nil {
			hs = slices.Clone(*old)
		}
		hs = append(hs, h)
		if l.hooks.CompareAndSwap(old, &hs) {
			return
		}
	}
}

// New returns the log stored in db, whose checkpoints carry origin and are
// signed by signer (whose name must be the origin).
func New(db *store.DB, origin string, signer note.Signer, now func() time.Time) (*Log, error) {
	if err := CheckOrigin(origin); err != nil {
		return nil, err
	}
	if signer != nil && signer.Name() != origin {
		return nil, fmt.Errorf("log key name %q is not the origin %q", signer.Name(), origin)
	}
	return &Log{db: db, origin: origin, signer: signer, now: now}, nil
}

// KeepOrigin returns the origin of the log in db: the one stored when it
// was first served; for a log from before origins were stored, the one its
// latest checkpoint names; else proposed, which it stores. A log keeps its
// origin for life (its checkpoints and every auditor's saved state name
// it), so a node that moves to another address goes on serving its log
// under the first name.
func KeepOrigin(ctx context.Context, db *store.DB, proposed string) (string, error) {
	var origin string
	err := db.Tx(ctx, func(tx *store.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'tlog_origin'`).Scan(&origin)
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		origin = proposed
		var signed string
		switch err := tx.QueryRowContext(ctx, `SELECT note FROM tlog_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&signed); {
		case err == nil:
			if line, _, ok := strings.Cut(signed, "\n"); ok && CheckOrigin(line) == nil {
				origin = line
			}
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		// Another node may store one first: then that one is the origin.
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES ('tlog_origin', $1) ON CONFLICT (name) DO NOTHING`, origin); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'tlog_origin'`).Scan(&origin)
	})
	if err != nil {
		return "", fmt.Errorf("log origin: %w", err)
	}
	return origin, nil
}

// CheckOrigin accepts a C2SP origin line: non-empty, no spaces or "+", no
// control characters, not a URL with a scheme.
func CheckOrigin(origin string) error {
	if origin == "" || strings.ContainsAny(origin, " +\t\r\n") || strings.Contains(origin, "://") {
		return fmt.Errorf("log origin %q must be a scheme-less name such as civstack.example.org/log", origin)
	}
	for _, c := range origin {
		if c < 0x21 || c == 0x7f {
			return fmt.Errorf("log origin %q has a control character", origin)
		}
	}
	return nil
}

// Origin is the log's origin line.
func (l *Log) Origin() string { return l.origin }

// EmptyRoot is the RFC 6962 hash of the empty tree: SHA-256 of nothing.
var EmptyRoot = tlog.Hash(sha256.Sum256(nil))

// Sequence appends entries to the log inside the caller's transaction and
// returns the index of the first; the others follow in order. Each entry must
// parse (see Parse). Contract: if the transaction rolls back, the entries and
// their indexes vanish with it. Concurrent sequencers serialise on one
// counter row, so entries commit in index order (a committed entry implies
// every lower index is committed).
func Sequence(ctx context.Context, tx *store.Tx, now time.Time, entries ...[]byte) (int64, error) {
	return sequence(ctx, tx, now, entries, nil)
}

// sequence is Sequence with each entry's opening (openings may be nil, and
// so may any of its elements): the private data an entry's commitment
// opens to, kept in the entry's row and never published (see Opening).
func sequence(ctx context.Context, tx *store.Tx, now time.Time, entries, openings [][]byte) (int64, error) {
	if len(entries) == 0 {
		return 0, fmt.Errorf("%w: nothing to sequence", ErrBadRequest)
	}
	if openings != nil && len(openings) != len(entries) {
		return 0, fmt.Errorf("%w: %d openings for %d entries", ErrBadRequest, len(openings), len(entries))
	}
	if !slices.ContainsFunc(openings, func(o []byte) bool { return o != nil }) {
		openings = nil
	}
	kinds := make([]Kind, len(entries))
	for i, e := range entries {
		p, err := Parse(e)
		if err != nil {
			return 0, fmt.Errorf("entry %d: %w", i, err)
		}
		kinds[i] = p.Kind
	}
	created := now.UnixMilli()
	if tx.Dialect() == store.Postgres {
		// One statement, one round trip: take the indexes and insert the
		// entries (arrays unnested into rows, numbered by ordinality).
		ks := make([]int64, len(entries))
		for i := range entries {
			ks[i] = int64(kinds[i])
		}
		// With openings, a fifth column from a third array.
		cols, sel, arrays, names := "", "", "", "t(k, d, n)"
		args := []any{int64(len(entries)), ks, entries, created}
		if openings != nil {
			cols, sel, arrays, names = ", opening", ", t.o", ", $5::bytea[]", "t(k, d, o, n)"
			args = append(args, openings)
		}
		q := `WITH c AS (UPDATE tlog_counters SET value = value + $1 WHERE name = 'next' RETURNING value)
			INSERT INTO tlog_entries (idx, kind, data, created_at` + cols + `)
			SELECT c.value - $1 + t.n - 1, t.k, t.d, $4` + sel + ` FROM c, unnest($2::bigint[], $3::bytea[]` + arrays + `) WITH ORDINALITY AS ` + names + `
			RETURNING (SELECT value FROM c) - $1`
		var first int64
		if err := tx.QueryRowContext(ctx, q, args...).Scan(&first); err != nil {
			return 0, fmt.Errorf("sequence: %w", err)
		}
		return first, nil
	}
	var next int64
	rows, err := tx.QueryPrepared(ctx, "UPDATE tlog_counters SET value = value + $1 WHERE name = 'next' RETURNING value", int64(len(entries)))
	if err != nil {
		return 0, fmt.Errorf("sequence: %w", err)
	}
	if rows.Next() {
		err = rows.Scan(&next)
	} else if err = rows.Err(); err == nil {
		err = errors.New("no sequence counter")
	}
	rows.Close()
	if err != nil {
		return 0, fmt.Errorf("sequence: %w", err)
	}
	first := next - int64(len(entries))
	cols := []string{"idx", "kind", "data", "created_at"}
	if openings != nil {
		cols = append(cols, "opening")
	}
	vals := make([][]any, len(entries))
	for i, e := range entries {
		vals[i] = []any{first + int64(i), int(kinds[i]), e, created}
		if openings != nil {
			vals[i] = append(vals[i], openings[i])
		}
	}
	if err := tx.InsertRows(ctx, "tlog_entries", cols, vals); err != nil {
		return 0, fmt.Errorf("store entries: %w", err)
	}
	return first, nil
}

// Row is a row written with a sequenced entry: its table, the columns with
// their values, and optionally IndexCol, a column that takes the entry's
// index. Table and column names are the caller's constants, never outside
// input.
type Row struct {
	Table    string
	IndexCol string // "": the row does not record the index
	Cols     []string
	Vals     []any
}

// SequenceWith sequences one entry, as Sequence does, and inserts rows in
// the caller's transaction. On PostgreSQL everything happens in one
// statement (one round trip inside what is often a serialised write
// transaction); elsewhere in one statement per row after Sequence's.
func SequenceWith(ctx context.Context, tx *store.Tx, now time.Time, entry []byte, rows ...Row) (int64, error) {
	for _, r := range rows {
		if len(r.Cols) != len(r.Vals) || r.Table == "" {
			return 0, fmt.Errorf("%w: row columns and values do not match", ErrBadRequest)
		}
	}
	cols := func(r Row) string {
		c := slices.Clone(r.Cols)
		if r.IndexCol != "" {
			c = append(c, r.IndexCol)
		}
		return strings.Join(c, ", ")
	}
	if tx.Dialect() != store.Postgres {
		idx, err := Sequence(ctx, tx, now, entry)
		if err != nil {
			return 0, err
		}
		for _, r := range rows {
			cols, vals := r.Cols, r.Vals
			if r.IndexCol != "" {
				cols, vals = append(slices.Clip(cols), r.IndexCol), append(slices.Clip(vals), idx)
			}
			if err := tx.InsertRows(ctx, r.Table, cols, [][]any{vals}); err != nil {
				return 0, err
			}
		}
		return idx, nil
	}
	p, err := Parse(entry)
	if err != nil {
		return 0, fmt.Errorf("entry: %w", err)
	}
	// VALUES, not SELECT: PostgreSQL infers the parameters' types from the
	// target columns only there.
	var q strings.Builder
	q.WriteString(`WITH c AS (UPDATE tlog_counters SET value = value + 1 WHERE name = 'next' RETURNING value - 1 AS idx),
		e AS (INSERT INTO tlog_entries (idx, kind, data, created_at) VALUES ((SELECT idx FROM c), $1, $2, $3) RETURNING idx)`)
	args := []any{int64(p.Kind), entry, now.UnixMilli()}
	for i, r := range rows {
		ph := make([]string, 0, len(r.Vals)+1)
		for _, v := range r.Vals {
			args = append(args, v)
			ph = append(ph, fmt.Sprintf("$%d", len(args)))
		}
		if r.IndexCol != "" {
			ph = append(ph, "(SELECT idx FROM e)")
		}
		fmt.Fprintf(&q, ",\n\t\tr%d AS (INSERT INTO %s (%s) VALUES (%s))", i, r.Table, cols(r), strings.Join(ph, ", "))
	}
	q.WriteString("\n\tSELECT idx FROM e")
	var idx int64
	if err := tx.QueryRowContext(ctx, q.String(), args...).Scan(&idx); err != nil {
		return 0, fmt.Errorf("sequence: %w", err)
	}
	return idx, nil
}

// Append sequences one entry in a transaction of its own and returns its
// index. Events that have their own transaction call Sequence instead.
func (l *Log) Append(ctx context.Context, entry []byte) (int64, error) {
	var idx int64
	err := l.db.Tx(ctx, func(tx *store.Tx) error {
		var err error
		idx, err = Sequence(ctx, tx, l.now(), entry)
		return err
	})
	return idx, err
}

// hashReader reads stored hashes from a query source, with an overlay of
// hashes computed but not yet stored, and optionally a cache.
type hashReader struct {
	ctx     context.Context
	q       querier
	overlay map[int64]tlog.Hash
	cache   *hashCache
	pg      bool // PostgreSQL: one array parameter instead of a list
}

// hashCache keeps stored hashes of tree levels cacheLevel and up, which every
// proof touches. Stored hashes never change, so entries never go stale; the
// cache stops growing at cacheMax entries (about 64 MiB).
type hashCache struct {
	mu sync.RWMutex
	m  map[int64]tlog.Hash
}

const (
	cacheLevel = 4
	cacheMax   = 1 << 20
)

func (c *hashCache) get(id int64) (tlog.Hash, bool) {
	c.mu.RLock()
	h, ok := c.m[id]
	c.mu.RUnlock()
	return h, ok
}

func (c *hashCache) put(id int64, h tlog.Hash) {
	if level, _ := tlog.SplitStoredHashIndex(id); level < cacheLevel {
		return
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[int64]tlog.Hash{}
	}
	if len(c.m) < cacheMax {
		c.m[id] = h
	}
	c.mu.Unlock()
}

// querier runs a query: store.DB.QueryRead on the read side,
// store.Tx.QueryPrepared in a transaction (both prepared once on SQLite).
type querier func(ctx context.Context, query string, args ...any) (*sql.Rows, error)

// readHashes returns a hash reader on the read side.
func (l *Log) readHashes(ctx context.Context, cache *hashCache) *hashReader {
	return &hashReader{ctx: ctx, q: l.db.QueryRead, cache: cache, pg: l.db.Dialect() == store.Postgres}
}

// maxHashList is the longest list of ids one query reads.
const maxHashList = 512

func (r *hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var missing []int64
	pos := map[int64][]int{}
	for i, id := range indexes {
		if h, ok := r.overlay[id]; ok {
			out[i] = h
			continue
		}
		if r.cache != nil {
			if h, ok := r.cache.get(id); ok {
				out[i] = h
				continue
			}
		}
		if _, seen := pos[id]; !seen {
			missing = append(missing, id)
		}
		pos[id] = append(pos[id], i)
	}
	for start := 0; start < len(missing); start += maxHashList {
		part := missing[start:min(start+maxHashList, len(missing))]
		var q string
		var args []any
		if r.pg {
			q, args = "SELECT id, hash FROM tlog_hashes WHERE id = ANY($1::bigint[])", []any{part}
		} else {
			q, args = store.PaddedQuery("SELECT id, hash FROM tlog_hashes WHERE id IN (", ")", part)
		}
		rows, err := r.q(r.ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("read hashes: %w", err)
		}
		found := 0
		for rows.Next() {
			var id int64
			var h []byte
			if err := rows.Scan(&id, &h); err != nil {
				rows.Close()
				return nil, err
			}
			if len(h) != tlog.HashSize {
				rows.Close()
				return nil, fmt.Errorf("stored hash %d has %d bytes", id, len(h))
			}
			for _, i := range pos[id] {
				copy(out[i][:], h)
			}
			if r.cache != nil {
				r.cache.put(id, out[pos[id][0]])
			}
			found++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if found != len(part) {
			return nil, fmt.Errorf("%w: %d of %d stored hashes missing", ErrNotFound, len(part)-found, len(part))
		}
	}
	return out, nil
}
