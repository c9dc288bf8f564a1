package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/civstack/civstack/internal/registry"
)

// The machine API: organisations' systems, authenticated with API tokens.

type principalKey struct{}

// principal is the organisation system behind an API request.
type principal struct {
	token *registry.APIToken
	org   *registry.Organisation
}

func principalFrom(ctx context.Context) *principal {
	p, _ := ctx.Value(principalKey{}).(*principal)
	return p
}

// metaRole is the Operation.Metadata key naming the role a token needs.
const metaRole = "civstack-role"

const maxAPIBody = 64 << 10

func (s *Server) apiRoutes(mux *http.ServeMux) {
	cfg := huma.DefaultConfig("civstack API", s.cfg.Version)
	cfg.CreateHooks = nil // no $schema links in bodies
	cfg.DocsPath = ""     // the hosted docs renderer loads scripts from a CDN
	cfg.Info.Description = "The machine API of a civstack node. Organisations' systems authenticate with an API token " +
		"(Authorization: Bearer cvs_…) scoped to one of the organisation's roles. Errors are RFC 9457 problem details."
	cfg.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"token": {Type: "http", Scheme: "bearer", Description: "An organisation API token, created on the organisation's page."},
	}
	cfg.Security = []map[string][]string{{"token": {}}}
	cfg.Transformers = append(cfg.Transformers, forPeople)
	api := humago.NewWithPrefix(mux, "/api/v1", cfg)
	api.UseMiddleware(s.apiAuth(api))
	apiBodies(api)

	op := func(id, method, path, summary string, role registry.Role, status int) huma.Operation {
		o := huma.Operation{OperationID: id, Method: method, Path: path, Summary: summary,
			MaxBodyBytes: maxAPIBody, DefaultStatus: status, Tags: []string{"registry"}}
		if role != "" {
			o.Metadata = map[string]any{metaRole: role}
		}
		return o
	}
	huma.Register(api, op("whoami", http.MethodGet, "/whoami", "Describe the calling token", "", 0), s.apiWhoami)
	huma.Register(api, op("list-organisations", http.MethodGet, "/organisations", "List organisations", registry.Operator, 0), s.apiListOrgs)
	huma.Register(api, op("create-organisation", http.MethodPost, "/organisations", "Create an organisation", registry.Operator, http.StatusCreated), s.apiCreateOrg)
	huma.Register(api, op("get-organisation", http.MethodGet, "/organisations/{id}", "Get an organisation", "", 0), s.apiGetOrg)
	huma.Register(api, op("list-members", http.MethodGet, "/organisations/{id}/members", "List an organisation's people and their roles", "", 0), s.apiMembers)
	huma.Register(api, op("grant-role", http.MethodPut, "/organisations/{id}/members/{person}/{role}", "Give a person a role in an organisation", registry.Operator, http.StatusNoContent), s.apiGrant)
	huma.Register(api, op("revoke-role", http.MethodDelete, "/organisations/{id}/members/{person}/{role}", "Take a role away (and the API tokens the person made and may no longer make)", registry.Operator, http.StatusNoContent), s.apiRevoke)
	huma.Register(api, op("list-tokens", http.MethodGet, "/organisations/{id}/tokens", "List an organisation's API tokens", "", 0), s.apiTokens)
	huma.Register(api, op("create-token", http.MethodPost, "/organisations/{id}/tokens", "Create an API token (its secret is returned once)", registry.Operator, http.StatusCreated), s.apiCreateToken)
	if s.ledger != nil {
		s.ledgerRoutes(api)
	}
	if s.pay != nil {
		s.paymentRoutes(api)
		s.topUpRoutes(api)
	}
	if s.ex != nil {
		s.exchangeAPIRoutes(api)
	}
	if s.rw != nil {
		s.rewardsAPIRoutes(api)
	}
	huma.Register(api, op("revoke-token", http.MethodDelete, "/organisations/{id}/tokens/{token}", "Revoke an API token", "", http.StatusNoContent), s.apiRevokeToken)
}

// forPeople rewrites the problems huma makes of requests that do not fit
// the schema. It drops the value huma echoes beside the location of each
// error (as in {"location":"body.declared_income", "value":52000}): an API
// body carries citizens' data, such as their ids and what a register holds
// about them, and civstack's errors say where and what is wrong without
// repeating the data. And its detail, "validation failed", says what
// failed, from the first error: the reader of a log line sees the reason.
func forPeople(_ huma.Context, _ string, v any) (any, error) {
	p, ok := v.(*huma.ErrorModel)
	if !ok {
		return v, nil
	}
	var first *huma.ErrorDetail
	n := 0
	for _, d := range p.Errors {
		if d != nil {
			d.Value = nil
			if first == nil {
				first = d
			}
			n++
		}
	}
	if p.Detail == "validation failed" && first != nil {
		p.Detail = "The request does not fit the API: " + first.Message
		if first.Location != "" {
			p.Detail += " (" + first.Location + ")"
		}
		if n > 1 {
			p.Detail += fmt.Sprintf(", and %d more", n-1)
		}
		p.Detail += "."
	}
	return v, nil
}

// apiAuth authenticates the bearer token of every registered operation and
// checks the operation's role. (huma serves /api/v1/openapi.json itself,
// outside this middleware: the API description is public.)
func (s *Server) apiAuth(api huma.API) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		secret, ok := strings.CutPrefix(ctx.Header("Authorization"), "Bearer ")
		if !ok {
			ctx.SetHeader("WWW-Authenticate", `Bearer realm="civstack"`)
			huma.WriteErr(api, ctx, http.StatusUnauthorized, "An API token is required: send Authorization: Bearer <token>.")
			return
		}
		t, org, err := s.reg.Authenticate(ctx.Context(), strings.TrimSpace(secret), s.cfg.Demo)
		if errors.Is(err, registry.ErrTokenExpired) {
			ctx.SetHeader("WWW-Authenticate", `Bearer realm="civstack", error="invalid_token", error_description="expired"`)
			huma.WriteErr(api, ctx, http.StatusUnauthorized, "The API token has expired: make a new one on the organisation's page.")
			return
		}
		if errors.Is(err, registry.ErrBadToken) {
			ctx.SetHeader("WWW-Authenticate", `Bearer realm="civstack", error="invalid_token"`)
			huma.WriteErr(api, ctx, http.StatusUnauthorized, "The API token is unknown or revoked.")
			return
		}
		if err != nil {
			s.log.Error("authenticate token", "err", err)
			huma.WriteErr(api, ctx, http.StatusServiceUnavailable, "Tokens cannot be checked right now.")
			return
		}
		if want, ok := ctx.Operation().Metadata[metaRole].(registry.Role); ok && t.Role != want {
			huma.WriteErr(api, ctx, http.StatusForbidden, "This operation needs a token with the "+want.Title()+" role; this token has "+t.Role.Title()+".")
			return
		}
		next(huma.WithValue(ctx, principalKey{}, &principal{token: t, org: org}))
	}
}

// apiError maps a domain error to a problem response.
// apiErrorWith is apiError for a domain's errors, mapped by status.
func (s *Server) apiErrorWith(err error, status func(error) (int, string)) error {
	code, msg := status(err)
	if code >= 500 {
		return s.apiError(err)
	}
	return huma.NewError(code, msg)
}

func (s *Server) apiError(err error) error {
	status, msg := classify(err)
	if status >= 500 {
		s.log.Error("api request failed", "err", err)
	}
	return huma.NewError(status, msg)
}

// OrganisationBody is an organisation as the API shows it.
type OrganisationBody struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Roles     []registry.Role `json:"roles" enum:"merchant,issuer,verifier,agency,dpa,operator"`
	CreatedAt time.Time       `json:"created_at"`
}

func orgBody(o *registry.Organisation) OrganisationBody {
	return OrganisationBody{ID: o.ID, Name: o.Name, Roles: o.Roles, CreatedAt: o.CreatedAt}
}

type whoamiOut struct {
	Body struct {
		Organisation OrganisationBody `json:"organisation"`
		Role         registry.Role    `json:"role"`
		TokenID      string           `json:"token_id"`
	}
}

func (s *Server) apiWhoami(ctx context.Context, _ *struct{}) (*whoamiOut, error) {
	p := principalFrom(ctx)
	out := &whoamiOut{}
	out.Body.Organisation, out.Body.Role, out.Body.TokenID = orgBody(p.org), p.token.Role, p.token.ID
	return out, nil
}

type orgListOut struct {
	Body struct {
		Organisations []OrganisationBody `json:"organisations"`
	}
}

func (s *Server) apiListOrgs(ctx context.Context, _ *struct{}) (*orgListOut, error) {
	orgs, err := s.organisations(ctx, "")
	if err != nil {
		return nil, s.apiError(err)
	}
	out := &orgListOut{}
	out.Body.Organisations = []OrganisationBody{}
	for _, o := range orgs {
		out.Body.Organisations = append(out.Body.Organisations, orgBody(o))
	}
	return out, nil
}

type createOrgIn struct {
	Body struct {
		Name  string          `json:"name" minLength:"1" maxLength:"120" doc:"Unique name"`
		Roles []registry.Role `json:"roles" minItems:"1" enum:"merchant,issuer,verifier,agency,dpa,operator"`
	}
}

type orgOut struct {
	Body OrganisationBody
}

func (s *Server) apiCreateOrg(ctx context.Context, in *createOrgIn) (*orgOut, error) {
	o, err := s.reg.CreateOrganisation(ctx, in.Body.Name, in.Body.Roles, false)
	if err != nil {
		return nil, s.apiError(err)
	}
	return &orgOut{Body: orgBody(o)}, nil
}

type orgPath struct {
	ID string `path:"id" maxLength:"64"`
}

// apiOrg loads the organisation in the path for a token that may see it:
// operators see any, other tokens only their own organisation.
func (s *Server) apiOrg(ctx context.Context, id string) (*registry.Organisation, error) {
	p := principalFrom(ctx)
	if p.token.Role != registry.Operator && p.org.ID != id {
		return nil, huma.Error404NotFound("There is no such organisation.")
	}
	o, err := s.organisation(ctx, id)
	if err != nil {
		return nil, s.apiError(err)
	}
	if o == nil {
		return nil, huma.Error404NotFound("There is no such organisation.")
	}
	return o, nil
}

func (s *Server) apiGetOrg(ctx context.Context, in *orgPath) (*orgOut, error) {
	o, err := s.apiOrg(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	return &orgOut{Body: orgBody(o)}, nil
}

// MemberBody is one person's role in an organisation.
type MemberBody struct {
	PersonID string        `json:"person_id"`
	Name     string        `json:"name"`
	Role     registry.Role `json:"role"`
	Since    time.Time     `json:"since"`
}

type membersOut struct {
	Body struct {
		Members []MemberBody `json:"members"`
	}
}

func (s *Server) apiMembers(ctx context.Context, in *orgPath) (*membersOut, error) {
	o, err := s.apiOrg(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	ms, err := s.reg.Members(ctx, o.ID)
	if err != nil {
		return nil, s.apiError(err)
	}
	out := &membersOut{}
	out.Body.Members = []MemberBody{}
	for _, m := range ms {
		out.Body.Members = append(out.Body.Members, MemberBody{PersonID: m.PersonID, Name: m.PersonName, Role: m.Role, Since: m.CreatedAt})
	}
	return out, nil
}

type memberPath struct {
	ID     string        `path:"id" maxLength:"64"`
	Person string        `path:"person" maxLength:"64"`
	Role   registry.Role `path:"role" enum:"merchant,issuer,verifier,agency,dpa,operator"`
}

func (s *Server) apiGrant(ctx context.Context, in *memberPath) (*struct{}, error) {
	o, err := s.apiOrg(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	if err := s.reg.Grant(ctx, in.Person, o.ID, in.Role); err != nil {
		return nil, s.apiError(err)
	}
	return nil, nil
}

// revokeOut says how many API tokens went with the role.
type revokeOut struct {
	TokensRevoked int `header:"Civstack-Tokens-Revoked" doc:"how many API tokens the person had made and may no longer make, revoked with the role"`
}

func (s *Server) apiRevoke(ctx context.Context, in *memberPath) (*revokeOut, error) {
	o, err := s.apiOrg(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	tokens, err := s.reg.Revoke(ctx, in.Person, o.ID, in.Role)
	if err != nil {
		return nil, s.apiError(err)
	}
	s.log.Info("role revoked", "org", o.ID, "role", string(in.Role), "tokens_revoked", tokens)
	return &revokeOut{TokensRevoked: tokens}, nil
}

// TokenBody describes an API token; the secret appears only on creation.
type TokenBody struct {
	ID         string        `json:"id"`
	Label      string        `json:"label"`
	Role       registry.Role `json:"role"`
	CreatedAt  time.Time     `json:"created_at"`
	LastUsedAt *time.Time    `json:"last_used_at,omitempty"`
	RevokedAt  *time.Time    `json:"revoked_at,omitempty"`
	ExpiresAt  *time.Time    `json:"expires_at,omitempty" doc:"When the token stops working; absent: it works until revoked."`
	Secret     string        `json:"token,omitempty" doc:"The token itself, returned only when it is created."`
}

func tokenBody(t *registry.APIToken) TokenBody {
	return TokenBody{ID: t.ID, Label: t.Label, Role: t.Role, CreatedAt: t.CreatedAt, LastUsedAt: t.LastUsedAt, RevokedAt: t.RevokedAt, ExpiresAt: t.ExpiresAt}
}

type tokensOut struct {
	Body struct {
		Tokens []TokenBody `json:"tokens"`
	}
}

func (s *Server) apiTokens(ctx context.Context, in *orgPath) (*tokensOut, error) {
	o, err := s.apiOrg(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	ts, err := s.reg.Tokens(ctx, o.ID)
	if err != nil {
		return nil, s.apiError(err)
	}
	out := &tokensOut{}
	out.Body.Tokens = []TokenBody{}
	for _, t := range ts {
		out.Body.Tokens = append(out.Body.Tokens, tokenBody(t))
	}
	return out, nil
}

type createTokenIn struct {
	ID   string `path:"id" maxLength:"64"`
	Body struct {
		Label     string        `json:"label" minLength:"1" maxLength:"80"`
		Role      registry.Role `json:"role" enum:"merchant,issuer,verifier,agency,dpa,operator"`
		ValidDays int           `json:"valid_days,omitempty" minimum:"0" maximum:"1830" doc:"how many days the token works (absent or 0: until revoked)"`
	}
}

type tokenOut struct {
	Body TokenBody
}

func (s *Server) apiCreateToken(ctx context.Context, in *createTokenIn) (*tokenOut, error) {
	o, err := s.apiOrg(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	secret, t, err := s.reg.CreateTokenOnce(ctx, o.ID, in.Body.Role, in.Body.Label, "", "", time.Duration(in.Body.ValidDays)*24*time.Hour)
	if err != nil {
		return nil, s.apiError(err)
	}
	b := tokenBody(t)
	b.Secret = secret
	return &tokenOut{Body: b}, nil
}

type tokenPath struct {
	ID    string `path:"id" maxLength:"64"`
	Token string `path:"token" maxLength:"64"`
}

func (s *Server) apiRevokeToken(ctx context.Context, in *tokenPath) (*struct{}, error) {
	o, err := s.apiOrg(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	if err := s.reg.RevokeToken(ctx, o.ID, in.Token); err != nil {
		return nil, s.apiError(err)
	}
	return nil, nil
}
