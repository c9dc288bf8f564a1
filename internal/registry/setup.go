package registry

import (
	"github.com/civstack/civstack/internal/store"

	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// OperatorOrgName is the organisation the first operator joins.
const OperatorOrgName = "civstack operators"

// SetupPrefix starts one-time operator setup codes.
const SetupPrefix = "setup_"

// OperatorSetup returns a fresh one-time code that makes the person who
// redeems it an operator, when no non-demo person is an operator yet; it
// returns "" once one is. Each call replaces earlier unredeemed codes, so only
// the newest printed code works.
func (r *Registry) OperatorSetup(ctx context.Context, ttl time.Duration) (string, error) {
	var code string
	err := r.db.Tx(ctx, func(tx *store.Tx) error {
		var n int
		err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM memberships m JOIN people p ON p.id = m.person_id
			WHERE m.role = $1 AND p.demo = $2`, string(Operator), false).Scan(&n)
		if err != nil {
			return fmt.Errorf("count operators: %w", err)
		}
		if n > 0 {
			return nil
		}
		var orgID string
		err = tx.QueryRowContext(ctx, "SELECT id FROM organisations WHERE name = $1", OperatorOrgName).Scan(&orgID)
		if errors.Is(err, sql.ErrNoRows) {
			if orgID, err = r.newID(); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO organisations (id, name, demo, created_at) VALUES ($1, $2, $3, $4)",
				orgID, OperatorOrgName, false, ms(r.now())); err != nil {
				return fmt.Errorf("insert operator organisation: %w", err)
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO org_roles (org_id, role) VALUES ($1, $2)", orgID, string(Operator)); err != nil {
				return fmt.Errorf("insert operator role: %w", err)
			}
		} else if err != nil {
			return fmt.Errorf("find operator organisation: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM setup_tokens"); err != nil {
			return fmt.Errorf("clear setup codes: %w", err)
		}
		secret, hash, err := r.newSecretString(SetupPrefix)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO setup_tokens (hash, org_id, role, expires_at) VALUES ($1, $2, $3, $4)",
			hash, orgID, string(Operator), ms(r.now().Add(ttl))); err != nil {
			return fmt.Errorf("insert setup code: %w", err)
		}
		code = secret
		return nil
	})
	return code, err
}

// RedeemSetup grants the role a setup code stands for to personID and spends
// the code: ErrBadToken if it is unknown or spent, ErrExpired if too old.
func (r *Registry) RedeemSetup(ctx context.Context, code, personID string) (*Organisation, error) {
	var orgID string
	err := r.db.Tx(ctx, func(tx *store.Tx) error {
		var role string
		var expires int64
		err := tx.QueryRowContext(ctx, "SELECT org_id, role, expires_at FROM setup_tokens WHERE hash = $1", hashSecret(code)).Scan(&orgID, &role, &expires)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrBadToken
		}
		if err != nil {
			return fmt.Errorf("look up setup code: %w", err)
		}
		if r.now().UnixMilli() >= expires {
			return fmt.Errorf("setup code: %w", ErrExpired)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM setup_tokens WHERE hash = $1", hashSecret(code)); err != nil {
			return fmt.Errorf("spend setup code: %w", err)
		}
		return r.grant(ctx, tx, personID, orgID, Role(role))
	})
	if err != nil {
		return nil, err
	}
	return r.Organisation(ctx, orgID)
}
