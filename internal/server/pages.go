package server

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/healthpass"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/web"
)

const maxFormBody = 64 << 10

var roleDescriptions = map[registry.Role]string{
	registry.Merchant: "Take payments by QR code, refund, and issue signed e-receipts and e-invoices.",
	registry.Issuer:   "Issue credentials to citizens' wallets and revoke them.",
	registry.Verifier: "Check credentials and health passes offline, learning only what the citizen discloses.",
	registry.Agency:   "Request citizen data through the exchange, with a purpose and a legal basis; every access is logged.",
	registry.Partner:  "Give civic-reward points for rides, drop-offs or visits, and honour the vouchers citizens buy with them.",
	registry.DPA:      "Audit the data exchange and the transparency log, including deferred accesses and their deadlines.",
	registry.Operator: "Run this civstack node: organisations, roles, API tokens and keys.",
}

func (s *Server) pageRoutes(mux *http.ServeMux) {
	s.passkeyRoutes(mux)
	mux.HandleFunc("GET /{$}", s.home)
	mux.HandleFunc("GET /register", s.register)
	mux.HandleFunc("POST /signout", s.signout)
	mux.HandleFunc("GET /account", s.signedIn(s.account))
	mux.HandleFunc("POST /account/passkeys/{id}/remove", s.signedIn(s.removePasskey))
	mux.HandleFunc("POST /account/sessions/end-others", s.signedIn(s.endOtherSessions))
	mux.HandleFunc("POST /account/name", s.signedIn(s.rename))
	for _, role := range []registry.Role{registry.Merchant, registry.Issuer, registry.Verifier, registry.Agency, registry.Partner, registry.DPA} {
		mux.HandleFunc("GET /"+string(role), s.withRole(role, s.roleHome(role)))
	}
	mux.HandleFunc("GET /operator", s.withRole(registry.Operator, s.operatorHome))
	mux.HandleFunc("POST /operator/organisations", s.withRole(registry.Operator, s.createOrganisation))
	mux.HandleFunc("GET /orgs/{id}", s.signedIn(s.orgPage))
	mux.HandleFunc("POST /orgs/{id}/tokens", s.signedIn(s.createToken))
	mux.HandleFunc("POST /orgs/{id}/tokens/{token}/revoke", s.signedIn(s.revokeToken))
	mux.HandleFunc("POST /orgs/{id}/members", s.withRole(registry.Operator, s.grantRole))
	mux.HandleFunc("POST /orgs/{id}/members/revoke", s.withRole(registry.Operator, s.revokeRole))
	mux.HandleFunc("GET /setup", s.setupPage)
	mux.HandleFunc("POST /setup", s.signedIn(s.redeemSetup))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { s.noRoute(mux, w, r) })
}

// noRoute answers a request no route takes: 405 with the methods the
// address does take (an API client sending DELETE where only GET and POST
// are served learns that), or 404.
func (s *Server) noRoute(mux *http.ServeMux, w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method || (m == http.MethodGet && r.Method == http.MethodHead) {
			continue
		}
		other := r.Clone(r.Context())
		other.Method = m
		if _, pattern := mux.Handler(other); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		s.notFound(w, r)
		return
	}
	if slices.Contains(allow, http.MethodGet) {
		allow = slices.Insert(allow, 1, http.MethodHead)
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	if r.Method == http.MethodGet && !wantsJSON(r) {
		// A person who opened a form's address (a bookmark, a reload).
		s.fail(w, r, http.StatusMethodNotAllowed, "This address is where a form sends its answers; it is not a page to open. Go back and use the form's button.")
		return
	}
	s.fail(w, r, http.StatusMethodNotAllowed, "This address does not take "+r.Method+" requests; it takes "+strings.Join(allow, ", ")+".")
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, http.StatusNotFound, "There is no page at this address.")
}

// parseForm reads a small form body; it answers the request itself on error.
func (s *Server) parseForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, http.StatusBadRequest, "The form could not be read (is it larger than 64 KiB?).")
		return false
	}
	if !valuesText(r.PostForm) {
		s.fail(w, r, http.StatusBadRequest, notText)
		return false
	}
	return true
}

// appealNewsFor is how long the home page says that an appeal was decided.
const appealNewsFor = 7 * 24 * time.Hour

func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	v, err := s.viewer(r)
	if err != nil && !errors.Is(err, errNoSession) && !errors.Is(err, registry.ErrExpired) {
		s.failErr(w, r, err)
		return
	}
	if v == nil {
		p := web.Page{Title: "Sign in"}
		if r.URL.Query().Get("expired") == "1" {
			s.clearSession(w)
			p.Error = "Your session has expired. Sign in again."
		}
		if r.URL.Query().Get("signedout") == "1" {
			p.Notice = "You have signed out."
		}
		s.render(w, r, nil, http.StatusOK, "landing", p)
		return
	}
	asking, err := s.ex.Asking(r.Context(), v.person.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	news, err := s.ex.News(r.Context(), v.person.ID, s.now().Add(-exchange.DisclosedWithin), s.now().Add(-recentAccesses))
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	answered, err := s.ex.AnsweredSince(r.Context(), v.person.ID, s.now().Add(-exchange.AnswerNewsWithin))
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	offers, renew := 0, 0
	if s.id != nil {
		if offers, err = s.id.CountPendingOffers(r.Context(), v.person.ID); err != nil {
			s.failErr(w, r, err)
			return
		}
		if renew, err = s.id.ToRenew(r.Context(), v.person.ID); err != nil {
			s.failErr(w, r, err)
			return
		}
	}
	// An appeal an officer decided in the last week.
	decided := false
	if s.health != nil {
		a, err := s.health.LatestAppeal(r.Context(), v.person.ID)
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		decided = a != nil && (a.State == healthpass.AppealUpheld || a.State == healthpass.AppealOverruled) && s.now().Sub(a.DecidedAt) < appealNewsFor
	}
	s.render(w, r, v, http.StatusOK, "home", web.Page{Title: "Wallet", Data: map[string]any{"Consoles": consoles(v), "Asking": asking, "Disclosed": news.Disclosed,
		"Recent": news.Recent, "RecentDays": int(recentAccesses / exchange.Day), "Answered": answered,
		"Offers": offers, "Renew": renew, "AppealDecided": decided}})
}

// recentAccesses is how far back the home page counts the accesses to the
// citizen's data.
const recentAccesses = 30 * exchange.Day

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, nil, http.StatusOK, "register", web.Page{Title: "Create an account"})
}

func (s *Server) signout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		if err := s.reg.EndSession(r.Context(), c.Value); err != nil {
			s.failErr(w, r, err)
			return
		}
	}
	s.clearSession(w)
	http.Redirect(w, r, "/?signedout=1", http.StatusSeeOther)
}

type passkeyView struct {
	registry.Passkey
}

// IDText is the passkey id for URLs.
func (p passkeyView) IDText() string { return passkeyIDText(p.ID) }

func (s *Server) account(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderAccount(w, r, v, http.StatusOK, web.Page{})
}

func (s *Server) renderAccount(w http.ResponseWriter, r *http.Request, v *viewer, status int, p web.Page) {
	keys, err := s.reg.Passkeys(r.Context(), v.person.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	views := make([]passkeyView, len(keys))
	for i, k := range keys {
		views[i] = passkeyView{k}
	}
	others, err := s.reg.OtherSessions(r.Context(), v.person.ID, v.token)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	if p.Notice == "" && p.Error == "" {
		q := r.URL.Query()
		switch {
		case q.Get("added") == "1":
			p.Notice = "Your new passkey is ready."
		case q.Get("renamed") == "1":
			p.Notice = "Your name is changed."
		case q.Get("removed") == "1":
			p.Notice = strings.TrimSpace("The passkey was removed. " + endedNotice(q))
		default:
			p.Notice = endedNotice(q)
		}
	}
	p.Title = "Account"
	p.Data = map[string]any{"Person": v.person, "Passkeys": views, "Memberships": v.memberships, "OtherSessions": others}
	s.render(w, r, v, status, "account", p)
}

func (s *Server) removePasskey(w http.ResponseWriter, r *http.Request, v *viewer) {
	id, err := parsePasskeyID(r.PathValue("id"))
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "That is not a passkey id.")
		return
	}
	ended, err := s.reg.RemovePasskey(r.Context(), v.person.ID, id, v.token)
	if err != nil {
		status, msg := classify(err)
		s.renderAccount(w, r, v, status, web.Page{Error: msg})
		return
	}
	http.Redirect(w, r, "/account?removed=1&ended="+strconv.Itoa(ended), http.StatusSeeOther)
}

// rename changes the viewer's display name.
func (s *Server) rename(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	if err := s.reg.Rename(r.Context(), v.person.ID, r.PostForm.Get("name")); err != nil {
		status, msg := classify(err)
		if status >= 500 {
			s.failErr(w, r, err)
			return
		}
		s.renderAccount(w, r, v, status, web.Page{Error: msg})
		return
	}
	http.Redirect(w, r, "/account?renamed=1", http.StatusSeeOther)
}

// endOtherSessions signs the viewer out everywhere but in this browser.
func (s *Server) endOtherSessions(w http.ResponseWriter, r *http.Request, v *viewer) {
	ended, err := s.reg.EndOtherSessions(r.Context(), v.person.ID, v.token)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	http.Redirect(w, r, "/account?ended="+strconv.Itoa(ended), http.StatusSeeOther)
}

// endedNotice says how many other sign-ins a removal or a sign-out ended.
func endedNotice(q url.Values) string {
	n, err := strconv.Atoi(q.Get("ended"))
	switch {
	case err != nil || n < 0:
		return ""
	case n == 0:
		return "You were not signed in anywhere else."
	case n == 1:
		return "You were signed in on one other device or browser: it is signed out now."
	}
	return "You were signed in on " + strconv.Itoa(n) + " other devices or browsers: they are signed out now."
}

func (s *Server) roleHome(role registry.Role) func(http.ResponseWriter, *http.Request, *viewer) {
	return func(w http.ResponseWriter, r *http.Request, v *viewer) {
		var mine []registry.Membership
		for _, m := range v.memberships {
			if m.Role == role {
				mine = append(mine, m)
			}
		}
		s.render(w, r, v, http.StatusOK, "role", web.Page{Title: role.Title(), Data: map[string]any{
			"Description": roleDescriptions[role], "Memberships": mine}})
	}
}

func (s *Server) setupPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, nil, http.StatusOK, "setup", web.Page{Title: "Operator setup", Data: map[string]any{"Code": r.URL.Query().Get("code")}})
}

func (s *Server) redeemSetup(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	code := strings.TrimSpace(r.PostForm.Get("code"))
	if _, err := s.reg.RedeemSetup(r.Context(), code, v.person.ID); err != nil {
		status, msg := classify(err)
		s.render(w, r, v, status, "setup", web.Page{Title: "Operator setup", Error: msg, Data: map[string]any{"Code": ""}})
		return
	}
	s.log.Info("operator set up")
	http.Redirect(w, r, "/operator", http.StatusSeeOther)
}

// favicon answers the /favicon.ico a browser asks for where no page names
// an icon (a JSON answer, a log tile) with the pages' own SVG icon, so that
// it finds one rather than a 404.
func favicon(w http.ResponseWriter, r *http.Request) {
	b, err := web.StaticFile("civstack.svg")
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "public, max-age=86400")
	w.Write(b)
}
