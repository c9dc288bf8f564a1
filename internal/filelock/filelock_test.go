//go:build unix

package filelock_test

import (
	"path/filepath"
	"testing"

	"github.com/civstack/civstack/internal/filelock"
)

// TestExclusion: an exclusive lock excludes every other, shared ones only
// an exclusive one, and a lock released lets the next in; opens within
// one process count as separate holders.
func TestExclusion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	try := func(shared bool) (func(), bool) {
		t.Helper()
		unlock, ok, err := filelock.TryLock(path, shared)
		if err != nil {
			t.Fatal(err)
		}
		return unlock, ok
	}
	unlock, err := filelock.Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := try(false); ok {
		t.Fatal("a second exclusive lock while one is held")
	}
	if _, ok := try(true); ok {
		t.Fatal("a shared lock while an exclusive one is held")
	}
	unlock()
	s1, ok1 := try(true)
	s2, ok2 := try(true)
	if !ok1 || !ok2 {
		t.Fatal("two shared locks exclude each other")
	}
	if _, ok := try(false); ok {
		t.Fatal("an exclusive lock while shared ones are held")
	}
	s1()
	s2()
	x, ok := try(false)
	if !ok {
		t.Fatal("no exclusive lock once every other is released")
	}
	x()
}
