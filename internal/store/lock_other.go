//go:build !unix

package store

// lockFile is a no-op where advisory file locks are not available; only one
// process may then migrate a SQLite data directory at a time.
func lockFile(string) (func(), error) { return func() {}, nil }

// tryLockFile always succeeds where advisory file locks are not available.
func tryLockFile(string, bool) (func(), bool, error) { return func() {}, true, nil }
