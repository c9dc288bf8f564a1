package tlog_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	civtlog "github.com/civstack/civstack/internal/tlog"
)

// TestMark: a mark round-trips through its file; the log that signed it
// passes its check, before and after it grows; a log behind it (a restored
// backup), one with other entries (another database) and one of another
// origin are reported as rewound, saying how.
func TestMark(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, _ := newLog(t, db)
		path := filepath.Join(t.TempDir(), "log.checkpoint")
		if _, ok, err := civtlog.ReadMark(path); ok || err != nil {
			t.Fatalf("no mark yet: %v %v", ok, err)
		}
		if err := l.CheckMark(ctx, civtlog.Checkpoint{Origin: origin, Root: civtlog.EmptyRoot}); err != nil {
			t.Fatalf("an empty mark on an empty log: %v", err)
		}
		grow(t, db, 0, 300)
		cp := integrate(t, l, 300)
		if err := civtlog.WriteMark(path, cp); err != nil {
			t.Fatal(err)
		}
		mark, ok, err := civtlog.ReadMark(path)
		if err != nil || !ok || mark != cp {
			t.Fatalf("read back %v %v %v, want %v", mark, ok, err, cp)
		}
		if err := l.CheckMark(ctx, mark); err != nil {
			t.Fatalf("the log that signed it: %v", err)
		}
		grow(t, db, 300, 420)
		integrate(t, l, 420)
		if err := l.CheckMark(ctx, mark); err != nil {
			t.Fatalf("the same log, grown: %v", err)
		}

		// A log behind the mark: the database was restored from a backup.
		ahead := mark
		ahead.Size = 500
		if err := l.CheckMark(ctx, ahead); !errors.Is(err, civtlog.ErrRewound) || !strings.Contains(err.Error(), "ends at size 420") || !strings.Contains(err.Error(), "size 500") {
			t.Fatalf("a log behind the mark: %v", err)
		}
		// Another root at the mark's size: another database.
		other := mark
		other.Root[0] ^= 1
		if err := l.CheckMark(ctx, other); !errors.Is(err, civtlog.ErrRewound) || !strings.Contains(err.Error(), "another root") {
			t.Fatalf("another root: %v", err)
		}
		elsewhere := mark
		elsewhere.Origin = "elsewhere.example/log"
		if err := l.CheckMark(ctx, elsewhere); !errors.Is(err, civtlog.ErrRewound) || !strings.Contains(err.Error(), "elsewhere.example/log") {
			t.Fatalf("another origin: %v", err)
		}
	})

	// A damaged mark file is an error, not "no mark".
	path := filepath.Join(t.TempDir(), "log.checkpoint")
	os.WriteFile(path, []byte("not a checkpoint"), 0o600)
	if _, ok, err := civtlog.ReadMark(path); err == nil || ok {
		t.Fatalf("a damaged mark: %v %v", ok, err)
	}
}
