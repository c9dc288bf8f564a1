package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

func expect(t *testing.T, what string, r *response, status int, contains ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d\n%s", what, r.status, status, clip(r.body))
	}
	for _, c := range contains {
		if !strings.Contains(r.body, c) {
			t.Fatalf("%s: body lacks %q:\n%s", what, c, clip(r.body))
		}
	}
}

// clip keeps the readable middle of a page for failure messages.
func clip(s string) string {
	if i := strings.Index(s, "<main"); i >= 0 {
		s = s[i:]
	}
	if len(s) > 1500 {
		s = s[:1500] + "…"
	}
	return s
}

func expectProblem(t *testing.T, what string, r *response, status int, detail string) {
	t.Helper()
	expect(t, what, r, status)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Fatalf("%s: content type %q, want problem+json", what, ct)
	}
	var p struct {
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	r.json(t, &p)
	if p.Status != status || p.Title == "" || !strings.Contains(p.Detail, detail) {
		t.Fatalf("%s: problem %+v, want status %d and detail containing %q", what, p, status, detail)
	}
}

// Passkey flows over HTTP with a software authenticator, on every engine.
func TestPasskeyFlows(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			opts := e.Open(t)
			n := startNode(t, nodeOptions{store: &opts})
			c := newClient(t, n.URL)
			c.register("Amira")
			ck := c.cookies["__Host-civstack_session"]
			if ck == nil || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Domain != "" {
				t.Fatalf("session cookie = %+v, want __Host-, Secure, HttpOnly, SameSite=Lax, Path=/ and no Domain", ck)
			}
			expect(t, "home", c.get("/"), 200, "Hello, Amira")

			// Her name, changed and refused.
			r0 := c.postForm("/account/name", url.Values{"name": {"  Amira H.  "}})
			expect(t, "rename", r0, http.StatusSeeOther)
			expect(t, "renamed", c.get(r0.header.Get("Location")), 200, "Your name is changed.", `value="Amira H."`)
			expect(t, "home after renaming", c.get("/"), 200, "Hello, Amira H.")
			for what, bad := range map[string]string{"is empty": " ", "control character": "Amira\u0007", "longer than 64": strings.Repeat("a", 65)} {
				expect(t, "a name that "+what, c.postForm("/account/name", url.Values{"name": {bad}}), http.StatusBadRequest, what)
			}
			expect(t, "the name stays", c.get("/"), 200, "Hello, Amira H.")

			// Sessions are stored hashed.
			var n1 int
			n.db.Reader().QueryRow("SELECT COUNT(*) FROM sessions WHERE hash = $1", []byte(ck.Value)).Scan(&n1)
			if n1 != 0 {
				t.Fatal("session token stored in clear")
			}

			r := c.postForm("/signout", nil)
			expect(t, "sign out", r, http.StatusSeeOther)
			if c.cookies["__Host-civstack_session"] != nil {
				t.Fatal("cookie kept after sign-out")
			}
			// The old cookie no longer works.
			old := newClient(t, n.URL)
			old.cookies["__Host-civstack_session"] = ck
			expect(t, "old session", old.get("/account"), http.StatusSeeOther)

			r = c.signin()
			expect(t, "sign in", r, 200, `"redirect":"/"`)
			// Signing in again ends the session the browser already had.
			before := c.cookies["__Host-civstack_session"]
			expect(t, "sign in again", c.signin(), 200)
			stale := newClient(t, n.URL)
			stale.cookies["__Host-civstack_session"] = before
			expect(t, "replaced session", stale.get("/account"), http.StatusSeeOther)
			expect(t, "home again", c.get("/"), 200, "Hello, Amira")

			// A finished ceremony cannot be replayed.
			b := c.postJSON("/auth/login/begin", map[string]string{})
			var begin beginOut
			b.json(t, &begin)
			cred, _ := c.auth.get(begin.Options)
			expect(t, "finish", c.postJSON("/auth/login/finish?ceremony="+url.QueryEscape(begin.Ceremony), cred), 200)
			expectProblem(t, "replayed finish", c.postJSON("/auth/login/finish?ceremony="+url.QueryEscape(begin.Ceremony), cred), 400, "unknown or has expired")

			// A passkey civstack does not know.
			stranger := newClient(t, n.URL)
			stranger.auth.creds = append(stranger.auth.creds, c.auth.creds[0]) // same key...
			stranger.auth.creds[0] = &softCredential{id: []byte("nope"), key: c.auth.creds[0].key, user: []byte("nobody")}
			expectProblem(t, "unknown passkey", stranger.signin(), 401, "not registered")

			// A tampered signature.
			b = c.postJSON("/auth/login/begin", map[string]string{})
			b.json(t, &begin)
			cred, _ = c.auth.get(begin.Options)
			cred["response"].(map[string]any)["signature"] = b64.EncodeToString([]byte("forged"))
			expectProblem(t, "forged signature", c.postJSON("/auth/login/finish?ceremony="+url.QueryEscape(begin.Ceremony), cred), 401, "could not be verified")

			// A second passkey on another device: the first one is excluded.
			second := &softAuthenticator{rpID: c.auth.rpID, origin: c.auth.origin}
			b = c.postJSON("/auth/passkeys/begin", map[string]string{"label": "Laptop"})
			expect(t, "add begin", b, 200)
			b.json(t, &begin)
			if _, err := c.auth.create(begin.Options); err == nil {
				t.Fatal("the first authenticator was not excluded from adding a second passkey")
			}
			cred, err := second.create(begin.Options)
			if err != nil {
				t.Fatal(err)
			}
			expect(t, "add finish", c.postJSON("/auth/passkeys/finish?ceremony="+url.QueryEscape(begin.Ceremony), cred), 200, "/account?added=1")
			expect(t, "account", c.get("/account?added=1"), 200, "Laptop", "First passkey", "Your new passkey is ready")

			// A phone that signs in with the first passkey, then is lost.
			phone := newClient(t, n.URL)
			phone.auth = c.auth
			expect(t, "sign in on the phone", phone.signin(), 200)

			// Sign in with the second one.
			c.auth = second
			expect(t, "sign in with the second passkey", c.signin(), 200)
			expect(t, "account with the phone signed in", c.get("/account"), 200, "Here, and on one other device or browser", "Sign out everywhere else")

			// Remove the first; the last cannot go.
			ps, _ := n.reg.Passkeys(context.Background(), firstPersonID(t, n))
			if len(ps) != 2 {
				t.Fatalf("%d passkeys", len(ps))
			}
			r = c.postForm("/account/passkeys/"+b64.EncodeToString(ps[0].ID)+"/remove", nil)
			expect(t, "remove passkey", r, http.StatusSeeOther)
			// Removing it signed the lost phone out, and not this browser.
			expect(t, "after removal", c.get(r.header.Get("Location")), 200, "The passkey was removed. You were signed in on one other device or browser: it is signed out now.", "Only here.")
			expect(t, "the lost phone", phone.get("/account"), http.StatusSeeOther)
			// Signing out everywhere else.
			tablet := newClient(t, n.URL)
			tablet.auth = second
			expect(t, "sign in on a tablet", tablet.signin(), 200)
			r = c.postForm("/account/sessions/end-others", nil)
			expect(t, "sign out everywhere else", r, http.StatusSeeOther)
			expect(t, "after signing out elsewhere", c.get(r.header.Get("Location")), 200, "You were signed in on one other device or browser: it is signed out now.")
			expect(t, "the tablet", tablet.get("/account"), http.StatusSeeOther)
			r = c.postForm("/account/sessions/end-others", nil)
			expect(t, "nothing to sign out", c.get(r.header.Get("Location")), 200, "You were not signed in anywhere else.")
			r = c.postForm("/account/passkeys/"+b64.EncodeToString(ps[1].ID)+"/remove", nil)
			expect(t, "remove the last passkey", r, http.StatusConflict, "cannot remove your last passkey")
			expect(t, "remove garbage id", c.postForm("/account/passkeys/not*base64/remove", nil), http.StatusBadRequest)

			// A store that cannot answer is not an unknown passkey.
			execSQL(t, n.db, `ALTER TABLE people RENAME TO people_away`)
			expectProblem(t, "sign in while the store fails", c.signin(), http.StatusInternalServerError, "went wrong on our side")
		})
	}
}

func firstPersonID(t *testing.T, n *node) string {
	var id string
	if err := n.db.Reader().QueryRow("SELECT id FROM people ORDER BY created_at LIMIT 1").Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestSessionExpiry(t *testing.T) {
	n := startNode(t, nodeOptions{})
	c := newClient(t, n.URL)
	c.register("Jonas")
	n.clock.add(2 * time.Hour) // the test server's sessions last one hour
	r := c.get("/account")
	expect(t, "expired session", r, http.StatusSeeOther)
	loc := r.header.Get("Location")
	if !strings.Contains(loc, "expired=1") || !strings.Contains(loc, "next=%2Faccount") {
		t.Fatalf("redirect to %q", loc)
	}
	expect(t, "sign-in page", c.get(loc), 200, "Your session has expired. Sign in again.")
	expectProblem(t, "expired session on JSON", c.postJSON("/auth/passkeys/begin", map[string]string{"label": "x"}), 401, "Sign in")
}

func TestCrossSiteRequestsRefused(t *testing.T) {
	n := startNode(t, nodeOptions{})
	c := newClient(t, n.URL)
	c.register("Amira")
	c.header.Set("Sec-Fetch-Site", "cross-site")
	expect(t, "cross-site sign-out", c.postForm("/signout", nil), http.StatusForbidden, "came from another site")
	c.header = http.Header{"Origin": {"https://evil.example"}}
	expect(t, "foreign origin", c.postForm("/signout", nil), http.StatusForbidden)
	c.header = http.Header{"Sec-Fetch-Site": {"same-origin"}}
	expect(t, "same-origin sign-out", c.postForm("/signout", nil), http.StatusSeeOther)
}

func TestBadJSONInput(t *testing.T) {
	n := startNode(t, nodeOptions{})
	c := newClient(t, n.URL)
	expectProblem(t, "malformed", c.postJSON("/auth/register/begin", `{"display_name":`), 400, "not the JSON expected")
	expectProblem(t, "unknown field", c.postJSON("/auth/register/begin", `{"display_name":"A","admin":true}`), 400, "unknown field")
	expectProblem(t, "trailing data", c.postJSON("/auth/register/begin", `{"display_name":"A"} {}`), 400, "after the JSON")
	expectProblem(t, "oversize", c.postJSON("/auth/register/begin", `{"display_name":"`+strings.Repeat("a", 70000)+`"}`), 400, "larger than")
	expectProblem(t, "blank name", c.postJSON("/auth/register/begin", `{"display_name":"  "}`), 400, "Display name is empty.")
	expectProblem(t, "no ceremony", c.postJSON("/auth/register/finish?ceremony=nope", `{}`), 400, "unknown or has expired")
	var people int
	n.db.Reader().QueryRow("SELECT COUNT(*) FROM people").Scan(&people)
	if people != 0 {
		t.Fatalf("%d people after failed registrations", people)
	}
	expect(t, "unknown page", c.get("/no/such/page"), 404, "There is no page at this address")
	expect(t, "unknown address, posted", c.postForm("/no/such/page", nil), 404, "There is no page at this address")
	// An address served for other methods: 405, saying which.
	r := c.get("/signout")
	expect(t, "a form's address opened", r, http.StatusMethodNotAllowed, "not a page to open")
	if got := r.header.Get("Allow"); got != "POST" {
		t.Fatalf("Allow %q", got)
	}
	r = c.sendJSON(http.MethodDelete, "/log/checkpoint", nil)
	expectProblem(t, "DELETE on the checkpoint", r, http.StatusMethodNotAllowed, "does not take DELETE requests; it takes GET, HEAD")
	if got := r.header.Get("Allow"); got != "GET, HEAD" {
		t.Fatalf("Allow %q", got)
	}
	expectProblem(t, "PUT on the API", c.sendJSON(http.MethodPut, "/api/v1/exchange/requests", `{}`), http.StatusMethodNotAllowed, "it takes GET, HEAD, POST")
}

func TestRoleGates(t *testing.T) {
	n := startNode(t, nodeOptions{})
	anon := newClient(t, n.URL)
	r := anon.get("/account")
	expect(t, "anonymous account", r, http.StatusSeeOther)
	if loc := r.header.Get("Location"); loc != "/?next=%2Faccount" {
		t.Fatalf("redirect to %q", loc)
	}
	expect(t, "anonymous landing", anon.get("/"), 200, "Sign in with a passkey")

	c := newClient(t, n.URL)
	c.register("Amira")
	for _, p := range []string{"/operator", "/merchant", "/issuer", "/verifier", "/agency", "/dpa"} {
		expect(t, "citizen opens "+p, c.get(p), http.StatusForbidden, "which your account does not have")
	}
	ctx := context.Background()
	shop, _ := n.reg.CreateOrganisation(ctx, "Rossi Groceries", []registry.Role{registry.Merchant}, false)
	expect(t, "non-member opens an organisation", c.get("/orgs/"+shop.ID), http.StatusForbidden)
	expect(t, "non-member makes a token", c.postForm("/orgs/"+shop.ID+"/tokens", url.Values{"label": {"x"}, "role": {"merchant"}}), http.StatusForbidden)
	expect(t, "no such organisation", c.get("/orgs/nope"), http.StatusNotFound)
}

// The operator's pages: set up the first operator, create an organisation,
// give a person a role, create and revoke an API token.
func TestOperatorPages(t *testing.T) {
	n := startNode(t, nodeOptions{})
	ctx := context.Background()
	op := newClient(t, n.URL)
	op.register("Olu")
	code, err := n.reg.OperatorSetup(ctx, time.Hour)
	if err != nil || code == "" {
		t.Fatalf("setup code %q, %v", code, err)
	}
	expect(t, "setup page", op.get("/setup?code="+code), 200, code)
	expect(t, "wrong code", op.postForm("/setup", url.Values{"code": {"setup_wrong"}}), http.StatusUnauthorized, "unknown, spent or revoked")
	expect(t, "redeem", op.postForm("/setup", url.Values{"code": {code}}), http.StatusSeeOther)
	expect(t, "operator home", op.get("/operator"), 200, "New organisation", registry.OperatorOrgName,
		"<code>test (commit 0123456789ab; go1.26)</code>", fmt.Sprintf("sqlite, schema version %d", store.KnownVersion(store.SQLite)), "<code>"+n.URL+"</code>")

	expect(t, "org without roles", op.postForm("/operator/organisations", url.Values{"name": {"Nothing"}}), 400, "at least one role")
	expect(t, "org with a bad role", op.postForm("/operator/organisations", url.Values{"name": {"X"}, "role": {"emperor"}}), 400, "<p class=\"error\" role=\"alert\">Unknown role &#34;emperor&#34;")
	r := op.postForm("/operator/organisations", url.Values{"name": {"Rossi Groceries"}, "role": {"merchant"}})
	expect(t, "create org", r, http.StatusSeeOther)
	orgPath := strings.TrimSuffix(r.header.Get("Location"), "?created=1")
	expect(t, "duplicate org", op.postForm("/operator/organisations", url.Values{"name": {"Rossi Groceries"}, "role": {"merchant"}}), 409, "already taken")

	sofia := newClient(t, n.URL)
	sofia.register("Sofia")
	var sofiaID string
	n.db.Reader().QueryRow("SELECT id FROM people WHERE display_name = 'Sofia'").Scan(&sofiaID)
	expect(t, "grant to nobody", op.postForm(orgPath+"/members", url.Values{"person_id": {"nobody"}, "role": {"merchant"}}), 404, "No person has that account number")
	expect(t, "grant a role the org lacks", op.postForm(orgPath+"/members", url.Values{"person_id": {sofiaID}, "role": {"agency"}}), 400, "The organisation does not have the Agency role.")
	expect(t, "grant", op.postForm(orgPath+"/members", url.Values{"person_id": {sofiaID}, "role": {"merchant"}}), http.StatusSeeOther)
	expect(t, "member sees merchant console", sofia.get("/merchant"), 200, "Rossi Groceries")
	expect(t, "member sees the org", sofia.get(orgPath), 200, "Sofia")
	expect(t, "member cannot grant", sofia.postForm(orgPath+"/members", url.Values{"person_id": {sofiaID}, "role": {"merchant"}}), http.StatusForbidden)

	key := regexp.MustCompile(`name="key" value="([^"]+)"`).FindStringSubmatch(sofia.get(orgPath).body)
	if key == nil {
		t.Fatal("no key in the token form")
	}
	form := url.Values{"label": {"till 1"}, "role": {"merchant"}, "key": {key[1]}}
	r = sofia.postForm(orgPath+"/tokens", form)
	expect(t, "member creates a token", r, http.StatusCreated, "Copy it now", registry.TokenPrefix)
	i := strings.Index(r.body, registry.TokenPrefix)
	secret := r.body[i : i+len(registry.TokenPrefix)+52]
	r = sofia.postForm(orgPath+"/tokens", form)
	expect(t, "the form sent twice", r, http.StatusOK, "This form was sent already", "till 1")
	if strings.Contains(r.body, registry.TokenPrefix) {
		t.Fatal("the form sent twice shows a secret")
	}
	if toks, _ := n.reg.Tokens(ctx, strings.TrimPrefix(orgPath, "/orgs/")); len(toks) != 1 {
		t.Fatalf("%d tokens after the form was sent twice, want 1", len(toks))
	}
	api := newClient(t, n.URL)
	api.header.Set("Authorization", "Bearer "+secret)
	expect(t, "token works", api.get("/api/v1/whoami"), 200, `"role":"merchant"`, "Rossi Groceries")
	expect(t, "token shown once", sofia.get(orgPath), 200, "till 1", `name="valid_days"`)
	expect(t, "a token for no time we offer", sofia.postForm(orgPath+"/tokens", url.Values{"label": {"till 2"}, "role": {"merchant"}, "valid_days": {"soon"}}), 400, "how long the token works")
	// 2^48+30 days once wrapped around to a 30-day token.
	for _, days := range []string{"1831", "281474976710686", "-1"} {
		expect(t, "a token for "+days+" days", sofia.postForm(orgPath+"/tokens", url.Values{"label": {"till 2"}, "role": {"merchant"}, "valid_days": {days}}), 400,
			"A token works for at most 1830 days")
	}
	r = sofia.postForm(orgPath+"/tokens", url.Values{"label": {"till 2"}, "role": {"merchant"}, "valid_days": {"30"}})
	expect(t, "a token for 30 days", r, http.StatusCreated)
	i = strings.Index(r.body, registry.TokenPrefix)
	till2 := newClient(t, n.URL)
	till2.header.Set("Authorization", "Bearer "+r.body[i:i+len(registry.TokenPrefix)+52])
	expect(t, "till 2 works", till2.get("/api/v1/whoami"), 200, `"role":"merchant"`)
	expect(t, "its end on the page", sofia.get(orgPath), 200, "works until "+n.clock.now().Add(30*24*time.Hour).UTC().Format("2 Jan 2006"))
	if strings.Contains(sofia.get(orgPath).body, secret) {
		t.Fatal("token shown again")
	}
	toks, _ := n.reg.Tokens(ctx, strings.TrimPrefix(orgPath, "/orgs/"))
	till1 := toks[slices.IndexFunc(toks, func(k *registry.APIToken) bool { return k.Label == "till 1" })]
	outsider := newClient(t, n.URL)
	outsider.register("Marco")
	expect(t, "a non-member revokes a token", outsider.postForm(orgPath+"/tokens/"+till1.ID+"/revoke", nil), http.StatusForbidden)
	expect(t, "the token still works", api.get("/api/v1/whoami"), 200, `"role":"merchant"`)
	expect(t, "revoke", sofia.postForm(orgPath+"/tokens/"+till1.ID+"/revoke", nil), http.StatusSeeOther)
	expect(t, "revoke a token that is not there", sofia.postForm(orgPath+"/tokens/no-such-token/revoke", nil), http.StatusNotFound, "There is no such token.")
	expectProblem(t, "revoked token", api.get("/api/v1/whoami"), 401, "unknown or revoked")
	r = op.postForm(orgPath+"/members/revoke", url.Values{"person_id": {sofiaID}, "role": {"merchant"}})
	expect(t, "revoke role", r, http.StatusSeeOther)
	expect(t, "former member", sofia.get("/merchant"), http.StatusForbidden)
	// Sofia knew till 2's secret: it goes with her role.
	expect(t, "the operator is told", op.get(r.header.Get("Location")), 200, "The role was taken away. The API token they had created for a role they no longer hold was revoked too")
	expectProblem(t, "a former member's token", till2.get("/api/v1/whoami"), 401, "unknown or revoked")
	// A token whose maker left before a release revoked such tokens is
	// flagged on the page, with its maker's name.
	expect(t, "Sofia a merchant again", op.postForm(orgPath+"/members", url.Values{"person_id": {sofiaID}, "role": {"merchant"}}), http.StatusSeeOther)
	expect(t, "till 3", sofia.postForm(orgPath+"/tokens", url.Values{"label": {"till 3"}, "role": {"merchant"}, "valid_days": {"30"}}), http.StatusCreated)
	page := op.get(orgPath)
	expect(t, "who made it", page, 200, `<td data-label="Made by">Sofia</td>`)
	execSQL(t, n.db, "DELETE FROM memberships WHERE person_id = $1 AND role = 'merchant'", sofiaID)
	page = op.get(orgPath)
	if c := strings.Count(page.body, "no longer holds the role: they saw this token's secret, revoke it"); c != 1 {
		t.Fatalf("%d tokens flagged, want till 3 alone (the revoked ones are not):\n%s", c, page.body)
	}

	// The last operator keeps the role; once there is another, it can go.
	ops, err := n.reg.OrganisationByName(ctx, registry.OperatorOrgName)
	if err != nil {
		t.Fatal(err)
	}
	var oluID string
	n.db.Reader().QueryRow("SELECT id FROM people WHERE display_name = 'Olu'").Scan(&oluID)
	opsPath := "/orgs/" + ops.ID
	expect(t, "revoke the last operator", op.postForm(opsPath+"/members/revoke", url.Values{"person_id": {oluID}, "role": {"operator"}}), http.StatusConflict, "This is the last operator")
	expect(t, "still an operator", op.get("/operator"), 200)
	expect(t, "a second operator", op.postForm(opsPath+"/members", url.Values{"person_id": {sofiaID}, "role": {"operator"}}), http.StatusSeeOther)
	expect(t, "revoke one of two operators", op.postForm(opsPath+"/members/revoke", url.Values{"person_id": {oluID}, "role": {"operator"}}), http.StatusSeeOther)
	expect(t, "a former operator", op.get("/operator"), http.StatusForbidden)
	expect(t, "the last one again", sofia.postForm(opsPath+"/members/revoke", url.Values{"person_id": {sofiaID}, "role": {"operator"}}), http.StatusConflict, "last operator")
}

func TestAPI(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) { testAPI(t, e) })
	}
}

func testAPI(t *testing.T, e storetest.Engine) {
	opts := e.Open(t)
	n := startNode(t, nodeOptions{store: &opts})
	ctx := context.Background()
	ops, _ := n.reg.CreateOrganisation(ctx, "Operators", []registry.Role{registry.Operator}, false)
	opSecret, _, err := n.reg.CreateToken(ctx, ops.ID, registry.Operator, "automation", "")
	if err != nil {
		t.Fatal(err)
	}
	anon := newClient(t, n.URL)
	r := anon.get("/api/v1/whoami")
	expectProblem(t, "no token", r, 401, "API token is required")
	if !strings.Contains(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatal("no WWW-Authenticate header")
	}
	anon.header.Set("Authorization", "Bearer cvs_wrong")
	expectProblem(t, "wrong token", anon.get("/api/v1/whoami"), 401, "unknown or revoked")

	op := newClient(t, n.URL)
	op.header.Set("Authorization", "Bearer "+opSecret)
	expect(t, "whoami", op.get("/api/v1/whoami"), 200, `"role":"operator"`)
	expectProblem(t, "malformed JSON", op.postJSON("/api/v1/organisations", `{"name":`), 400, "")
	expectProblem(t, "unknown field", op.postJSON("/api/v1/organisations", `{"name":"X","roles":["merchant"],"admin":true}`), 422, "")
	expectProblem(t, "bad role", op.postJSON("/api/v1/organisations", `{"name":"X","roles":["emperor"]}`), 422, "")
	expectProblem(t, "oversize", op.postJSON("/api/v1/organisations", `{"name":"`+strings.Repeat("x", 70000)+`","roles":["merchant"]}`), 413, "")
	r = op.postJSON("/api/v1/organisations", map[string]any{"name": "Li's Dumpling Cart", "roles": []string{"merchant"}})
	expect(t, "create org", r, 201, "Li's Dumpling Cart")
	var org struct{ ID string }
	r.json(t, &org)
	expectProblem(t, "duplicate", op.postJSON("/api/v1/organisations", map[string]any{"name": "Li's Dumpling Cart", "roles": []string{"merchant"}}), 409, "already taken")
	expect(t, "list", op.get("/api/v1/organisations"), 200, "Li's Dumpling Cart", "Operators")

	r = op.postJSON("/api/v1/organisations/"+org.ID+"/tokens", map[string]any{"label": "till", "role": "merchant"})
	expect(t, "create token", r, 201, `"token":"cvs_`)
	var tok struct {
		ID     string
		Secret string `json:"token"`
	}
	r.json(t, &tok)
	expectProblem(t, "token for a role the org lacks", op.postJSON("/api/v1/organisations/"+org.ID+"/tokens", map[string]any{"label": "x", "role": "agency"}), 400, "The organisation does not have the Agency role.")

	shop := newClient(t, n.URL)
	shop.header.Set("Authorization", "Bearer "+tok.Secret)
	expect(t, "merchant whoami", shop.get("/api/v1/whoami"), 200, `"role":"merchant"`)
	expectProblem(t, "merchant lists organisations", shop.get("/api/v1/organisations"), 403, "needs a token with the Operator role")
	expect(t, "merchant reads its own org", shop.get("/api/v1/organisations/"+org.ID), 200)
	expectProblem(t, "merchant reads another org", shop.get("/api/v1/organisations/"+ops.ID), 404, "no such organisation")
	expect(t, "merchant lists its tokens", shop.get("/api/v1/organisations/"+org.ID+"/tokens"), 200, "till")
	if strings.Contains(shop.get("/api/v1/organisations/"+org.ID+"/tokens").body, tok.Secret) {
		t.Fatal("token listing shows the secret")
	}

	c := newClient(t, n.URL)
	c.register("Li")
	var liID string
	n.db.Reader().QueryRow("SELECT id FROM people WHERE display_name = 'Li'").Scan(&liID)
	expect(t, "grant", op.do(http.MethodPut, "/api/v1/organisations/"+org.ID+"/members/"+liID+"/merchant", nil, ""), 204)
	expectProblem(t, "grant to nobody", op.do(http.MethodPut, "/api/v1/organisations/"+org.ID+"/members/nobody/merchant", nil, ""), 404, "")
	expect(t, "members", shop.get("/api/v1/organisations/"+org.ID+"/members"), 200, liID)
	expect(t, "Li makes a till's token", c.postForm("/orgs/"+org.ID+"/tokens", url.Values{"label": {"Li's till"}, "role": {"merchant"}, "valid_days": {"30"}}), http.StatusCreated)
	r = op.do(http.MethodDelete, "/api/v1/organisations/"+org.ID+"/members/"+liID+"/merchant", nil, "")
	expect(t, "revoke role", r, 204)
	if got := r.header.Get("Civstack-Tokens-Revoked"); got != "1" {
		t.Fatalf("the answer says %q tokens went with Li's role, want 1", got)
	}

	expect(t, "merchant revokes its own token", shop.do(http.MethodDelete, "/api/v1/organisations/"+org.ID+"/tokens/"+tok.ID, nil, ""), 204)
	expectProblem(t, "revoked", shop.get("/api/v1/whoami"), 401, "")
	expect(t, "openapi", anon.get("/api/v1/openapi.json"), 200, `"openapi"`, "create-organisation")

	// A token made for 30 days works until then, and is told apart from a
	// revoked one after; the operator's token, made until revoked, goes on.
	r = op.postJSON("/api/v1/organisations/"+org.ID+"/tokens", map[string]any{"label": "season till", "role": "merchant", "valid_days": 30})
	expect(t, "a token for 30 days", r, 201, `"expires_at":"`)
	r.json(t, &tok)
	seasonal := newClient(t, n.URL)
	seasonal.header.Set("Authorization", "Bearer "+tok.Secret)
	expect(t, "on its first day", seasonal.get("/api/v1/whoami"), 200)
	expectProblem(t, "a token for ten years", op.postJSON("/api/v1/organisations/"+org.ID+"/tokens", map[string]any{"label": "x", "role": "merchant", "valid_days": 3650}), 422, "")
	n.clock.add(31 * 24 * time.Hour)
	expectProblem(t, "after 30 days", seasonal.get("/api/v1/whoami"), 401, "has expired")
	expect(t, "the operator's token", op.get("/api/v1/whoami"), 200)
}

func TestOps(t *testing.T) {
	n := startNode(t, nodeOptions{})
	c := newClient(t, n.URL)
	expect(t, "healthz", c.get("/healthz"), 200, `"ok"`)
	expect(t, "readyz", c.get("/readyz"), 200, `"ready"`)
	c.register("Amira Haddad")
	appendReceipts(t, n, 3)
	r := c.get("/metrics")
	expect(t, "metrics", r, 200, `civstack_http_requests_total{code="200",route="GET /healthz"}`, `route="POST /auth/register/finish"`, "civstack_ledger_transfers_applied_total",
		"civstack_log_sequenced_entries ", "civstack_log_integrated_entries ", "civstack_exchange_unindexed_entries ")
	var entries int64
	if err := n.db.Reader().QueryRow("SELECT COUNT(*) FROM tlog_entries").Scan(&entries); err != nil || entries == 0 {
		t.Fatalf("log entries: %d %v", entries, err)
	}
	if want := fmt.Sprintf("\ncivstack_log_sequenced_entries %d\n", entries); !strings.Contains(r.body, want) {
		t.Fatalf("metrics: no %q in\n%s", want, r.body)
	}
	var id string
	n.db.Reader().QueryRow("SELECT id FROM people").Scan(&id)
	if strings.Contains(r.body, id) || strings.Contains(r.body, "Amira") {
		t.Fatal("metrics carry personal data")
	}
	for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options", "Permissions-Policy", "Cross-Origin-Opener-Policy"} {
		if c.get("/").header.Get(h) == "" {
			t.Errorf("missing header %s", h)
		}
	}
	n.db.Close()
	expectProblem(t, "readyz without a database", c.get("/readyz"), 503, "does not answer")
	expect(t, "a page without a database", c.get("/account"), 503, "cannot be reached right now")
	api := newClient(t, n.URL)
	api.header.Set("Authorization", "Bearer cvs_x")
	expectProblem(t, "the API without a database", api.get("/api/v1/whoami"), 503, "cannot be checked right now")
}

func TestDemoOnlyWithDemo(t *testing.T) {
	ctx := context.Background()
	dn := startNode(t, nodeOptions{demo: true})
	c := newClient(t, dn.URL)
	expect(t, "landing lists personas", c.get("/"), 200, "Demo mode", "Li Wei", "Olu Adeyemi")
	people, _ := dn.reg.DemoPeople(ctx)
	var li string
	for _, p := range people {
		if p.DisplayName == "Li Wei" {
			li = p.ID
		}
	}
	expect(t, "switch", c.postForm("/demo/persona/"+li, nil), http.StatusSeeOther)
	expect(t, "as Li", c.get("/merchant"), 200, "Dumpling Cart")
	expect(t, "not a persona", c.postForm("/demo/persona/nobody", nil), 404)

	// The same kind of data in a server started without --demo: no switcher,
	// no demo sessions, no demo organisations.
	var opts = store.Options{DataDir: t.TempDir()}
	seeded := startNode(t, nodeOptions{demo: true, store: &opts})
	people, _ = seeded.reg.DemoPeople(ctx)
	token, err := seeded.reg.NewSession(ctx, people[0].ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	plain := startNode(t, nodeOptions{store: &opts})
	p := newClient(t, plain.URL)
	r := p.get("/")
	expect(t, "no switcher", r, 200, "Sign in with a passkey")
	if strings.Contains(r.body, "Demo personas") || strings.Contains(r.body, "Li Wei") {
		t.Fatal("demo personas shown without --demo")
	}
	expect(t, "no switch route", p.postForm("/demo/persona/"+people[0].ID, nil), 404)
	p.cookies["__Host-civstack_session"] = &http.Cookie{Name: "__Host-civstack_session", Value: token}
	expect(t, "demo session refused", p.get("/account"), http.StatusSeeOther)

	// A real operator on that node sees only real organisations, in every
	// list and choice, and cannot make a demo organisation party to a
	// policy or a rewards rule.
	op := newClient(t, plain.URL)
	op.register("Olu")
	code, err := plain.reg.OperatorSetup(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "redeem", op.postForm("/setup", url.Values{"code": {code}}), http.StatusSeeOther)
	tax, err := plain.reg.OrganisationByName(ctx, "City Tax Office")
	if err != nil || !tax.Demo {
		t.Fatalf("seeded tax office %+v, %v", tax, err)
	}
	museum, err := plain.reg.OrganisationByName(ctx, "City Museum")
	if err != nil || !museum.Demo {
		t.Fatalf("seeded museum %+v, %v", museum, err)
	}
	real, _ := plain.reg.CreateOrganisation(ctx, "Revenue Office", []registry.Role{registry.Agency, registry.Partner}, false)
	for _, c := range []struct{ path, real, demo string }{
		{"/operator", "Revenue Office", "City Tax Office"},
		{"/exchange/policies", `<option value="` + real.ID + `">`, `<option value="` + tax.ID + `">`},
		{"/rewards/manage", `<option value="` + real.ID + `">`, `<option value="` + museum.ID + `">`},
	} {
		r := op.get(c.path)
		expect(t, c.path, r, 200, c.real)
		if strings.Contains(r.body, c.demo) {
			t.Fatalf("%s offers a demo organisation on a node without --demo", c.path)
		}
	}
	expect(t, "policy for a demo agency", op.postForm("/exchange/policies", url.Values{"requester": {tax.ID}, "service": {"x"},
		"field": {"y"}, "purpose": {"AUDIT"}, "legal_basis": {"§1"}, "max_deferral_days": {"0"}, "retention_days": {"30"}}), 400, "Choose an agency.")
	expect(t, "rule for a demo partner", op.postForm("/rewards/manage/rules", url.Values{"type": {"visit"}, "label": {"Visit"},
		"partner": {museum.ID}, "points": {"5"}, "daily_cap": {"5"}}), 400, "Choose a partner organisation.")
}

func TestProblemShape(t *testing.T) {
	n := startNode(t, nodeOptions{})
	r := newClient(t, n.URL).get("/api/v1/no-such-thing")
	expectProblem(t, "unknown API path", r, 404, "")
	var m map[string]any
	json.Unmarshal([]byte(r.body), &m)
	if _, ok := m["title"]; !ok {
		t.Fatal("no title")
	}
}

func TestLoopbackIPRedirectsToPublicURL(t *testing.T) {
	n := startNode(t, nodeOptions{})
	ip := strings.Replace(n.URL, "localhost", "127.0.0.1", 1)
	c := newClient(t, ip)
	r := c.get("/account?x=1")
	expect(t, "page by IP", r, http.StatusTemporaryRedirect)
	if loc := r.header.Get("Location"); loc != n.URL+"/account?x=1" {
		t.Fatalf("redirect to %q", loc)
	}
	expect(t, "healthz by IP", c.get("/healthz"), 200)
}

// TestRateLimitBehindAProxy: behind a trusted proxy each client has its own
// limit, and a client cannot escape it by writing X-Forwarded-For itself.
func TestRateLimitBehindAProxy(t *testing.T) {
	n := startNode(t, nodeOptions{proxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	limited := func(c *client, tries int) int {
		k := 0
		for range tries {
			if c.postJSON("/auth/login/begin", map[string]string{}).status == http.StatusTooManyRequests {
				k++
			}
		}
		return k
	}
	// The proxy (this test's loopback address) appends each client's address.
	a, b := newClient(t, n.URL), newClient(t, n.URL)
	a.header.Set("X-Forwarded-For", "198.51.100.7")
	b.header.Set("X-Forwarded-For", "198.51.100.8")
	if k := limited(a, 80); k == 0 || k > 20 {
		t.Fatalf("%d of 80 quick attempts from one client were limited; want those past the burst of 60", k)
	}
	if k := limited(b, 60); k != 0 {
		t.Fatalf("another client behind the same proxy was limited %d times", k)
	}
	// Client a writes a fresh address of its own; the proxy appends the
	// real one, and that one is counted.
	a.header.Set("X-Forwarded-For", "203.0.113.1, 198.51.100.7")
	if k := limited(a, 5); k != 5 {
		t.Fatalf("a client that wrote its own X-Forwarded-For escaped its limit (%d of 5 limited)", k)
	}
	// A client on IPv6 that takes a new address in its /64 for every
	// request is one client; another /64 is another.
	c, d := newClient(t, n.URL), newClient(t, n.URL)
	k := 0
	for i := range 80 {
		c.header.Set("X-Forwarded-For", fmt.Sprintf("2001:db8:1:2:%x::%x", i, i+1))
		if c.postJSON("/auth/login/begin", map[string]string{}).status == http.StatusTooManyRequests {
			k++
		}
	}
	if k == 0 || k > 20 {
		t.Fatalf("%d of 80 quick attempts from new addresses in one /64 were limited; want those past the burst of 60", k)
	}
	d.header.Set("X-Forwarded-For", "2001:db8:1:3::1")
	if k := limited(d, 10); k != 0 {
		t.Fatalf("a client in the next /64 was limited %d times", k)
	}
}

func TestPasskeyCeremoniesAreRateLimited(t *testing.T) {
	n := startNode(t, nodeOptions{})
	c := newClient(t, n.URL)
	limited := 0
	for i := 0; i < 100; i++ {
		r := c.postJSON("/auth/login/begin", map[string]string{})
		if r.status == http.StatusTooManyRequests {
			limited++
			if r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "Too many passkey requests") {
				t.Fatalf("429 without Retry-After or explanation: %v %s", r.header, r.body)
			}
		}
	}
	if limited == 0 || limited > 60 {
		t.Fatalf("%d of 100 quick sign-in attempts were limited; want the ones past the burst of 60", limited)
	}
	var rows int
	n.db.Reader().QueryRow("SELECT COUNT(*) FROM ceremonies").Scan(&rows)
	if rows > 60 {
		t.Fatalf("%d ceremonies stored despite the limit", rows)
	}
}

// TestFavicon: every page names the icon, an SVG the node serves, and
// /favicon.ico (what a browser asks for where no page names one: a JSON
// answer, a log tile) is that icon too, not a 404 in the console.
func TestFavicon(t *testing.T) {
	n := startNode(t, nodeOptions{})
	c := newClient(t, n.URL)
	page := c.get("/")
	expect(t, "home", page, 200, `<link rel="icon" href="/static/civstack.svg?v=`)
	href := page.body[strings.Index(page.body, "/static/civstack.svg?v="):]
	href = href[:strings.IndexByte(href, '"')]
	icon := c.get(href)
	expect(t, "the icon", icon, 200, "<svg", "</svg>")
	if ct := icon.header.Get("Content-Type"); ct != "image/svg+xml" {
		t.Fatalf("the icon's Content-Type is %q", ct)
	}
	ico := c.get("/favicon.ico")
	expect(t, "/favicon.ico", ico, 200)
	if ico.body != icon.body || ico.header.Get("Content-Type") != "image/svg+xml" || !strings.Contains(ico.header.Get("Cache-Control"), "max-age") {
		t.Fatalf("/favicon.ico: %v\n%s", ico.header, ico.body)
	}
}
