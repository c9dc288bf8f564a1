package store

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"path/filepath"
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
// nil and no error when another process holds it. On PostgreSQL the lease is
// a session advisory lock on a dedicated connection, so it ends when its
// process dies; on SQLite it is an exclusive flock on DATA/name.lock.
func (db *DB) TryLease(ctx context.Context, name string) (Lease, error) {
	if db.dialect == SQLite {
		unlock, ok, err := tryLockFile(filepath.Join(db.dir, name+".lock"))
		if err != nil || !ok {
			return nil, err
		}
		return &fileLease{unlock: unlock}, nil
	}
	h := fnv.New64a()
	h.Write([]byte("civstack/" + name))
	key := int64(h.Sum64())
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("lease %s: %w", name, err)
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil {
		conn.Close()
		return nil, fmt.Errorf("lease %s: %w", name, err)
	}
	if !ok {
		conn.Close()
		return nil, nil
	}
	return &pgLease{conn: conn, key: key}, nil
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
	conn *sql.Conn
	key  int64
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
	l.conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", l.key)
	l.conn.Close()
	l.conn = nil
}
