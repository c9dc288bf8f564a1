package tlog_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	civtlog "github.com/civstack/civstack/internal/tlog"
)

const origin = "civstack.test/log"

func newLog(t testing.TB, db *store.DB) (*civtlog.Log, string) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := civtlog.NewEd25519Signer(origin, priv)
	if err != nil {
		t.Fatal(err)
	}
	l, err := civtlog.New(db, origin, s, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return l, s.VerifierKey()
}

func receipt(i int64) []byte {
	e := &civtlog.Entry{Kind: civtlog.KindReceipt, Time: time.UnixMilli(1_790_000_000_000 + i)}
	copy(e.Hash[:], fmt.Sprintf("receipt %d", i))
	b, err := e.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// grow appends entries until the log holds size entries.
func grow(t testing.TB, db *store.DB, from, size int64) {
	t.Helper()
	ctx := context.Background()
	for from < size {
		n := min(size-from, 8000)
		batch := make([][]byte, n)
		for i := range batch {
			batch[i] = receipt(from + int64(i))
		}
		err := db.Tx(ctx, func(tx *store.Tx) error {
			first, err := civtlog.Sequence(ctx, tx, time.Now(), batch...)
			if err == nil && first != from {
				err = fmt.Errorf("sequenced at %d, want %d", first, from)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		from += n
	}
}

// integrate runs the integrator until the checkpoint covers everything.
func integrate(t testing.TB, l *civtlog.Log, want int64) civtlog.Checkpoint {
	t.Helper()
	for {
		cp, _, err := l.Integrate(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size == want {
			return cp
		}
		if cp.Size > want {
			t.Fatalf("checkpoint size %d past %d", cp.Size, want)
		}
	}
}

// tileReader fetches tiles the way an outside client would, through the
// log's tile API, for x/mod's TileHashReader to verify.
type tileReader struct {
	l    *civtlog.Log
	size int64
}

func (r tileReader) Height() int { return civtlog.TileHeight }
func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := r.l.ReadTile(context.Background(), civtlog.Tile{Level: t.L, N: t.N, W: t.W}, r.size)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}
func (r tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// TestVerifiedByXMod checks our tiles, bundles, checkpoints and proofs with
// golang.org/x/mod/sumdb/tlog and /note, at sizes that exercise partial tiles.
func TestVerifiedByXMod(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, vkey := newLog(t, db)
		verifier, err := note.NewVerifier(vkey)
		if err != nil {
			t.Fatal(err)
		}
		var prev civtlog.Checkpoint
		var have int64
		sizes := []int64{0, 1, 255, 256, 257, 65537}
		if testing.Short() {
			sizes = sizes[:5]
		}
		for _, size := range sizes {
			grow(t, db, have, size)
			have = size
			integrate(t, l, size)
			signed, cp, err := l.Latest(ctx)
			if err != nil {
				t.Fatal(err)
			}
			n, err := note.Open(signed, note.VerifierList(verifier))
			if err != nil {
				t.Fatalf("size %d: x/mod rejects our checkpoint: %v", size, err)
			}
			parsed, err := civtlog.ParseCheckpoint(n.Text)
			if err != nil || parsed != cp || cp.Size != size {
				t.Fatalf("size %d: checkpoint %+v / %+v, %v", size, parsed, cp, err)
			}
			if size == 0 {
				if cp.Root.String() != "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" {
					t.Fatalf("empty root %s", cp.Root)
				}
				prev = cp
				continue
			}
			tree := tlog.Tree{N: cp.Size, Hash: cp.Root}
			thr := tlog.TileHashReader(tree, tileReader{l, cp.Size})
			// The root recomputed from tiles matches the signed one.
			if h, err := tlog.TreeHash(cp.Size, thr); err != nil || h != cp.Root {
				t.Fatalf("size %d: tree hash from tiles %v, %v", size, h, err)
			}
			// Entries in bundles hash to the level-0 tile hashes, and their
			// inclusion proofs (ours and x/mod's over our tiles) check.
			for _, idx := range []int64{0, size / 2, size - 1} {
				bt := civtlog.Tile{Level: civtlog.EntriesLevel, N: idx / 256, W: int(min(256, size-idx/256*256))}
				bundle, err := l.ReadEntryBundle(ctx, bt, cp.Size)
				if err != nil {
					t.Fatalf("size %d: bundle %s: %v", size, bt.Path(), err)
				}
				entries, err := civtlog.SplitBundle(bundle)
				if err != nil || len(entries) != bt.W {
					t.Fatalf("size %d: bundle has %d entries, %v", size, len(entries), err)
				}
				leaf := tlog.RecordHash(entries[idx%256])
				p, err := tlog.ProveRecord(cp.Size, idx, thr)
				if err != nil {
					t.Fatalf("size %d: x/mod proof over our tiles: %v", size, err)
				}
				if err := tlog.CheckRecord(p, cp.Size, cp.Root, idx, leaf); err != nil {
					t.Fatalf("size %d entry %d: %v", size, idx, err)
				}
				ourLeaf, ours, err := l.InclusionProof(ctx, idx, cp.Size, cp.Size)
				if err != nil || ourLeaf != leaf {
					t.Fatalf("size %d: our inclusion proof: %v", size, err)
				}
				if err := tlog.CheckRecord(ours, cp.Size, cp.Root, idx, leaf); err != nil {
					t.Fatalf("size %d entry %d: our proof fails: %v", size, idx, err)
				}
			}
			// Consistency with the previous checkpoint.
			tp, err := l.ConsistencyProof(ctx, prev.Size, cp.Size, cp.Size)
			if err != nil {
				t.Fatal(err)
			}
			if prev.Size > 0 {
				if err := tlog.CheckTree(tp, cp.Size, cp.Root, prev.Size, prev.Root); err != nil {
					t.Fatalf("%d -> %d: consistency: %v", prev.Size, cp.Size, err)
				}
			}
			prev = cp
		}
		// Past the tree: not found; nonsense: bad request.
		if _, err := l.ReadTile(ctx, civtlog.Tile{Level: 0, N: 9999, W: 256}, prev.Size); !errors.Is(err, civtlog.ErrNotFound) {
			t.Fatalf("tile past the tree: %v", err)
		}
		if _, _, err := l.InclusionProof(ctx, prev.Size, prev.Size, prev.Size); !errors.Is(err, civtlog.ErrBadRequest) {
			t.Fatalf("proof past the tree: %v", err)
		}
		if _, err := l.ConsistencyProof(ctx, 5, 3, prev.Size); !errors.Is(err, civtlog.ErrBadRequest) {
			t.Fatalf("backwards consistency: %v", err)
		}
	})
}

// The entry and its event commit together or not at all.
func TestSequenceIsAtomic(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, _ := newLog(t, db)
		boom := errors.New("the event failed")
		err := db.Tx(ctx, func(tx *store.Tx) error {
			if _, err := civtlog.Sequence(ctx, tx, time.Now(), receipt(1)); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatal(err)
		}
		if _, err := civtlog.Sequence(ctx, nil, time.Now(), []byte("garbage")); !errors.Is(err, civtlog.ErrBadEntry) {
			t.Fatalf("garbage entry: %v", err)
		}
		idx, err := l.Append(ctx, receipt(2))
		if err != nil || idx != 0 {
			t.Fatalf("append after a rollback got index %d, %v", idx, err)
		}
		cp := integrate(t, l, 1)
		if cp.Size != 1 {
			t.Fatal(cp)
		}
	})
}

// SequenceWith writes the entry and rows that record its index together.
func TestSequenceWith(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, _ := newLog(t, db)
		if _, err := l.Append(ctx, receipt(1)); err != nil {
			t.Fatal(err)
		}
		var idx int64
		err := db.Tx(ctx, func(tx *store.Tx) error {
			var err error
			idx, err = civtlog.SequenceWith(ctx, tx, time.Now(), receipt(2),
				civtlog.Row{Table: "meta", Cols: []string{"name", "value"}, Vals: []any{"plain", "x"}},
				civtlog.Row{Table: "tlog_counters", IndexCol: "value", Cols: []string{"name"}, Vals: []any{"recorded"}})
			return err
		})
		if err != nil || idx != 1 {
			t.Fatalf("SequenceWith: index %d, %v", idx, err)
		}
		var recorded int64
		var plain string
		db.Reader().QueryRow("SELECT value FROM tlog_counters WHERE name = 'recorded'").Scan(&recorded)
		db.Reader().QueryRow("SELECT value FROM meta WHERE name = 'plain'").Scan(&plain)
		if recorded != 1 || plain != "x" {
			t.Fatalf("rows: recorded %d, plain %q", recorded, plain)
		}
		// A row that cannot be written takes the entry with it.
		err = db.Tx(ctx, func(tx *store.Tx) error {
			_, err := civtlog.SequenceWith(ctx, tx, time.Now(), receipt(3),
				civtlog.Row{Table: "meta", Cols: []string{"name", "value"}, Vals: []any{"plain", "again"}})
			return err
		})
		if !store.IsConflict(err) {
			t.Fatalf("duplicate row: %v", err)
		}
		if next, err := l.Append(ctx, receipt(4)); err != nil || next != 2 {
			t.Fatalf("after the rollback the next index is %d, %v; want 2", next, err)
		}
		if _, err := civtlog.SequenceWith(ctx, nil, time.Now(), receipt(5), civtlog.Row{Table: "meta", Cols: []string{"name"}}); !errors.Is(err, civtlog.ErrBadRequest) {
			t.Fatalf("mismatched row: %v", err)
		}
	})
}

// TestAppendWith: an append's own rows commit with its entry; one whose
// rows fail gets the error and leaves nothing, and the appends batched
// with it still commit.
func TestAppendWith(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		a := civtlog.NewAppender(db, time.Now, nil)
		done := make(chan struct{})
		go func() { a.Run(ctx); close(done) }()
		defer func() { cancel(); <-done }()
		const n = 20
		errs := make(chan error, n)
		for i := range n {
			go func() {
				_, err := a.AppendWith(ctx, receipt(int64(i)), func(tx *store.Tx, idx int64) error {
					if _, err := tx.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ($1, $2)", fmt.Sprintf("row-%d", i), fmt.Sprint(idx)); err != nil {
						return err
					}
					if i%5 == 0 {
						return errors.New("injected")
					}
					return nil
				})
				errs <- err
			}()
		}
		failed := 0
		for range n {
			if err := <-errs; err != nil {
				failed++
			}
		}
		var rows, entries int
		db.Reader().QueryRow("SELECT COUNT(*) FROM meta WHERE name LIKE 'row-%'").Scan(&rows)
		db.Reader().QueryRow("SELECT COUNT(*) FROM tlog_entries").Scan(&entries)
		if failed != n/5 || rows != n-n/5 || entries != n-n/5 {
			t.Fatalf("%d failed (want %d), %d rows and %d entries (want %d)", failed, n/5, rows, entries, n-n/5)
		}
	})
}

// seen is a BatchRead that marks its items and counts its calls.
type seen struct {
	mu    sync.Mutex
	calls int
}

func (s *seen) ReadBatch(_ context.Context, _ *store.Tx, items []any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	for _, it := range items {
		*it.(*bool) = true
	}
	return nil
}

// openingFor is write i's opening in TestAppendWrite: every third has one.
func openingFor(i int) []byte {
	if i%3 != 0 {
		return nil
	}
	return []byte(fmt.Sprintf("opening of %d", i))
}

func TestAppendWrite(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := db.Tx(ctx, func(tx *store.Tx) error {
			if _, err := tx.ExecContext(ctx, "CREATE TABLE aw_rows (name TEXT NOT NULL UNIQUE, idx BIGINT NOT NULL)"); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ('aw-open', '1')")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		a := civtlog.NewAppender(db, time.Now, nil)
		done := make(chan struct{})
		go func() { a.Run(ctx); close(done) }()
		defer func() { cancel(); <-done }()
		const n = 40
		type result struct {
			i    int
			idx  int64
			err  error
			read bool
		}
		results := make(chan result, n)
		reader := &seen{}
		for i := range n {
			go func() {
				cond := "aw-open"
				if i%4 == 1 {
					cond = "aw-closed" // no such row: the check fails
				}
				name := fmt.Sprintf("row-%d", i)
				if i == 6 || i == 10 {
					name = "row-twice" // one of the two must fail alone
				}
				var read bool
				idx, err := a.AppendWrite(ctx, receipt(int64(i)), civtlog.Write{
					Check: &civtlog.Check{Query: "SELECT 1 FROM meta WHERE name = $1", Args: []any{cond}},
					Read:  reader, Item: &read,
					With: func(tx *store.Tx, idx int64) error {
						_, err := tx.ExecContext(ctx, "INSERT INTO aw_rows (name, idx) VALUES ($1, $2)", name, idx)
						return err
					},
					Opening: openingFor(i),
				})
				results <- result{i, idx, err, read}
			}()
		}
		ok, checkFailed, other := 0, 0, 0
		for range n {
			r := <-results
			switch {
			case r.i%4 == 1:
				if !errors.Is(r.err, civtlog.ErrCheckFailed) {
					t.Errorf("write %d: failed check gave %v", r.i, r.err)
				}
				checkFailed++
			case r.err != nil:
				if r.i != 6 && r.i != 10 {
					t.Errorf("write %d: %v", r.i, r.err)
				}
				other++
			default:
				ok++
				if !r.read {
					t.Errorf("write %d committed without its batch read", r.i)
				}
				var got int64
				name := fmt.Sprintf("row-%d", r.i)
				if r.i == 6 || r.i == 10 {
					name = "row-twice"
				}
				if err := db.Reader().QueryRow("SELECT idx FROM aw_rows WHERE name = $1", name).Scan(&got); err != nil || got != r.idx {
					t.Errorf("write %d: row has index %d (%v), the append said %d", r.i, got, err, r.idx)
				}
				var data []byte
				var opening []byte
				if err := db.Reader().QueryRow("SELECT data, opening FROM tlog_entries WHERE idx = $1", r.idx).Scan(&data, &opening); err != nil || !bytes.Equal(data, receipt(int64(r.i))) {
					t.Errorf("write %d: entry %d is not its own (%v)", r.i, r.idx, err)
				}
				if want := openingFor(r.i); !bytes.Equal(opening, want) || (want == nil) != (opening == nil) {
					t.Errorf("write %d: entry %d has the opening %q, want %q", r.i, r.idx, opening, want)
				}
			}
		}
		var rows, entries int
		db.Reader().QueryRow("SELECT COUNT(*) FROM aw_rows").Scan(&rows)
		db.Reader().QueryRow("SELECT COUNT(*) FROM tlog_entries").Scan(&entries)
		if checkFailed != n/4 || other != 1 || rows != ok || entries != ok || ok != n-n/4-1 {
			t.Fatalf("%d committed, %d failed checks, %d other failures; %d rows, %d entries", ok, checkFailed, other, rows, entries)
		}
		t.Logf("%d writes in %d batch reads", n, reader.calls)
	})
}

// TestIntegrateHook: hooks see each integrated range once, in the
// checkpoint's transaction: a failing hook leaves no checkpoint, and the
// next integration gives it the same range again.
func TestIntegrateHook(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, _ := newLog(t, db)
		var ranges [][2]int64
		fail := true
		l.OnIntegrate(func(ctx context.Context, tx *store.Tx, from, to int64) error {
			if fail {
				fail = false
				return errors.New("hook failed")
			}
			ranges = append(ranges, [2]int64{from, to})
			return nil
		})
		for i := range 3 {
			if _, err := l.Append(ctx, receipt(int64(i))); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := l.Integrate(ctx); err == nil || !strings.Contains(err.Error(), "hook failed") {
			t.Fatalf("integration with a failing hook: %v", err)
		}
		if _, _, err := l.Latest(ctx); !errors.Is(err, civtlog.ErrNotFound) {
			t.Fatalf("a checkpoint was signed despite the hook: %v", err)
		}
		if _, _, err := l.Integrate(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(ctx, receipt(3)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := l.Integrate(ctx); err != nil {
			t.Fatal(err)
		}
		if _, _, err := l.Integrate(ctx); err != nil { // nothing new: no call
			t.Fatal(err)
		}
		if want := [][2]int64{{0, 3}, {3, 4}}; !slices.Equal(ranges, want) {
			t.Fatalf("hook ranges %v, want %v", ranges, want)
		}
	})
}

func TestKeepOrigin(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		keep := func(proposed, want string) {
			t.Helper()
			if got, err := civtlog.KeepOrigin(ctx, db, proposed); err != nil || got != want {
				t.Fatalf("KeepOrigin(%q) = %q, %v; want %q", proposed, got, err, want)
			}
		}
		// A log from before origins were stored: its checkpoint names it.
		l, _ := newLog(t, db)
		if _, err := l.Append(ctx, receipt(1)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := l.Integrate(ctx); err != nil {
			t.Fatal(err)
		}
		keep("moved.example/log", origin)
		keep("moved.example/log", origin) // stored now
		// A new log takes the first origin it is served with, and keeps it.
		if err := db.Tx(ctx, func(tx *store.Tx) error {
			if _, err := tx.ExecContext(ctx, `DELETE FROM tlog_checkpoints`); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `DELETE FROM meta WHERE name = 'tlog_origin'`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		keep("first.example/log", "first.example/log")
		keep("second.example/log", "first.example/log")
	})
}

func TestCheckVerifierKey(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := civtlog.NewEd25519Signer(origin, priv)
	if err != nil {
		t.Fatal(err)
	}
	vkey := s.VerifierKey()
	if err := civtlog.CheckVerifierKey(vkey); err != nil {
		t.Fatalf("the signer's own key: %v", err)
	}
	signer, _, _ := strings.Cut(vkey, "+") // no hash, no key
	for _, bad := range []string{"", "x", signer, vkey[:len(vkey)-4], vkey + "AAAA", strings.Replace(vkey, "+", "-", 1), "x" + strings.Repeat("é", 40)} {
		err := civtlog.CheckVerifierKey(bad)
		if err == nil {
			t.Errorf("%q: accepted", bad)
			continue
		}
		// The key is quoted, cut to 64 bytes; the message stays valid UTF-8.
		if msg := err.Error(); !strings.Contains(msg, "is not a log verifier key") || !utf8.ValidString(msg) || len(msg) > 200 {
			t.Errorf("%q: %q", bad, msg)
		}
	}
}
