package store

import (
	"context"
	"testing"
)

// A statement a transaction missed is prepared once the writer is free, and
// later transactions use it; results are the same either way.
func TestPreparedCache(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Tx(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	const ins = "INSERT INTO t (k, v) VALUES ($1, $2)"
	for i := 1; i <= 3; i++ {
		if err := db.Tx(ctx, func(tx *Tx) error {
			_, err := tx.ExecPrepared(ctx, ins, i, "x")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		db.prepared.mu.Lock()
		cached := db.prepared.stmts[ins] != nil
		db.prepared.mu.Unlock()
		if !cached {
			t.Fatalf("after transaction %d the insert is not prepared", i)
		}
	}
	var n int
	err = db.Tx(ctx, func(tx *Tx) error {
		rows, err := tx.QueryPrepared(ctx, "SELECT COUNT(*) FROM t WHERE v = $1", "x")
		if err != nil {
			return err
		}
		defer rows.Close()
		rows.Next()
		return rows.Scan(&n)
	})
	if err != nil || n != 3 {
		t.Fatalf("count %d, %v", n, err)
	}
}
