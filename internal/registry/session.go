package registry

import (
	"github.com/civstack/civstack/internal/store"

	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// NewSession starts a sign-in session for a person and returns the cookie
// value (shown to the browser only; stored hashed).
func (r *Registry) NewSession(ctx context.Context, personID string, ttl time.Duration) (string, error) {
	b, err := r.secret(32)
	if err != nil {
		return "", err
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	now := r.now()
	err = r.db.Tx(ctx, func(tx *store.Tx) error {
		// Expired sessions are swept as new ones start, so the table stays small.
		if _, err := tx.ExecContext(ctx, "DELETE FROM sessions WHERE expires_at < $1", ms(now)); err != nil {
			return fmt.Errorf("sweep sessions: %w", err)
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO sessions (hash, person_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
			hashSecret(token), personID, ms(now), ms(now.Add(ttl)))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("new session: %w", err)
	}
	return token, nil
}

// SessionPerson resolves a session cookie to its person: ErrNotFound for an
// unknown cookie, ErrExpired for one past its time.
func (r *Registry) SessionPerson(ctx context.Context, token string) (*Person, error) {
	if token == "" || len(token) > 100 {
		return nil, fmt.Errorf("session: %w", ErrNotFound)
	}
	var personID string
	var expires int64
	err := r.db.Reader().QueryRowContext(ctx, "SELECT person_id, expires_at FROM sessions WHERE hash = $1", hashSecret(token)).Scan(&personID, &expires)
	if err != nil {
		return nil, notFound(err, "session")
	}
	if r.now().UnixMilli() >= expires {
		return nil, fmt.Errorf("session: %w", ErrExpired)
	}
	return r.Person(ctx, personID)
}

// EndSession signs a session out. Unknown sessions are ignored.
func (r *Registry) EndSession(ctx context.Context, token string) error {
	return r.db.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM sessions WHERE hash = $1", hashSecret(token))
		return err
	})
}

// OtherSessions counts the person's sessions, still running, other than
// the one of token.
func (r *Registry) OtherSessions(ctx context.Context, personID, token string) (int, error) {
	var n int
	err := r.db.Reader().QueryRowContext(ctx, "SELECT COUNT(*) FROM sessions WHERE person_id = $1 AND hash <> $2 AND expires_at > $3",
		personID, hashSecret(token), ms(r.now())).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	return n, nil
}

// EndOtherSessions signs out every session of the person except the one of
// keep, and returns how many were still running.
func (r *Registry) EndOtherSessions(ctx context.Context, personID, keep string) (int, error) {
	var ended int
	err := r.db.Tx(ctx, func(tx *store.Tx) error {
		var err error
		ended, err = r.endOtherSessions(ctx, tx, personID, keep)
		return err
	})
	if err != nil {
		return 0, err
	}
	return ended, nil
}

func (r *Registry) endOtherSessions(ctx context.Context, tx *store.Tx, personID, keep string) (int, error) {
	var running int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM sessions WHERE person_id = $1 AND hash <> $2 AND expires_at > $3",
		personID, hashSecret(keep), ms(r.now())).Scan(&running); err != nil {
		return 0, fmt.Errorf("count sessions: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM sessions WHERE person_id = $1 AND hash <> $2", personID, hashSecret(keep)); err != nil {
		return 0, fmt.Errorf("end sessions: %w", err)
	}
	return running, nil
}

// SaveCeremony keeps the server half of a WebAuthn ceremony (kind says which)
// and returns the handle the browser must bring back.
func (r *Registry) SaveCeremony(ctx context.Context, kind, personID string, data []byte, ttl time.Duration) (string, error) {
	b, err := r.secret(24)
	if err != nil {
		return "", err
	}
	handle := base64.RawURLEncoding.EncodeToString(b)
	now := r.now()
	err = r.db.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM ceremonies WHERE expires_at < $1", ms(now)); err != nil {
			return fmt.Errorf("sweep ceremonies: %w", err)
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO ceremonies (hash, kind, person_id, data, expires_at) VALUES ($1, $2, $3, $4, $5)",
			hashSecret(handle), kind, nullString(personID), data, ms(now.Add(ttl)))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("save ceremony: %w", err)
	}
	return handle, nil
}

// TakeCeremony returns and deletes a saved ceremony of the given kind, so
// that each can finish at most once.
func (r *Registry) TakeCeremony(ctx context.Context, handle, kind string) (personID string, data []byte, err error) {
	err = r.db.Tx(ctx, func(tx *store.Tx) error {
		var pid sql.NullString
		var expires int64
		err := tx.QueryRowContext(ctx, "SELECT person_id, data, expires_at FROM ceremonies WHERE hash = $1 AND kind = $2",
			hashSecret(handle), kind).Scan(&pid, &data, &expires)
		if err != nil {
			return notFound(err, "ceremony")
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM ceremonies WHERE hash = $1", hashSecret(handle)); err != nil {
			return err
		}
		if r.now().UnixMilli() >= expires {
			return fmt.Errorf("ceremony: %w", ErrExpired)
		}
		personID = pid.String
		return nil
	})
	if errors.Is(err, ErrExpired) {
		return "", nil, err
	}
	return personID, data, err
}
