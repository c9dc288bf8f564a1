package server

import (
	"errors"
	"net/http"
	"net/url"
	"slices"

	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/web"
)

// sessionCookie is the session cookie's name. The __Host- prefix makes
// browsers take it only from this host, over a secure connection, for
// every path and with no Domain: a neighbouring subdomain cannot plant a
// session of its own choosing (RFC 6265bis §4.1.3.2).
const sessionCookie = "__Host-civstack_session"

// viewer is the signed-in person behind a page request.
type viewer struct {
	person      *registry.Person
	memberships []registry.Membership
	roles       []registry.Role
	token       string
}

func (v *viewer) has(role registry.Role) bool { return slices.Contains(v.roles, role) }

// hasMerchantRole reports whether the viewer takes payments for org.
func (v *viewer) hasMerchantRole(orgID string) bool {
	for _, m := range v.memberships {
		if m.OrgID == orgID && m.Role == registry.Merchant {
			return true
		}
	}
	return false
}

// memberOf reports whether the viewer holds any role in org.
func (v *viewer) memberOf(orgID string) bool {
	for _, m := range v.memberships {
		if m.OrgID == orgID {
			return true
		}
	}
	return false
}

var errNoSession = errors.New("no session")

// viewer resolves the session cookie. It returns errNoSession when there is
// none, registry.ErrExpired when it has run out, and treats demo people's
// sessions as absent unless the server runs with --demo.
func (s *Server) viewer(r *http.Request) (*viewer, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil, errNoSession
	}
	p, err := s.reg.SessionPerson(r.Context(), c.Value)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	if p.Demo && !s.cfg.Demo {
		return nil, errNoSession
	}
	ms, err := s.reg.Memberships(r.Context(), p.ID)
	if err != nil {
		return nil, err
	}
	return &viewer{person: p, memberships: ms, roles: registry.Roles(ms), token: c.Value}, nil
}

// signedIn wraps a page handler that needs a person. Anonymous visitors go
// to the sign-in page; expired sessions are told so.
func (s *Server) signedIn(h func(http.ResponseWriter, *http.Request, *viewer)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := s.viewer(r)
		switch {
		case err == nil:
			h(w, r, v)
		case errors.Is(err, errNoSession), errors.Is(err, registry.ErrExpired):
			s.clearSession(w)
			if wantsJSON(r) {
				msg := "Sign in first."
				if errors.Is(err, registry.ErrExpired) {
					msg = "Your session has expired. Sign in again."
				}
				writeProblem(w, http.StatusUnauthorized, msg)
				return
			}
			q := url.Values{}
			if errors.Is(err, registry.ErrExpired) {
				q.Set("expired", "1")
			}
			if r.Method == http.MethodGet {
				q.Set("next", r.URL.RequestURI())
			}
			http.Redirect(w, r, "/?"+q.Encode(), http.StatusSeeOther)
		default:
			s.failErr(w, r, err)
		}
	}
}

// withRole wraps a page handler that needs role.
func (s *Server) withRole(role registry.Role, h func(http.ResponseWriter, *http.Request, *viewer)) http.HandlerFunc {
	return s.signedIn(func(w http.ResponseWriter, r *http.Request, v *viewer) {
		if !v.has(role) {
			s.fail(w, r, http.StatusForbidden, "This page is for the "+role.Title()+" role, which your account does not have.")
			return
		}
		h(w, r, v)
	})
}

// startSession signs the browser in as personID with a fresh session (any
// session the browser had before is ended, so a planted cookie is useless).
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, personID string) error {
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		if err := s.reg.EndSession(r.Context(), c.Value); err != nil {
			return err
		}
	}
	token, err := s.reg.NewSession(r.Context(), personID, s.cfg.SessionTTL)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: token, Path: "/",
		MaxAge: int(s.cfg.SessionTTL.Seconds()), HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode,
	})
	return nil
}

func (s *Server) clearSession(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
}

// safeNext keeps only same-site relative paths for post-sign-in redirects.
func safeNext(next string) string {
	if next == "" || next[0] != '/' || (len(next) > 1 && (next[1] == '/' || next[1] == '\\')) {
		return "/"
	}
	return next
}

// consoles lists the role home pages a viewer may open.
func consoles(v *viewer) []web.Nav {
	var out []web.Nav
	for _, role := range v.roles {
		if role == registry.Citizen {
			continue
		}
		out = append(out, web.Nav{Href: "/" + string(role), Label: role.Title(), Note: roleDescriptions[role]})
	}
	return out
}

// render fills the common page fields and renders.
// v may be nil, in which case the session (if any) is looked up.
func (s *Server) render(w http.ResponseWriter, r *http.Request, v *viewer, status int, name string, p web.Page) {
	p.Path = r.URL.Path
	p.Demo = s.cfg.Demo
	if v == nil {
		v, _ = s.viewer(r)
	}
	if v != nil {
		p.Signed = true
		p.Name = v.person.DisplayName
		p.Nav = []web.Nav{{Href: "/", Label: "Home"}}
		if s.pay != nil {
			p.Nav = append(p.Nav, web.Nav{Href: "/wallet", Label: "Wallet"})
		}
		if s.health != nil {
			p.Nav = append(p.Nav, web.Nav{Href: "/health", Label: "Health"})
			if v.has(registry.Verifier) {
				p.Nav = append(p.Nav, web.Nav{Href: "/verify", Label: "Verify passes"})
			}
			if s.healthOfficer(v) != "" {
				p.Nav = append(p.Nav, web.Nav{Href: "/health/authority", Label: "Health authority"})
			}
		}
		if s.id != nil {
			p.Nav = append(p.Nav, web.Nav{Href: "/wallet/credentials", Label: "Credentials"})
		}
		if s.rw != nil {
			p.Nav = append(p.Nav, web.Nav{Href: "/wallet/rewards", Label: "Civic rewards"})
			if v.has(registry.Operator) {
				p.Nav = append(p.Nav, web.Nav{Href: "/rewards/manage", Label: "Rewards programme"})
			}
		}
		if s.ex != nil {
			p.Nav = append(p.Nav, web.Nav{Href: "/wallet/access", Label: "Who looked at my data"})
			if v.has(registry.DPA) {
				p.Nav = append(p.Nav, web.Nav{Href: "/dpa/exchange", Label: "Exchange audit"})
			}
			if mayReadPolicies(v) {
				p.Nav = append(p.Nav, web.Nav{Href: "/exchange/policies", Label: "Exchange policies"})
			}
		}
		for _, m := range v.memberships {
			switch {
			case m.Role == registry.Merchant && s.pay != nil:
				p.Nav = append(p.Nav, web.Nav{Href: "/pos/" + m.OrgID, Label: "Sell · " + m.OrgName})
			case m.Role == registry.Issuer && s.id != nil:
				p.Nav = append(p.Nav, web.Nav{Href: "/issue/" + m.OrgID, Label: "Issue · " + m.OrgName})
			case m.Role == registry.Verifier && s.id != nil:
				p.Nav = append(p.Nav, web.Nav{Href: "/check/" + m.OrgID, Label: "Check · " + m.OrgName})
			case m.Role == registry.Agency && s.ex != nil:
				p.Nav = append(p.Nav, web.Nav{Href: "/exchange/" + m.OrgID, Label: "Ask · " + m.OrgName})
			case m.Role == registry.Partner && s.rw != nil:
				p.Nav = append(p.Nav, web.Nav{Href: "/rewards/" + m.OrgID, Label: "Rewards · " + m.OrgName})
			}
		}
		p.Nav = append(p.Nav, consoles(v)...)
		p.Nav = append(p.Nav, web.Nav{Href: "/account", Label: "Account"})
		for i := range p.Nav {
			p.Nav[i].Current = p.Nav[i].Href == r.URL.Path
		}
	}
	if s.cfg.Demo {
		p.Personas = s.personas(r)
	}
	if err := s.pages.Render(w, status, name, p); err != nil {
		s.log.Error("render page", "page", name, "err", err)
		http.Error(w, "Something went wrong on our side.", http.StatusInternalServerError)
	}
}
