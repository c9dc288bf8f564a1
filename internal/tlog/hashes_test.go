package tlog

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestReadHashesLists reads lists of stored hashes of every bucket's edge
// (the SQLite queries are padded to powers of two and split at 512) and
// with repeated ids, and checks each hash against the one read alone and
// against the tree hash x/mod computes from them.
func TestReadHashesLists(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		s, err := NewEd25519Signer("civstack.test/hashes", priv)
		if err != nil {
			t.Fatal(err)
		}
		l, err := New(db, s.Name(), s, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		const size = 700
		batch := make([][]byte, size)
		for i := range batch {
			e := &Entry{Kind: KindReceipt, Time: time.UnixMilli(1_790_000_000_000)}
			e.Hash[0], e.Hash[1] = byte(i), byte(i>>8)
			if batch[i], err = e.Marshal(); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Tx(ctx, func(tx *store.Tx) error { _, err := Sequence(ctx, tx, time.Now(), batch...); return err }); err != nil {
			t.Fatal(err)
		}
		cp := Checkpoint{}
		for cp.Size < size {
			if cp, _, err = l.Integrate(ctx); err != nil {
				t.Fatal(err)
			}
		}
		hr := l.readHashes(ctx, nil)
		alone := map[int64]tlog.Hash{}
		for i := range int64(size) {
			id := tlog.StoredHashIndex(0, i)
			hs, err := hr.ReadHashes([]int64{id})
			if err != nil {
				t.Fatal(err)
			}
			if hs[0] != tlog.RecordHash(batch[i]) {
				t.Fatalf("leaf %d: stored hash is not the entry's record hash", i)
			}
			alone[id] = hs[0]
		}
		for _, n := range []int{2, 3, 4, 5, 255, 256, 257, 511, 512, 513, 700} {
			ids := make([]int64, n)
			for i := range ids {
				ids[i] = tlog.StoredHashIndex(0, int64((i*7)%n))
			}
			ids = append(ids, ids[0], ids[n/2]) // repeated ids
			hs, err := hr.ReadHashes(ids)
			if err != nil {
				t.Fatalf("%d ids: %v", n, err)
			}
			for i, id := range ids {
				if hs[i] != alone[id] {
					t.Fatalf("%d ids: hash %d differs from the one read alone", n, i)
				}
			}
		}
		root, err := tlog.TreeHash(size, hr)
		if err != nil || root != cp.Root {
			t.Fatalf("tree hash from the read hashes: %v (err %v), checkpoint has %v", root, err, cp.Root)
		}
		// A hash never stored is reported, also among stored ones.
		if _, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, 1), tlog.StoredHashIndex(0, size+5), tlog.StoredHashIndex(0, 2)}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a missing hash: %v, want ErrNotFound", err)
		}
	})
}
