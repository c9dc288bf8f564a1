package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/civstack/civstack/internal/identity"
	"github.com/civstack/civstack/internal/issuance"
	"github.com/civstack/civstack/internal/sdjwt"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
	"github.com/civstack/civstack/internal/web"
)

var (
	txCodeRE    = regexp.MustCompile(`id="tx-code">(\d+)<`)
	offerLinkRE = regexp.MustCompile(`id="offer-link"[^>]*>([^<]+)<`)
	sameRE      = regexp.MustCompile(`id="same-device" href="([^"]+)"`)
)

// idWorld is the demo with the identity organisations looked up.
func idWorld(t *testing.T, e storetest.Engine) *demoWorld {
	w := startDemo(t, e)
	for _, name := range []string{"Civil Registry Office", "Blue Door Bar", "Metro Transit", "City University"} {
		org, err := w.n.reg.OrganisationByName(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		w.orgs[name] = org.ID
	}
	return w
}

// offerPID has the registrar offer a PID to the person and returns the
// link and transaction code.
func offerPID(t *testing.T, w *demoWorld, registrar *client, person, birthdate string) (string, string) {
	t.Helper()
	r := registrar.postForm("/issue/"+w.orgs["Civil Registry Office"]+"/offers", url.Values{"type": {"pid"}, "person": {person},
		"pid.given_name": {"Amira"}, "pid.family_name": {"Haddad"}, "pid.birthdate": {birthdate}, "pid.nationalities": {"it, tn"},
		"pid.address.street_address": {"Via Zamboni 33"}, "pid.address.locality": {"Bologna"}})
	expect(t, "offer", r, http.StatusOK, "Offer for a National identity")
	tx, link := txCodeRE.FindStringSubmatch(r.body), offerLinkRE.FindStringSubmatch(r.body)
	if tx == nil || link == nil {
		t.Fatalf("no code or link on the offer page: %s", clip(r.body))
	}
	return html.UnescapeString(link[1]), tx[1]
}

// newRequest has the bar ask for the claims and returns the same-device link.
func newRequest(t *testing.T, w *demoWorld, staff *client, org string, ask url.Values) (string, string) {
	t.Helper()
	r := staff.postForm("/check/"+w.orgs[org]+"/requests", ask)
	expect(t, "new request", r, http.StatusSeeOther)
	page := r.header.Get("Location")
	r = staff.get(page)
	expect(t, "request page", r, http.StatusOK, "Waiting for the wallet")
	m := sameRE.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("no same-device link: %s", clip(r.body))
	}
	return page, strings.TrimPrefix(html.UnescapeString(m[1]), w.n.URL)
}

func consentForm(link string, decision string, claims ...string) url.Values {
	u, _ := url.Parse(link)
	return url.Values{"request": {"openid4vp://?" + u.RawQuery}, "decision": {decision}, "claim": claims}
}

func TestIdentityOverHTTP(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := idWorld(t, e)
			ctx := context.Background()
			registrar, amira, bar := w.as(t, "Marta Silva"), w.as(t, "Amira Haddad"), w.as(t, "Sam Okafor")
			reg, barOrg := w.orgs["Civil Registry Office"], w.orgs["Blue Door Bar"]

			// Who may do what.
			expect(t, "citizen on the issuer console", amira.get("/issue/"+reg), http.StatusForbidden)
			expect(t, "bar on the registry's console", bar.get("/issue/"+reg), http.StatusForbidden)
			expect(t, "registrar on the bar's console", registrar.get("/check/"+barOrg), http.StatusForbidden)
			expect(t, "another university's officer", w.as(t, "Hana Sato").get("/issue/"+reg), http.StatusNotFound)
			expect(t, "issuer console", registrar.get("/issue/"+reg), http.StatusOK, "Offer a National identity (PID)",
				`name="pid.birthdate" type="date" max="`+w.n.clock.now().Add(24*time.Hour).UTC().Format(time.DateOnly)+`"`, `name="pid.address.country" placeholder="IT" maxlength="2"`)

			// Bad offers are refused with the reason.
			r := registrar.postForm("/issue/"+reg+"/offers", url.Values{"type": {"pid"}, "person": {w.people["Amira Haddad"]}, "pid.given_name": {"A"}, "pid.family_name": {"H"}, "pid.birthdate": {"01/02/1990"}, "pid.nationalities": {"IT"}})
			expect(t, "bad date", r, http.StatusBadRequest, "is not a date")
			r = registrar.postForm("/issue/"+reg+"/offers", url.Values{"type": {"diploma"}, "person": {w.people["Amira Haddad"]}})
			expect(t, "type not registered", r, http.StatusForbidden, "not registered to issue")
			r = registrar.postForm("/issue/"+reg+"/offers", url.Values{"type": {"passport-of-atlantis"}, "person": {w.people["Amira Haddad"]}})
			expect(t, "unknown type", r, http.StatusBadRequest, "no such credential type")
			r = registrar.postForm("/issue/"+reg+"/offers", url.Values{"type": {"pid"}, "person": {"nobody"}})
			expect(t, "unknown citizen", r, http.StatusBadRequest, "no citizen with that wallet id")

			link, tx := offerPID(t, w, registrar, w.people["Amira Haddad"], "1990-05-01")
			offer, err := issuance.ParseOffer(link)
			if err != nil {
				t.Fatal(err)
			}
			var claimsCol, linkCol string
			if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT claims, link FROM id_offers WHERE person_id = $1`, w.people["Amira Haddad"]).Scan(&claimsCol, &linkCol); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(claimsCol, "1990") || strings.Contains(linkCol, offer.Grants.PreAuthorized.Code) || strings.Contains(linkCol, "openid") {
				t.Fatalf("an offer's claims or code are stored in clear: %q %q", claimsCol, linkCol)
			}
			expect(t, "offer waits in the wallet", amira.get("/wallet/credentials"), http.StatusOK, "National identity (PID) from Civil Registry Office")
			expect(t, "her home says so", amira.get("/"), http.StatusOK, `id="offers-waiting"`, "An issuer offers you a credential")
			if strings.Contains(w.as(t, "Jonas Weber").get("/").body, `id="offers-waiting"`) {
				t.Fatal("another citizen's home tells of Amira's offer")
			}
			wrong := "000000"
			if tx == wrong {
				wrong = "111111"
			}
			r = amira.postForm("/wallet/credentials/accept", url.Values{"offer": {link}, "tx_code": {wrong}})
			expect(t, "wrong code", r, http.StatusBadRequest, "Wrong transaction code")
			r = amira.postForm("/wallet/credentials/accept", url.Values{"offer": {link}, "tx_code": {tx}})
			expect(t, "accept", r, http.StatusOK, "10 single-use copies", "Over 18", "1990-05-01", "Bologna", "IT, TN", "10 of 10 single-use copies left")
			if strings.Contains(amira.get("/").body, `id="offers-waiting"`) {
				t.Fatal("her home still tells of the offer she accepted")
			}
			r = amira.postForm("/wallet/credentials/accept", url.Values{"offer": {link}, "tx_code": {tx}})
			expect(t, "offer used twice", r, http.StatusBadRequest, "has been used or has expired")
			r = amira.postForm("/wallet/credentials/accept", url.Values{"offer": {"openid-credential-offer://?credential_offer=%7B%7D"}, "tx_code": {tx}})
			expect(t, "junk offer", r, http.StatusBadRequest, "credential_issuer")
			expect(t, "no offer", amira.postForm("/wallet/credentials/accept", url.Values{"offer": {" "}, "tx_code": {tx}}), http.StatusBadRequest,
				"Paste the offer&#39;s link (openid-credential-offer://…), or scan its QR code.")
			expect(t, "a word for an offer", amira.postForm("/wallet/credentials/accept", url.Values{"offer": {"hello"}, "tx_code": {tx}}), http.StatusBadRequest,
				"This is not a credential offer this wallet can take: the link holds no offer")

			// The other demo issuers: a social-services card and a diploma.
			for _, c := range []struct {
				officer, org, typ string
				form              url.Values
				shows             []string
			}{
				{"Pedro Alves", "Social Security Office", "social-security", url.Values{"social-security.given_name": {"Amira"}, "social-security.family_name": {"Haddad"},
					"social-security.birthdate": {"1990-05-01"}, "social-security.social_security_number": {"SSN-123"}, "social-security.health_insurance.provider": {"City Health Fund"},
					"social-security.health_insurance.valid_until": {"2027-12-31"}}, []string{"Social-services card", "City Health Fund", "2027-12-31"}},
				{"Hana Sato", "City University", "diploma", url.Values{"diploma.given_name": {"Amira"}, "diploma.family_name": {"Haddad"}, "diploma.degree": {"MSc"},
					"diploma.field_of_study": {"Computer science"}, "diploma.awarded": {"2015-07-10"}}, []string{"University diploma", "Computer science", "Awarded by", "City University"}},
			} {
				org, err := w.n.reg.OrganisationByName(ctx, c.org)
				if err != nil {
					t.Fatal(err)
				}
				c.form.Set("type", c.typ)
				c.form.Set("person", w.people["Amira Haddad"])
				r := w.as(t, c.officer).postForm("/issue/"+org.ID+"/offers", c.form)
				expect(t, c.typ+" offer", r, http.StatusOK, "Offer made")
				tx, link := txCodeRE.FindStringSubmatch(r.body), offerLinkRE.FindStringSubmatch(r.body)
				r = amira.postForm("/wallet/credentials/accept", url.Values{"offer": {html.UnescapeString(link[1])}, "tx_code": {tx[1]}})
				expect(t, c.typ+" accepted", r, http.StatusOK, c.shows...)
			}

			// A request asks for something, in words the form uses.
			for what, ask := range map[string]url.Values{
				"Ask for at least one claim as required.":               {"ask.pid:age_over_18": {""}},
				"Ask for each claim as needed, optional or not at all.": {"ask.pid:age_over_18": {"maybe"}},
				"Ask for claims of one credential type per request.":    {"ask.pid:age_over_18": {"required"}, "ask.diploma:degree": {"required"}},
			} {
				expect(t, what, bar.postForm("/check/"+w.orgs["Blue Door Bar"]+"/requests", ask), http.StatusBadRequest, what)
			}

			// The bar asks only "over 18"; the citizen sees who and why.
			page, same := newRequest(t, w, bar, "Blue Door Bar", url.Values{"ask.pid:age_over_18": {"required"}})
			// Its page polls for the answer until there is one (286 stops htmx).
			expect(t, "the request waiting", bar.get(page+"/status"), http.StatusOK, "Waiting for the wallet")
			r = amira.get(same)
			expect(t, "consent", r, http.StatusOK, "Blue Door Bar asks for your National identity (PID)", "Check that a guest is over 18", "Over 18: <strong>true</strong>")
			if strings.Contains(r.body, `id="overask"`) || strings.Contains(r.body, "1990-05-01") {
				t.Fatalf("consent page warns or shows more than asked: %s", clip(r.body))
			}
			// The wallet's button for a request shown on another device.
			expect(t, "the credentials page's button", amira.get("/wallet/credentials"), http.StatusOK, `href="/wallet/present"`)
			expect(t, "the page it opens", amira.get("/wallet/present"), http.StatusOK, "<h1>Answer a verifier</h1>", `id="request-form"`)
			r = amira.postForm("/wallet/present", consentForm(same, "share", "age_over_18", "birthdate"))
			expect(t, "share", r, http.StatusOK, "Shared with the verifier", "Blue Door Bar", "age_over_18")
			r = bar.get(page)
			expect(t, "verifier result", r, http.StatusOK, "Verified", "Civil Registry Office", "<dt>Over 18</dt><dd>true</dd>")
			expect(t, "the request answered", bar.get(page+"/status"), 286, "Verified")
			main := r.body[strings.Index(r.body, "<main"):strings.Index(r.body, "</main>")]
			for _, leak := range []string{"1990", "Amira", "Haddad", "Bologna", "Date of birth", "Nationalities"} {
				if strings.Contains(main, leak) {
					t.Fatalf("the verifier learnt %q: %s", leak, clip(r.body))
				}
			}
			expect(t, "one copy used", amira.get("/wallet/credentials"), http.StatusOK, "9 of 10 single-use copies left")

			// Over-asking: a claim outside the registration is warned about and unticked.
			_, same2 := newRequest(t, w, bar, "Blue Door Bar", url.Values{"ask.pid:age_over_18": {"required"}, "ask.pid:birthdate": {"optional"}})
			r = amira.get(same2)
			expect(t, "over-ask", r, http.StatusOK, `id="overask"`, "not registered", "optional")
			if regexp.MustCompile(`value="birthdate" checked`).MatchString(r.body) || !strings.Contains(r.body, `value="age_over_18" checked`) {
				t.Fatalf("defaults: over-asked claim must be unticked, the registered one ticked: %s", clip(r.body))
			}
			r = amira.postForm("/wallet/present", consentForm(same2, "decline"))
			expect(t, "decline", r, http.StatusOK, "You declined", "declined")

			// The log and its export.
			r = amira.get("/wallet/presentations.json")
			expect(t, "export", r, http.StatusOK)
			var exp struct {
				Presentations []identity.Presentation `json:"presentations"`
			}
			r.json(t, &exp)
			if len(exp.Presentations) != 2 || exp.Presentations[1].Outcome != "shared" || strings.Join(exp.Presentations[1].Presented, ",") != "age_over_18" ||
				exp.Presentations[0].Outcome != "declined" || len(exp.Presentations[0].Presented) != 0 || exp.Presentations[1].Verifier != "Blue Door Bar" {
				t.Fatalf("presentation log: %+v", exp.Presentations)
			}
			expect(t, "others cannot read the export", w.as(t, "Jonas Weber").get("/wallet/presentations.json"), http.StatusOK, `"presentations":[]`)

			// Revocation: logged, and once the cached status list is refreshed the same presentation is rejected.
			var batch string
			if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT batch_id FROM id_issued WHERE issuer_org = $1`, reg).Scan(&batch); err != nil {
				t.Fatal(err)
			}
			// The registrar finds the citizen's credentials by her wallet id
			// (older ones than the latest issuances are found this way).
			amiraID := w.people["Amira Haddad"]
			found := registrar.get("/issue/" + reg + "?person=" + amiraID)
			expect(t, "find Amira's credentials", found, http.StatusOK, "Issued to Amira Haddad", "Every issuance to this citizen",
				`/issue/`+reg+`/issued/`+batch+`/revoke?person=`+amiraID)
			expect(t, "find Jonas's", registrar.get("/issue/"+reg+"?person="+w.people["Jonas Weber"]), http.StatusOK, "Nothing issued to that wallet id")
			expect(t, "revoke", registrar.postForm("/issue/"+reg+"/issued/"+batch+"/revoke?person="+amiraID, nil), http.StatusOK, "Revoked", "Issued to Amira Haddad")
			expect(t, "revoke twice", registrar.postForm("/issue/"+reg+"/issued/"+batch+"/revoke", nil), http.StatusBadRequest, "Already revoked")
			expect(t, "within the cache", bar.postForm(page+"/recheck", nil), http.StatusOK, "still valid")
			w.n.clock.add(identity.StatusTTL + time.Second)
			bar = w.as(t, "Sam Okafor")
			expect(t, "after the cache", bar.postForm(page+"/recheck", nil), http.StatusOK, "Rejected: On re-check: The credential has been revoked by its issuer.")
			amira = w.as(t, "Amira Haddad")
			expect(t, "wallet shows revoked", amira.get("/wallet/credentials"), http.StatusOK, "revoked")
			_, same3 := newRequest(t, w, bar, "Blue Door Bar", url.Values{"ask.pid:age_over_18": {"required"}})
			expect(t, "no usable credential", amira.get(same3), http.StatusOK, "no usable National identity")

			var issued, revoked int
			rows, err := w.n.db.Reader().QueryContext(ctx, `SELECT data FROM tlog_entries WHERE kind = $1`, int(tlog.KindCredential))
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var b []byte
				_ = rows.Scan(&b)
				en, err := tlog.Parse(b)
				if err != nil {
					t.Fatal(err)
				}
				switch en.Event {
				case tlog.EventIssued:
					issued++
				case tlog.EventRevoked:
					revoked++
				}
			}
			rows.Close()
			if issued != 3 || revoked != 1 {
				t.Fatalf("log: %d issuance and %d revocation entries, want 3 and 1", issued, revoked)
			}
			for _, secret := range []string{"1990-05-01", "Via Zamboni", tx} {
				if strings.Contains(w.n.logs.String(), secret) {
					t.Fatalf("server logs contain %q", secret)
				}
			}
		})
	}
}

// extWallet is an OpenID4VCI/VP client written against the endpoints
// only, as another wallet would be.
type extWallet struct {
	t    *testing.T
	c    *client
	base string
	keys []*ecdsa.PrivateKey
	now  func() time.Time
}

func (x *extWallet) path(u string) string { return strings.TrimPrefix(u, x.base) }

// fetch runs the pre-authorized flow and returns the credentials.
func (x *extWallet) fetch(link, tx string, n int, tamper func([]string) []string) (*response, []string) {
	t := x.t
	offer, err := issuance.ParseOffer(link)
	if err != nil {
		t.Fatal(err)
	}
	issuerPath := x.path(offer.CredentialIssuer)
	var as struct {
		Token string `json:"token_endpoint"`
	}
	x.c.get("/.well-known/oauth-authorization-server"+issuerPath).json(t, &as)
	r := x.c.postForm(x.path(as.Token), url.Values{"grant_type": {issuance.PreAuthorizedGrant}, "pre-authorized_code": {offer.Grants.PreAuthorized.Code}, "tx_code": {tx}})
	if r.status != http.StatusOK {
		return r, nil
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	r.json(t, &tok)
	var meta struct {
		Credential string `json:"credential_endpoint"`
		Nonce      string `json:"nonce_endpoint"`
	}
	x.c.get("/.well-known/openid-credential-issuer"+issuerPath).json(t, &meta)
	var nonce struct {
		CNonce string `json:"c_nonce"`
	}
	r = x.c.postForm(x.path(meta.Nonce), nil)
	expect(t, "nonce", r, http.StatusOK)
	if r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("nonce cache control %q", r.header.Get("Cache-Control"))
	}
	r.json(t, &nonce)
	x.keys = nil
	var proofs []string
	for range n {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		x.keys = append(x.keys, k)
		p, err := issuance.Proof(k, jose.ES256, offer.CredentialIssuer, nonce.CNonce, x.now())
		if err != nil {
			t.Fatal(err)
		}
		proofs = append(proofs, p)
	}
	if tamper != nil {
		proofs = tamper(proofs)
	}
	x.c.header.Set("Authorization", "Bearer "+tok.AccessToken)
	defer x.c.header.Del("Authorization")
	r = x.c.postJSON(x.path(meta.Credential), map[string]any{"credential_configuration_id": "pid", "proofs": map[string][]string{"jwt": proofs}})
	if r.status != http.StatusOK {
		return r, nil
	}
	var out struct {
		Credentials []struct {
			Credential string `json:"credential"`
		} `json:"credentials"`
	}
	r.json(t, &out)
	var creds []string
	for _, c := range out.Credentials {
		creds = append(creds, c.Credential)
	}
	return r, creds
}

// request fetches and returns a request object's claims.
func (x *extWallet) request(sameDevice string) (nonce, state, clientID, responseURI string) {
	u, _ := url.Parse(sameDevice)
	r := x.c.get(x.path(u.Query().Get("request_uri")))
	expect(x.t, "request object", r, http.StatusOK)
	if ct := r.header.Get("Content-Type"); ct != "application/oauth-authz-req+jwt" {
		x.t.Fatalf("request object content type %q", ct)
	}
	jws, err := jose.ParseSignedCompact(r.body, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		x.t.Fatal(err)
	}
	var c struct {
		Nonce, State, ClientID, ResponseURI string
	}
	var raw map[string]any
	_ = json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &raw)
	c.Nonce, _ = raw["nonce"].(string)
	c.State, _ = raw["state"].(string)
	c.ClientID, _ = raw["client_id"].(string)
	c.ResponseURI, _ = raw["response_uri"].(string)
	return c.Nonce, c.State, c.ClientID, c.ResponseURI
}

func (x *extWallet) present(cred string, key *ecdsa.PrivateKey, claims []string, nonce, aud string) string {
	var paths []sdjwt.Path
	for _, c := range claims {
		paths = append(paths, sdjwt.Path{c})
	}
	keep, err := sdjwt.KeepPaths(cred, paths)
	if err != nil {
		x.t.Fatal(err)
	}
	p, err := sdjwt.Present(cred, keep, key, jose.ES256, nonce, aud, x.now())
	if err != nil {
		x.t.Fatal(err)
	}
	b, _ := json.Marshal(map[string][]string{"pid": {p}})
	return string(b)
}

// TestPresentationNotChecked: when the issuer's status list cannot be
// read, a presentation is neither rejected nor accepted (the request still
// waits, and the wallet may answer again), and a re-check leaves a
// verified result as it was; no database error reaches either side.
func TestPresentationNotChecked(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := idWorld(t, e)
			ctx := context.Background()
			registrar, amira := w.as(t, "Marta Silva"), w.as(t, "Amira Haddad")
			link, tx := offerPID(t, w, registrar, w.people["Amira Haddad"], "1990-05-01")
			expect(t, "accept", amira.postForm("/wallet/credentials/accept", url.Values{"offer": {link}, "tx_code": {tx}}), http.StatusOK, "10 single-use copies")
			down := func() { execSQL(t, w.n.db, `ALTER TABLE id_issued RENAME TO id_issued_away`) }
			up := func() { execSQL(t, w.n.db, `ALTER TABLE id_issued_away RENAME TO id_issued`) }
			leaks := func(what string, r *response) {
				t.Helper()
				for _, leak := range []string{"id_issued", "no such table", "does not exist", "SQL"} {
					if strings.Contains(r.body, leak) {
						t.Fatalf("%s shows the database's error (%q): %s", what, leak, clip(r.body))
					}
				}
			}

			// The copies of her credential used up so far.
			used := func() (n int) {
				t.Helper()
				if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM id_wallet WHERE person_id = $1 AND used_at <> 0`, w.people["Amira Haddad"]).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}

			// The issuer's status list cannot be read: the answer is not checked.
			w.n.clock.add(identity.StatusTTL + time.Minute) // past the caches the wallet's accept filled
			amira, bar := w.as(t, "Amira Haddad"), w.as(t, "Sam Okafor")
			page, same := newRequest(t, w, bar, "Blue Door Bar", url.Values{"ask.pid:age_over_18": {"required"}})
			down()
			r := amira.postForm("/wallet/present", consentForm(same, "share", "age_over_18"))
			expect(t, "share while the status list is down", r, http.StatusOK, "Not checked: The presentation cannot be checked right now", "not checked")
			leaks("the wallet", r)
			// Answering the same request again presents the same copy: the
			// verifier may hold it already, and no other copy is used up.
			expect(t, "share again while still down", amira.postForm("/wallet/present", consentForm(same, "share", "age_over_18")), http.StatusOK, "Not checked")
			if n := used(); n != 1 {
				t.Fatalf("%d copies used by two answers to one request, want 1", n)
			}
			r = amira.get("/wallet/credentials")
			expect(t, "her credentials while the status list is down", r, http.StatusOK, "cannot be checked right now")
			leaks("her credentials", r)
			r = bar.get(page)
			expect(t, "the verifier still waits", r, http.StatusOK, "Waiting for the wallet")
			leaks("the verifier's page", r)

			// Once it can be read, the same request is answered and verified.
			up()
			expect(t, "share again", amira.postForm("/wallet/present", consentForm(same, "share", "age_over_18")), http.StatusOK, "Shared with the verifier")
			expect(t, "verified", bar.get(page), http.StatusOK, "Verified", "<dt>Over 18</dt><dd>true</dd>")
			if n := used(); n != 1 {
				t.Fatalf("%d copies used once the request was answered, want 1", n)
			}
			// Another request gets a fresh copy: the answered one's is settled.
			_, other := newRequest(t, w, bar, "Blue Door Bar", url.Values{"ask.pid:age_over_18": {"required"}})
			expect(t, "another request", amira.postForm("/wallet/present", consentForm(other, "share", "age_over_18")), http.StatusOK, "Shared with the verifier")
			var tied int
			if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM id_wallet WHERE used_for IS NOT NULL`).Scan(&tied); err != nil || used() != 2 || tied != 0 {
				t.Fatalf("after a second request: %d copies used (want 2), %d still tied to a request (want 0), %v", used(), tied, err)
			}

			// A re-check that cannot read the list leaves the result verified.
			w.n.clock.add(identity.StatusTTL + time.Minute) // past the verifier's and the issuer's caches
			bar = w.as(t, "Sam Okafor")
			down()
			r = bar.postForm(page+"/recheck", nil)
			expect(t, "re-check while the status list is down", r, http.StatusServiceUnavailable, "could not be checked again right now", "Verified", "<dt>Over 18</dt><dd>true</dd>")
			leaks("the re-check", r)
			var state, kept string
			if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT state, vp_token FROM id_requests WHERE verifier_org = $1 AND state <> $2`, w.orgs["Blue Door Bar"], identity.Pending).Scan(&state, &kept); err != nil {
				t.Fatal(err)
			}
			if state != identity.Verified || kept == "" {
				t.Fatalf("a re-check that could not be made changed the request: state %q, presentation kept %v", state, kept != "")
			}
			up()
			expect(t, "re-check once it can", bar.postForm(page+"/recheck", nil), http.StatusOK, "Checked again: still valid.")
		})
	}
}

// TestIdentityProtocol drives the OpenID4VCI and OpenID4VP endpoints as a
// third-party wallet would, with each refusal's error code and reason.
func TestIdentityProtocol(t *testing.T) {
	w := idWorld(t, storetest.Engines(t)[0])
	registrar, bar := w.as(t, "Marta Silva"), w.as(t, "Sam Okafor")
	x := &extWallet{t: t, c: newClient(t, w.n.URL), base: w.n.URL, now: w.n.clock.now}
	jonas := w.people["Jonas Weber"]
	oauth := func(what string, r *response, status int, code, desc string) {
		t.Helper()
		var e struct {
			Error string `json:"error"`
			Desc  string `json:"error_description"`
		}
		r.json(t, &e)
		if r.status != status || e.Error != code || !strings.Contains(strings.ToLower(e.Desc), strings.ToLower(desc)) {
			t.Fatalf("%s: %d %s %q, want %d %s containing %q", what, r.status, e.Error, e.Desc, status, code, desc)
		}
		if strings.HasPrefix(strings.ToLower(e.Desc), e.Error) {
			t.Fatalf("%s: the description %q repeats the error code", what, e.Desc)
		}
	}

	// Metadata.
	var meta map[string]any
	r := x.c.get("/.well-known/openid-credential-issuer/issuers/civil-registry-office")
	expect(t, "metadata", r, http.StatusOK)
	r.json(t, &meta)
	if meta["credential_issuer"] != w.n.URL+"/issuers/civil-registry-office" || meta["batch_credential_issuance"].(map[string]any)["batch_size"].(float64) < 10 {
		t.Fatalf("metadata: %v", meta)
	}
	expect(t, "jwt-vc-issuer", x.c.get("/.well-known/jwt-vc-issuer/issuers/civil-registry-office"), http.StatusOK, `"issuer":"`+w.n.URL+`/issuers/civil-registry-office"`, `"kty":"EC"`)
	oauth("unknown issuer", x.c.get("/.well-known/openid-credential-issuer/issuers/nope"), 404, "not_found", "no such credential issuer")

	// Token endpoint refusals; five wrong codes burn the offer.
	link, tx := offerPID(t, w, registrar, jonas, "1950-01-01")
	code, _ := issuance.ParseOffer(link)
	tokenPath := "/issuers/civil-registry-office/token"
	pre := code.Grants.PreAuthorized.Code
	oauth("no tx_code", x.c.postForm(tokenPath, url.Values{"grant_type": {issuance.PreAuthorizedGrant}, "pre-authorized_code": {pre}}), 400, "invalid_request", "the tx_code parameter is missing")
	oauth("grant type", x.c.postForm(tokenPath, url.Values{"grant_type": {"authorization_code"}}), 400, "unsupported_grant_type", "pre-authorized")
	oauth("unknown code", x.c.postForm(tokenPath, url.Values{"grant_type": {issuance.PreAuthorizedGrant}, "pre-authorized_code": {"x"}, "tx_code": {tx}}), 400, "invalid_grant", "unknown")
	wrong := "999999"
	if tx == wrong {
		wrong = "888888"
	}
	for i := range identity.MaxTxAttempts {
		r := x.c.postForm(tokenPath, url.Values{"grant_type": {issuance.PreAuthorizedGrant}, "pre-authorized_code": {pre}, "tx_code": {wrong}})
		want := "wrong transaction code"
		if i == identity.MaxTxAttempts-1 {
			want = "the offer is void"
		}
		oauth("wrong tx_code", r, 400, "invalid_grant", want)
	}
	oauth("burnt offer", x.c.postForm(tokenPath, url.Values{"grant_type": {issuance.PreAuthorizedGrant}, "pre-authorized_code": {pre}, "tx_code": {tx}}), 400, "invalid_grant", "used or has expired")

	// Credential endpoint refusals, each costing a fresh offer (a token is single use).
	for _, c := range []struct {
		name, code, desc string
		tamper           func([]string) []string
	}{
		{"duplicate key", "invalid_proof", "its own key", func(p []string) []string { return append(p, p[0]) }},
		{"bad signature", "invalid_proof", "signature", func(p []string) []string { p[0] = p[0][:len(p[0])-4] + "AAAA"; return p }},
		{"too many", "invalid_credential_request", "at most", func(p []string) []string {
			for len(p) <= identity.BatchSize {
				p = append(p, p[0])
			}
			return p
		}},
	} {
		link, tx := offerPID(t, w, registrar, jonas, "1950-01-01")
		r, _ := x.fetch(link, tx, 2, c.tamper)
		oauth(c.name, r, 400, c.code, c.desc)
	}
	// Nonces that cannot be read are the server's failure, not a wrong nonce
	// (which would send the wallet for another one).
	link, tx = offerPID(t, w, registrar, jonas, "1950-01-01")
	r, _ = x.fetch(link, tx, 1, func(p []string) []string {
		execSQL(t, w.n.db, `ALTER TABLE id_nonces RENAME TO id_nonces_away`)
		return p
	})
	execSQL(t, w.n.db, `ALTER TABLE id_nonces_away RENAME TO id_nonces`)
	oauth("nonces unreadable", r, 500, "server_error", "on our side")
	// A nonce is single use.
	link, tx = offerPID(t, w, registrar, jonas, "1950-01-01")
	_, creds := x.fetch(link, tx, 12, nil)
	if len(creds) != 12 {
		t.Fatalf("batch: %d credentials, want 12", len(creds))
	}
	// Each copy has its own key, salts and status index: nothing links two of them.
	seen := map[string]bool{}
	for _, c := range creds {
		p, err := sdjwt.Parse(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range append([]string{strings.Split(p.JWT, ".")[2]}, p.Disclosures...) {
			if seen[d] {
				t.Fatalf("two copies share %q", d)
			}
			seen[d] = true
		}
	}
	var idxs int
	if err := w.n.db.Reader().QueryRowContext(context.Background(), `SELECT COUNT(DISTINCT idx) FROM id_issued`).Scan(&idxs); err != nil || idxs != 12 {
		t.Fatalf("%d distinct status indices, want 12 (%v)", idxs, err)
	}
	oauth("replayed access token", func() *response {
		x.c.header.Set("Authorization", "Bearer nope")
		defer x.c.header.Del("Authorization")
		return x.c.postJSON("/issuers/civil-registry-office/credential", map[string]any{"credential_configuration_id": "pid", "proofs": map[string][]string{"jwt": {"a"}}})
	}(), 401, "invalid_token", "unknown, used or expired")
	// Only a caller with a token learns what is wrong with a request's body:
	// without one, a body that is no credential request, or one of the
	// wrong shape, is refused for the token.
	credentialWith := func(tok, body string) *response {
		x.c.header.Set("Authorization", "Bearer "+tok)
		defer x.c.header.Del("Authorization")
		return x.c.do(http.MethodPost, "/issuers/civil-registry-office/credential", strings.NewReader(body), "application/json")
	}
	oauth("no credential request, without a token", credentialWith("nope", "{not json"), 401, "invalid_token", "unknown, used or expired")
	oauth("a request of the wrong shape, without a token", credentialWith("nope", `{"proof":{}}`), 401, "invalid_token", "unknown, used or expired")
	link, tx = offerPID(t, w, registrar, jonas, "1950-01-01")
	offer, err := issuance.ParseOffer(link)
	if err != nil {
		t.Fatal(err)
	}
	var granted struct {
		AccessToken string `json:"access_token"`
	}
	x.c.postForm("/issuers/civil-registry-office/token", url.Values{"grant_type": {issuance.PreAuthorizedGrant}, "pre-authorized_code": {offer.Grants.PreAuthorized.Code}, "tx_code": {tx}}).json(t, &granted)
	oauth("no credential request, with a token", credentialWith(granted.AccessToken, "{not json"), 400, "invalid_credential_request", "not a credential request in JSON")
	oauth("a request of the wrong shape, with a token", credentialWith(granted.AccessToken, `{"proof":{}}`), 400, "invalid_credential_request", "send credential_configuration_id")
	oauth("a body with a NUL, with a token", credentialWith(granted.AccessToken, `{"credential_configuration_id":"pid\u0000"}`), 400, "invalid_credential_request", "not text")

	// Presentations to the bar.
	_, same := newRequest(t, w, bar, "Blue Door Bar", url.Values{"ask.pid:age_over_18": {"required"}})
	nonce, state, clientID, respURI := x.request(same)
	if clientID != w.n.URL+"/verifiers/blue-door-bar" {
		t.Fatalf("client_id %q", clientID)
	}
	post := func(form url.Values) *response { return x.c.postForm(x.path(respURI), form) }
	good := x.present(creds[0], x.keys[0], []string{"age_over_18"}, nonce, clientID)
	oauth("wrong audience", post(url.Values{"state": {state}, "vp_token": {x.present(creds[1], x.keys[1], []string{"age_over_18"}, nonce, "https://elsewhere.example")}}), 400, "invalid_request", "another verifier")
	// The request is answered once, whatever the answer was.
	oauth("second answer", post(url.Values{"state": {state}, "vp_token": {good}}), 400, "invalid_request", "already been answered")
	expect(t, "request object after the answer", x.c.get(x.path(strings.Replace(respURI, "/response", "/requests/"+state, 1))), http.StatusGone)

	_, same = newRequest(t, w, bar, "Blue Door Bar", url.Values{"ask.pid:age_over_18": {"required"}})
	nonce2, state2, _, _ := x.request(same)
	oauth("replayed presentation", post(url.Values{"state": {state2}, "vp_token": {good}}), 400, "invalid_request", "replayed presentation")

	_, same = newRequest(t, w, bar, "Blue Door Bar", url.Values{"ask.pid:age_over_18": {"required"}})
	nonce3, state3, _, _ := x.request(same)
	oauth("missing claim", post(url.Values{"state": {state3}, "vp_token": {x.present(creds[2], x.keys[2], nil, nonce3, clientID)}}), 400, "invalid_request", "required claim was not disclosed")
	_ = nonce2

	_, same = newRequest(t, w, bar, "Blue Door Bar", url.Values{"ask.pid:age_over_18": {"required"}})
	nonce4, state4, _, _ := x.request(same)
	wrongKey := x.present(creds[3], x.keys[4], []string{"age_over_18"}, nonce4, clientID)
	oauth("holder key not the credential's", post(url.Values{"state": {state4}, "vp_token": {wrongKey}}), 400, "invalid_request", "key binding")

	_, same = newRequest(t, w, bar, "Blue Door Bar", url.Values{"ask.pid:age_over_18": {"required"}})
	nonce5, state5, _, _ := x.request(same)
	expect(t, "valid presentation", post(url.Values{"state": {state5}, "vp_token": {x.present(creds[5], x.keys[5], []string{"age_over_18"}, nonce5, clientID)}}), http.StatusOK)

	// The presentations that got as far as the status check shared one download.
	if n := w.n.id.StatusFetches(); n != 1 {
		t.Fatalf("%d status list downloads, want 1 (the cached list)", n)
	}

	// Revoked, then expired.
	var batch string
	if err := w.n.db.Reader().QueryRowContext(context.Background(), `SELECT batch_id FROM id_issued GROUP BY batch_id HAVING COUNT(*) = 12`).Scan(&batch); err != nil {
		t.Fatal(err)
	}
	expect(t, "revoke", registrar.postForm("/issue/"+w.orgs["Civil Registry Office"]+"/issued/"+batch+"/revoke", nil), http.StatusOK)
	w.n.clock.add(identity.StatusTTL + time.Second)
	bar = w.as(t, "Sam Okafor")
	_, same = newRequest(t, w, bar, "Blue Door Bar", url.Values{"ask.pid:age_over_18": {"required"}})
	nonce6, state6, _, _ := x.request(same)
	oauth("revoked", post(url.Values{"state": {state6}, "vp_token": {x.present(creds[6], x.keys[6], []string{"age_over_18"}, nonce6, clientID)}}), 400, "invalid_request", "revoked")

	if n := w.n.id.StatusFetches(); n != 2 {
		t.Fatalf("%d status list downloads after the ttl, want 2", n)
	}
	registrar = w.as(t, "Marta Silva")
	link, tx = offerPID(t, w, registrar, jonas, "1950-01-01")
	_, fresh := x.fetch(link, tx, 1, nil)
	w.n.clock.add(91 * 24 * time.Hour)
	bar = w.as(t, "Sam Okafor")
	_, same = newRequest(t, w, bar, "Blue Door Bar", url.Values{"ask.pid:age_over_18": {"required"}})
	nonce7, state7, _, _ := x.request(same)
	oauth("expired", post(url.Values{"state": {state7}, "vp_token": {x.present(fresh[0], x.keys[0], []string{"age_over_18"}, nonce7, clientID)}}), 400, "invalid_request", "expired")
}

// TestIssuerLatest: the issuer's console lists its latest IssuedShown
// issuances, newest first, among more; a citizen's wallet id finds them
// all, however old. On both engines (the list reads a subquery by the
// issue times' index).
func TestIssuerLatest(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := idWorld(t, e)
			registrar := w.as(t, "Marta Silva")
			reg, amira, jonas := w.orgs["Civil Registry Office"], w.people["Amira Haddad"], w.people["Jonas Weber"]
			// 150 issuances of 1 to 3 copies, a minute apart, the last to Jonas.
			base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
			for i := range 150 {
				person := amira
				if i == 149 {
					person = jonas
				}
				for n := range 1 + i%3 {
					execSQL(t, w.n.db, `INSERT INTO id_issued (batch_id, n, issuer_org, type_id, person_id, idx, digest, status, issued_at, expires_at)
						VALUES ($1, $2, $3, 'pid', $4, $5, $6, 0, $7, $8)`, fmt.Sprintf("batch-%03d", i), n, reg, person, 1_000_000+i*3+n, []byte{1}, base+int64(i)*60_000, base+int64(i)*60_000+86_400_000)
				}
			}
			r := registrar.get("/issue/" + reg)
			rows := regexp.MustCompile(`/issued/(batch-\d{3})/revoke`).FindAllStringSubmatch(r.body, -1)
			if len(rows) != identity.IssuedShown || rows[0][1] != "batch-149" || rows[len(rows)-1][1] != "batch-050" {
				t.Fatalf("the console lists %d issuances (first %v): want the latest %d, batch-149 down to batch-050", len(rows), rows[:min(len(rows), 1)], identity.IssuedShown)
			}
			expect(t, "the hint", r, http.StatusOK, "The latest 100; find older ones by the citizen")
			found := registrar.get("/issue/" + reg + "?person=" + amira)
			if n := len(regexp.MustCompile(`/issued/batch-\d{3}/revoke`).FindAllString(found.body, -1)); n != 149 {
				t.Fatalf("Amira's issuances: %d listed, want 149", n)
			}
			expect(t, "her oldest, found", found, http.StatusOK, "/issued/batch-000/revoke")
		})
	}
}

// TestNonceLimit: an anonymous client cannot fill the nonce table (each
// nonce is a row): past a burst it is told to wait. The node's hosted
// wallet, which asks for nonces for every citizen from the same address,
// is not counted: a citizen still accepts an offer meanwhile.
func TestNonceLimit(t *testing.T) {
	w := idWorld(t, storetest.Engines(t)[0])
	anon := newClient(t, w.n.URL) // from 127.0.0.1, as the node's own calls appear
	limited := 0
	for range 150 {
		r := anon.postJSON("/issuers/civil-registry-office/nonce", map[string]string{})
		if r.status == http.StatusTooManyRequests {
			if limited++; r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "too_many_requests") {
				t.Fatalf("429 without Retry-After or an OAuth error: %v %s", r.header, r.body)
			}
		}
	}
	var rows int
	if err := w.n.db.Reader().QueryRow("SELECT COUNT(*) FROM id_nonces").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if limited < 25 || rows > 125 {
		t.Fatalf("%d of 150 quick nonce requests limited, %d nonces stored; want those past the burst of 120 refused", limited, rows)
	}
	registrar, amira := w.as(t, "Marta Silva"), w.as(t, "Amira Haddad")
	link, tx := offerPID(t, w, registrar, w.people["Amira Haddad"], "1990-05-01")
	expect(t, "the hosted wallet still accepts", amira.postForm("/wallet/credentials/accept", url.Values{"offer": {link}, "tx_code": {tx}}), http.StatusOK, "single-use copies")
}

// TestPresentationsErased: a verified presentation, and what it disclosed,
// is kept identity.KeepPresentations after the answer and then erased:
// the verifier's page says when, then that it was (before the sweep has
// run too); a re-check of an erased one answers 410 and leaves the
// request verified; the sweep clears the stored presentation of the old
// answer only (its batches: identity's TestErasePresentations).
func TestPresentationsErased(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := idWorld(t, e)
			ctx := context.Background()
			registrar, amira, bar := w.as(t, "Marta Silva"), w.as(t, "Amira Haddad"), w.as(t, "Sam Okafor")
			barOrg := w.orgs["Blue Door Bar"]
			link, tx := offerPID(t, w, registrar, w.people["Amira Haddad"], "1990-05-01")
			expect(t, "accept", amira.postForm("/wallet/credentials/accept", url.Values{"offer": {link}, "tx_code": {tx}}), http.StatusOK, "10 single-use copies")
			page, same := newRequest(t, w, bar, "Blue Door Bar", url.Values{"ask.pid:age_over_18": {"required"}})
			expect(t, "share", amira.postForm("/wallet/present", consentForm(same, "share", "age_over_18")), http.StatusOK, "Shared with the verifier")
			var answeredMs int64
			if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT answered_at FROM id_requests WHERE verifier_org = $1 AND state = $2`, barOrg, identity.Verified).Scan(&answeredMs); err != nil {
				t.Fatal(err)
			}
			answered := time.UnixMilli(answeredMs)
			until := web.DateIn(answered.Add(identity.KeepPresentations), time.UTC)
			expect(t, "verified, with when it is erased", bar.get(page), http.StatusOK, "<dt>Over 18</dt><dd>true</dd>", `id="kept-until"`,
				"This node erases what it disclosed on "+until+" (24 hours after the answer)")
			stored := func() (vp, result string) {
				t.Helper()
				if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT vp_token, result FROM id_requests WHERE verifier_org = $1 AND state = $2`, barOrg, identity.Verified).Scan(&vp, &result); err != nil {
					t.Fatal(err)
				}
				return vp, result
			}
			if vp, result := stored(); vp == "" || !strings.Contains(result, "age_over_18") {
				t.Fatalf("a fresh presentation is not kept: %q %q", vp, result)
			}

			// A minute before its time: kept, and the sweep leaves it.
			w.n.clock.add(identity.KeepPresentations - time.Minute)
			bar = w.as(t, "Sam Okafor")
			if n, err := w.n.id.ErasePresentations(ctx); err != nil || n != 0 {
				t.Fatalf("the sweep before the time erased %d: %v", n, err)
			}
			expect(t, "still kept", bar.get(page), http.StatusOK, "<dt>Over 18</dt><dd>true</dd>")

			// A later answer, which must outlive the first.
			_, same2 := newRequest(t, w, bar, "Blue Door Bar", url.Values{"ask.pid:age_over_18": {"required"}})
			expect(t, "share again", w.as(t, "Amira Haddad").postForm("/wallet/present", consentForm(same2, "share", "age_over_18")), http.StatusOK, "Shared with the verifier")

			// At its time it reads as erased before the sweep has run.
			w.n.clock.add(time.Minute)
			r := bar.get(page)
			expect(t, "erased", r, http.StatusOK, "<strong>Verified</strong>", `id="erased"`, "What it disclosed was erased on "+until)
			main := r.body[strings.Index(r.body, "<main"):strings.Index(r.body, "</main>")]
			for _, gone := range []string{"<dt>Over 18</dt>", "Civil Registry Office", "Check the status again", "result-claims"} {
				if strings.Contains(main, gone) {
					t.Fatalf("the erased presentation's page still shows %q: %s", gone, clip(r.body))
				}
			}
			r = bar.postForm(page+"/recheck", nil)
			expect(t, "re-check of an erased presentation", r, http.StatusGone, "nothing left to check again", "<strong>Verified</strong>")
			if strings.Contains(r.body, "Rejected") {
				t.Fatalf("a re-check of an erased presentation rejected it: %s", clip(r.body))
			}
			if n, err := w.n.id.ErasePresentations(ctx); err != nil || n != 1 {
				t.Fatalf("the sweep erased %d, want the first answer only: %v", n, err)
			}
			var left int
			if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM id_requests WHERE verifier_org = $1 AND state = $2 AND vp_token <> '' AND result <> ''`, barOrg, identity.Verified).Scan(&left); err != nil || left != 1 {
				t.Fatalf("%d presentations kept after the sweep, want the later one: %v", left, err)
			}
			var states int
			if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM id_requests WHERE verifier_org = $1 AND state = $2 AND vp_token = '' AND result = '' AND answered_at <> 0`, barOrg, identity.Verified).Scan(&states); err != nil || states != 1 {
				t.Fatalf("%d erased requests keep their outcome and time, want 1: %v", states, err)
			}
			r = bar.get("/check/" + barOrg)
			expect(t, "the verifier's list", r, http.StatusOK)
			if strings.Count(r.body, ": verified</li>") != 1 || strings.Count(r.body, ": verified (what it disclosed is erased)</li>") != 1 {
				t.Fatalf("the verifier's list does not show one verified request and one erased: %s", clip(r.body))
			}
		})
	}
}

// TestCopiesRunningLow: the wallet says when a credential's single-use
// copies are running low, and when every one is used, and whom to ask;
// and when it has expired.
func TestCopiesRunningLow(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := idWorld(t, e)
			amira, bar := w.as(t, "Amira Haddad"), w.as(t, "Sam Okafor")
			link, tx := offerPID(t, w, w.as(t, "Marta Silva"), w.people["Amira Haddad"], "1990-05-01")
			expect(t, "accept", amira.postForm("/wallet/credentials/accept", url.Values{"offer": {link}, "tx_code": {tx}}), http.StatusOK, "10 of 10 single-use copies left")
			share := func(n int) {
				for range n {
					_, same := newRequest(t, w, bar, "Blue Door Bar", url.Values{"ask.pid:age_over_18": {"required"}})
					expect(t, "share", amira.postForm("/wallet/present", consentForm(same, "share", "age_over_18")), http.StatusOK, "Shared with the verifier")
				}
			}
			share(7)
			if r := amira.get("/wallet/credentials"); strings.Contains(r.body, `id="copies-low-`) {
				t.Fatalf("3 copies left, and the wallet warns: %s", clip(r.body))
			}
			if r := amira.get("/"); strings.Contains(r.body, `id="credentials-renew"`) {
				t.Fatalf("3 copies left, and the home page warns: %s", clip(r.body))
			}
			share(1)
			expect(t, "two left", amira.get("/wallet/credentials"), http.StatusOK, "2 of 10 single-use copies left", "Only 2 copies left. Ask Civil Registry Office for a new one.")
			expect(t, "the home page says so", amira.get("/"), http.StatusOK, `id="credentials-renew">A credential is running out of copies or expired`)
			share(1)
			expect(t, "one left", amira.get("/wallet/credentials"), http.StatusOK, "Only 1 copy left.")
			share(1)
			expect(t, "none left", amira.get("/wallet/credentials"), http.StatusOK, "Every copy is used: you cannot show this credential again. Ask Civil Registry Office for a new one.")
			_, same := newRequest(t, w, bar, "Blue Door Bar", url.Values{"ask.pid:age_over_18": {"required"}})
			expect(t, "an eleventh request", amira.get(same), http.StatusOK, "all copies used")

			// A new one from the issuer ends the warnings: the used-up one is
			// kept, marked replaced, and asks for nothing.
			old := regexp.MustCompile(`id="copies-low-([^"]+)"`).FindStringSubmatch(amira.get("/wallet/credentials").body)
			if old == nil {
				t.Fatal("no warning to replace")
			}
			link, tx = offerPID(t, w, w.as(t, "Marta Silva"), w.people["Amira Haddad"], "1990-05-01")
			expect(t, "accept a new one", amira.postForm("/wallet/credentials/accept", url.Values{"offer": {link}, "tx_code": {tx}}), http.StatusOK, "10 of 10 single-use copies left")
			r := amira.get("/wallet/credentials")
			if expect(t, "the old one replaced", r, http.StatusOK, `id="replaced-`+old[1]+`"`, "0 of 10 single-use copies left"); strings.Contains(r.body, `id="copies-low-`) || strings.Contains(r.body, "Every copy is used") {
				t.Fatalf("a replaced credential still asks for a new one: %s", clip(r.body))
			}
			if r := amira.get("/"); strings.Contains(r.body, `id="credentials-renew"`) {
				t.Fatalf("a new credential, and the home page still warns: %s", clip(r.body))
			}
			share(1)
			expect(t, "the new one answers", amira.get("/wallet/credentials"), http.StatusOK, "9 of 10 single-use copies left")
			// The wallet's credentials, oldest first, and each one's card.
			order := func() (ids []string, cards map[string]string) {
				cards = map[string]string{}
				for _, c := range heldRE.FindAllStringSubmatch(w.as(t, "Amira Haddad").get("/wallet/credentials").body, -1) {
					ids, cards[c[1]] = append(ids, c[1]), c[2]
				}
				return ids, cards
			}
			ids, _ := order()
			second := ids[1]

			// A third one used up: the wallet answers with the second again,
			// so nothing asks for a new one.
			link, tx = offerPID(t, w, w.as(t, "Marta Silva"), w.people["Amira Haddad"], "1990-05-01")
			expect(t, "accept a third", amira.postForm("/wallet/credentials/accept", url.Values{"offer": {link}, "tx_code": {tx}}), http.StatusOK, "10 of 10 single-use copies left")
			share(identity.WalletBatch)
			_, held := order()
			for id, card := range held {
				if want := id != second; strings.Contains(card, `id="replaced-`) != want || strings.Contains(card, `id="copies-low-`) || strings.Contains(card, "Ask Civil Registry") {
					t.Fatalf("the newest used up, the second with 9 copies: credential %s should be replaced (%t) and nothing warn: %s", id, want, card)
				}
			}
			if len(held) != 3 || !strings.Contains(held[second], "9 of 10 single-use copies left") {
				t.Fatalf("want three credentials, the second with 9 copies: %v", held)
			}
			if r := amira.get("/"); strings.Contains(r.body, `id="credentials-renew"`) {
				t.Fatalf("nine copies left, and the home page warns: %s", clip(r.body))
			}
			share(7)
			expect(t, "two left in the older one", amira.get("/wallet/credentials"), http.StatusOK, `id="copies-low-`+second+`"`, "Only 2 copies left. Ask Civil Registry Office")
			expect(t, "the home page warns again", amira.get("/"), http.StatusOK, `id="credentials-renew"`)
			// A fourth, shared down to one copy, with one left in the second:
			// the warning is on the fourth and counts both.
			share(1)
			link, tx = offerPID(t, w, w.as(t, "Marta Silva"), w.people["Amira Haddad"], "1990-05-01")
			expect(t, "accept a fourth", amira.postForm("/wallet/credentials/accept", url.Values{"offer": {link}, "tx_code": {tx}}), http.StatusOK, "10 of 10 single-use copies left")
			share(identity.WalletBatch - 1)
			ids, held = order()
			fourth := ids[len(ids)-1]
			if card := held[fourth]; !strings.Contains(card, `id="copies-low-`+fourth+`"`) || !strings.Contains(card, "Only 2 copies left, counting your older ones. Ask Civil Registry Office") {
				t.Fatalf("one copy in the fourth and one in the second: the fourth's warning should count both: %s", card)
			}
			if card := held[second]; !strings.Contains(card, `id="replaced-`+second+`"`) || !strings.Contains(card, "1 of 10 single-use copies left") {
				t.Fatalf("the second, with one copy, should be kept for the record: %s", card)
			}

			// Past its validity the wallet says it expired, rather than count
			// copies, once: the newest says so, the others are kept.
			w.n.clock.add(identity.TypeByID("pid").Validity + time.Minute)
			_, held = order()
			for id, card := range held {
				if !strings.Contains(card, `">expired</span>`) || strings.Contains(card, "Every copy is used") || strings.Contains(card, `id="copies-low-`) {
					t.Fatalf("credential %s: expired, its copies not counted: %s", id, card)
				}
				if strings.Contains(card, "verifiers no longer accept it. Ask Civil Registry Office for a new one.") != (id == fourth) || strings.Contains(card, `id="replaced-`) == (id == fourth) {
					t.Fatalf("credential %s: only the newest (%s) should ask for a new one: %s", id, fourth, card)
				}
			}
			expect(t, "the home page says it expired", w.as(t, "Amira Haddad").get("/"), http.StatusOK, `id="credentials-renew">A credential is running out of copies or expired`)
		})
	}
}
