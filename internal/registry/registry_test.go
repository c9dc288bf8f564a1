package registry_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newRegistry(db *store.DB) (*registry.Registry, *clock) {
	c := &clock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	return registry.New(db, c.now, rand.Reader), c
}

func person(t *testing.T, reg *registry.Registry, name string, credID string) *registry.Person {
	t.Helper()
	p, err := reg.NewPerson(name)
	if err != nil {
		t.Fatal(err)
	}
	var cred *webauthn.Credential
	if credID != "" {
		cred = &webauthn.Credential{ID: []byte(credID), PublicKey: []byte("pk-" + credID)}
	}
	if err := reg.CreatePerson(context.Background(), p, cred, "First passkey"); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRegistry(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		t.Run("people and passkeys", func(t *testing.T) { testPeople(t, db) })
		t.Run("organisations", func(t *testing.T) { testOrganisations(t, db) })
		t.Run("tokens", func(t *testing.T) { testTokens(t, db) })
		t.Run("sessions", func(t *testing.T) { testSessions(t, db) })
		t.Run("other sessions", func(t *testing.T) { testOtherSessions(t, db) })
		t.Run("setup", func(t *testing.T) { testSetup(t, db) })
		t.Run("mode", func(t *testing.T) { testMode(t, db) })
		t.Run("tokens of who leaves", func(t *testing.T) { testLeaverTokens(t, db) })
		t.Run("last operator", func(t *testing.T) { testLastOperator(t, db) }) // after setup: it leaves an operator
	})
}

func testPeople(t *testing.T, db *store.DB) {
	ctx := context.Background()
	reg, _ := newRegistry(db)
	if _, err := reg.NewPerson("  "); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("blank name: %v", err)
	}
	if _, err := reg.NewPerson("a\x00b"); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("control character: %v", err)
	}
	if _, err := reg.NewPerson("Amira\u2028Haddad"); !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), "a line break or another control character") {
		t.Errorf("line separator: %v", err)
	}
	if _, err := reg.NewPerson("Amira \u202eiddaH"); !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), "bidirectional override") {
		t.Errorf("right-to-left override: %v", err)
	}
	if _, err := reg.NewPerson("\u200fفاطمة\u200e"); err != nil {
		t.Errorf("a right-to-left name with RLM and LRM: %v", err)
	}
	if _, err := reg.NewPerson(strings.Repeat("x", 65)); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("long name: %v", err)
	}
	p := person(t, reg, " Amira ", "cred-1")
	if p.DisplayName != "Amira" || len(p.Handle) != 32 {
		t.Fatalf("person = %+v", p)
	}
	got, err := reg.PersonByHandle(ctx, p.Handle)
	if err != nil || got.ID != p.ID || len(got.Credentials) != 1 || string(got.Credentials[0].PublicKey) != "pk-cred-1" {
		t.Fatalf("by handle = %+v, %v", got, err)
	}
	if _, err := reg.PersonByHandle(ctx, []byte("nobody")); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("unknown handle: %v", err)
	}
	// The same credential id cannot belong to two people.
	q, _ := reg.NewPerson("Jonas")
	if err := reg.CreatePerson(ctx, q, &webauthn.Credential{ID: []byte("cred-1")}, "x"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate credential: %v", err)
	}
	// ...and the failed registration left no person behind.
	if _, err := reg.Person(ctx, q.ID); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("half-registered person exists: %v", err)
	}
	if _, err := reg.RemovePasskey(ctx, p.ID, []byte("cred-1"), ""); !errors.Is(err, registry.ErrLastPasskey) {
		t.Fatalf("removing last passkey: %v", err)
	}
	if err := reg.AddPasskey(ctx, p.ID, &webauthn.Credential{ID: []byte("cred-2")}, "laptop"); err != nil {
		t.Fatal(err)
	}
	keys, _ := reg.Passkeys(ctx, p.ID)
	if len(keys) != 2 || keys[1].Label != "laptop" {
		t.Fatalf("passkeys = %+v", keys)
	}
	if err := reg.Rename(ctx, "nobody", "Ghost"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("renaming nobody: %v", err)
	}
	if err := reg.Rename(ctx, p.ID, "\t"); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("an empty name: %v", err)
	}
	other := person(t, reg, "Other", "cred-3")
	if _, err := reg.RemovePasskey(ctx, other.ID, []byte("cred-1"), ""); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("removing someone else's passkey: %v", err)
	}
	if _, err := reg.RemovePasskey(ctx, p.ID, []byte("cred-1"), ""); err != nil {
		t.Fatal(err)
	}
	c := keys[1].Credential
	c.Authenticator.SignCount = 7
	if err := reg.TouchPasskey(ctx, &c); err != nil {
		t.Fatal(err)
	}
	keys, _ = reg.Passkeys(ctx, p.ID)
	if len(keys) != 1 || keys[0].Credential.Authenticator.SignCount != 7 || keys[0].LastUsedAt == nil {
		t.Fatalf("after touch = %+v", keys)
	}
}

func testOrganisations(t *testing.T, db *store.DB) {
	ctx := context.Background()
	reg, _ := newRegistry(db)
	if _, err := reg.CreateOrganisation(ctx, "Nobody", nil, false); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("no roles: %v", err)
	}
	if _, err := reg.CreateOrganisation(ctx, "Bad", []registry.Role{"king"}, false); !errors.Is(err, registry.ErrInvalid) {
		t.Errorf("unknown role: %v", err)
	}
	o, err := reg.CreateOrganisation(ctx, "Health Authority", []registry.Role{registry.Agency, registry.Issuer, registry.Agency}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Roles) != 2 {
		t.Fatalf("roles = %v", o.Roles)
	}
	if _, err := reg.CreateOrganisation(ctx, "Health Authority", []registry.Role{registry.Merchant}, false); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate name: %v", err)
	}
	got, err := reg.Organisation(ctx, o.ID)
	if err != nil || got.Name != o.Name || len(got.Roles) != 2 || got.Roles[0] != registry.Issuer || !got.Has(registry.Agency) {
		t.Fatalf("organisation = %+v, %v", got, err)
	}
	p := person(t, reg, "Kofi", "k1")
	if err := reg.Grant(ctx, p.ID, o.ID, registry.Merchant); !errors.Is(err, registry.ErrRoleNotOffered) {
		t.Fatalf("grant a role the organisation lacks: %v", err)
	}
	if err := reg.Grant(ctx, "no-such-person", o.ID, registry.Agency); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("grant to nobody: %v", err)
	}
	if err := reg.Grant(ctx, p.ID, "no-such-org", registry.Agency); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("grant in no organisation: %v", err)
	}
	for i := 0; i < 2; i++ { // granting twice is fine
		if err := reg.Grant(ctx, p.ID, o.ID, registry.Issuer); err != nil {
			t.Fatal(err)
		}
	}
	ms, _ := reg.Memberships(ctx, p.ID)
	if len(ms) != 1 || ms[0].OrgName != "Health Authority" || ms[0].Role != registry.Issuer {
		t.Fatalf("memberships = %+v", ms)
	}
	if roles := registry.Roles(ms); len(roles) != 2 || roles[0] != registry.Citizen || roles[1] != registry.Issuer {
		t.Fatalf("roles = %v", roles)
	}
	if _, err := reg.Revoke(ctx, p.ID, o.ID, registry.Issuer); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Revoke(ctx, p.ID, o.ID, registry.Issuer); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	if ms, _ := reg.Members(ctx, o.ID); len(ms) != 0 {
		t.Fatalf("members after revoke = %+v", ms)
	}
}

func testTokens(t *testing.T, db *store.DB) {
	ctx := context.Background()
	reg, clk := newRegistry(db)
	o, err := reg.CreateOrganisation(ctx, "Rossi Groceries", []registry.Role{registry.Merchant}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.CreateToken(ctx, o.ID, registry.Agency, "pos", ""); !errors.Is(err, registry.ErrRoleNotOffered) {
		t.Fatalf("token for a role the organisation lacks: %v", err)
	}
	secret, tok, err := reg.CreateToken(ctx, o.ID, registry.Merchant, "point of sale", "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, registry.TokenPrefix) || len(secret) < 40 {
		t.Fatalf("secret = %q", secret)
	}
	// The secret is stored only as a hash.
	var n int
	if err := db.Reader().QueryRowContext(ctx, "SELECT COUNT(*) FROM api_tokens WHERE hash = $1", []byte(secret)).Scan(&n); err != nil || n != 0 {
		t.Fatalf("secret stored in clear: n=%d err=%v", n, err)
	}
	got, org, err := reg.Authenticate(ctx, secret, false)
	if err != nil || got.ID != tok.ID || org.ID != o.ID || got.Role != registry.Merchant {
		t.Fatalf("authenticate = %+v %+v %v", got, org, err)
	}
	clk.add(2 * time.Minute)
	reg.Authenticate(ctx, secret, false)
	list, _ := reg.Tokens(ctx, o.ID)
	if len(list) != 1 || list[0].LastUsedAt == nil {
		t.Fatalf("tokens = %+v", list)
	}
	// Many requests at once with a stale last use: all pass, one time is kept.
	clk.add(2 * time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			if _, _, err := reg.Authenticate(ctx, secret, false); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent authenticate: %v", err)
	}
	if list, _ = reg.Tokens(ctx, o.ID); list[0].LastUsedAt == nil || clk.now().Sub(*list[0].LastUsedAt) > time.Second {
		t.Fatalf("last use after the burst: %v, now %v", list[0].LastUsedAt, clk.now())
	}
	for _, bad := range []string{"", "cvs_", secret + "x", strings.ToUpper(secret), "Bearer " + secret} {
		if _, _, err := reg.Authenticate(ctx, bad, false); !errors.Is(err, registry.ErrBadToken) {
			t.Errorf("Authenticate(%q) = %v", bad, err)
		}
	}
	if err := reg.RevokeToken(ctx, "other-org", tok.ID); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("revoke through another organisation: %v", err)
	}
	if err := reg.RevokeToken(ctx, o.ID, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.Authenticate(ctx, secret, false); !errors.Is(err, registry.ErrBadToken) {
		t.Fatalf("revoked token: %v", err)
	}
	d, _ := reg.CreateOrganisation(ctx, "Demo Shop", []registry.Role{registry.Merchant}, true)
	ds, _, _ := reg.CreateToken(ctx, d.ID, registry.Merchant, "demo", "")
	if _, _, err := reg.Authenticate(ctx, ds, false); !errors.Is(err, registry.ErrBadToken) {
		t.Fatalf("demo token outside demo mode: %v", err)
	}
	if _, _, err := reg.Authenticate(ctx, ds, true); err != nil {
		t.Fatalf("demo token in demo mode: %v", err)
	}
	// A form sent twice (its key) makes one token; the second send gets
	// the first without its secret. Sent 8 times at once, one is made.
	secrets := make([]string, 8)
	made := make([]*registry.APIToken, 8)
	tries := make([]error, 8)
	for i := range 8 {
		wg.Go(func() {
			secrets[i], made[i], tries[i] = reg.CreateTokenOnce(ctx, o.ID, registry.Merchant, "till 3", "", "form-1", 0)
		})
	}
	wg.Wait()
	fresh := 0
	for i := range 8 {
		switch {
		case tries[i] == nil && secrets[i] != "":
			fresh++
		case !errors.Is(tries[i], registry.ErrMadeBefore) || secrets[i] != "":
			t.Fatalf("try %d: %q %v", i, secrets[i], tries[i])
		}
		if made[i] == nil || made[i].ID != made[0].ID {
			t.Fatalf("try %d made another token: %+v", i, made[i])
		}
	}
	if fresh != 1 {
		t.Fatalf("%d of 8 tries made the token, want 1", fresh)
	}
	if _, other, err := reg.CreateTokenOnce(ctx, d.ID, registry.Merchant, "till 3", "", "form-1", 0); err != nil || other.ID == made[0].ID {
		t.Fatalf("another organisation's form with the same key: %+v %v", other, err)
	}
	if _, _, err := reg.CreateTokenOnce(ctx, o.ID, registry.Merchant, "till 4", "", strings.Repeat("k", registry.MaxTokenKey+1), 0); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("an overlong key: %v", err)
	}

	// A token made to expire works until then, and not from then on.
	brief, tok, err := reg.CreateTokenOnce(ctx, o.ID, registry.Merchant, "till 5", "", "", 30*24*time.Hour)
	if err != nil || tok.ExpiresAt == nil || !tok.ExpiresAt.Equal(tok.CreatedAt.Add(30*24*time.Hour)) {
		t.Fatalf("a token for 30 days: %+v %v", tok, err)
	}
	if _, _, err := reg.Authenticate(ctx, brief, true); err != nil {
		t.Fatalf("on its first day: %v", err)
	}
	clk.add(30 * 24 * time.Hour)
	if _, _, err := reg.Authenticate(ctx, brief, true); !errors.Is(err, registry.ErrTokenExpired) || !errors.Is(err, registry.ErrBadToken) {
		t.Fatalf("after 30 days: %v", err)
	}
	toks, err := reg.Tokens(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range toks {
		if k.ID == tok.ID && (k.ExpiresAt == nil || !k.Expired(clk.now())) {
			t.Fatalf("listed: %+v", k)
		}
	}
	if _, _, err := reg.CreateTokenOnce(ctx, o.ID, registry.Merchant, "till 6", "", "", registry.MaxTokenLife+time.Hour); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("a token for too long: %v", err)
	}

	// A store that cannot be read is the store's error, not a verdict that
	// the organisation lacks the role.
	rename := func(from, to string) {
		t.Helper()
		if err := db.Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, "ALTER TABLE "+from+" RENAME TO "+to)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	rename("org_roles", "org_roles_away")
	_, _, err = reg.CreateToken(ctx, o.ID, registry.Merchant, "till 2", "")
	rename("org_roles_away", "org_roles")
	if err == nil || errors.Is(err, registry.ErrRoleNotOffered) {
		t.Fatalf("token while roles cannot be read: %v", err)
	}
}

// testOtherSessions: a person signs out everywhere else, or removes a
// passkey (a lost device's), and only the asking session stays; nobody
// else's sessions are touched, and a refused removal ends none.
func testOtherSessions(t *testing.T, db *store.DB) {
	ctx := context.Background()
	reg, clk := newRegistry(db)
	p := person(t, reg, "Amira", "os-1")
	if err := reg.AddPasskey(ctx, p.ID, &webauthn.Credential{ID: []byte("os-2")}, "old phone"); err != nil {
		t.Fatal(err)
	}
	q := person(t, reg, "Jonas", "os-3")
	session := func(who *registry.Person, ttl time.Duration) string {
		t.Helper()
		tok, err := reg.NewSession(ctx, who.ID, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	alive := func(tok string) bool {
		t.Helper()
		_, err := reg.SessionPerson(ctx, tok)
		if err != nil && !errors.Is(err, registry.ErrNotFound) && !errors.Is(err, registry.ErrExpired) {
			t.Fatal(err)
		}
		return err == nil
	}
	others := func(who *registry.Person, tok string) int {
		t.Helper()
		n, err := reg.OtherSessions(ctx, who.ID, tok)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	expired := session(p, time.Minute)
	here, phone, laptop := session(p, time.Hour), session(p, time.Hour), session(p, time.Hour)
	jonas := session(q, time.Hour)
	clk.add(2 * time.Minute)
	if n := others(p, here); n != 2 {
		t.Fatalf("other sessions = %d, want 2 (the expired one not counted)", n)
	}
	if n := others(q, jonas); n != 0 {
		t.Fatalf("Jonas's other sessions = %d, want 0", n)
	}
	// Refused (the passkey is not hers): nothing ends.
	if _, err := reg.RemovePasskey(ctx, p.ID, []byte("os-3"), here); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("removing someone else's passkey: %v", err)
	}
	if !alive(phone) || !alive(laptop) {
		t.Fatal("a refused removal ended sessions")
	}
	ended, err := reg.RemovePasskey(ctx, p.ID, []byte("os-2"), here)
	if err != nil || ended != 2 {
		t.Fatalf("remove = %d, %v; want 2 sessions ended", ended, err)
	}
	if !alive(here) || alive(phone) || alive(laptop) || alive(expired) {
		t.Fatalf("after removal: here %v, phone %v, laptop %v, expired %v; want only here", alive(here), alive(phone), alive(laptop), alive(expired))
	}
	if !alive(jonas) {
		t.Fatal("removing Amira's passkey signed Jonas out")
	}
	// The last passkey stays, and its refusal ends nothing.
	tablet := session(p, time.Hour)
	if _, err := reg.RemovePasskey(ctx, p.ID, []byte("os-1"), here); !errors.Is(err, registry.ErrLastPasskey) {
		t.Fatalf("removing the last passkey: %v", err)
	}
	if !alive(tablet) {
		t.Fatal("a refused removal of the last passkey ended a session")
	}
	ended, err = reg.EndOtherSessions(ctx, p.ID, here)
	if err != nil || ended != 1 || alive(tablet) || !alive(here) || !alive(jonas) {
		t.Fatalf("end others = %d, %v; tablet %v, here %v, Jonas %v", ended, err, alive(tablet), alive(here), alive(jonas))
	}
	if ended, err = reg.EndOtherSessions(ctx, p.ID, here); err != nil || ended != 0 {
		t.Fatalf("ending again = %d, %v; want 0", ended, err)
	}
}

// testLastOperator: two operators who revoke each other at once leave one.
func testLastOperator(t *testing.T, db *store.DB) {
	ctx := context.Background()
	reg, _ := newRegistry(db)
	o, err := reg.CreateOrganisation(ctx, "Night Shift", []registry.Role{registry.Operator}, false)
	if err != nil {
		t.Fatal(err)
	}
	// The other sub-tests' operators would count: take theirs away first.
	if err := db.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM memberships WHERE role = 'operator'")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	a, b := person(t, reg, "Ada", "lo-1"), person(t, reg, "Bea", "lo-2")
	for _, p := range []*registry.Person{a, b} {
		if err := reg.Grant(ctx, p.ID, o.ID, registry.Operator); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, p := range []*registry.Person{a, b} {
		wg.Go(func() { _, errs[i] = reg.Revoke(ctx, p.ID, o.ID, registry.Operator) })
	}
	wg.Wait()
	refused := 0
	for _, err := range errs {
		switch {
		case errors.Is(err, registry.ErrLastOperator):
			refused++
		case err != nil:
			t.Fatal(err)
		}
	}
	left, err := reg.Members(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if refused != 1 || len(left) != 1 {
		t.Fatalf("%d revocations refused and %d operators left; want 1 and 1", refused, len(left))
	}
	if _, err := reg.Revoke(ctx, left[0].PersonID, o.ID, registry.Operator); !errors.Is(err, registry.ErrLastOperator) {
		t.Fatalf("revoking the last operator: %v", err)
	}
}

func testSessions(t *testing.T, db *store.DB) {
	ctx := context.Background()
	reg, clk := newRegistry(db)
	p := person(t, reg, "Amira", "s1")
	token, err := reg.NewSession(ctx, p.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, err := reg.SessionPerson(ctx, token)
	if err != nil || got.ID != p.ID {
		t.Fatalf("session = %+v, %v", got, err)
	}
	clk.add(time.Hour)
	if _, err := reg.SessionPerson(ctx, token); !errors.Is(err, registry.ErrExpired) {
		t.Fatalf("expired session: %v", err)
	}
	if _, err := reg.SessionPerson(ctx, "nope"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
	fresh, _ := reg.NewSession(ctx, p.ID, time.Hour)
	if err := reg.EndSession(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.SessionPerson(ctx, fresh); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("ended session: %v", err)
	}
	// Ceremonies finish at most once, and not after they expire.
	h, err := reg.SaveCeremony(ctx, "login", p.ID, []byte("state"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := reg.TakeCeremony(ctx, h, "register"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("ceremony of another kind: %v", err)
	}
	pid, data, err := reg.TakeCeremony(ctx, h, "login")
	if err != nil || pid != p.ID || string(data) != "state" {
		t.Fatalf("take = %q %q %v", pid, data, err)
	}
	if _, _, err := reg.TakeCeremony(ctx, h, "login"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("second take: %v", err)
	}
	h2, _ := reg.SaveCeremony(ctx, "login", "", []byte("x"), time.Minute)
	clk.add(2 * time.Minute)
	if _, _, err := reg.TakeCeremony(ctx, h2, "login"); !errors.Is(err, registry.ErrExpired) {
		t.Fatalf("expired ceremony: %v", err)
	}
}

func testSetup(t *testing.T, db *store.DB) {
	ctx := context.Background()
	reg, clk := newRegistry(db)
	first, err := reg.OperatorSetup(ctx, time.Hour)
	if err != nil || !strings.HasPrefix(first, registry.SetupPrefix) {
		t.Fatalf("setup code = %q, %v", first, err)
	}
	code, _ := reg.OperatorSetup(ctx, time.Hour) // replaces the first
	p := person(t, reg, "Olu", "o1")
	if _, err := reg.RedeemSetup(ctx, first, p.ID); !errors.Is(err, registry.ErrBadToken) {
		t.Fatalf("replaced code: %v", err)
	}
	clk.add(2 * time.Hour)
	if _, err := reg.RedeemSetup(ctx, code, p.ID); !errors.Is(err, registry.ErrExpired) {
		t.Fatalf("expired code: %v", err)
	}
	code, _ = reg.OperatorSetup(ctx, time.Hour)
	o, err := reg.RedeemSetup(ctx, code, p.ID)
	if err != nil || o.Name != registry.OperatorOrgName {
		t.Fatalf("redeem = %+v, %v", o, err)
	}
	if _, err := reg.RedeemSetup(ctx, code, p.ID); !errors.Is(err, registry.ErrBadToken) {
		t.Fatalf("spent code: %v", err)
	}
	ms, _ := reg.Memberships(ctx, p.ID)
	if len(ms) != 1 || ms[0].Role != registry.Operator {
		t.Fatalf("memberships = %+v", ms)
	}
	if again, err := reg.OperatorSetup(ctx, time.Hour); err != nil || again != "" {
		t.Fatalf("setup code once an operator exists = %q, %v", again, err)
	}
}

func testMode(t *testing.T, db *store.DB) {
	ctx := context.Background()
	reg, _ := newRegistry(db)
	if err := reg.EnsureMode(ctx, registry.ModeDemo); err != nil {
		t.Fatal(err)
	}
	if err := reg.EnsureMode(ctx, registry.ModeDemo); err != nil {
		t.Fatal(err)
	}
	if err := reg.EnsureMode(ctx, registry.ModeProduction); !errors.Is(err, registry.ErrModeMismatch) {
		t.Fatalf("mode switch: %v", err)
	}
}

func FuzzParseRole(f *testing.F) {
	for _, s := range []string{"merchant", " DPA ", "citizen", "", "operator\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := registry.ParseRole(s)
		if err == nil && !strings.EqualFold(strings.TrimSpace(s), string(r)) {
			t.Fatalf("ParseRole(%q) = %q", s, r)
		}
	})
}

func FuzzNewPerson(f *testing.F) {
	reg := registry.New(nil, time.Now, rand.Reader)
	for _, s := range []string{"Amira", "", " \t", "a\u0000b", "😀", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := reg.NewPerson(s)
		if err != nil {
			return
		}
		if p.DisplayName == "" || len([]rune(p.DisplayName)) > 64 || strings.TrimSpace(p.DisplayName) != p.DisplayName {
			t.Fatalf("accepted %q as %q", s, p.DisplayName)
		}
	})
}

// testLeaverTokens: who loses a role loses the API tokens they made and may
// no longer make (for that role there, or anywhere once no longer an
// operator); their other tokens, other people's and tokens nobody made
// stay; a token revoked so stays revoked when the role comes back.
func testLeaverTokens(t *testing.T, db *store.DB) {
	ctx := context.Background()
	reg, _ := newRegistry(db)
	shop, err := reg.CreateOrganisation(ctx, "Corner Shop", []registry.Role{registry.Merchant, registry.Verifier}, false)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := reg.CreateOrganisation(ctx, "Leavers' Operations", []registry.Role{registry.Operator}, false)
	if err != nil {
		t.Fatal(err)
	}
	ana, ben, olga, oscar := person(t, reg, "Ana", "lv-1"), person(t, reg, "Ben", "lv-2"), person(t, reg, "Olga", "lv-3"), person(t, reg, "Oscar", "lv-4")
	grants := []struct {
		p    *registry.Person
		org  string
		role registry.Role
	}{{ana, shop.ID, registry.Merchant}, {ana, shop.ID, registry.Verifier}, {ben, shop.ID, registry.Merchant}, {olga, ops.ID, registry.Operator}, {oscar, ops.ID, registry.Operator}}
	for _, g := range grants {
		if err := reg.Grant(ctx, g.p.ID, g.org, g.role); err != nil {
			t.Fatal(err)
		}
	}
	token := func(role registry.Role, by, label string) string {
		t.Helper()
		secret, _, err := reg.CreateToken(ctx, shop.ID, role, label, by)
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	anaTill, anaCheck, benTill := token(registry.Merchant, ana.ID, "Ana's till"), token(registry.Verifier, ana.ID, "Ana's check"), token(registry.Merchant, ben.ID, "Ben's till")
	olgaTill, nobodys := token(registry.Merchant, olga.ID, "Olga's till"), token(registry.Merchant, "", "nobody's")
	works := func(secret string) bool {
		_, _, err := reg.Authenticate(ctx, secret, false)
		return err == nil
	}
	expectWorking := func(what string, want map[string]bool) {
		t.Helper()
		for name, secret := range map[string]string{"Ana's till": anaTill, "Ana's check": anaCheck, "Ben's till": benTill, "Olga's till": olgaTill, "nobody's": nobodys} {
			if works(secret) != want[name] {
				t.Fatalf("%s: %s works = %v, want %v", what, name, works(secret), want[name])
			}
		}
	}
	all := map[string]bool{"Ana's till": true, "Ana's check": true, "Ben's till": true, "Olga's till": true, "nobody's": true}
	expectWorking("before", all)

	if n, err := reg.Revoke(ctx, ana.ID, shop.ID, registry.Merchant); err != nil || n != 1 {
		t.Fatalf("Ana loses the merchant role: %d tokens revoked, %v; want 1", n, err)
	}
	all["Ana's till"] = false
	expectWorking("Ana no longer a merchant", all)
	if n, err := reg.Revoke(ctx, olga.ID, ops.ID, registry.Operator); err != nil || n != 1 {
		t.Fatalf("Olga loses the operator role: %d tokens revoked, %v; want 1", n, err)
	}
	all["Olga's till"] = false
	expectWorking("Olga no longer an operator", all)
	if err := reg.Grant(ctx, ana.ID, shop.ID, registry.Merchant); err != nil {
		t.Fatal(err)
	}
	expectWorking("Ana a merchant again", all)
	if n, err := reg.Revoke(ctx, ana.ID, shop.ID, registry.Verifier); err != nil || n != 1 {
		t.Fatalf("Ana loses the verifier role: %d tokens revoked, %v; want 1", n, err)
	}
	all["Ana's check"] = false
	expectWorking("Ana no longer a verifier", all)

	// The list names each token's maker and whether they may still make it.
	toks, err := reg.Tokens(ctx, shop.ID)
	if err != nil {
		t.Fatal(err)
	}
	type maker struct {
		name string
		left bool
	}
	want := map[string]maker{"Ana's till": {"Ana", false}, "Ana's check": {"Ana", true}, "Ben's till": {"Ben", false}, "Olga's till": {"Olga", true}, "nobody's": {"", false}}
	for _, k := range toks {
		if got := (maker{k.CreatorName, k.CreatorLeft}); got != want[k.Label] {
			t.Fatalf("%s: made by %+v, want %+v", k.Label, got, want[k.Label])
		}
	}
	if len(toks) != len(want) {
		t.Fatalf("%d tokens listed, want %d", len(toks), len(want))
	}
}
