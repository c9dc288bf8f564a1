package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/civstack/civstack/internal/store"
)

// TokenPrefix starts every API token, so that leaked tokens are easy to spot
// by secret scanners.
const TokenPrefix = "cvs_"

// APIToken is an organisation's credential for the machine API, scoped to one
// of its roles. The secret itself is shown once and stored only as a hash.
type APIToken struct {
	ID         string
	OrgID      string
	Role       Role
	Label      string
	CreatedBy  string // person id, empty when made by the command line
	CreatedAt  time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
	ExpiresAt  *time.Time // nil: it does not expire

	// Set by Tokens only:
	CreatorName string // the display name of the person who made it, "" when none did
	CreatorLeft bool   // that person may no longer make it (a token made before Revoke revoked such tokens)
}

// Expired reports whether the token has stopped working by now.
func (t *APIToken) Expired(now time.Time) bool {
	return t.ExpiresAt != nil && !now.Before(*t.ExpiresAt)
}

// ErrTokenExpired: the token was valid but its time ran out (it is also an
// ErrBadToken).
var ErrTokenExpired = errors.New("the API token has expired")

// MaxTokenLife bounds how long a token made to expire may last.
const MaxTokenLife = 5 * 366 * 24 * time.Hour

// ErrMadeBefore: the form's key made a token already (the form was sent
// twice). That token's secret was shown then, once; it is returned without
// its secret.
var ErrMadeBefore = errors.New("this form made a token already")

// MaxTokenKey bounds CreateTokenOnce's key.
const MaxTokenKey = 64

// tokenKeys is the UUID namespace of tokens made with a form's key.
var tokenKeys = uuid.MustParse("c3a9e0d4-7b15-4f62-8e0a-5d1f2b6c9a47")

// CreateToken issues a token for org scoped to role, returning the secret
// (to show once) and its record.
func (r *Registry) CreateToken(ctx context.Context, orgID string, role Role, label, createdBy string) (string, *APIToken, error) {
	return r.CreateTokenOnce(ctx, orgID, role, label, createdBy, "", 0)
}

// CreateTokenOnce is CreateToken for a form that carries a key (fresh each
// time it is shown): the organisation and key name one token, so a second
// send makes none and returns the first with ErrMadeBefore. A token made
// with validFor > 0 stops working that long after it is made.
func (r *Registry) CreateTokenOnce(ctx context.Context, orgID string, role Role, label, createdBy, key string, validFor time.Duration) (string, *APIToken, error) {
	label, err := cleanName("token label", label, 80)
	if err != nil {
		return "", nil, err
	}
	if validFor < 0 || validFor > MaxTokenLife {
		return "", nil, fmt.Errorf("%w: a token lasts at most %d days", ErrInvalid, int(MaxTokenLife.Hours()/24))
	}
	if len(key) > MaxTokenKey {
		return "", nil, fmt.Errorf("%w: a form key is at most %d characters", ErrInvalid, MaxTokenKey)
	}
	id, err := r.newID()
	if err != nil {
		return "", nil, err
	}
	if key != "" {
		id = uuid.NewSHA1(tokenKeys, []byte(orgID+"\x00"+key)).String()
	}
	secret, hash, err := r.newSecretString(TokenPrefix)
	if err != nil {
		return "", nil, err
	}
	t := &APIToken{ID: id, OrgID: orgID, Role: role, Label: label, CreatedBy: createdBy, CreatedAt: r.now().UTC()}
	var expires sql.NullInt64
	if validFor > 0 {
		at := t.CreatedAt.Add(validFor)
		t.ExpiresAt, expires = &at, sql.NullInt64{Int64: ms(at), Valid: true}
	}
	err = r.db.Tx(ctx, func(tx *store.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, "SELECT 1 FROM organisations WHERE id = $1", orgID).Scan(&one); err != nil {
			return notFound(err, "organisation")
		}
		err := tx.QueryRowContext(ctx, "SELECT 1 FROM org_roles WHERE org_id = $1 AND role = $2", orgID, string(role)).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrRoleNotOffered, role.Title())
		}
		if err != nil {
			return fmt.Errorf("check organisation role: %w", err)
		}
		res, err := tx.ExecContext(ctx,
			"INSERT INTO api_tokens (id, org_id, role, label, hash, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
			t.ID, t.OrgID, string(t.Role), t.Label, hash, nullString(createdBy), ms(t.CreatedAt), expires)
		if err != nil {
			return fmt.Errorf("insert token: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return ErrMadeBefore
		}
		return nil
	})
	if errors.Is(err, ErrMadeBefore) {
		first, err := scanToken(r.db.QueryRowRead(ctx, "SELECT "+tokenColumns+" FROM api_tokens t WHERE t.id = $1 AND t.org_id = $2", t.ID, orgID))
		if err != nil {
			return "", nil, notFound(err, "token")
		}
		return "", first, ErrMadeBefore
	}
	if err != nil {
		return "", nil, err
	}
	return secret, t, nil
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

const tokenColumns = "t.id, t.org_id, t.role, t.label, t.created_by, t.created_at, t.last_used_at, t.revoked_at, t.expires_at"

// scanToken reads tokenColumns, then into extra whatever columns follow.
func scanToken(row interface{ Scan(...any) error }, extra ...any) (*APIToken, error) {
	var t APIToken
	var role string
	var by sql.NullString
	var created int64
	var used, revoked, expires sql.NullInt64
	if err := row.Scan(append([]any{&t.ID, &t.OrgID, &role, &t.Label, &by, &created, &used, &revoked, &expires}, extra...)...); err != nil {
		return nil, err
	}
	t.Role, t.CreatedBy, t.CreatedAt = Role(role), by.String, fromMS(created)
	t.LastUsedAt, t.RevokedAt, t.ExpiresAt = fromNullMS(used), fromNullMS(revoked), fromNullMS(expires)
	return &t, nil
}

// Tokens lists an organisation's tokens, revoked ones included, newest
// first, each with the name of the person who made it and whether that
// person may still make it.
func (r *Registry) Tokens(ctx context.Context, orgID string) ([]*APIToken, error) {
	rows, err := r.db.Reader().QueryContext(ctx, `SELECT `+tokenColumns+`, COALESCE(p.display_name, ''),
		t.created_by IS NOT NULL
		AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.person_id = t.created_by AND m.role = $2)
		AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.person_id = t.created_by AND m.org_id = t.org_id AND m.role = t.role)
		FROM api_tokens t LEFT JOIN people p ON p.id = t.created_by WHERE t.org_id = $1 ORDER BY t.created_at DESC, t.id DESC`, orgID, string(Operator))
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []*APIToken
	for rows.Next() {
		var name string
		var left bool
		t, err := scanToken(rows, &name, &left)
		if err != nil {
			return nil, fmt.Errorf("scan token: %w", err)
		}
		t.CreatorName, t.CreatorLeft = name, left
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken revokes one of org's tokens. Revoking twice is not an error.
func (r *Registry) RevokeToken(ctx context.Context, orgID, tokenID string) error {
	return r.db.Tx(ctx, func(tx *store.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, "SELECT 1 FROM api_tokens WHERE id = $1 AND org_id = $2", tokenID, orgID).Scan(&one); err != nil {
			return notFound(err, "token")
		}
		_, err := tx.ExecContext(ctx, "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL", ms(r.now()), tokenID)
		return err
	})
}

// Authenticate resolves a presented token secret to its live token and
// organisation, or ErrBadToken. Demo organisations' tokens are refused unless
// allowDemo.
func (r *Registry) Authenticate(ctx context.Context, secret string, allowDemo bool) (*APIToken, *Organisation, error) {
	if !strings.HasPrefix(secret, TokenPrefix) || len(secret) > 200 {
		return nil, nil, ErrBadToken
	}
	t, err := scanToken(r.db.QueryRowRead(ctx,
		"SELECT "+tokenColumns+" FROM api_tokens t WHERE t.hash = $1", hashSecret(secret)))
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil, ErrBadToken
		}
		return nil, nil, fmt.Errorf("look up token: %w", err)
	}
	if t.RevokedAt != nil {
		return nil, nil, ErrBadToken
	}
	if t.Expired(r.now()) {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadToken, ErrTokenExpired)
	}
	org, err := r.Organisation(ctx, t.OrgID)
	if err != nil {
		return nil, nil, err
	}
	if org.Demo && !allowDemo {
		return nil, nil, ErrBadToken
	}
	// Last use is recorded at most once a minute so that busy systems do not
	// write on every request; the condition in the statement lets the many
	// requests that see the same stale time at once write it only once,
	// without serialization failures (and their retries) between them.
	now := r.now()
	if t.LastUsedAt == nil || now.Sub(*t.LastUsedAt) > time.Minute {
		_ = r.db.Touch(ctx, "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
			ms(now), t.ID, ms(now.Add(-time.Minute)))
	}
	return t, org, nil
}
