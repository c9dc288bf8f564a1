package tlog_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	civtlog "github.com/civstack/civstack/internal/tlog"
)

// health is a health entry, another kind than receipt's.
func health(i int64) []byte {
	e := &civtlog.Entry{Kind: civtlog.KindHealth, Event: civtlog.EventUpheld, Subject: "rules 1", Time: time.UnixMilli(1_790_000_000_000 + i)}
	copy(e.Hash[:], fmt.Sprintf("health %d", i))
	b, err := e.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// TestCounts: the counts by kind carry on from one call to the next, equal
// a fresh count at every size, and an older size than counted is counted
// afresh without spoiling the kept counts.
func TestCounts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, _ := newLog(t, db)
		add := func(entries ...[]byte) {
			t.Helper()
			if err := db.Tx(ctx, func(tx *store.Tx) error {
				_, err := civtlog.Sequence(ctx, tx, time.Now(), entries...)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		check := func(log *civtlog.Log, size, receipts, healths int64) {
			t.Helper()
			got, err := log.Counts(ctx, size)
			if err != nil {
				t.Fatal(err)
			}
			if got[civtlog.KindReceipt] != receipts || got[civtlog.KindHealth] != healths || len(got) > 2 {
				t.Fatalf("counts below %d: %v, want %d receipts and %d health entries", size, got, receipts, healths)
			}
		}
		add(receipt(0), receipt(1), health(2))
		check(l, 3, 2, 1)
		add(health(3), health(4), receipt(5))
		check(l, 6, 3, 3)
		check(l, 4, 2, 2) // an older checkpoint's size
		check(l, 6, 3, 3)
		add(receipt(6))
		check(l, 7, 4, 3)
		fresh, _ := newLog(t, db) // another process, counting from nothing
		check(fresh, 7, 4, 3)
		got, _ := l.Counts(ctx, 7)
		got[civtlog.KindReceipt] = 99 // the caller's copy
		check(l, 7, 4, 3)
	})
}

// BenchmarkCounts: the public log page's counts on a log of 200,000
// entries. Baseline in the same run: the count from nothing (a fresh
// process's first load, and what every load cost before the counts were
// kept); then a later load with 20 new entries since the last.
func BenchmarkCounts(b *testing.B) {
	db := storetest.OpenMigrated(b, store.Options{DataDir: b.TempDir()})
	ctx := context.Background()
	const size = 200_000
	grow(b, db, 0, size)
	b.Run("from-nothing", func(b *testing.B) {
		for b.Loop() {
			l, _ := newLog(b, db)
			if _, err := l.Counts(ctx, size); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("kept", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			l, _ := newLog(b, db) // counted to size-20 outside the timer
			if _, err := l.Counts(ctx, size-20); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := l.Counts(ctx, size); err != nil {
				b.Fatal(err)
			}
		}
	})
}
