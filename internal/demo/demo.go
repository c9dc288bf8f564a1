// Package demo owns civstack's made-up world for --demo: the personas (two
// citizens, a street vendor, a shop owner, a tax officer, a police officer, a
// health officer, three credential issuers' officers, a bar's and a transit
// company's door staff, a data-protection auditor and an operator) and their
// organisations, the shops' payment profiles, the citizens' starting
// balances, and the issuers' and verifiers' identity registrations. Seeding is idempotent, and demo rows are flagged so that a
// server without --demo never shows or accepts them.
package demo

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/google/uuid"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/identity"
	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/rewards"
	"github.com/civstack/civstack/internal/store"
)

// namespace makes demo people's ids deterministic, so that two processes
// seeding one database at once cannot create anyone twice.
var namespace = uuid.MustParse("6f0e7c2a-3d1b-4c6e-9a55-1c1b7c1e5d00")

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
	{"Metro Transit", []registry.Role{registry.Verifier, registry.Partner}},
	{"Recycling Centre", []registry.Role{registry.Partner}},
	{"City Museum", []registry.Role{registry.Partner}},
	{"Social Security Office", []registry.Role{registry.Issuer}},
	{"City University", []registry.Role{registry.Issuer}},
	{"Blue Door Bar", []registry.Role{registry.Verifier}},
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
	{"Marta Silva", "Civil Registry Office", registry.Issuer},
	{"Pedro Alves", "Social Security Office", registry.Issuer},
	{"Hana Sato", "City University", registry.Issuer},
	{"Sam Okafor", "Blue Door Bar", registry.Verifier},
	{"Rui Santos", "Metro Transit", registry.Verifier},
	{"Ben Carter", "Metro Transit", registry.Partner},
	{"Nadia Rahman", "Recycling Centre", registry.Partner},
	{"Lena Fischer", "City Museum", registry.Partner},
	{"Ana Costa", "Data Protection Authority", registry.DPA},
	{"Olu Adeyemi", "City Operations (demo)", registry.Operator},
}

// Seed creates whatever demo organisations and people are missing and gives
// them their roles. Running it again, or in several processes at once,
// changes nothing more.
func Seed(ctx context.Context, reg *registry.Registry) error {
	orgIDs := map[string]string{}
	for _, o := range Orgs {
		have, err := reg.OrganisationByName(ctx, o.Name)
		if err == nil {
			orgIDs[o.Name] = have.ID
			continue
		}
		made, err := reg.CreateOrganisation(ctx, o.Name, o.Roles, true)
		if errors.Is(err, store.ErrConflict) { // another process was faster
			made, err = reg.OrganisationByName(ctx, o.Name)
		}
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
			p.ID = uuid.NewSHA1(namespace, []byte(pr.Name)).String()
			p.Demo = true
			if err := reg.CreatePerson(ctx, p, nil, ""); err != nil && !errors.Is(err, store.ErrConflict) {
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

// Sort orders demo people as Personas lists them (their creation times can
// tie), leaving anyone else at the end.
func Sort(people []*registry.Person) {
	rank := func(p *registry.Person) int {
		for i, pr := range Personas {
			if pr.Name == p.DisplayName {
				return i
			}
		}
		return len(Personas)
	}
	slices.SortStableFunc(people, func(a, b *registry.Person) int { return rank(a) - rank(b) })
}

// Roles describes what a demo person does, for the persona switcher and
// serve's start-up lines: "Tax officer, City Tax Office; …", or "Citizen".
func Roles(ms []registry.Membership) string {
	var roles []string
	for _, m := range ms {
		if letters(m.Role.Title()) == letters(m.OrgName) { // the DPA: its name says its role
			roles = append(roles, m.OrgName)
			continue
		}
		roles = append(roles, m.Role.Title()+", "+m.OrgName)
	}
	if len(roles) == 0 {
		return registry.Citizen.Title()
	}
	return strings.Join(roles, "; ")
}

// letters is s in lower case without what is not a letter.
func letters(s string) string {
	return strings.Map(func(r rune) rune {
		if !unicode.IsLetter(r) {
			return -1
		}
		return unicode.ToLower(r)
	}, s)
}

// Merchant is a demo shop's payment profile.
type Merchant struct {
	Org     string
	City    string
	MCC     string
	TaxID   string
	VATRate int64 // basis points
}

// Merchants are the demo shops: a street vendor and a grocery.
var Merchants = []Merchant{
	{"Li's Dumpling Cart", "Bologna", "5814", "IT01234560017", 1000},
	{"Rossi Groceries", "Bologna", "5411", "IT09876540012", 400},
}

// TopUp is what each demo citizen's wallet starts with, in cents.
const TopUp = 200_00

// Payments is the part of the payment service demo seeding needs.
type Payments interface {
	Merchant(ctx context.Context, orgID string) (*payment.Profile, error)
	SetupMerchant(ctx context.Context, p payment.Profile) (*payment.Profile, error)
	TopUp(ctx context.Context, id ledger.ID, personID string, amount int64, reference string) (*payment.Payment, error)
}

// SeedPayments gives the demo shops payment profiles (left alone once they
// exist) and each demo citizen a starting balance (once: the top-up's id is
// fixed per person).
func SeedPayments(ctx context.Context, reg *registry.Registry, pay Payments) error {
	for _, m := range Merchants {
		o, err := reg.OrganisationByName(ctx, m.Org)
		if err != nil {
			return fmt.Errorf("seed merchant %q: %w", m.Org, err)
		}
		if _, err := pay.Merchant(ctx, o.ID); err == nil {
			continue
		} else if !errors.Is(err, payment.ErrNotFound) {
			return fmt.Errorf("seed merchant %q: %w", m.Org, err)
		}
		_, err = pay.SetupMerchant(ctx, payment.Profile{OrgID: o.ID, Name: m.Org, City: m.City, MCC: m.MCC, TaxID: m.TaxID, VATRate: m.VATRate})
		if err != nil {
			return fmt.Errorf("seed merchant %q: %w", m.Org, err)
		}
	}
	for _, pr := range Personas {
		if pr.Org != "" {
			continue
		}
		id := uuid.NewSHA1(namespace, []byte(pr.Name)).String()
		sum := sha256.Sum256([]byte("civstack demo top-up " + id))
		_, err := pay.TopUp(ctx, ledger.ID(sum[:16]), id, TopUp, "starting balance")
		if ref := (*payment.Refusal)(nil); errors.As(err, &ref) && ref.Code == "id_reused" {
			continue // made by an older release, whose reference was "demo top-up"
		}
		if err != nil {
			return fmt.Errorf("seed top-up: %w", err)
		}
	}
	return nil
}

// Identity is what SeedIdentity needs of the identity wallet.
type Identity interface {
	IssuerByOrg(ctx context.Context, orgID string) (*identity.Issuer, error)
	RegisterIssuer(ctx context.Context, orgID, name string, types []string) (*identity.Issuer, error)
	VerifierByOrg(ctx context.Context, orgID string) (*identity.Verifier, error)
	RegisterVerifier(ctx context.Context, orgID, name, purpose string, claims []string) (*identity.Verifier, error)
}

// Issuers are the demo credential issuers and the types they issue.
var Issuers = []struct {
	Org   string
	Types []string
}{
	{"Civil Registry Office", []string{"pid"}},
	{"Social Security Office", []string{"social-security"}},
	{"City University", []string{"diploma"}},
}

// Verifiers are the demo verifiers, what they may ask for and why.
var Verifiers = []struct {
	Org, Purpose string
	Claims       []string
}{
	{"Blue Door Bar", "Check that a guest is over 18 before serving alcohol.", []string{"pid:age_over_18"}},
	{"Metro Transit", "Give the senior fare to riders over 65.", []string{"pid:age_over_65"}},
}

// SeedIdentity registers the demo issuers and verifiers (left alone once
// registered, so an edited registration stays).
func SeedIdentity(ctx context.Context, reg *registry.Registry, id Identity) error {
	for _, is := range Issuers {
		o, err := reg.OrganisationByName(ctx, is.Org)
		if err != nil {
			return fmt.Errorf("seed issuer %q: %w", is.Org, err)
		}
		if _, err := id.IssuerByOrg(ctx, o.ID); errors.Is(err, identity.ErrNotFound) {
			if _, err := id.RegisterIssuer(ctx, o.ID, o.Name, is.Types); err != nil && !store.IsConflict(err) {
				return fmt.Errorf("seed issuer %q: %w", is.Org, err)
			}
		} else if err != nil {
			return err
		}
	}
	for _, vr := range Verifiers {
		o, err := reg.OrganisationByName(ctx, vr.Org)
		if err != nil {
			return fmt.Errorf("seed verifier %q: %w", vr.Org, err)
		}
		if _, err := id.VerifierByOrg(ctx, o.ID); errors.Is(err, identity.ErrNotFound) {
			if _, err := id.RegisterVerifier(ctx, o.ID, o.Name, vr.Purpose, vr.Claims); err != nil && !store.IsConflict(err) {
				return fmt.Errorf("seed verifier %q: %w", vr.Org, err)
			}
		} else if err != nil {
			return err
		}
	}
	return nil
}

// SeedExchange publishes the demo data services (population register,
// declared income, benefits), what they hold about the demo citizens, the
// demo policies and three requests under them, once.
func SeedExchange(ctx context.Context, reg *registry.Registry, x *exchange.Exchange) error {
	if ps, err := x.Policies(ctx); err != nil || len(ps) > 0 {
		return err
	}
	org := func(name string) (string, error) {
		o, err := reg.OrganisationByName(ctx, name)
		if err != nil {
			return "", fmt.Errorf("seed exchange: %q: %w", name, err)
		}
		return o.ID, nil
	}
	tax, err := org("City Tax Office")
	if err != nil {
		return err
	}
	police, err := org("City Police")
	if err != nil {
		return err
	}
	registryOrg, err := org("Civil Registry Office")
	if err != nil {
		return err
	}
	social, err := org("Social Security Office")
	if err != nil {
		return err
	}
	services := []struct {
		holder string
		svc    exchange.Service
	}{
		{registryOrg, exchange.Service{ID: "population", Name: "Population register", Fields: []exchange.Field{
			{Name: "name", Label: "Name", Type: "text"}, {Name: "address", Label: "Address", Type: "text"}, {Name: "household", Label: "Household size", Type: "number"}}}},
		{tax, exchange.Service{ID: "tax-income", Name: "Declared income", Fields: []exchange.Field{
			{Name: "declared_income", Label: "Declared income (EUR)", Type: "number"}, {Name: "employer", Label: "Employer", Type: "text"}}}},
		{social, exchange.Service{ID: "benefits", Name: "Social benefits", Fields: []exchange.Field{
			{Name: "benefit", Label: "Benefit", Type: "text"}, {Name: "monthly_amount", Label: "Monthly amount (EUR)", Type: "number"}}}},
	}
	for _, s := range services {
		if _, err := x.PublishService(ctx, s.holder, s.svc); err != nil {
			return fmt.Errorf("seed exchange: %w", err)
		}
	}
	people := map[string]map[string]map[string]string{
		"Amira Haddad": {"population": {"name": "Amira Haddad", "address": "Via Zamboni 33, Bologna", "household": "2"}, "tax-income": {"declared_income": "41250", "employer": "Bologna Labs"}},
		"Jonas Weber":  {"population": {"name": "Jonas Weber", "address": "Strada Maggiore 8, Bologna", "household": "1"}, "benefits": {"benefit": "Housing allowance", "monthly_amount": "220"}},
	}
	holders := map[string]string{"population": registryOrg, "tax-income": tax, "benefits": social}
	for name, svcs := range people {
		id := uuid.NewSHA1(namespace, []byte(name)).String()
		for svc, values := range svcs {
			if err := x.SetValues(ctx, holders[svc], svc, id, values); err != nil {
				return fmt.Errorf("seed exchange: %w", err)
			}
		}
	}
	for _, p := range []exchange.Policy{
		{Requester: tax, Service: "tax-income", Fields: []string{"declared_income", "employer"}, Purpose: "TAX-AUDIT", LegalBasis: "Tax Code §93", Retention: 365 * exchange.Day},
		{Requester: tax, Service: "population", Fields: []string{"address"}, Purpose: "TAX-AUDIT", LegalBasis: "Tax Code §93", Retention: 365 * exchange.Day},
		{Requester: police, Service: "tax-income", Fields: []string{"declared_income", "employer"}, Purpose: "CRIM-INVESTIGATION", LegalBasis: "Criminal Procedure Code §100", MaxDeferral: 30 * exchange.Day, Retention: 90 * exchange.Day},
		{Requester: police, Service: "population", Fields: []string{"address"}, Purpose: "WITNESS-CONTACT", LegalBasis: "Police Act §12", Consent: true, Retention: 30 * exchange.Day},
	} {
		if _, err := x.CreatePolicy(ctx, p, "demo"); err != nil {
			return fmt.Errorf("seed exchange: %w", err)
		}
	}
	// Some traffic, so that the pages have something to show: the tax
	// office's audit (Amira sees it at once), the police's covert request
	// (the DPA sees it now, Amira once its deferral ends) and a request that
	// waits for Jonas's consent. They go through the exchange like any
	// other, each with its log entry.
	amira, jonas := uuid.NewSHA1(namespace, []byte("Amira Haddad")).String(), uuid.NewSHA1(namespace, []byte("Jonas Weber")).String()
	for _, a := range []struct {
		ask  exchange.Ask
		want string
	}{
		{exchange.Ask{Requester: tax, Officer: "Tomas Novak", Citizen: amira, Service: "tax-income", Fields: []string{"declared_income"},
			Purpose: "TAX-AUDIT", LegalBasis: "Tax Code §93"}, exchange.Released},
		{exchange.Ask{Requester: police, Officer: "Eva Lind", Citizen: amira, Service: "tax-income", Fields: []string{"declared_income", "employer"},
			Purpose: "CRIM-INVESTIGATION", LegalBasis: "Criminal Procedure Code §100", Defer: 30 * exchange.Day}, exchange.Released},
		{exchange.Ask{Requester: police, Officer: "Eva Lind", Citizen: jonas, Service: "population", Fields: []string{"address"},
			Purpose: "WITNESS-CONTACT", LegalBasis: "Police Act §12"}, exchange.AwaitConsent},
	} {
		r, err := x.Submit(ctx, a.ask)
		if err != nil {
			return fmt.Errorf("seed exchange: %w", err)
		}
		if r.State != a.want {
			return fmt.Errorf("seed exchange: a %s request was %s (%s), not %s", a.ask.Purpose, r.State, r.Reason, a.want)
		}
	}
	return nil
}

// SeedRewards publishes the demo's earning rules and voucher catalogue (once).
func SeedRewards(ctx context.Context, reg *registry.Registry, rw *rewards.Service) error {
	if rs, err := rw.Rules(ctx); err != nil || len(rs) > 0 {
		return err
	}
	ids := map[string]string{}
	for _, name := range []string{"Metro Transit", "Recycling Centre", "City Museum"} {
		o, err := reg.OrganisationByName(ctx, name)
		if err != nil {
			return fmt.Errorf("seed rewards: %q: %w", name, err)
		}
		ids[name] = o.ID
	}
	for _, r := range []rewards.Rule{
		{Type: "transit_ride", Label: "Ride on public transport", Partner: ids["Metro Transit"], Points: 10, DailyCap: 30},
		{Type: "recycling_dropoff", Label: "Recycling drop-off", Partner: ids["Recycling Centre"], Points: 20, DailyCap: 40},
	} {
		if err := rw.SetRule(ctx, r); err != nil {
			return fmt.Errorf("seed rewards: %w", err)
		}
	}
	for _, it := range []rewards.Item{
		{ID: "museum-entry", Name: "Museum entry", Partner: ids["City Museum"], Price: 30, ValidDays: 60, Active: true},
		{ID: "transit-day-pass", Name: "Transit day pass", Partner: ids["Metro Transit"], Price: 60, ValidDays: 30, Active: true},
	} {
		if err := rw.SetItem(ctx, it); err != nil {
			return fmt.Errorf("seed rewards: %w", err)
		}
	}
	return nil
}
