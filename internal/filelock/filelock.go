// Package filelock takes advisory locks on files, so that processes sharing
// a data directory (a SQLite database's migrations and leases, the keys
// directory a first start fills) take turns. On systems without advisory
// file locks the functions lock nothing; only one process may then use a
// data directory at a time.
package filelock

// Lock takes an exclusive lock on path (created if needed), waiting for
// other holders to release theirs. Two opens of path exclude each other
// even within one process. unlock releases it.
func Lock(path string) (unlock func(), err error) { return lock(path) }

// TryLock is Lock without waiting, or, with shared, a shared lock (which
// only an exclusive one excludes): ok is false when another holder has a
// lock that excludes it.
func TryLock(path string, shared bool) (unlock func(), ok bool, err error) {
	return tryLock(path, shared)
}
