package tlog

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// TileHeight is the C2SP tile height: 256 hashes or entries per full tile.
const TileHeight = 8

// EntriesLevel marks an entry-bundle tile in Tile.Level.
const EntriesLevel = -1

// Tile names a C2SP tlog-tiles resource: a hash tile at Level 0–63 or an
// entry bundle (Level == EntriesLevel), index N, width W (1–256; 256 is full).
type Tile struct {
	Level int
	N     int64
	W     int
}

// Path is the tile's path below the log prefix, e.g. "tile/0/x001/234.p/5".
func (t Tile) Path() string {
	level := strconv.Itoa(t.Level)
	if t.Level == EntriesLevel {
		level = "entries"
	}
	p := "tile/" + level + "/" + encodeN(t.N)
	if t.W < 1<<TileHeight {
		p += ".p/" + strconv.Itoa(t.W)
	}
	return p
}

// encodeN writes N in groups of three digits, all but the last prefixed x.
func encodeN(n int64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		s = fmt.Sprintf("x%03d/%s", n%1000, s)
	}
	return s
}

// ParseTilePath reads a path below the log prefix ("tile/…"). It accepts
// exactly the encoding Path produces.
func ParseTilePath(path string) (Tile, error) {
	bad := func(why string) (Tile, error) {
		return Tile{}, fmt.Errorf("%w: tile path %q: %s", ErrBadRequest, truncate(path), why)
	}
	rest, ok := strings.CutPrefix(path, "tile/")
	if !ok || len(path) > 200 {
		return bad("not a tile path")
	}
	levelStr, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("no index")
	}
	t := Tile{W: 1 << TileHeight}
	if levelStr == "entries" {
		t.Level = EntriesLevel
	} else {
		l, err := strconv.Atoi(levelStr)
		if err != nil || l < 0 || l > 63 || strconv.Itoa(l) != levelStr {
			return bad("level must be 0 to 63 without leading zeros")
		}
		t.Level = l
	}
	if idx := strings.Index(rest, ".p/"); idx >= 0 {
		wStr := rest[idx+3:]
		w, err := strconv.Atoi(wStr)
		if err != nil || w < 1 || w > 255 || strconv.Itoa(w) != wStr {
			return bad("partial width must be 1 to 255")
		}
		t.W = w
		rest = rest[:idx]
	}
	groups := strings.Split(rest, "/")
	var n int64
	for i, g := range groups {
		last := i == len(groups)-1
		if !last {
			if !strings.HasPrefix(g, "x") {
				return bad("index groups before the last must start with x")
			}
			g = g[1:]
		}
		if len(g) != 3 || strings.Trim(g, "0123456789") != "" {
			return bad("index groups must be three digits")
		}
		d, _ := strconv.Atoi(g)
		if n > (1<<62)/1000 {
			return bad("index too large")
		}
		n = n*1000 + int64(d)
	}
	if len(groups) > 1 && strings.HasPrefix(groups[0], "x000") {
		return bad("index has a leading zero group")
	}
	t.N = n
	if t.Path() != path {
		return bad("not in canonical form")
	}
	return t, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// covered reports whether a tree of the given size contains all of t.
func (t Tile) covered(size int64) bool {
	level := t.Level
	if level == EntriesLevel {
		level = 0
	}
	// The last hash the tile holds is at tree level 8*level, index
	// N*256+W-1; it exists once the tree has (N*256+W) << (8*level) entries.
	shift := TileHeight * level
	need := t.N*256 + int64(t.W)
	if shift >= 63 || need > (size>>shift) {
		return false
	}
	return true
}

// ReadTile returns a hash tile's bytes (32 bytes per hash), if the latest
// checkpoint covers it.
func (l *Log) ReadTile(ctx context.Context, t Tile, size int64) ([]byte, error) {
	if t.Level == EntriesLevel {
		return l.ReadEntryBundle(ctx, t, size)
	}
	if !t.covered(size) {
		return nil, fmt.Errorf("%w: tile %s is beyond tree size %d", ErrNotFound, t.Path(), size)
	}
	hr := l.readHashes(ctx, nil)
	return tlog.ReadTileData(tlog.Tile{H: TileHeight, L: t.Level, N: t.N, W: t.W}, hr)
}

// ReadEntryBundle returns an entry bundle: each entry with a 2-byte
// big-endian length before it.
func (l *Log) ReadEntryBundle(ctx context.Context, t Tile, size int64) ([]byte, error) {
	if t.Level != EntriesLevel || !t.covered(size) {
		return nil, fmt.Errorf("%w: bundle %s is beyond tree size %d", ErrNotFound, t.Path(), size)
	}
	start := t.N * 256
	rows, err := l.db.Reader().QueryContext(ctx, "SELECT idx, data FROM tlog_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx", start, start+int64(t.W))
	if err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	defer rows.Close()
	var out []byte
	want := start
	for rows.Next() {
		var idx int64
		var data []byte
		if err := rows.Scan(&idx, &data); err != nil {
			return nil, err
		}
		if idx != want || len(data) > MaxEntrySize {
			return nil, fmt.Errorf("log entry %d is missing or oversize", want)
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(data)))
		out = append(out, data...)
		want++
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if want != start+int64(t.W) {
		return nil, fmt.Errorf("log entries %d to %d are missing", want, start+int64(t.W)-1)
	}
	return out, nil
}

// SplitBundle parses an entry bundle into its entries.
func SplitBundle(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, fmt.Errorf("%w: entry bundle ends inside a length", ErrBadEntry)
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return nil, fmt.Errorf("%w: entry bundle ends inside an entry", ErrBadEntry)
		}
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out, nil
}
