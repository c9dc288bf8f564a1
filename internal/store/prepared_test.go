package store

import (
	"context"
	"strings"
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

// PaddedIn pads to powers of two by repeating the last value, up to 2048
// values, and lists longer ones as they are; a padded IN list selects the
// same rows as the unpadded one.
func TestPaddedIn(t *testing.T) {
	for _, c := range []struct{ n, want int }{{1, 1}, {2, 2}, {3, 4}, {5, 8}, {128, 128}, {129, 256}, {2048, 2048}, {2049, 2049}, {3000, 3000}} {
		vals := make([]int, c.n)
		for i := range vals {
			vals[i] = i + 1
		}
		ph, args := PaddedIn(vals)
		if got := strings.Count(ph, "?"); got != c.want || len(args) != c.want {
			t.Errorf("%d values: %d placeholders and %d args, want %d", c.n, got, len(args), c.want)
			continue
		}
		for i, a := range args {
			if want := min(i+1, c.n); a != want {
				t.Fatalf("%d values: arg %d is %v, want %d", c.n, i, a, want)
			}
		}
	}
	ctx := context.Background()
	db, err := Open(ctx, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Tx(ctx, func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, "CREATE TABLE t (k INTEGER PRIMARY KEY)"); err != nil {
			return err
		}
		return tx.InsertRows(ctx, "t", []string{"k"}, [][]any{{1}, {2}, {3}, {4}, {5}, {6}})
	}); err != nil {
		t.Fatal(err)
	}
	ph, args := PaddedIn([]int{2, 5, 6})
	var n, sum int
	if err := db.Reader().QueryRowContext(ctx, "SELECT COUNT(*), SUM(k) FROM t WHERE k IN ("+ph+")", args...).Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != 3 || sum != 13 {
		t.Fatalf("padded IN list selected %d rows summing to %d, want 3 and 13", n, sum)
	}
}
