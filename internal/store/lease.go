package store

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"path/filepath"

	"github.com/civstack/civstack/internal/filelock"
)

// Lease is the right to be the only process doing a named job (such as
// integrating the transparency log) on one database.
type Lease interface {
	// Check reports an error once the lease may have been lost (the
	// connection holding it died); the holder must then stop the job.
	Check(ctx context.Context) error
	// Release gives the lease up. Safe to call more than once.
	Release()
}

// TryLease tries, without waiting, to take the lease called name. It returns
// nil and no error when another process holds it (or, for a lease that is
// also taken shared, any process holds it shared). On PostgreSQL the lease
// is a session advisory lock on a dedicated connection, so it ends when its
// process dies; on SQLite it is an exclusive flock on DATA/name.lock.
func (db *DB) TryLease(ctx context.Context, name string) (Lease, error) {
	return db.tryLease(ctx, name, false)
}

// TryLeaseShared tries, without waiting, to take the lease called name
// shared: any number of processes may hold it so at once, and while one
// does, TryLease of the same name fails (and while TryLease's holder has
// it, TryLeaseShared returns nil and no error). The nodes of a deployment
// hold one such lease for as long as they run, so that a command that
// must run with every node stopped can tell whether any still runs.
func (db *DB) TryLeaseShared(ctx context.Context, name string) (Lease, error) {
	return db.tryLease(ctx, name, true)
}

func (db *DB) tryLease(ctx context.Context, name string, shared bool) (Lease, error) {
	if db.dialect == SQLite {
		unlock, ok, err := filelock.TryLock(filepath.Join(db.dir, name+".lock"), shared)
		if err != nil || !ok {
			return nil, err
		}
		return &fileLease{unlock: unlock}, nil
	}
	h := fnv.New64a()
	h.Write([]byte("civstack/" + name))
	key := int64(h.Sum64())
	// A shared lease is held for a process's life: its connection comes
	// from the larger read pool, so that the writes keep all of theirs.
	pool, lock := db.write, "pg_try_advisory_lock"
	if shared {
		pool, lock = db.read, "pg_try_advisory_lock_shared"
	}
	conn, err := pool.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("lease %s: %w", name, err)
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT "+lock+"($1)", key).Scan(&ok); err != nil {
		conn.Close()
		return nil, fmt.Errorf("lease %s: %w", name, err)
	}
	if !ok {
		conn.Close()
		return nil, nil
	}
	return &pgLease{conn: conn, key: key, shared: shared}, nil
}

type fileLease struct{ unlock func() }

func (l *fileLease) Check(context.Context) error { return nil }
func (l *fileLease) Release() {
	if l.unlock != nil {
		l.unlock()
		l.unlock = nil
	}
}

type pgLease struct {
	conn   *sql.Conn
	key    int64
	shared bool
}

func (l *pgLease) Check(ctx context.Context) error {
	if l.conn == nil {
		return fmt.Errorf("lease released")
	}
	return l.conn.PingContext(ctx)
}

func (l *pgLease) Release() {
	if l.conn == nil {
		return
	}
	unlock := "pg_advisory_unlock"
	if l.shared {
		unlock = "pg_advisory_unlock_shared"
	}
	l.conn.ExecContext(context.Background(), "SELECT "+unlock+"($1)", l.key)
	l.conn.Close()
	l.conn = nil
}
