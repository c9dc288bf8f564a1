package tlog

import (
	"github.com/civstack/civstack/internal/store"

	"context"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// MaxIntegrate bounds the entries one integration takes (they are held in
// memory while hashed: at most 8,192 × 64 KiB), so that a large backlog becomes
// several checkpoints rather than one huge transaction.
const MaxIntegrate = 1 << 13

// Integrate hashes the entries sequenced since the last checkpoint and signs
// a new checkpoint, all in one transaction. It returns the newest checkpoint
// and whether it made one. The first call on an empty log signs the size-0
// checkpoint. Contract: only one process integrates at a time (Leader); even
// so, two racing integrations cannot both commit, because each moves the
// integrated counter from the value it read.
func (l *Log) Integrate(ctx context.Context) (Checkpoint, bool, error) {
	if l.signer == nil {
		return Checkpoint{}, false, fmt.Errorf("this log has no signing key")
	}
	var cp Checkpoint
	made := false
	err := l.db.Tx(ctx, func(tx *store.Tx) error {
		made = false
		// Only the integrated counter is read and written here: the next
		// counter belongs to sequencers, so the two never conflict.
		var done int64
		if err := tx.QueryRowPrepared(ctx, "SELECT value FROM tlog_counters WHERE name = 'integrated'").Scan(&done); err != nil {
			return fmt.Errorf("log state: %w", err)
		}
		var have int
		if err := tx.QueryRowPrepared(ctx, "SELECT COUNT(*) FROM tlog_checkpoints WHERE size = $1", done).Scan(&have); err != nil {
			return fmt.Errorf("log checkpoints: %w", err)
		}
		hr := &hashReader{ctx: ctx, q: tx.QueryPrepared, overlay: map[int64]tlog.Hash{}, pg: tx.Dialect() == store.Postgres}
		rows, err := tx.QueryPrepared(ctx, "SELECT idx, data FROM tlog_entries WHERE idx >= $1 ORDER BY idx LIMIT $2", done, MaxIntegrate)
		if err != nil {
			return fmt.Errorf("read entries: %w", err)
		}
		// Read the batch first: PostgreSQL cannot run the hash reader's
		// queries while this result set is open on the connection.
		var batch [][]byte
		for rows.Next() {
			var idx int64
			var data []byte
			if err := rows.Scan(&idx, &data); err != nil {
				rows.Close()
				return err
			}
			if idx != done+int64(len(batch)) {
				rows.Close()
				return fmt.Errorf("log entry %d is missing", done+int64(len(batch)))
			}
			batch = append(batch, data)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(batch) == 0 && have > 0 {
			return nil
		}
		end := done + int64(len(batch))
		if len(batch) > 0 {
			var newIDs []int64
			for i, data := range batch {
				idx := done + int64(i)
				hashes, err := tlog.StoredHashes(idx, data, hr)
				if err != nil {
					return fmt.Errorf("hash entry %d: %w", idx, err)
				}
				base := tlog.StoredHashIndex(0, idx)
				for k, h := range hashes {
					hr.overlay[base+int64(k)] = h
					newIDs = append(newIDs, base+int64(k))
				}
			}
			if err := insertHashes(ctx, tx, newIDs, hr.overlay); err != nil {
				return err
			}
		}
		if hs := l.hooks.Load(); hs != nil && len(batch) > 0 {
			for _, h := range *hs {
				if err := h(ctx, tx, done, end); err != nil {
					return fmt.Errorf("integration hook: %w", err)
				}
			}
		}
		root := EmptyRoot
		if end > 0 {
			var err error
			if root, err = tlog.TreeHash(end, hr); err != nil {
				return fmt.Errorf("tree hash: %w", err)
			}
		}
		cp = Checkpoint{Origin: l.origin, Size: end, Root: root}
		signed, err := note.Sign(&note.Note{Text: cp.Body()}, l.signer)
		if err != nil {
			return fmt.Errorf("sign checkpoint: %w", err)
		}
		res, err := tx.ExecPrepared(ctx, "UPDATE tlog_counters SET value = $1 WHERE name = 'integrated' AND value = $2", end, done)
		if err != nil {
			return fmt.Errorf("advance log: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("another integrator advanced the log")
		}
		if _, err := tx.ExecPrepared(ctx, "INSERT INTO tlog_checkpoints (size, root, note, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
			end, root[:], signed, l.now().UnixMilli()); err != nil {
			return fmt.Errorf("store checkpoint: %w", err)
		}
		made = true
		return nil
	})
	if err != nil {
		return Checkpoint{}, false, err
	}
	if !made {
		_, cp, err = l.Latest(ctx)
	}
	return cp, made, err
}

func insertHashes(ctx context.Context, tx *store.Tx, ids []int64, hashes map[int64]tlog.Hash) error {
	if tx.Dialect() == store.Postgres {
		hs := make([][]byte, len(ids))
		for i, id := range ids {
			h := hashes[id]
			hs[i] = h[:]
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO tlog_hashes (id, hash) SELECT * FROM unnest($1::bigint[], $2::bytea[])", ids, hs)
		if err != nil {
			return fmt.Errorf("store hashes: %w", err)
		}
		return nil
	}
	const chunk = 64 // see Sequence
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		var q strings.Builder
		q.WriteString("INSERT INTO tlog_hashes (id, hash) VALUES ")
		args := make([]any, 0, 2*len(part))
		for i, id := range part {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?)") // positional: see store.Tx.InsertRows
			h := hashes[id]
			args = append(args, id, h[:])
		}
		if _, err := tx.ExecPrepared(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("store hashes: %w", err)
		}
	}
	return nil
}
