package registry

import (
	"github.com/civstack/civstack/internal/store"

	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Role is what a person or an organisation's system may do.
type Role string

// The roles. Every person is a Citizen; the others come from memberships in
// organisations that hold them.
const (
	Citizen  Role = "citizen"
	Merchant Role = "merchant"
	Issuer   Role = "issuer"
	Verifier Role = "verifier"
	Agency   Role = "agency"
	Partner  Role = "partner" // records civic-reward events and honours vouchers
	DPA      Role = "dpa"
	Operator Role = "operator"
)

// OrgRoles lists the roles an organisation can hold, in display order.
var OrgRoles = []Role{Merchant, Issuer, Verifier, Agency, Partner, DPA, Operator}

// Title is the role's human name.
func (r Role) Title() string {
	switch r {
	case Citizen:
		return "Citizen"
	case Merchant:
		return "Merchant"
	case Issuer:
		return "Issuer"
	case Verifier:
		return "Verifier"
	case Agency:
		return "Agency"
	case Partner:
		return "Rewards partner"
	case DPA:
		return "Data-protection authority"
	case Operator:
		return "Operator"
	}
	return string(r)
}

// ParseRole accepts an organisational role name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(OrgRoles, r) {
		return r, nil
	}
	return "", fmt.Errorf("%w: unknown role %q (want one of merchant, issuer, verifier, agency, partner, dpa, operator)", ErrInvalid, s)
}

// Organisation is a merchant, an issuer, an agency… or several of these.
type Organisation struct {
	ID        string
	Name      string
	Roles     []Role
	Demo      bool
	CreatedAt time.Time
}

// Has reports whether the organisation holds role.
func (o *Organisation) Has(role Role) bool { return slices.Contains(o.Roles, role) }

// Membership gives a person a role in an organisation.
type Membership struct {
	PersonID   string
	PersonName string
	OrgID      string
	OrgName    string
	Role       Role
	CreatedAt  time.Time
}

// CreateOrganisation stores a new organisation holding roles. Names are
// unique (ErrConflict).
func (r *Registry) CreateOrganisation(ctx context.Context, name string, roles []Role, demo bool) (*Organisation, error) {
	name, err := cleanName("organisation name", name, 120)
	if err != nil {
		return nil, err
	}
	if len(roles) == 0 {
		return nil, fmt.Errorf("%w: an organisation needs at least one role", ErrInvalid)
	}
	uniq := []Role{}
	for _, role := range roles {
		if _, err := ParseRole(string(role)); err != nil {
			return nil, err
		}
		if !slices.Contains(uniq, role) {
			uniq = append(uniq, role)
		}
	}
	id, err := r.newID()
	if err != nil {
		return nil, err
	}
	o := &Organisation{ID: id, Name: name, Roles: uniq, Demo: demo, CreatedAt: r.now().UTC()}
	err = r.db.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO organisations (id, name, demo, created_at) VALUES ($1, $2, $3, $4)",
			o.ID, o.Name, o.Demo, ms(o.CreatedAt)); err != nil {
			return fmt.Errorf("insert organisation: %w", err)
		}
		for _, role := range o.Roles {
			if _, err := tx.ExecContext(ctx, "INSERT INTO org_roles (org_id, role) VALUES ($1, $2)", o.ID, string(role)); err != nil {
				return fmt.Errorf("insert organisation role: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return o, nil
}

// Organisation returns one organisation with its roles.
func (r *Registry) Organisation(ctx context.Context, id string) (*Organisation, error) {
	return r.oneOrganisation(ctx, "WHERE o.id = $1", id)
}

// OrganisationByName returns the organisation with that exact name.
func (r *Registry) OrganisationByName(ctx context.Context, name string) (*Organisation, error) {
	return r.oneOrganisation(ctx, "WHERE o.name = $1", name)
}

func (r *Registry) oneOrganisation(ctx context.Context, where, arg string) (*Organisation, error) {
	orgs, err := r.queryOrganisations(ctx, where, arg)
	if err != nil {
		return nil, err
	}
	if len(orgs) == 0 {
		return nil, fmt.Errorf("organisation: %w", ErrNotFound)
	}
	return orgs[0], nil
}

// Organisations lists every organisation by name.
func (r *Registry) Organisations(ctx context.Context) ([]*Organisation, error) {
	return r.queryOrganisations(ctx, "")
}

func (r *Registry) queryOrganisations(ctx context.Context, where string, args ...any) ([]*Organisation, error) {
	rows, err := r.db.Reader().QueryContext(ctx,
		"SELECT o.id, o.name, o.demo, o.created_at, r.role FROM organisations o JOIN org_roles r ON r.org_id = o.id "+where+" ORDER BY o.name, o.id, r.role", args...)
	if err != nil {
		return nil, fmt.Errorf("list organisations: %w", err)
	}
	defer rows.Close()
	var out []*Organisation
	for rows.Next() {
		var o Organisation
		var created int64
		var role string
		if err := rows.Scan(&o.ID, &o.Name, &o.Demo, &created, &role); err != nil {
			return nil, fmt.Errorf("scan organisation: %w", err)
		}
		if n := len(out); n > 0 && out[n-1].ID == o.ID {
			out[n-1].Roles = append(out[n-1].Roles, Role(role))
			continue
		}
		o.CreatedAt = fromMS(created)
		o.Roles = []Role{Role(role)}
		out = append(out, &o)
	}
	for _, o := range out {
		slices.SortFunc(o.Roles, func(a, b Role) int { return slices.Index(OrgRoles, a) - slices.Index(OrgRoles, b) })
	}
	return out, rows.Err()
}

// Grant gives a person a role in an organisation. The organisation must hold
// the role (ErrRoleNotOffered); granting twice is not an error.
func (r *Registry) Grant(ctx context.Context, personID, orgID string, role Role) error {
	return r.db.Tx(ctx, func(tx *store.Tx) error { return r.grant(ctx, tx, personID, orgID, role) })
}

func (r *Registry) grant(ctx context.Context, tx *store.Tx, personID, orgID string, role Role) error {
	var one int
	err := tx.QueryRowContext(ctx, "SELECT 1 FROM people WHERE id = $1", personID).Scan(&one)
	if err != nil {
		return notFound(err, "person")
	}
	err = tx.QueryRowContext(ctx, "SELECT 1 FROM org_roles WHERE org_id = $1 AND role = $2", orgID, string(role)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		if err := tx.QueryRowContext(ctx, "SELECT 1 FROM organisations WHERE id = $1", orgID).Scan(&one); err != nil {
			return notFound(err, "organisation")
		}
		return fmt.Errorf("%w: %s", ErrRoleNotOffered, role.Title())
	}
	if err != nil {
		return fmt.Errorf("check organisation role: %w", err)
	}
	_, err = tx.ExecContext(ctx,
		"INSERT INTO memberships (person_id, org_id, role, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
		personID, orgID, string(role), ms(r.now()))
	if err != nil {
		return fmt.Errorf("insert membership: %w", err)
	}
	return nil
}

// Revoke takes a role in an organisation away from a person, and in the
// same transaction revokes the API tokens that person created and no longer
// has the authority to create (a token for a role in an organisation, made
// by someone who now holds neither that role there nor the operator role):
// whoever leaves an organisation may have kept a secret they were shown.
// It returns how many tokens it revoked. It refuses to take the operator
// role from the last person who holds it (ErrLastOperator): nobody could
// grant roles any more until a restart printed a setup code.
func (r *Registry) Revoke(ctx context.Context, personID, orgID string, role Role) (int, error) {
	var revoked int64
	err := r.db.Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM memberships WHERE person_id = $1 AND org_id = $2 AND role = $3", personID, orgID, string(role))
		if err != nil {
			return fmt.Errorf("delete membership: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("membership: %w", ErrNotFound)
		}
		if role == Operator {
			var left int
			if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM memberships WHERE role = $1", string(Operator)).Scan(&left); err != nil {
				return fmt.Errorf("count operators: %w", err)
			}
			if left == 0 {
				return ErrLastOperator
			}
		}
		res, err = tx.ExecContext(ctx, `UPDATE api_tokens SET revoked_at = $1
			WHERE created_by = $2 AND revoked_at IS NULL
			AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.person_id = $2 AND m.role = $3)
			AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.person_id = $2 AND m.org_id = api_tokens.org_id AND m.role = api_tokens.role)`,
			ms(r.now()), personID, string(Operator))
		if err != nil {
			return fmt.Errorf("revoke the tokens they made: %w", err)
		}
		revoked, _ = res.RowsAffected()
		return nil
	})
	return int(revoked), err
}

const membershipQuery = `SELECT m.person_id, p.display_name, m.org_id, o.name, m.role, m.created_at
FROM memberships m JOIN people p ON p.id = m.person_id JOIN organisations o ON o.id = m.org_id `

func (r *Registry) queryMemberships(ctx context.Context, where string, arg string) ([]Membership, error) {
	rows, err := r.db.Reader().QueryContext(ctx, membershipQuery+where+" ORDER BY o.name, p.display_name, m.role", arg)
	if err != nil {
		return nil, fmt.Errorf("list memberships: %w", err)
	}
	defer rows.Close()
	var out []Membership
	for rows.Next() {
		var m Membership
		var role string
		var created int64
		if err := rows.Scan(&m.PersonID, &m.PersonName, &m.OrgID, &m.OrgName, &role, &created); err != nil {
			return nil, fmt.Errorf("scan membership: %w", err)
		}
		m.Role, m.CreatedAt = Role(role), fromMS(created)
		out = append(out, m)
	}
	return out, rows.Err()
}

// Memberships lists the roles a person holds, by organisation.
func (r *Registry) Memberships(ctx context.Context, personID string) ([]Membership, error) {
	return r.queryMemberships(ctx, "WHERE m.person_id = $1", personID)
}

// Members lists the people who hold a role in an organisation.
func (r *Registry) Members(ctx context.Context, orgID string) ([]Membership, error) {
	return r.queryMemberships(ctx, "WHERE m.org_id = $1", orgID)
}

// Roles returns the distinct roles a person holds, Citizen first.
func Roles(ms []Membership) []Role {
	out := []Role{Citizen}
	for _, role := range OrgRoles {
		for _, m := range ms {
			if m.Role == role {
				out = append(out, role)
				break
			}
		}
	}
	return out
}
