package registry_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/civstack/civstack/internal/modeltest"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestAuthorityModel runs random sequences of roles granted and taken
// away, API tokens made (by whoever holds the token's role in its
// organisation, or is an operator, as the pages and API allow), revoked
// and left to expire, and time passing, against a model of who may act,
// on every engine. After every step each token must authenticate exactly
// when the model says it is alive: not revoked, not expired, and not made
// by someone who has since lost both the token's role in its organisation
// and the operator role (a token revoked so stays revoked, whatever its
// maker is given later). Taking the operator role from the last person who
// holds it is refused, and changes nothing.
func TestAuthorityModel(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		reg, clk := newRegistry(db)
		run := 0
		// (The last operator's role is kept in the model too, but runs
		// leave operators behind; testLastOperator takes them all away.)
		modeltest.Check(t, []string{"granted", "role not offered", "taken away", "not a member", "token made",
			"token revoked by hand", "tokens revoked with the role", "token expired", "token kept by an operator"},
			func(rt *rapid.T, seen *modeltest.Outcomes) {
				run++
				newAuthorityRun(t, rt, db, reg, clk, run, seen).run()
			})
	})
}

type mToken struct {
	secret, id, org, maker string
	role                   registry.Role
	expires                time.Time // zero: does not expire
	revoked                bool
}

type membership struct {
	person, org string
	role        registry.Role
}

type authorityRun struct {
	rt     *rapid.T
	db     *store.DB
	reg    *registry.Registry
	clk    *clock
	seen   *modeltest.Outcomes
	ctx    context.Context
	people []string
	orgs   map[string][]registry.Role // org id → the roles it offers
	orgIDs []string

	members   map[membership]bool
	tokens    []*mToken
	operators int // people holding the operator role in other runs' organisations
}

func newAuthorityRun(t *testing.T, rt *rapid.T, db *store.DB, reg *registry.Registry, clk *clock, run int, seen *modeltest.Outcomes) *authorityRun {
	ctx := context.Background()
	r := &authorityRun{rt: rt, db: db, reg: reg, clk: clk, seen: seen, ctx: ctx, orgs: map[string][]registry.Role{}, members: map[membership]bool{}}
	for i := range 3 {
		r.people = append(r.people, person(t, reg, fmt.Sprintf("Person %d-%d", run, i), "").ID)
	}
	for i, roles := range [][]registry.Role{{registry.Merchant, registry.Issuer}, {registry.Operator, registry.Merchant}} {
		o, err := reg.CreateOrganisation(ctx, fmt.Sprintf("Org %d-%d", run, i), roles, false)
		if err != nil {
			rt.Fatal(err)
		}
		r.orgs[o.ID], r.orgIDs = roles, append(r.orgIDs, o.ID)
	}
	if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM memberships WHERE role = $1`, string(registry.Operator)).Scan(&r.operators); err != nil {
		rt.Fatal(err)
	}
	return r
}

func (r *authorityRun) run() {
	for range rapid.IntRange(10, 40).Draw(r.rt, "steps") {
		switch rapid.SampledFrom([]string{"grant", "token", "take away", "grant", "wait", "token", "revoke token"}).Draw(r.rt, "op") {
		case "grant":
			r.grant()
		case "take away":
			r.takeAway()
		case "token":
			r.makeToken()
		case "revoke token":
			r.revokeToken()
		case "wait":
			r.clk.add(rapid.SampledFrom([]time.Duration{time.Hour, 24 * time.Hour, 31 * 24 * time.Hour}).Draw(r.rt, "wait"))
		}
		r.checkTokens()
	}
}

func (r *authorityRun) draw() (string, string, registry.Role) {
	return rapid.SampledFrom(r.people).Draw(r.rt, "person"), rapid.SampledFrom(r.orgIDs).Draw(r.rt, "org"),
		rapid.SampledFrom([]registry.Role{registry.Merchant, registry.Operator, registry.Issuer}).Draw(r.rt, "role")
}

func (r *authorityRun) grant() {
	p, o, role := r.draw()
	err := r.reg.Grant(r.ctx, p, o, role)
	if !slices.Contains(r.orgs[o], role) {
		if !errors.Is(err, registry.ErrRoleNotOffered) {
			r.rt.Fatalf("grant of %s in an organisation without it: %v", role, err)
		}
		r.seen.Saw("role not offered")
		return
	}
	if err != nil {
		r.rt.Fatalf("grant %s: %v", role, err)
	}
	r.members[membership{p, o, role}] = true
	r.seen.Saw("granted")
}

// operator reports whether p holds the operator role anywhere.
func (r *authorityRun) operator(p string) bool {
	for m := range r.members {
		if m.person == p && m.role == registry.Operator {
			return true
		}
	}
	return false
}

func (r *authorityRun) operatorsNow() int {
	n := r.operators
	for m := range r.members {
		if m.role == registry.Operator {
			n++
		}
	}
	return n
}

func (r *authorityRun) takeAway() {
	p, o, role := r.draw()
	if len(r.members) > 0 && rapid.IntRange(0, 2).Draw(r.rt, "a role someone holds") < 2 {
		var held []membership
		for m := range r.members {
			held = append(held, m)
		}
		slices.SortFunc(held, func(a, b membership) int { // map order is random: rapid replays by the order drawn
			return cmp.Or(strings.Compare(a.person, b.person), strings.Compare(a.org, b.org), strings.Compare(string(a.role), string(b.role)))
		})
		m := rapid.SampledFrom(held).Draw(r.rt, "membership")
		p, o, role = m.person, m.org, m.role
	}
	n, err := r.reg.Revoke(r.ctx, p, o, role)
	m := membership{p, o, role}
	switch {
	case !r.members[m]:
		if !errors.Is(err, registry.ErrNotFound) {
			r.rt.Fatalf("taking away %s that %s does not hold: %v", role, p, err)
		}
		r.seen.Saw("not a member")
		return
	case role == registry.Operator && r.operatorsNow() == 1:
		if !errors.Is(err, registry.ErrLastOperator) {
			r.rt.Fatalf("taking the operator role from the last operator: %v", err)
		}
		r.seen.Saw("last operator kept")
		return
	case err != nil:
		r.rt.Fatalf("take away %s: %v", role, err)
	}
	delete(r.members, m)
	r.seen.Saw("taken away")
	want := 0
	for _, t := range r.tokens {
		if t.maker != p || t.revoked {
			continue
		}
		if r.operator(p) || r.members[membership{p, t.org, t.role}] {
			if r.operator(p) {
				r.seen.Saw("token kept by an operator")
			}
			continue
		}
		t.revoked = true
		want++
	}
	if n != want {
		r.rt.Fatalf("taking away %s revoked %d tokens, want %d", role, n, want)
	}
	if want > 0 {
		r.seen.Saw("tokens revoked with the role")
	}
}

func (r *authorityRun) makeToken() {
	p, o, role := r.draw()
	if !slices.Contains(r.orgs[o], role) || (!r.members[membership{p, o, role}] && !r.operator(p)) {
		return // the pages and the API refuse it before the registry is asked
	}
	life := rapid.SampledFrom([]time.Duration{0, time.Hour, 30 * 24 * time.Hour}).Draw(r.rt, "life")
	secret, tok, err := r.reg.CreateTokenOnce(r.ctx, o, role, "model", p, "", life)
	if err != nil {
		r.rt.Fatalf("make a %s token: %v", role, err)
	}
	t := &mToken{secret: secret, id: tok.ID, org: o, maker: p, role: role}
	if life > 0 {
		t.expires = r.clk.now().Add(life)
	}
	r.tokens = append(r.tokens, t)
	r.seen.Saw("token made")
}

func (r *authorityRun) revokeToken() {
	if len(r.tokens) == 0 {
		return
	}
	t := rapid.SampledFrom(r.tokens).Draw(r.rt, "token")
	err := r.reg.RevokeToken(r.ctx, t.org, t.id)
	if err != nil && !t.revoked {
		r.rt.Fatalf("revoke token %s: %v", t.id, err)
	}
	if !t.revoked {
		r.seen.Saw("token revoked by hand")
	}
	t.revoked = true
}

func (r *authorityRun) checkTokens() {
	now := r.clk.now()
	for _, t := range r.tokens {
		alive := !t.revoked && (t.expires.IsZero() || now.Before(t.expires))
		got, _, err := r.reg.Authenticate(r.ctx, t.secret, false)
		switch {
		case alive && (err != nil || got.ID != t.id):
			r.rt.Fatalf("live token %s (%s in %s, made by %s) refused: %v", t.id, t.role, t.org, t.maker, err)
		case !alive && err == nil:
			r.rt.Fatalf("token %s (revoked %v, expires %v, now %v) still works", t.id, t.revoked, t.expires, now)
		case !alive && !t.revoked && !errors.Is(err, registry.ErrTokenExpired):
			r.rt.Fatalf("expired token %s: %v, want ErrTokenExpired", t.id, err)
		case !alive && !t.revoked:
			r.seen.Saw("token expired")
		}
	}
}
