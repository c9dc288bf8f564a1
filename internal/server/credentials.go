package server

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/civstack/civstack/internal/identity"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/web"
)

// The identity wallet's pages: the citizen's credentials (offers waiting,
// adding one from a link and code), the consent page for a verifier's
// request (registered name and purpose, over-asked claims warned about and
// unticked, optional claims untickable) and the presentation log with its
// JSON export; the issuer's console (registration, offers, revocation);
// the verifier's console (registration, a request as a QR code and link,
// the verified result, re-checking status).

func (s *Server) credentialRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /wallet/credentials", s.signedIn(s.credentialsPage))
	mux.HandleFunc("POST /wallet/credentials/accept", s.signedIn(s.acceptOffer))
	mux.HandleFunc("GET /wallet/present", s.signedIn(s.presentPage))
	mux.HandleFunc("POST /wallet/present", s.signedIn(s.presentAnswer))
	mux.HandleFunc("GET /wallet/presentations", s.signedIn(s.presentationsPage))
	mux.HandleFunc("GET /wallet/presentations.json", s.signedIn(s.presentationsJSON))
	mux.HandleFunc("GET /issue/{org}", s.orgRole(registry.Issuer, s.issuerPage))
	mux.HandleFunc("POST /issue/{org}/register", s.orgRole(registry.Issuer, s.issuerRegister))
	mux.HandleFunc("POST /issue/{org}/offers", s.orgRole(registry.Issuer, s.issuerOffer))
	mux.HandleFunc("POST /issue/{org}/issued/{batch}/revoke", s.orgRole(registry.Issuer, s.issuerRevoke))
	mux.HandleFunc("GET /check/{org}", s.orgRole(registry.Verifier, s.verifierPage))
	mux.HandleFunc("POST /check/{org}/register", s.orgRole(registry.Verifier, s.verifierRegister))
	mux.HandleFunc("POST /check/{org}/requests", s.orgRole(registry.Verifier, s.verifierCreate))
	mux.HandleFunc("GET /check/{org}/requests/{id}", s.orgRole(registry.Verifier, s.requestPage))
	mux.HandleFunc("GET /check/{org}/requests/{id}/status", s.orgRole(registry.Verifier, s.requestStatus))
	mux.HandleFunc("POST /check/{org}/requests/{id}/recheck", s.orgRole(registry.Verifier, s.requestRecheck))
}

// orgRole wraps a handler for people holding role in the path's org.
func (s *Server) orgRole(role registry.Role, h func(http.ResponseWriter, *http.Request, *viewer, registry.Membership)) http.HandlerFunc {
	return s.withRole(role, func(w http.ResponseWriter, r *http.Request, v *viewer) {
		for _, m := range v.memberships {
			if m.OrgID == r.PathValue("org") && m.Role == role {
				h(w, r, v, m)
				return
			}
		}
		s.fail(w, r, http.StatusNotFound, "You do not act as "+role.Title()+" for such an organisation.")
	})
}

// sentinelStatus maps an error wrapping one of the sentinels to its
// status and a sentence without the sentinel's "code: " prefix.
func sentinelStatus(err error, table []sentinel) (int, string, bool) {
	for _, c := range table {
		if errors.Is(err, c.err) {
			msg := strings.Replace(err.Error(), c.err.Error()+": ", "", 1)
			return c.status, sentence(errors.New(strings.TrimSuffix(msg, "."))), true
		}
	}
	return 0, "", false
}

type sentinel struct {
	err    error
	status int
}

var identitySentinels = []sentinel{{identity.ErrInvalid, 400}, {identity.ErrInvalidGrant, 400}, {identity.ErrRefused, 400}, {identity.ErrNotFound, 404},
	{identity.ErrNotAllowed, 403}, {identity.ErrAnswered, 409}, {identity.ErrExpired, 410}, {identity.ErrNoCredential, 409}, {identity.ErrUntrusted, 400}}

// identityStatus maps identity errors to a status and a sentence.
func identityStatus(err error) (int, string) {
	if status, msg, ok := sentinelStatus(err, identitySentinels); ok {
		return status, msg
	}
	var rej *identity.Rejection
	if errors.As(err, &rej) {
		return http.StatusBadRequest, rej.Reason
	}
	return classify(err)
}

func (s *Server) credentialsPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderCredentials(w, r, v, http.StatusOK, web.Page{})
}

func (s *Server) renderCredentials(w http.ResponseWriter, r *http.Request, v *viewer, status int, p web.Page) {
	ctx := r.Context()
	held, err := s.id.Credentials(ctx, v.person.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	offers, err := s.id.PendingOffers(ctx, v.person.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	if p.Data == nil {
		p.Data = map[string]any{}
	}
	d := p.Data.(map[string]any)
	d["Held"], d["Offers"], d["PersonID"] = held, offers, v.person.ID
	p.Title = "Credentials"
	s.render(w, r, v, status, "credentials", p)
}

// consoleError shows an identity error on an issuer's or verifier's console.
func (s *Server) consoleError(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership,
	page func(http.ResponseWriter, *http.Request, *viewer, registry.Membership, int, web.Page), err error) {
	s.identityError(w, r, err, func(status int, msg string) { page(w, r, v, m, status, web.Page{Error: msg}) })
}

func (s *Server) identityError(w http.ResponseWriter, r *http.Request, err error, page func(status int, msg string)) {
	s.failWith(w, r, err, identityStatus, page)
}

func (s *Server) acceptOffer(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	link, code := r.PostFormValue("offer"), r.PostFormValue("tx_code")
	n, err := s.id.AcceptOffer(r.Context(), v.person.ID, link, code)
	if err != nil {
		s.identityError(w, r, err, func(status int, msg string) {
			s.renderCredentials(w, r, v, status, web.Page{Error: msg, Data: map[string]any{"OfferLink": link}})
		})
		return
	}
	s.renderCredentials(w, r, v, http.StatusOK, web.Page{Notice: plural(n, "single-use copy", "single-use copies") + " of the credential are now in your wallet."})
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// requestLink rebuilds the request link from the page's query (the same
// device link) or takes a pasted one.
func requestLink(r *http.Request) string {
	if l := r.FormValue("request"); l != "" {
		return l
	}
	if r.URL.Query().Get("request_uri") != "" {
		return "openid4vp://?" + r.URL.RawQuery
	}
	return ""
}

func (s *Server) presentPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	link := requestLink(r)
	if link == "" {
		// Data must not be empty: the page shows nothing for an empty map.
		s.render(w, r, v, http.StatusOK, "present", web.Page{Title: "Share a credential", Data: map[string]any{"Link": ""}})
		return
	}
	c, err := s.id.OpenRequest(r.Context(), v.person.ID, link)
	if err != nil {
		s.identityError(w, r, err, func(status int, msg string) {
			s.render(w, r, v, status, "present", web.Page{Title: "Share a credential", Error: msg, Data: map[string]any{"Link": link}})
		})
		return
	}
	s.render(w, r, v, http.StatusOK, "present", web.Page{Title: "Share a credential", Data: map[string]any{"Link": link, "Consent": c}})
}

func (s *Server) presentAnswer(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	link := r.PostFormValue("request")
	approve := r.PostFormValue("decision") == "share"
	out, err := s.id.Answer(r.Context(), v.person.ID, link, approve, r.PostForm["claim"])
	if err != nil {
		s.identityError(w, r, err, func(status int, msg string) {
			c, _ := s.id.OpenRequest(r.Context(), v.person.ID, link)
			s.render(w, r, v, status, "present", web.Page{Title: "Share a credential", Error: msg, Data: map[string]any{"Link": link, "Consent": c}})
		})
		return
	}
	page := web.Page{Notice: "You declined; the verifier has been told."}
	switch {
	case out.Shared:
		page.Notice = "Shared with the verifier."
	case out.Unchecked:
		page.Notice, page.Error = "", "Not checked: "+out.Reason
	case approve:
		page.Notice = out.Reason
	}
	s.renderPresentations(w, r, v, page)
}

func (s *Server) presentationsPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderPresentations(w, r, v, web.Page{})
}

func (s *Server) renderPresentations(w http.ResponseWriter, r *http.Request, v *viewer, p web.Page) {
	log, err := s.id.Presentations(r.Context(), v.person.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	p.Title, p.Data = "Presentations", map[string]any{"Log": log}
	s.render(w, r, v, http.StatusOK, "presentations", p)
}

func (s *Server) presentationsJSON(w http.ResponseWriter, r *http.Request, v *viewer) {
	log, err := s.id.Presentations(r.Context(), v.person.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	w.Header().Set("Content-Disposition", `attachment; filename="civstack-presentations.json"`)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"person": v.person.ID, "exported_at": s.now().UTC(), "presentations": log})
}

// The issuer's console.

func (s *Server) issuerPage(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	s.renderIssuer(w, r, v, m, http.StatusOK, web.Page{})
}

func (s *Server) renderIssuer(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership, status int, p web.Page) {
	ctx := r.Context()
	d, _ := p.Data.(map[string]any)
	if d == nil {
		d = map[string]any{}
	}
	d["Org"], d["OrgName"], d["Types"] = m.OrgID, m.OrgName, identity.Types
	d["Today"] = identity.LatestDay(s.now()) // a date of birth's or award's latest
	iss, err := s.id.IssuerByOrg(ctx, m.OrgID)
	switch {
	case errors.Is(err, identity.ErrNotFound):
	case err != nil:
		s.failErr(w, r, err)
		return
	default:
		// A citizen's wallet id finds every issuance to them, however old.
		person := strings.TrimSpace(r.URL.Query().Get("person"))
		if len(person) > 64 {
			person, status, p.Error = "", http.StatusBadRequest, "That is not a wallet id."
		}
		issued, err := s.id.Issued(ctx, iss, person)
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		d["Person"], d["Latest"] = person, person == "" && len(issued) == identity.IssuedShown
		var types []*identity.Type
		for _, t := range iss.Types {
			types = append(types, identity.TypeByID(t))
		}
		names := map[string]string{}
		for _, b := range issued {
			if _, ok := names[b.PersonID]; !ok {
				names[b.PersonID] = s.personName(r, b.PersonID)
			}
		}
		d["Issuer"], d["IssuerID"], d["IssuerPath"], d["Offerable"], d["Issued"], d["Names"] = iss, s.id.IssuerID(iss), "/issuers/"+iss.Slug, types, issued, names
	}
	p.Title, p.Data = "Issue credentials · "+m.OrgName, d
	s.render(w, r, v, status, "issuer", p)
}

func (s *Server) issuerRegister(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	if !s.parseForm(w, r) {
		return
	}
	_, err := s.id.RegisterIssuer(r.Context(), m.OrgID, m.OrgName, r.PostForm["type"])
	if err != nil {
		s.consoleError(w, r, v, m, s.renderIssuer, err)
		return
	}
	s.renderIssuer(w, r, v, m, http.StatusOK, web.Page{Notice: "Registered. Wallets can now receive these credentials from you."})
}

func (s *Server) issuerOffer(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	if !s.parseForm(w, r) {
		return
	}
	ctx := r.Context()
	iss, err := s.id.IssuerByOrg(ctx, m.OrgID)
	if err != nil {
		s.consoleError(w, r, v, m, s.renderIssuer, err)
		return
	}
	typeID := r.PostFormValue("type")
	t := identity.TypeByID(typeID)
	if t == nil {
		s.renderIssuer(w, r, v, m, http.StatusBadRequest, web.Page{Error: "There is no such credential type: choose one of the forms below."})
		return
	}
	if !slices.Contains(iss.Types, typeID) {
		s.renderIssuer(w, r, v, m, http.StatusForbidden, web.Page{Error: m.OrgName + " is not registered to issue that credential type."})
		return
	}
	person := strings.TrimSpace(r.PostFormValue("person"))
	if found, err := s.citizen(ctx, person); found == nil {
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		s.renderIssuer(w, r, v, m, http.StatusBadRequest, web.Page{Error: "There is no citizen with that wallet id (it is shown on their Credentials page)."})
		return
	}
	claims, err := t.BuildClaims(func(name string) string { return r.PostFormValue(typeID + "." + name) }, m.OrgName, s.id.Country(), s.now())
	if err != nil {
		s.consoleError(w, r, v, m, s.renderIssuer, err)
		return
	}
	offer, err := s.id.CreateOffer(ctx, iss, typeID, person, v.person.ID, claims)
	if err != nil {
		s.consoleError(w, r, v, m, s.renderIssuer, err)
		return
	}
	qr, err := qrSVG(offer.Link, "Credential offer")
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	s.renderIssuer(w, r, v, m, http.StatusOK, web.Page{Notice: "Offer made.", Data: map[string]any{"Offer": offer, "OfferQR": qr}})
}

func (s *Server) issuerRevoke(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	ctx := r.Context()
	iss, err := s.id.IssuerByOrg(ctx, m.OrgID)
	if err == nil {
		err = s.id.Revoke(ctx, iss, r.PathValue("batch"))
	}
	if err != nil {
		s.consoleError(w, r, v, m, s.renderIssuer, err)
		return
	}
	s.renderIssuer(w, r, v, m, http.StatusOK, web.Page{Notice: "Revoked. Verifiers refuse it as soon as their copy of the status list is refreshed (at most " + identity.StatusTTL.String() + ")."})
}

// The verifier's console.

func (s *Server) verifierPage(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	s.renderVerifier(w, r, v, m, http.StatusOK, web.Page{})
}

type claimOption struct {
	Key, TypeName, Label string
	Registered           bool
}

func (s *Server) renderVerifier(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership, status int, p web.Page) {
	ctx := r.Context()
	d := map[string]any{"Org": m.OrgID, "OrgName": m.OrgName}
	ver, err := s.id.VerifierByOrg(ctx, m.OrgID)
	switch {
	case errors.Is(err, identity.ErrNotFound):
	case err != nil:
		s.failErr(w, r, err)
		return
	default:
		reqs, err := s.id.Requests(ctx, m.OrgID)
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		d["Verifier"], d["Requests"] = ver, reqs
	}
	var opts []claimOption
	for _, t := range identity.Types {
		for _, f := range t.Claims() {
			key := t.ID + ":" + f.Name
			opts = append(opts, claimOption{Key: key, TypeName: t.Name, Label: f.Label, Registered: ver != nil && ver.Registered(t.ID, f.Name)})
		}
	}
	d["Options"] = opts
	p.Title, p.Data = "Check credentials · "+m.OrgName, d
	s.render(w, r, v, status, "verifier", p)
}

func (s *Server) verifierRegister(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	if !s.parseForm(w, r) {
		return
	}
	_, err := s.id.RegisterVerifier(r.Context(), m.OrgID, m.OrgName, r.PostFormValue("purpose"), r.PostForm["claim"])
	if err != nil {
		s.consoleError(w, r, v, m, s.renderVerifier, err)
		return
	}
	s.renderVerifier(w, r, v, m, http.StatusOK, web.Page{Notice: "Registered. Wallets show your name and purpose with every request."})
}

// verifierCreate makes a request from the form: each claim "type:name"
// is asked as "required", "optional" or not at all.
func (s *Server) verifierCreate(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	if !s.parseForm(w, r) {
		return
	}
	ctx := r.Context()
	ver, err := s.id.VerifierByOrg(ctx, m.OrgID)
	if err != nil {
		s.consoleError(w, r, v, m, s.renderVerifier, err)
		return
	}
	typeID := ""
	var required, optional []string
	for key, vals := range r.PostForm {
		t, name, ok := strings.Cut(strings.TrimPrefix(key, "ask."), ":")
		if !ok || !strings.HasPrefix(key, "ask.") || len(vals) == 0 || vals[0] == "" {
			continue
		}
		if typeID != "" && t != typeID {
			s.renderVerifier(w, r, v, m, http.StatusBadRequest, web.Page{Error: "Ask for claims of one credential type per request."})
			return
		}
		typeID = t
		switch vals[0] {
		case "required":
			required = append(required, name)
		case "optional":
			optional = append(optional, name)
		default:
			s.renderVerifier(w, r, v, m, http.StatusBadRequest, web.Page{Error: "Ask for each claim as needed, optional or not at all."})
			return
		}
	}
	if typeID == "" {
		s.renderVerifier(w, r, v, m, http.StatusBadRequest, web.Page{Error: "Ask for at least one claim as required."})
		return
	}
	slices.Sort(required)
	slices.Sort(optional)
	req, err := s.id.CreateRequest(ctx, ver, typeID, required, optional, v.person.ID)
	if err != nil {
		s.consoleError(w, r, v, m, s.renderVerifier, err)
		return
	}
	http.Redirect(w, r, "/check/"+m.OrgID+"/requests/"+req.ID, http.StatusSeeOther)
}

func (s *Server) loadRequest(w http.ResponseWriter, r *http.Request, m registry.Membership) (*identity.Verifier, *identity.Request, bool) {
	ver, err := s.id.VerifierByOrg(r.Context(), m.OrgID)
	var req *identity.Request
	if err == nil {
		req, err = s.id.Request(r.Context(), m.OrgID, r.PathValue("id"))
	}
	if err != nil {
		status, msg := identityStatus(err)
		s.fail(w, r, status, msg)
		return nil, nil, false
	}
	return ver, req, true
}

func (s *Server) requestData(ver *identity.Verifier, req *identity.Request, m registry.Membership) (map[string]any, error) {
	cross, same := s.id.Links(ver, req)
	qr, err := qrSVG(cross, "Request from "+ver.Name)
	if err != nil {
		return nil, err
	}
	var asked []string
	if len(req.Query.Credentials) == 1 {
		cq := req.Query.Credentials[0]
		t := identity.TypeByID(cq.ID)
		for _, c := range cq.Claims {
			if name, ok := identity.PathName(c.Path); ok && t != nil {
				asked = append(asked, t.Label(name))
			}
		}
	}
	return map[string]any{"Org": m.OrgID, "Verifier": ver, "Request": req, "QR": qr, "Link": cross, "SameDevice": same, "Asked": asked,
		"Pending": req.State == identity.Pending && s.now().Before(req.Expires), "Keep": keepText(s.id.Keep())}, nil
}

func (s *Server) requestPage(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	ver, req, ok := s.loadRequest(w, r, m)
	if !ok {
		return
	}
	d, err := s.requestData(ver, req, m)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	s.render(w, r, v, http.StatusOK, "vprequest", web.Page{Title: "Request · " + ver.Name, Data: d})
}

func (s *Server) requestStatus(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	ver, req, ok := s.loadRequest(w, r, m)
	if !ok {
		return
	}
	d, err := s.requestData(ver, req, m)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	status := http.StatusOK
	if pending, _ := d["Pending"].(bool); !pending {
		status = stopPolling // answered or expired: the page asks no more
	}
	if err := s.pages.Fragment(w, status, "vprequest", web.Page{Data: d}); err != nil {
		s.log.Error("render fragment", "err", err)
	}
}

func (s *Server) requestRecheck(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	ver, _, ok := s.loadRequest(w, r, m)
	if !ok {
		return
	}
	req, err := s.id.Recheck(r.Context(), ver, r.PathValue("id"))
	status, page := http.StatusOK, web.Page{Title: "Request · " + ver.Name, Notice: "Checked again: still valid."}
	switch {
	case errors.Is(err, identity.ErrCannotCheck):
		s.log.Warn("presentation not re-checked", "route", r.Pattern, "err", err)
		status, page.Notice = http.StatusServiceUnavailable, ""
		page.Error = "It could not be checked again right now: the issuer's key or status list cannot be read. The result below stands as it was; try again shortly."
	case errors.Is(err, identity.ErrErased):
		status, page.Notice = http.StatusGone, ""
		page.Error = "There is nothing left to check again: this node erased the presentation and what it disclosed " + keepText(s.id.Keep()) + " after the answer."
	case err != nil:
		s.failErr(w, r, err)
		return
	case req.State == identity.Pending:
		status, page.Notice = http.StatusConflict, ""
		page.Error = "There is nothing to check again yet: the wallet has not answered."
	case req.State == identity.Rejected:
		page.Notice = ""
	}
	d, err := s.requestData(ver, req, m)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	page.Data = d
	s.render(w, r, v, status, "vprequest", page)
}

// keepText says how long presentations are kept: "24 hours", "7 days",
// "90 minutes".
func keepText(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return strconv.FormatInt(n, 10) + " " + unit + "s"
	}
	switch {
	case d > 24*time.Hour && d%(24*time.Hour) == 0:
		return plural(int64(d/(24*time.Hour)), "day")
	case d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	}
	return plural(int64(d/time.Minute), "minute")
}
