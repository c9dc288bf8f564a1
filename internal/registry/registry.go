// Package registry owns the people and organisations civstack knows: people
// (every person is a citizen) with their passkeys and sign-in sessions,
// organisations with their roles (merchant, issuer, verifier, agency,
// data-protection authority, operator), the memberships that give people a
// role in an organisation, and the API tokens organisations' systems use.
// Secrets (session cookies, API tokens, setup links, ceremony handles) are
// stored only as SHA-256 hashes.
package registry

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/text"
)

// Sentinel errors.
var (
	ErrNotFound       = store.ErrNotFound
	ErrInvalid        = errors.New("invalid")
	ErrBadToken       = errors.New("unknown, revoked or malformed token")
	ErrExpired        = errors.New("expired")
	ErrLastPasskey    = errors.New("a person must keep at least one passkey")
	ErrLastOperator   = errors.New("the node must keep at least one operator")
	ErrModeMismatch   = errors.New("database mode mismatch")
	ErrRoleNotOffered = errors.New("the organisation does not have that role")
)

// Registry reads and writes the registry tables. It is safe for concurrent
// use; every method that writes more than one row does so in one transaction.
type Registry struct {
	db   *store.DB
	now  func() time.Time
	rand io.Reader
}

// New returns a Registry over db using the given clock and randomness source.
func New(db *store.DB, now func() time.Time, rand io.Reader) *Registry {
	return &Registry{db: db, now: now, rand: rand}
}

func (r *Registry) newID() (string, error) {
	id, err := uuid.NewV7FromReader(r.rand)
	if err != nil {
		return "", fmt.Errorf("new id: %w", err)
	}
	return id.String(), nil
}

// secret returns n random bytes.
func (r *Registry) secret(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r.rand, b); err != nil {
		return nil, fmt.Errorf("randomness: %w", err)
	}
	return b, nil
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// newSecretString returns prefix followed by 32 random bytes in lower-case
// base32, and the SHA-256 hash under which it is stored.
func (r *Registry) newSecretString(prefix string) (string, []byte, error) {
	b, err := r.secret(32)
	if err != nil {
		return "", nil, err
	}
	s := prefix + strings.ToLower(b32.EncodeToString(b))
	return s, hashSecret(s), nil
}

func hashSecret(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func fromNullMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

// cleanName validates a human-given name: trimmed, 1 to max characters, no
// control characters and no bidirectional embedding, override or isolate
// (U+202A–U+202E, U+2066–U+2069), which would make an organisation's name
// read otherwise on a citizen's page than it is written. The marks LRM,
// RLM and ALM of right-to-left names may be in it.
func cleanName(what, s string, max int) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, what)
	}
	if utf8.RuneCountInString(s) > max {
		return "", fmt.Errorf("%w: %s is longer than %d characters", ErrInvalid, what, max)
	}
	switch text.LineFault(s) {
	case text.HasControl:
		return "", fmt.Errorf("%w: %s contains a line break or another control character", ErrInvalid, what)
	case text.HasReorder:
		return "", fmt.Errorf("%w: %s contains a bidirectional override (U+202A to U+202E or U+2066 to U+2069)", ErrInvalid, what)
	}
	return s, nil
}

// notFound turns sql.ErrNoRows into ErrNotFound with context.
func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Mode is how a database was created: with demo data or for real use.
type Mode string

// The two modes.
const (
	ModeDemo       Mode = "demo"
	ModeProduction Mode = "production"
)

// EnsureMode records want as the database's mode on first start, and refuses
// with ErrModeMismatch when the database was created in the other mode, so
// that demo people never appear in a real deployment and real people never
// sit beside the persona switcher.
func (r *Registry) EnsureMode(ctx context.Context, want Mode) error {
	return r.db.Tx(ctx, func(tx *store.Tx) error {
		var have string
		err := tx.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = 'mode'").Scan(&have)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = tx.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ('mode', $1)", string(want))
			return err
		case err != nil:
			return fmt.Errorf("read mode: %w", err)
		case Mode(have) != want:
			return fmt.Errorf("%w: the database holds %s data", ErrModeMismatch, have)
		}
		return nil
	})
}
