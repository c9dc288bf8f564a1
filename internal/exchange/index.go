package exchange

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/tlog"
)

// Where an access record lives (docs/exchange.md, "Storage"): the record
// commits in its log entry's own row, as the entry's opening
// (tlog_entries.opening, private, never published), so that a release
// writes one row, not three. ex_access is the index that finds records by
// citizen, agency, request and deferral; it is filled when the log is
// integrated (an IntegrateHook, in the checkpoint's transaction), up to
// the cursor in ex_index_state. Records past the cursor (the tail, at most
// the entries not yet integrated) are read from the log's rows directly,
// so every reader sees a release as soon as it commits.

// Opening versions (an opening's first byte).
const (
	openingV1 = 1 // the officer in the record
	openingV2 = 2 // the officer beside the record, which commits to them (sealOfficer)
)

// saltSize is the length of an officer's seal salt.
const saltSize = 16

// An opening is what a data-access entry's row keeps beside the entry:
//
//	version ‖ nonce (32 bytes) ‖ time ‖ deferral end (8 bytes each,
//	big-endian Unix ms) ‖ person id ‖ request id ‖ agency ‖ purpose (each a
//	length byte and the bytes) ‖ [version 2: officer (a length byte and the
//	bytes) ‖ salt (16 bytes)] ‖ canonical record
//
// The nonce and the record open the entry's commitment; the person id is
// what the citizen's key is derived from; the rest repeats what the index
// needs, so that indexing decodes no JSON (decodeOpening checks that it
// matches the record). In version 2 the record names the officer only by
// OfficerSeal, and the officer and the seal's salt are here, for the
// agency, the DPA and the audit (see Record).
type opening struct {
	version                          byte
	nonce                            []byte
	at, deferUntil                   int64
	person, request, agency, purpose string
	officer                          string // version 2
	salt                             []byte // version 2: saltSize bytes
	raw                              []byte // the canonical record
}

func (o *opening) encode() ([]byte, error) {
	strs := []string{o.person, o.request, o.agency, o.purpose}
	switch o.version {
	case openingV1:
	case openingV2:
		if len(o.salt) != saltSize {
			return nil, fmt.Errorf("%w: a salt of %d bytes", ErrInvalid, len(o.salt))
		}
		strs = append(strs, o.officer)
	default:
		return nil, fmt.Errorf("%w: opening version %d", ErrInvalid, o.version)
	}
	b := make([]byte, 0, 1+32+16+6+len(o.person)+len(o.request)+len(o.agency)+len(o.purpose)+len(o.officer)+len(o.salt)+len(o.raw))
	b = append(b, o.version)
	b = append(b, o.nonce...)
	b = binary.BigEndian.AppendUint64(b, uint64(o.at))
	b = binary.BigEndian.AppendUint64(b, uint64(o.deferUntil))
	for _, s := range strs {
		if len(s) > 255 {
			return nil, fmt.Errorf("%w: an id of %d bytes", ErrInvalid, len(s))
		}
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	b = append(b, o.salt...)
	return append(b, o.raw...), nil
}

var errOpening = errors.New("not an access record")

// parseOpening splits an opening without decoding its record.
func parseOpening(b []byte) (*opening, error) {
	if len(b) < 1+32+16+4 || (b[0] != openingV1 && b[0] != openingV2) {
		return nil, errOpening
	}
	o := &opening{version: b[0], nonce: b[1:33], at: int64(binary.BigEndian.Uint64(b[33:41])), deferUntil: int64(binary.BigEndian.Uint64(b[41:49]))}
	rest := b[49:]
	strs := []*string{&o.person, &o.request, &o.agency, &o.purpose}
	if o.version == openingV2 {
		strs = append(strs, &o.officer)
	}
	for _, s := range strs {
		if len(rest) < 1 || int(rest[0]) > len(rest)-1 {
			return nil, errOpening
		}
		*s, rest = string(rest[1:1+int(rest[0])]), rest[1+int(rest[0]):]
	}
	if o.version == openingV2 {
		if len(rest) < saltSize {
			return nil, errOpening
		}
		o.salt, rest = rest[:saltSize], rest[saltSize:]
	}
	if o.person == "" {
		return nil, errOpening
	}
	o.raw = rest
	return o, nil
}

// decodeOpening parses an opening and its record, which must agree: the
// header repeats the record, and a version 2 opening's officer and salt
// open the record's OfficerSeal.
func decodeOpening(b []byte) (*opening, Record, error) {
	var rec Record
	o, err := parseOpening(b)
	if err != nil {
		return nil, rec, err
	}
	if err := json.Unmarshal(o.raw, &rec); err != nil {
		return nil, rec, fmt.Errorf("%w: %v", errOpening, err)
	}
	if rec.Request != o.request || rec.Agency != o.agency || rec.Purpose != o.purpose || rec.Time != o.at || rec.DeferUntil != o.deferUntil {
		return nil, rec, fmt.Errorf("%w: its header does not match its record", errOpening)
	}
	if o.version == openingV2 && (rec.Officer != "" || rec.OfficerSeal != sealOfficer(o.salt, o.officer)) {
		return nil, rec, fmt.Errorf("%w: its officer does not match its record's seal", errOpening)
	}
	return o, rec, nil
}

// officerOf is who asked for an access: named in a version 1 record,
// beside a version 2 one.
func (o *opening) officerOf(rec *Record) string {
	if o.version == openingV2 {
		return o.officer
	}
	return rec.Officer
}

// indexCols are ex_access's columns, in indexRow's order.
var indexCols = []string{"log_index", "request_id", "person_id", "requester_org", "purpose", "at", "defer_until"}

func indexRow(idx int64, o *opening) []any {
	return []any{idx, o.request, o.person, o.agency, o.purpose, o.at, o.deferUntil}
}

// indexBatch is how many log entries the index lets pass before it takes
// them. Taking many at once writes each index page once for several
// records; but the index's transaction holds the database's write lock (on
// SQLite every writer's, payments' too) for about 10–20 µs a record. 512
// keeps that pause near 10 ms: with a realistic population (10⁵–10⁶
// citizens, whose index rows are scattered anyway) batches of 4,096 were
// no faster and paused every writer for 40–50 ms (docs/benchmarks.md,
// "index pauses"). The tail it leaves is read directly (tail), so nothing
// waits for it.
const indexBatch = 512

// index is the exchange's IntegrateHook: once indexBatch entries have
// passed its cursor, it indexes the access records among the entries from
// its cursor up to to. A record that does not decode (a tampered row) is
// left out of the index; Audit reports it.
func (x *Exchange) index(ctx context.Context, tx *store.Tx, _, to int64) error {
	return indexTo(ctx, tx, to, x.indexBatch)
}

// FlushIndex indexes every record of the integrated log now, however few
// (bench exchange calls it inside its timed window, so that the work the
// index defers is measured).
func (x *Exchange) FlushIndex(ctx context.Context) error {
	return x.db.Tx(ctx, func(tx *store.Tx) error {
		var to int64
		if err := tx.QueryRowContext(ctx, `SELECT value FROM tlog_counters WHERE name = 'integrated'`).Scan(&to); err != nil {
			return fmt.Errorf("access index: %w", err)
		}
		return indexTo(ctx, tx, to, 1)
	})
}

// reindexChunk is how many log entries one transaction of Reindex takes.
const reindexChunk = 1 << 16

// Reindex rebuilds the access index and the DPA's counts from the access
// records in the log's rows (after an audit reported an index row missing
// or changed), and reports how many records it indexed. progress (may be
// nil) is called after each chunk with the entries done and to do. The
// old index and counts go in one transaction; the records are then taken
// in chunks of their own transactions, and until a chunk is taken its
// records are read from the log's rows, so every citizen and the DPA see
// every record throughout. Contract: no node may integrate meanwhile
// (the caller holds the integrator's lease).
func Reindex(ctx context.Context, db *store.DB, progress func(done, total int64)) (int64, error) {
	var total int64
	err := db.Tx(ctx, func(tx *store.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT value FROM tlog_counters WHERE name = 'integrated'`).Scan(&total); err != nil {
			return fmt.Errorf("access index: %w", err)
		}
		for _, q := range []string{`DELETE FROM ex_access`, `DELETE FROM ex_access_counts`, `UPDATE ex_index_state SET value = 0 WHERE name = 'indexed'`} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("access index: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for done := int64(0); done < total; {
		to := min(done+reindexChunk, total)
		if err := db.Tx(ctx, func(tx *store.Tx) error { return indexTo(ctx, tx, to, 1) }); err != nil {
			return 0, err
		}
		done = to
		if progress != nil {
			progress(done, total)
		}
	}
	var n int64
	if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM ex_access`).Scan(&n); err != nil {
		return 0, fmt.Errorf("access index: %w", err)
	}
	return n, nil
}

// indexTo indexes the records from the cursor up to to if at least batch
// entries have passed it.
func indexTo(ctx context.Context, tx *store.Tx, to, batch int64) error {
	var cur int64
	if err := tx.QueryRowPrepared(ctx, `SELECT value FROM ex_index_state WHERE name = 'indexed'`).Scan(&cur); err != nil {
		return fmt.Errorf("access index: %w", err)
	}
	if to-cur < batch {
		return nil
	}
	rows, err := tx.QueryPrepared(ctx, `SELECT idx, opening FROM tlog_entries WHERE kind = $1 AND idx >= $2 AND idx < $3 AND opening IS NOT NULL ORDER BY idx`,
		int(tlog.KindDataAccess), cur, to)
	if err != nil {
		return fmt.Errorf("access index: %w", err)
	}
	var vals [][]any
	for rows.Next() {
		var idx int64
		// The driver's bytes, not a copy: an index row takes only the
		// opening's strings (copied) and numbers, before the next row.
		var opening sql.RawBytes
		if err := rows.Scan(&idx, &opening); err != nil {
			rows.Close()
			return err
		}
		o, err := parseOpening(opening)
		if err != nil {
			continue
		}
		vals = append(vals, indexRow(idx, o))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(vals) > 0 {
		if err := tx.InsertRows(ctx, "ex_access", indexCols, vals); err != nil {
			return fmt.Errorf("access index: %w", err)
		}
		if err := addCounts(ctx, tx, vals); err != nil {
			return fmt.Errorf("access counts: %w", err)
		}
	}
	res, err := tx.ExecPrepared(ctx, `UPDATE ex_index_state SET value = $1 WHERE name = 'indexed' AND value = $2`, to, cur)
	if err != nil {
		return fmt.Errorf("access index: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return errors.New("access index: another process moved the cursor")
	}
	return nil
}

// addCounts adds a batch of index rows to the per-agency, per-purpose
// counts (ex_access_counts), in the index's transaction.
func addCounts(ctx context.Context, tx *store.Tx, vals [][]any) error {
	counts := map[[2]string]int64{}
	for _, v := range vals {
		counts[[2]string{v[3].(string), v[4].(string)}]++
	}
	for _, k := range slices.SortedFunc(maps.Keys(counts), compareKeys) {
		if _, err := tx.ExecPrepared(ctx, `INSERT INTO ex_access_counts (requester_org, purpose, n) VALUES ($1, $2, $3)
			ON CONFLICT (requester_org, purpose) DO UPDATE SET n = ex_access_counts.n + excluded.n`, k[0], k[1], counts[k]); err != nil {
			return err
		}
	}
	return nil
}

// compareKeys orders agency-and-purpose keys.
func compareKeys(a, b [2]string) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) }
