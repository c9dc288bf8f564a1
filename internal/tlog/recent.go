package tlog

import (
	"context"
	"fmt"
	"maps"
	"sync"
)

// Recorded is an entry as stored, with its index.
type Recorded struct {
	Index int64
	Entry *Entry // nil if the stored bytes do not parse (a tampered log)
	Size  int
}

// Recent returns up to n of the newest entries below size, newest first,
// optionally only of one kind (0 for all).
func (l *Log) Recent(ctx context.Context, size int64, n int, kind Kind) ([]Recorded, error) {
	q := "SELECT idx, data FROM tlog_entries WHERE idx < $1 ORDER BY idx DESC LIMIT $2"
	args := []any{size, n}
	if kind != 0 {
		q = "SELECT idx, data FROM tlog_entries WHERE idx < $1 AND kind = $3 ORDER BY idx DESC LIMIT $2"
		args = append(args, int(kind))
	}
	rows, err := l.db.Reader().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("recent entries: %w", err)
	}
	defer rows.Close()
	var out []Recorded
	for rows.Next() {
		var r Recorded
		var data []byte
		if err := rows.Scan(&r.Index, &data); err != nil {
			return nil, err
		}
		r.Entry, _ = Parse(data)
		r.Size = len(data)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Counts returns how many entries of each kind lie below size. Entries
// below a checkpoint never change, so the counts are kept from one call to
// the next and each call reads only the entries added since: the public
// log page asks on every load, and a full count grows with the log.
func (l *Log) Counts(ctx context.Context, size int64) (map[Kind]int64, error) {
	l.counts.mu.Lock()
	defer l.counts.mu.Unlock()
	from, base := l.counts.size, l.counts.byKind
	if size < from || base == nil {
		from, base = 0, nil // an older size than counted (another node's checkpoint lagging): count afresh
	}
	delta, err := l.countBetween(ctx, from, size)
	if err != nil {
		return nil, err
	}
	out := make(map[Kind]int64, len(base)+len(delta))
	for k, n := range base {
		out[k] = n
	}
	for k, n := range delta {
		out[k] += n
	}
	if size >= l.counts.size {
		l.counts.size, l.counts.byKind = size, out
	}
	return maps.Clone(out), nil
}

// entryCounts are the counts Counts kept: by kind, below size.
type entryCounts struct {
	mu     sync.Mutex
	size   int64
	byKind map[Kind]int64
}

func (l *Log) countBetween(ctx context.Context, from, to int64) (map[Kind]int64, error) {
	rows, err := l.db.Reader().QueryContext(ctx, "SELECT kind, COUNT(*) FROM tlog_entries WHERE idx >= $1 AND idx < $2 GROUP BY kind", from, to)
	if err != nil {
		return nil, fmt.Errorf("count entries: %w", err)
	}
	defer rows.Close()
	out := map[Kind]int64{}
	for rows.Next() {
		var k int
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		out[Kind(k)] = n
	}
	return out, rows.Err()
}
