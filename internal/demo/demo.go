// Package demo owns civstack's made-up world for --demo: the personas (two
// citizens, a street vendor, a shop owner, a tax officer, a police officer, a
// health officer, a data-protection auditor and an operator) and their
// organisations. Seeding is idempotent, and demo rows are flagged so that a
// server without --demo never shows or accepts them.
package demo

import (
	"context"
	"fmt"

	"github.com/civstack/civstack/internal/registry"
)

// Persona describes one demo person and where they work.
type Persona struct {
	Name string
	Org  string
	Role registry.Role
}

// Org describes one demo organisation.
type Org struct {
	Name  string
	Roles []registry.Role
}

// Orgs are the demo organisations.
var Orgs = []Org{
	{"Li's Dumpling Cart", []registry.Role{registry.Merchant}},
	{"Rossi Groceries", []registry.Role{registry.Merchant}},
	{"City Tax Office", []registry.Role{registry.Agency}},
	{"City Police", []registry.Role{registry.Agency}},
	{"Health Authority", []registry.Role{registry.Issuer, registry.Agency}},
	{"Civil Registry Office", []registry.Role{registry.Issuer}},
	{"Metro Transit", []registry.Role{registry.Verifier}},
	{"Data Protection Authority", []registry.Role{registry.DPA}},
	{"City Operations (demo)", []registry.Role{registry.Operator}},
}

// Personas are the demo people, in switcher order.
var Personas = []Persona{
	{"Amira Haddad", "", ""},
	{"Jonas Weber", "", ""},
	{"Li Wei", "Li's Dumpling Cart", registry.Merchant},
	{"Sofia Rossi", "Rossi Groceries", registry.Merchant},
	{"Tomas Novak", "City Tax Office", registry.Agency},
	{"Eva Lind", "City Police", registry.Agency},
	{"Kofi Mensah", "Health Authority", registry.Issuer},
	{"Ana Costa", "Data Protection Authority", registry.DPA},
	{"Olu Adeyemi", "City Operations (demo)", registry.Operator},
}

// Seed creates whatever demo organisations and people are missing and gives
// them their roles. Running it again changes nothing.
func Seed(ctx context.Context, reg *registry.Registry) error {
	orgIDs := map[string]string{}
	for _, o := range Orgs {
		have, err := reg.OrganisationByName(ctx, o.Name)
		if err == nil {
			orgIDs[o.Name] = have.ID
			continue
		}
		made, err := reg.CreateOrganisation(ctx, o.Name, o.Roles, true)
		if err != nil {
			return fmt.Errorf("seed organisation %q: %w", o.Name, err)
		}
		orgIDs[o.Name] = made.ID
	}
	existing, err := reg.DemoPeople(ctx)
	if err != nil {
		return err
	}
	byName := map[string]string{}
	for _, p := range existing {
		byName[p.DisplayName] = p.ID
	}
	for _, pr := range Personas {
		id, ok := byName[pr.Name]
		if !ok {
			p, err := reg.NewPerson(pr.Name)
			if err != nil {
				return err
			}
			p.Demo = true
			if err := reg.CreatePerson(ctx, p, nil, ""); err != nil {
				return fmt.Errorf("seed person: %w", err)
			}
			id = p.ID
		}
		if pr.Org != "" {
			if err := reg.Grant(ctx, id, orgIDs[pr.Org], pr.Role); err != nil {
				return fmt.Errorf("seed role: %w", err)
			}
		}
	}
	return nil
}
