package ledger

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	xtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/tlog"
)

// SQLite statements below bind with "?": SQLite looks "$N" names up one by
// one, which is quadratic in a statement of hundreds of parameters. Each
// PostgreSQL statement takes whole columns as arrays (unnest), one
// statement per table per group.

// rowsPerStatement is the most rows one multi-row SQLite statement carries.
const rowsPerStatement = 64

// multiRow builds "head (…),(…) tail" with n tuples of width parameters.
func multiRow(head string, width, n int, tail string) string {
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?,", width), ",") + ")"
	var b strings.Builder
	b.WriteString(head)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(tuple)
	}
	b.WriteString(tail)
	return b.String()
}

// writer runs a group's statements in its transaction, on SQLite through
// the store's cache of prepared statements (a group of a few transfers
// would otherwise spend its time parsing SQL).
type writer struct {
	ctx context.Context
	tx  *store.Tx
}

func (w *writer) exec(query string, args ...any) (sql.Result, error) {
	return w.tx.ExecPrepared(w.ctx, query, args...)
}

func (w *writer) query(query string, args ...any) (*sql.Rows, error) {
	return w.tx.QueryPrepared(w.ctx, query, args...)
}

// The statements of a group (those that differ per engine are written out
// where they run).
const (
	// $1 now (ns), $2 timestamps to reserve: last_ts becomes
	// max(now, last_ts+1) + $2 - 1.
	clockStart = `UPDATE ledger_clock SET generation = generation + 1, batches = batches + 1,
		last_ts = CASE WHEN last_ts + 1 > $1 THEN last_ts + $2 ELSE $1 + $2 - 1 END
		WHERE id = 1 RETURNING last_ts, batches, generation`
	batchInsert       = "INSERT INTO ledger_batches (batch, log_index, root, count, first_ts, hashes) VALUES ($1, $2, $3, $4, $5, $6)"
	dueQuery          = "SELECT id FROM ledger_transfers WHERE state = 1 AND expires_at > 0 AND expires_at <= $1 ORDER BY expires_at LIMIT $2"
	stateUpdate       = "UPDATE ledger_transfers SET state = $1 WHERE id = $2"
	metadataUpdate    = "UPDATE ledger_accounts SET flags = $1, profile = $2 WHERE id = $3"
	insertHead        = "INSERT OR FAIL INTO ledger_transfers (id, ts, state, expires_at, body) VALUES "
	accountsHead      = "UPDATE OR FAIL ledger_accounts SET state = v.column2 FROM (VALUES "
	accountsTail      = ") AS v WHERE ledger_accounts.seq = v.column1"
	marksHead         = "INSERT OR FAIL INTO ledger_marks (account, ts, id) VALUES "
	transfersByID     = "SELECT " + transferRow + " FROM ledger_transfers WHERE id"
	accountsByID      = "SELECT " + accountColumns + " FROM ledger_accounts WHERE id"
	accountsBySeqByID = "SELECT seq, " + accountColumns + " FROM ledger_accounts WHERE id"
	inListMost        = 512
)

func inList(query string, n int) string {
	return query + " IN (" + strings.TrimSuffix(strings.Repeat("?,", n), ",") + ")"
}

// execRows runs a multi-row SQLite statement over n rows: rowsPerStatement
// at a time, the rest in statements of 32, 16, … 1 rows, so that only seven
// shapes are ever prepared. row appends row i's width values. It returns how
// many rows the statements changed.
func (w *writer) execRows(head string, width int, tail string, n int, row func(i int, args []any) []any) (int64, error) {
	args := make([]any, 0, width*rowsPerStatement)
	var changed int64
	for i := 0; i < n; {
		size := rowsPerStatement
		for size > n-i {
			size /= 2
		}
		args = args[:0]
		for k := i; k < i+size; k++ {
			args = row(k, args)
		}
		res, err := w.exec(multiRow(head, width, size, tail), args...)
		if err != nil {
			return 0, err
		}
		k, _ := res.RowsAffected()
		changed += k
		i += size
	}
	return changed, nil
}

// queryIDs runs "SELECT … WHERE column IN (ids)" (= ANY on PostgreSQL)
// and calls each for every row. On SQLite the list is cut into chunks of
// 512, 256, … 1 ids, so that few statement shapes are prepared.
func (w *writer) queryIDs(query string, ids []ID, each func(scan func(...any) error) error) error {
	run := func(rows *sql.Rows, err error) error {
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := each(rows.Scan); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	if len(ids) == 0 {
		return nil
	}
	if w.tx.Dialect() == store.Postgres {
		raw := make([][]byte, len(ids))
		for i := range ids {
			raw[i] = ids[i][:]
		}
		return run(w.query(query+" = ANY($1::bytea[])", raw))
	}
	for i := 0; i < len(ids); {
		size := inListMost
		for size > len(ids)-i {
			size /= 2
		}
		args := make([]any, size)
		for k := range args {
			args[k] = ids[i+k][:]
		}
		if err := run(w.query(inList(query, size), args...)); err != nil {
			return err
		}
		i += size
	}
	return nil
}

func setKeys(m map[ID]bool) []ID {
	out := make([]ID, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	return out
}

// transferRow is the column list decodeRow takes.
const transferRow = "id, ts, state, expires_at, body"

func scanRecord(scan func(...any) error) (*record, error) {
	var id, body []byte
	var ts, expires int64
	var state int
	if err := scan(&id, &ts, &state, &expires, &body); err != nil {
		return nil, err
	}
	return decodeRow(id, ts, state, expires, body)
}

func (g *groupState) loadTransfers(w *writer, ids map[ID]bool) error {
	err := w.queryIDs(transfersByID, setKeys(ids), func(scan func(...any) error) error {
		r, err := scanRecord(scan)
		if err != nil {
			return err
		}
		g.existing[r.ID] = r
		return nil
	})
	if err != nil {
		return fmt.Errorf("load transfers: %w", err)
	}
	return nil
}

func (g *groupState) loadAccounts(w *writer, ids []ID) error {
	if w.tx.Dialect() == store.Postgres {
		err := w.queryIDs(accountsByID, ids, func(scan func(...any) error) error {
			a, err := scanAccount(scan)
			if err == nil {
				g.accounts[a.ID] = a
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("load accounts: %w", err)
		}
		return nil
	}
	err := w.queryIDs(accountsBySeqByID, ids, func(scan func(...any) error) error {
		var seq int64
		a, err := scanAccount(func(dest ...any) error { return scan(append([]any{&seq}, dest...)...) })
		if err == nil {
			a.seq = seq
			g.accounts[a.ID] = a
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("load accounts: %w", err)
	}
	return nil
}

// dueTransfers lists pending transfers whose timeout has passed.
func dueTransfers(w *writer, now time.Time) ([]ID, error) {
	// "state = 1" is written out so that the partial index on pending
	// transfers applies (a parameter would not match its predicate).
	rows, err := w.query(dueQuery,
		now.UnixMilli(), MaxBatch)
	if err != nil {
		return nil, fmt.Errorf("find expired: %w", err)
	}
	defer rows.Close()
	var ids []ID
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, err
		}
		var id ID
		copy(id[:], raw)
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// write stores the group: new and refused transfers, resolved pending
// states, balances, marks, and the batch's Merkle root in the transparency
// log (the clock was advanced when the group began).
func (g *groupState) write(w *writer) error {
	// Refused transfers take timestamps after the applied ones.
	next := g.firstTS + int64(len(g.newOnes))
	for _, r := range g.failed {
		r.Timestamp = time.Unix(0, next).UTC()
		next++
	}
	rows := append(append(make([]*record, 0, len(g.newOnes)+len(g.failed)), g.newOnes...), g.failed...)
	changed := make([]*Account, 0, len(g.changedAc))
	for id := range g.changedAc {
		changed = append(changed, g.accounts[id])
	}
	meta := make([]*Account, 0, len(g.changedMd))
	for id := range g.changedMd {
		meta = append(meta, g.accounts[id])
	}
	if err := updateMetadata(w, meta); err != nil {
		return fmt.Errorf("update accounts: %w", err)
	}
	var b *batchRow
	if len(g.newOnes) > 0 {
		var err error
		if b, err = g.logBatch(w); err != nil {
			return err
		}
	}
	var err error
	if w.tx.Dialect() == store.Postgres {
		err = g.writePostgres(w, rows, changed, b)
	} else {
		err = g.writeSQLite(w, rows, changed, b)
	}
	if store.IsConflict(err) {
		return fmt.Errorf("%w: %w", errIDTaken, err)
	}
	return err
}

// writeSQLite writes the group in multi-row statements.
func (g *groupState) writeSQLite(w *writer, rows []*record, changed []*Account, b *batchRow) error {
	if err := insertRecords(w, rows); err != nil {
		return fmt.Errorf("store transfers: %w", err)
	}
	if err := updateStates(w, g.changedPd); err != nil {
		return fmt.Errorf("resolve pending: %w", err)
	}
	// In key order: SQLite's seeks then walk the table forwards.
	slices.SortFunc(changed, func(a, b *Account) int { return cmp.Compare(a.seq, b.seq) })
	if err := updateAccounts(w, changed); err != nil {
		return fmt.Errorf("update balances: %w", err)
	}
	if err := insertMarks(w, g.marks); err != nil {
		return fmt.Errorf("history marks: %w", err)
	}
	if b != nil {
		if _, err := w.exec(batchInsert, b.batch, b.logIndex, b.root[:], b.count, b.firstTS, b.leaves); err != nil {
			return fmt.Errorf("store batch: %w", err)
		}
	}
	return nil
}

// writePostgres writes the group in one statement (each table's rows as
// arrays, one data-modifying CTE per table): one round trip to the server.
func (g *groupState) writePostgres(w *writer, rows []*record, changed []*Account, b *batchRow) error {
	n := len(rows)
	ids, stamps, states, expires, bodies := make([][]byte, n), make([]int64, n), make([]int64, n), make([]int64, n), make([][]byte, n)
	buf := make([]byte, 0, 96*n)
	for i, r := range rows {
		start := len(buf)
		buf = r.marshalBody(buf)
		ids[i], stamps[i], states[i], expires[i], bodies[i] = r.ID[:], r.Timestamp.UnixNano(), int64(r.state), r.expiresAt, buf[start:len(buf):len(buf)]
	}
	accIDs, accStates := make([][]byte, len(changed)), make([][]byte, len(changed))
	sbuf := make([]byte, 0, stateSize*len(changed))
	for i, a := range changed {
		start := len(sbuf)
		sbuf = a.marshalState(sbuf)
		accIDs[i], accStates[i] = a.ID[:], sbuf[start:len(sbuf):len(sbuf)]
	}
	pdIDs, pdStates := make([][]byte, 0, len(g.changedPd)), make([]int64, 0, len(g.changedPd))
	for _, p := range g.changedPd {
		pdIDs, pdStates = append(pdIDs, p.ID[:]), append(pdStates, int64(p.state))
	}
	mAccounts, mStamps, mIDs := make([][]byte, len(g.marks)), make([]int64, len(g.marks)), make([][]byte, len(g.marks))
	for i := range g.marks {
		mAccounts[i], mStamps[i], mIDs[i] = g.marks[i].account[:], g.marks[i].ts, g.marks[i].id[:]
	}
	if b == nil {
		b = &batchRow{}
	}
	var updated int64
	err := w.tx.QueryRowContext(w.ctx, `WITH
		ins AS (INSERT INTO ledger_transfers (id, ts, state, expires_at, body)
			SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bytea[])),
		acc AS (UPDATE ledger_accounts a SET state = v.state FROM unnest($6::bytea[], $7::bytea[]) AS v(id, state)
			WHERE a.id = v.id RETURNING 1),
		pd AS (UPDATE ledger_transfers t SET state = v.state FROM unnest($8::bytea[], $9::bigint[]) AS v(id, state) WHERE t.id = v.id),
		mk AS (INSERT INTO ledger_marks (account, ts, id) SELECT * FROM unnest($10::bytea[], $11::bigint[], $12::bytea[])),
		bt AS (INSERT INTO ledger_batches (batch, log_index, root, count, first_ts, hashes)
			SELECT $13::bigint, $14::bigint, $15::bytea, $16::integer, $17::bigint, $18::bytea WHERE $16::integer > 0)
		SELECT count(*) FROM acc`,
		ids, stamps, states, expires, bodies, accIDs, accStates, pdIDs, pdStates, mAccounts, mStamps, mIDs,
		b.batch, b.logIndex, b.root[:], b.count, b.firstTS, b.leaves).Scan(&updated)
	if err != nil {
		return fmt.Errorf("store the group: %w", err)
	}
	if updated != int64(len(changed)) {
		return fmt.Errorf("ledger: %d of %d accounts to update are gone", int64(len(changed))-updated, len(changed))
	}
	return nil
}

// batchRow is a batch's row in ledger_batches.
type batchRow struct {
	batch, logIndex, firstTS int64
	count                    int
	root                     xtlog.Hash
	leaves                   []byte
}

// logBatch appends the batch's Merkle root over its transfers' canonical
// encodings to the transparency log, and returns the batch's row, which
// keeps the leaf hashes for proofs.
func (g *groupState) logBatch(w *writer) (*batchRow, error) {
	b := &batchRow{batch: g.batch, firstTS: g.firstTS, count: len(g.newOnes), leaves: make([]byte, 0, 32*len(g.newOnes))}
	hashes := make([]xtlog.Hash, len(g.newOnes))
	for i, r := range g.newOnes {
		hashes[i] = xtlog.RecordHash(encode(&r.Transfer))
		b.leaves = append(b.leaves, hashes[i][:]...)
	}
	b.root = merkleRoot(hashes)
	entry := &tlog.Entry{Kind: tlog.KindLedgerBatch, Time: g.now, Count: uint32(len(g.newOnes)), Root: b.root}
	binary.BigEndian.PutUint64(entry.BatchID[8:], uint64(g.batch))
	data, err := entry.Marshal()
	if err != nil {
		return nil, err
	}
	if b.logIndex, err = tlog.Sequence(w.ctx, w.tx, g.now, data); err != nil {
		return nil, err
	}
	return b, nil
}

// merkleRoot is the RFC 6962 tree hash over leaf hashes (what x/mod's
// tlog.TreeHash computes, without building the stored-hash table).
func merkleRoot(leaves []xtlog.Hash) xtlog.Hash {
	switch len(leaves) {
	case 0:
		return xtlog.Hash{}
	case 1:
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return xtlog.NodeHash(merkleRoot(leaves[:k]), merkleRoot(leaves[k:]))
}

// insertRecords, updateStates, updateAccounts and insertMarks are SQLite's
// (PostgreSQL writes a group in one statement: writePostgres).
func insertRecords(w *writer, rs []*record) error {
	if len(rs) == 0 {
		return nil
	}
	bodies := make([][]byte, len(rs))
	buf := make([]byte, 0, 96*len(rs))
	for i, r := range rs {
		start := len(buf)
		buf = r.marshalBody(buf)
		bodies[i] = buf[start:len(buf):len(buf)]
	}
	_, err := w.execRows(insertHead, 5, "", len(rs), func(i int, args []any) []any {
		r := rs[i]
		return append(args, r.ID[:], r.Timestamp.UnixNano(), r.state, r.expiresAt, bodies[i])
	})
	return err
}

func updateStates(w *writer, ps map[ID]*record) error {
	if len(ps) == 0 {
		return nil
	}
	ids, states := make([][]byte, 0, len(ps)), make([]int64, 0, len(ps))
	for _, p := range ps {
		ids, states = append(ids, p.ID[:]), append(states, int64(p.state))
	}
	for i := range ids {
		if _, err := w.exec(stateUpdate, states[i], ids[i]); err != nil {
			return err
		}
	}
	return nil
}

// updateAccounts writes each changed account's state once per group.
func updateAccounts(w *writer, as []*Account) error {
	if len(as) == 0 {
		return nil
	}
	states := make([][]byte, len(as))
	buf := make([]byte, 0, stateSize*len(as))
	for i, a := range as {
		start := len(buf)
		buf = a.marshalState(buf)
		states[i] = buf[start:len(buf):len(buf)]
	}
	// By seq (the rowid): SQLite then overwrites the fixed-size state in place.
	n, err := w.execRows(accountsHead, 2, accountsTail,
		len(as), func(i int, args []any) []any { return append(args, as[i].seq, states[i]) })
	if err == nil && n != int64(len(as)) {
		err = fmt.Errorf("ledger: %d of %d accounts to update are gone", int64(len(as))-n, len(as))
	}
	return err
}

// updateMetadata writes the flags and profile of accounts closed or moved to
// another tier (rare: one statement each).
func updateMetadata(w *writer, as []*Account) error {
	for _, a := range as {
		if _, err := w.exec(metadataUpdate, int(a.Flags), a.Profile, a.ID[:]); err != nil {
			return err
		}
	}
	return nil
}

func insertMarks(w *writer, ms []mark) error {
	if len(ms) == 0 {
		return nil
	}
	_, err := w.execRows(marksHead, 3, "", len(ms), func(i int, args []any) []any {
		return append(args, ms[i].account[:], ms[i].ts, ms[i].id[:])
	})
	return err
}
