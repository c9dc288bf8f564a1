package server

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/web"
)

func (s *Server) operatorHome(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderOperator(w, r, v, http.StatusOK, web.Page{})
}

func (s *Server) renderOperator(w http.ResponseWriter, r *http.Request, v *viewer, status int, p web.Page) {
	orgs, err := s.organisations(r.Context(), "")
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	node, err := s.nodeFacts(r.Context())
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	p.Title = "Operator"
	p.Data = map[string]any{"Organisations": orgs, "Roles": registry.OrgRoles, "Node": node}
	s.render(w, r, v, status, "operator", p)
}

// nodeFacts is what an operator checks first about the node they look at:
// which build runs, on which database and schema, at which address.
type nodeFacts struct {
	Build     string
	Database  string
	Schema    int64 // the newest migration applied
	URL       string
	Zone      string
	LogOrigin string
	Demo      bool
}

func (s *Server) nodeFacts(ctx context.Context) (nodeFacts, error) {
	schema, err := s.db.SchemaVersion(ctx)
	if err != nil {
		return nodeFacts{}, err
	}
	f := nodeFacts{
		Build:    cmp.Or(s.cfg.Build, s.cfg.Version),
		Database: string(s.db.Dialect()),
		Schema:   schema,
		URL:      s.cfg.PublicURL.String(),
		Zone:     s.cfg.Zone.String(),
		Demo:     s.cfg.Demo,
	}
	if s.tlog != nil {
		f.LogOrigin = s.tlog.Origin()
	}
	return f, nil
}

// organisations lists the organisations this node shows: every one, or
// those holding role unless role is empty. A node not in demo mode never
// lists demo organisations beside real ones.
func (s *Server) organisations(ctx context.Context, role registry.Role) ([]*registry.Organisation, error) {
	orgs, err := s.reg.Organisations(ctx)
	if err != nil {
		return nil, err
	}
	shown := orgs[:0]
	for _, o := range orgs {
		if (role == "" || o.Has(role)) && (s.cfg.Demo || !o.Demo) {
			shown = append(shown, o)
		}
	}
	return shown, nil
}

// orgWith reports whether id is an organisation this node shows (see
// organisations) that holds role.
func (s *Server) orgWith(ctx context.Context, id string, role registry.Role) (bool, error) {
	o, err := s.organisation(ctx, id)
	return o != nil && o.Has(role), err
}

// organisation looks up the organisation a request names. It returns nil
// and no error when there is none with that id (a demo organisation outside
// demo mode is none), and the store's error otherwise: a database that
// cannot answer is not an unknown id.
func (s *Server) organisation(ctx context.Context, id string) (*registry.Organisation, error) {
	o, err := s.reg.Organisation(ctx, id)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case o.Demo && !s.cfg.Demo:
		return nil, nil
	}
	return o, nil
}

// citizen looks up the citizen an officer or an agency's system names. It
// returns nil and no error when no citizen has that id, and the store's
// error otherwise: a database that cannot answer is not an unknown id.
func (s *Server) citizen(ctx context.Context, id string) (*registry.Person, error) {
	p, err := s.reg.Person(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, nil
	}
	return p, err
}

func (s *Server) createOrganisation(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	var roles []registry.Role
	for _, name := range r.PostForm["role"] {
		role, err := registry.ParseRole(name)
		if err != nil {
			s.renderOperator(w, r, v, http.StatusBadRequest, web.Page{Error: sentence(err)})
			return
		}
		roles = append(roles, role)
	}
	o, err := s.reg.CreateOrganisation(r.Context(), r.PostForm.Get("name"), roles, false)
	if err != nil {
		status, msg := classify(err)
		s.renderOperator(w, r, v, status, web.Page{Error: msg})
		return
	}
	s.log.Info("organisation created", "org", o.ID)
	http.Redirect(w, r, "/orgs/"+o.ID+"?created=1", http.StatusSeeOther)
}

// orgFor loads the organisation in the path and checks the viewer may manage
// it: operators may manage any, members their own.
func (s *Server) orgFor(w http.ResponseWriter, r *http.Request, v *viewer) (*registry.Organisation, bool) {
	o, err := s.organisation(r.Context(), r.PathValue("id"))
	if o == nil {
		if err != nil {
			s.failErr(w, r, err)
		} else {
			s.fail(w, r, http.StatusNotFound, "There is no such organisation.")
		}
		return nil, false
	}
	if !v.has(registry.Operator) && !v.memberOf(o.ID) {
		s.fail(w, r, http.StatusForbidden, "Only this organisation's people and operators can see this page.")
		return nil, false
	}
	return o, true
}

func (s *Server) orgPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	o, ok := s.orgFor(w, r, v)
	if !ok {
		return
	}
	p := web.Page{}
	switch {
	case r.URL.Query().Get("created") == "1":
		p.Notice = "The organisation was created."
	case r.URL.Query().Get("granted") == "1":
		p.Notice = "The role was given."
	case r.URL.Query().Get("revoked") == "1":
		p.Notice = "Done."
	case r.URL.Query().Get("role_revoked") != "":
		p.Notice = "The role was taken away."
		switch n, _ := strconv.Atoi(r.URL.Query().Get("role_revoked")); {
		case n == 1:
			p.Notice += " The API token they had created for a role they no longer hold was revoked too: create a new one for the system that used it."
		case n > 1:
			p.Notice += " The " + strconv.Itoa(n) + " API tokens they had created for roles they no longer hold were revoked too: create new ones for the systems that used them."
		}
	}
	s.renderOrg(w, r, v, o, http.StatusOK, p, "")
}

func (s *Server) renderOrg(w http.ResponseWriter, r *http.Request, v *viewer, o *registry.Organisation, status int, p web.Page, newToken string) {
	members, err := s.reg.Members(r.Context(), o.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	tokens, err := s.reg.Tokens(r.Context(), o.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	p.Title = o.Name
	p.Data = map[string]any{"Org": o, "Members": members, "Tokens": tokens, "NewToken": newToken,
		"CanManage": v.has(registry.Operator), "TokenKey": "form-" + newNonce(), // a fresh key each time the form is shown
		"Now": s.now()}
	s.render(w, r, v, status, "org", p)
}

// mayScope reports whether v may create a token for role in o: operators for
// any of o's roles, members for the roles they hold there.
func mayScope(v *viewer, o *registry.Organisation, role registry.Role) bool {
	if v.has(registry.Operator) {
		return true
	}
	for _, m := range v.memberships {
		if m.OrgID == o.ID && m.Role == role {
			return true
		}
	}
	return false
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, v *viewer) {
	o, ok := s.orgFor(w, r, v)
	if !ok || !s.parseForm(w, r) {
		return
	}
	role, err := registry.ParseRole(r.PostForm.Get("role"))
	if err != nil {
		s.renderOrg(w, r, v, o, http.StatusBadRequest, web.Page{Error: sentence(err)}, "")
		return
	}
	if !mayScope(v, o, role) {
		s.renderOrg(w, r, v, o, http.StatusForbidden, web.Page{Error: "You can only create tokens for roles you hold in this organisation."}, "")
		return
	}
	life, ok := formDays(cmp.Or(r.PostForm.Get("valid_days"), "0"), registry.MaxTokenLife)
	if !ok {
		s.renderOrg(w, r, v, o, http.StatusBadRequest, web.Page{Error: "Choose how long the token works. A token works for at most " + strconv.Itoa(int(registry.MaxTokenLife.Hours()/24)) + " days."}, "")
		return
	}
	secret, t, err := s.reg.CreateTokenOnce(r.Context(), o.ID, role, r.PostForm.Get("label"), v.person.ID, r.PostForm.Get("key"), life)
	if errors.Is(err, registry.ErrMadeBefore) {
		s.renderOrg(w, r, v, o, http.StatusOK, web.Page{Notice: "This form was sent already: it made the token “" + t.Label + "”, whose secret was shown once, in the first answer. If you did not copy it, revoke that token below and create another."}, "")
		return
	}
	if err != nil {
		status, msg := classify(err)
		s.renderOrg(w, r, v, o, status, web.Page{Error: msg}, "")
		return
	}
	s.log.Info("api token created", "org", o.ID, "token", t.ID, "role", string(t.Role))
	s.renderOrg(w, r, v, o, http.StatusCreated, web.Page{Notice: "Token created."}, secret)
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, v *viewer) {
	o, ok := s.orgFor(w, r, v)
	if !ok {
		return
	}
	if err := s.reg.RevokeToken(r.Context(), o.ID, r.PathValue("token")); err != nil {
		s.failErr(w, r, err)
		return
	}
	s.log.Info("api token revoked", "org", o.ID, "token", r.PathValue("token"))
	http.Redirect(w, r, "/orgs/"+o.ID+"?revoked=1", http.StatusSeeOther)
}

func (s *Server) grantRole(w http.ResponseWriter, r *http.Request, v *viewer) {
	o, ok := s.orgFor(w, r, v)
	if !ok || !s.parseForm(w, r) {
		return
	}
	role, err := registry.ParseRole(r.PostForm.Get("role"))
	if err == nil {
		err = s.reg.Grant(r.Context(), strings.TrimSpace(r.PostForm.Get("person_id")), o.ID, role)
	}
	if err != nil {
		status, msg := classify(err)
		if status == http.StatusNotFound {
			msg = "No person has that account number."
		}
		s.renderOrg(w, r, v, o, status, web.Page{Error: msg}, "")
		return
	}
	s.log.Info("role granted", "org", o.ID, "role", string(role))
	http.Redirect(w, r, "/orgs/"+o.ID+"?granted=1", http.StatusSeeOther)
}

func (s *Server) revokeRole(w http.ResponseWriter, r *http.Request, v *viewer) {
	o, ok := s.orgFor(w, r, v)
	if !ok || !s.parseForm(w, r) {
		return
	}
	role, err := registry.ParseRole(r.PostForm.Get("role"))
	tokens := 0
	if err == nil {
		tokens, err = s.reg.Revoke(r.Context(), r.PostForm.Get("person_id"), o.ID, role)
	}
	if err != nil {
		status, msg := classify(err)
		s.renderOrg(w, r, v, o, status, web.Page{Error: msg}, "")
		return
	}
	s.log.Info("role revoked", "org", o.ID, "role", string(role), "tokens_revoked", tokens)
	http.Redirect(w, r, "/orgs/"+o.ID+"?role_revoked="+strconv.Itoa(tokens), http.StatusSeeOther)
}
