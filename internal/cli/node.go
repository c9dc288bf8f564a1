package cli

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/civstack/civstack/internal/keyring"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/store"
)

// node is what every command that touches a civstack deployment opens.
type node struct {
	db   *store.DB
	keys *keyring.Ring
	reg  *registry.Registry
}

// storageFlags are shared by every command that opens a node.
type storageFlags struct {
	data, db *string
}

func addStorageFlags(f *flags) storageFlags {
	return storageFlags{
		data: f.String("data", "./civstack-data", "data directory: keys, and the SQLite database unless --db is given"),
		db:   f.String("db", "", "PostgreSQL URL (postgres://user:pass@host:5432/db); empty means SQLite in --data"),
	}
}

func (s storageFlags) describe() string {
	if *s.db != "" {
		return "PostgreSQL"
	}
	return "SQLite at " + filepath.Join(*s.data, "civstack.db")
}

// openNode opens the keys and the database and migrates it.
func openNode(ctx context.Context, e *env, s storageFlags, logger *slog.Logger) (*node, error) {
	db, err := store.Open(ctx, store.Options{URL: *s.db, DataDir: *s.data, Logger: logger})
	if err != nil {
		return nil, err
	}
	keys, err := keyring.Open(filepath.Join(*s.data, "keys"), e.now, rand.Reader)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("keys in %s: %w", *s.data, err)
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return &node{db: db, keys: keys, reg: registry.New(db, e.now, rand.Reader)}, nil
}
