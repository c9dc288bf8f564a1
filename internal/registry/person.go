package registry

import (
	"github.com/civstack/civstack/internal/store"

	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
)

// Person is someone who signs in with a passkey. Every person is a citizen;
// memberships add organisational roles.
type Person struct {
	ID          string
	Handle      []byte // the WebAuthn user handle: random, never shown
	DisplayName string
	Demo        bool
	CreatedAt   time.Time
	// Credentials are the person's passkeys, loaded by the methods that say so.
	Credentials []webauthn.Credential
}

// WebAuthnID implements webauthn.User.
func (p *Person) WebAuthnID() []byte { return p.Handle }

// WebAuthnName implements webauthn.User.
func (p *Person) WebAuthnName() string { return p.DisplayName }

// WebAuthnDisplayName implements webauthn.User.
func (p *Person) WebAuthnDisplayName() string { return p.DisplayName }

// WebAuthnCredentials implements webauthn.User.
func (p *Person) WebAuthnCredentials() []webauthn.Credential { return p.Credentials }

// Passkey is one registered WebAuthn credential.
type Passkey struct {
	ID         []byte
	PersonID   string
	Label      string
	Credential webauthn.Credential
	CreatedAt  time.Time
	LastUsedAt *time.Time
}

// NewPerson prepares a person who is not yet stored, with a fresh id and
// WebAuthn handle, for a registration ceremony.
func (r *Registry) NewPerson(displayName string) (*Person, error) {
	name, err := cleanName("display name", displayName, 64)
	if err != nil {
		return nil, err
	}
	id, err := r.newID()
	if err != nil {
		return nil, err
	}
	handle, err := r.secret(32)
	if err != nil {
		return nil, err
	}
	return &Person{ID: id, Handle: handle, DisplayName: name, CreatedAt: r.now().UTC()}, nil
}

// Rename changes the name a person is shown by (on their pages, to people
// they pay, to the officers of their organisations). Records made before
// keep the name they were made with.
func (r *Registry) Rename(ctx context.Context, personID, displayName string) error {
	name, err := cleanName("display name", displayName, 64)
	if err != nil {
		return err
	}
	return r.db.Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE people SET display_name = $1 WHERE id = $2", name, personID)
		if err != nil {
			return fmt.Errorf("rename: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("person: %w", ErrNotFound)
		}
		return nil
	})
}

// CreatePerson stores p with its first passkey (nil for a demo person) in one
// transaction.
func (r *Registry) CreatePerson(ctx context.Context, p *Person, first *webauthn.Credential, label string) error {
	return r.db.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO people (id, handle, display_name, demo, created_at) VALUES ($1, $2, $3, $4, $5)",
			p.ID, p.Handle, p.DisplayName, p.Demo, ms(p.CreatedAt)); err != nil {
			return fmt.Errorf("insert person: %w", err)
		}
		if first != nil {
			return r.insertPasskey(ctx, tx, p.ID, first, label)
		}
		return nil
	})
}

func (r *Registry) insertPasskey(ctx context.Context, tx *store.Tx, personID string, c *webauthn.Credential, label string) error {
	label, err := cleanName("passkey name", label, 64)
	if err != nil {
		return err
	}
	blob, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode credential: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		"INSERT INTO passkeys (id, person_id, label, credential, created_at) VALUES ($1, $2, $3, $4, $5)",
		c.ID, personID, label, blob, ms(r.now())); err != nil {
		return fmt.Errorf("insert passkey: %w", err)
	}
	return nil
}

// AddPasskey registers another passkey for an existing person.
func (r *Registry) AddPasskey(ctx context.Context, personID string, c *webauthn.Credential, label string) error {
	return r.db.Tx(ctx, func(tx *store.Tx) error { return r.insertPasskey(ctx, tx, personID, c, label) })
}

// RemovePasskey deletes one of a person's passkeys, refusing to remove the
// last one (ErrLastPasskey) so that nobody locks themselves out. In the same
// transaction it ends every session of the person except keep's (the one
// asking): a session does not record the passkey it began with, and a lost
// device's passkey is removed so that the device is signed out. It returns
// how many sessions it ended.
func (r *Registry) RemovePasskey(ctx context.Context, personID string, credID []byte, keep string) (int, error) {
	var ended int
	err := r.db.Tx(ctx, func(tx *store.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM passkeys WHERE person_id = $1", personID).Scan(&n); err != nil {
			return fmt.Errorf("count passkeys: %w", err)
		}
		res, err := tx.ExecContext(ctx, "DELETE FROM passkeys WHERE person_id = $1 AND id = $2", personID, credID)
		if err != nil {
			return fmt.Errorf("delete passkey: %w", err)
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return fmt.Errorf("passkey: %w", ErrNotFound)
		}
		if n <= 1 {
			return ErrLastPasskey
		}
		ended, err = r.endOtherSessions(ctx, tx, personID, keep)
		return err
	})
	if err != nil {
		return 0, err
	}
	return ended, nil
}

// TouchPasskey records a successful sign-in with c (its new signature counter
// and flags).
func (r *Registry) TouchPasskey(ctx context.Context, c *webauthn.Credential) error {
	blob, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode credential: %w", err)
	}
	return r.db.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE passkeys SET credential = $1, last_used_at = $2 WHERE id = $3", blob, ms(r.now()), c.ID)
		return err
	})
}

// Passkeys lists a person's passkeys, oldest first.
func (r *Registry) Passkeys(ctx context.Context, personID string) ([]Passkey, error) {
	rows, err := r.db.Reader().QueryContext(ctx,
		"SELECT id, person_id, label, credential, created_at, last_used_at FROM passkeys WHERE person_id = $1 ORDER BY created_at, id", personID)
	if err != nil {
		return nil, fmt.Errorf("list passkeys: %w", err)
	}
	defer rows.Close()
	var out []Passkey
	for rows.Next() {
		var k Passkey
		var blob []byte
		var created int64
		var used sql.NullInt64
		if err := rows.Scan(&k.ID, &k.PersonID, &k.Label, &blob, &created, &used); err != nil {
			return nil, fmt.Errorf("scan passkey: %w", err)
		}
		if err := json.Unmarshal(blob, &k.Credential); err != nil {
			return nil, fmt.Errorf("decode passkey: %w", err)
		}
		k.CreatedAt, k.LastUsedAt = fromMS(created), fromNullMS(used)
		out = append(out, k)
	}
	return out, rows.Err()
}

const personColumns = "id, handle, display_name, demo, created_at"

func scanPerson(row interface{ Scan(...any) error }) (*Person, error) {
	var p Person
	var created int64
	if err := row.Scan(&p.ID, &p.Handle, &p.DisplayName, &p.Demo, &created); err != nil {
		return nil, err
	}
	p.CreatedAt = fromMS(created)
	return &p, nil
}

// Person returns the person with the given id, without credentials.
func (r *Registry) Person(ctx context.Context, id string) (*Person, error) {
	p, err := scanPerson(r.db.Reader().QueryRowContext(ctx, "SELECT "+personColumns+" FROM people WHERE id = $1", id))
	if err != nil {
		return nil, notFound(err, "person")
	}
	return p, nil
}

// PersonWithCredentials returns the person and their passkeys, as a
// webauthn.User.
func (r *Registry) PersonWithCredentials(ctx context.Context, id string) (*Person, error) {
	p, err := r.Person(ctx, id)
	if err != nil {
		return nil, err
	}
	return r.withCredentials(ctx, p)
}

// PersonByHandle finds a person by WebAuthn user handle, with passkeys.
func (r *Registry) PersonByHandle(ctx context.Context, handle []byte) (*Person, error) {
	p, err := scanPerson(r.db.Reader().QueryRowContext(ctx, "SELECT "+personColumns+" FROM people WHERE handle = $1", handle))
	if err != nil {
		return nil, notFound(err, "person")
	}
	return r.withCredentials(ctx, p)
}

func (r *Registry) withCredentials(ctx context.Context, p *Person) (*Person, error) {
	keys, err := r.Passkeys(ctx, p.ID)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		p.Credentials = append(p.Credentials, k.Credential)
	}
	return p, nil
}

// DemoPeople lists the demo personas, in the order they were seeded.
func (r *Registry) DemoPeople(ctx context.Context) ([]*Person, error) {
	rows, err := r.db.Reader().QueryContext(ctx, "SELECT "+personColumns+" FROM people WHERE demo = $1 ORDER BY created_at, id", true)
	if err != nil {
		return nil, fmt.Errorf("list demo people: %w", err)
	}
	defer rows.Close()
	var out []*Person
	for rows.Next() {
		p, err := scanPerson(rows)
		if err != nil {
			return nil, fmt.Errorf("scan person: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}
