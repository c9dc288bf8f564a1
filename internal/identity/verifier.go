package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"

	"github.com/civstack/civstack/internal/credential"
	"github.com/civstack/civstack/internal/dcql"
	"github.com/civstack/civstack/internal/sdjwt"
	"github.com/civstack/civstack/internal/statuslist"
	"github.com/civstack/civstack/internal/store"
)

// Request states.
const (
	Pending  = "pending"
	Verified = "verified"
	Rejected = "rejected"
)

// Request is a verifier's OpenID4VP request and, once answered, what the
// verifier learnt.
type Request struct {
	ID       string
	OrgID    string
	Nonce    string
	Query    *dcql.Query
	State    string
	Result   *Result
	Reason   string
	Created  time.Time
	Expires  time.Time
	Answered time.Time
	// KeptUntil is when a verified request's Result and presentation are
	// erased (KeepPresentations after the answer); Erased says they have
	// been, and Result is then nil. Zero for other states.
	KeptUntil time.Time
	Erased    bool
	vpToken   string
}

// Result is what a verified presentation disclosed.
type Result struct {
	TypeID string         `json:"type"`
	Issuer string         `json:"issuer"`
	Claims map[string]any `json:"claims"`
}

// Shown lists the disclosed claims for display.
func (r *Result) Shown() []Claim {
	t := TypeByID(r.TypeID)
	if t == nil {
		return nil
	}
	return t.Flatten(r.Claims)
}

// CreateRequest makes a request for a credential of typeID disclosing the
// required claims and, if the citizen agrees, the optional ones. Claims
// outside the verifier's registration may be asked for, but wallets warn
// about them and refuse them by default.
func (s *Service) CreateRequest(ctx context.Context, v *Verifier, typeID string, required, optional []string, createdBy string) (*Request, error) {
	t := TypeByID(typeID)
	if t == nil {
		return nil, fmt.Errorf("%w: unknown credential type %q", ErrInvalid, typeID)
	}
	if len(required) == 0 {
		return nil, fmt.Errorf("%w: ask for at least one claim as required", ErrInvalid)
	}
	cq := dcql.CredentialQuery{ID: typeID, Format: credential.Type, Meta: &dcql.Meta{VCTValues: []string{t.VCT}}}
	var all, req []string
	for i, name := range append(append([]string{}, required...), optional...) {
		f, ok := t.Field(name)
		if !ok {
			return nil, fmt.Errorf("%w: %s has no claim %q", ErrInvalid, t.Name, name)
		}
		id := fmt.Sprintf("c%d", i)
		cq.Claims = append(cq.Claims, dcql.ClaimQuery{ID: id, Path: f.Path()})
		all = append(all, id)
		if i < len(required) {
			req = append(req, id)
		}
	}
	if len(optional) > 0 {
		cq.ClaimSets = [][]string{all, req}
	}
	q := &dcql.Query{Credentials: []dcql.CredentialQuery{cq}}
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	qj, _ := json.Marshal(q)
	now := s.now()
	r := &Request{ID: uuid.Must(uuid.NewRandomFromReader(s.rand)).String(), OrgID: v.OrgID, Nonce: s.random(24), Query: q, State: Pending,
		Created: now, Expires: now.Add(RequestLifetime)}
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO id_requests (id, verifier_org, nonce, query, state, vp_token, result, reason, created_by, created_at, expires_at, answered_at)
			VALUES ($1, $2, $3, $4, $5, '', '', '', $6, $7, $8, 0)`, r.ID, v.OrgID, r.Nonce, string(qj), Pending, createdBy, now.UnixMilli(), r.Expires.UnixMilli())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	return r, nil
}

// RequestURI is where the wallet fetches the signed request.
func (s *Service) RequestURI(v *Verifier, r *Request) string {
	return s.ClientID(v) + "/requests/" + r.ID
}

// Links are the request as an openid4vp:// link (for the QR code, scanned
// by a wallet on another device) and as a link to this node's wallet (on
// the same device).
func (s *Service) Links(v *Verifier, r *Request) (crossDevice, sameDevice string) {
	q := url.Values{"client_id": {s.ClientID(v)}, "request_uri": {s.RequestURI(v, r)}}.Encode()
	return "openid4vp://?" + q, s.base + "/wallet/present?" + q
}

// Request returns one of the verifier's requests.
func (s *Service) Request(ctx context.Context, orgID, id string) (*Request, error) {
	rs, err := s.requests(ctx, `WHERE verifier_org = $1 AND id = $2`, orgID, id)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("%w: no such request", ErrNotFound)
	}
	return rs[0], nil
}

// Requests lists the verifier's recent requests, newest first.
func (s *Service) Requests(ctx context.Context, orgID string) ([]*Request, error) {
	return s.requests(ctx, `WHERE verifier_org = $1 ORDER BY created_at DESC LIMIT 20`, orgID)
}

func (s *Service) requests(ctx context.Context, where string, args ...any) ([]*Request, error) {
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT id, verifier_org, nonce, query, state, vp_token, result, reason, created_at, expires_at, answered_at FROM id_requests `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("requests: %w", err)
	}
	defer rows.Close()
	now := s.now()
	var out []*Request
	for rows.Next() {
		r := &Request{}
		var q, result string
		var at, exp, ans int64
		if err := rows.Scan(&r.ID, &r.OrgID, &r.Nonce, &q, &r.State, &r.vpToken, &result, &r.Reason, &at, &exp, &ans); err != nil {
			return nil, err
		}
		if r.Query, err = dcql.Parse([]byte(q)); err != nil {
			return nil, fmt.Errorf("request %s: %w", r.ID, err)
		}
		if result != "" {
			r.Result = &Result{}
			if err := json.Unmarshal([]byte(result), r.Result); err != nil {
				return nil, err
			}
		}
		r.Created, r.Expires = time.UnixMilli(at).UTC(), time.UnixMilli(exp).UTC()
		if ans != 0 {
			r.Answered = time.UnixMilli(ans).UTC()
		}
		if r.State == Verified {
			// Past its time a presentation reads as erased, whether or
			// not ErasePresentations has reached it yet.
			r.KeptUntil = r.Answered.Add(s.keep)
			if r.Result == nil || !now.Before(r.KeptUntil) {
				r.Result, r.vpToken, r.Erased = nil, "", true
			}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Keep is how long verified presentations are kept after the answer.
func (s *Service) Keep() time.Duration { return s.keep }

// eraseBatch bounds the rows one transaction of ErasePresentations or
// EraseLapsedOffers erases, so that SQLite's write lock is never held
// long; keptBefore selects such a batch of presentations answered at or
// before $1 (by the partial index id_requests_kept).
const (
	eraseBatch = 500
	keptBefore = `SELECT id FROM id_requests WHERE vp_token <> '' AND answered_at <= $1 LIMIT 500`
)

// ErasePresentations erases what verified presentations answered at
// least Keep ago disclosed, and the presentations themselves: the
// requests keep their state, reason and times. It returns how many it
// erased. A node runs it every minute; until it has, such requests
// already read as erased.
func (s *Service) ErasePresentations(ctx context.Context) (int, error) {
	n, err := s.eraseBatches(ctx, `UPDATE id_requests SET vp_token = '', result = '' WHERE id IN (`+keptBefore+`)`, s.now().Add(-s.keep))
	if err != nil {
		return n, fmt.Errorf("erase presentations: %w", err)
	}
	return n, nil
}

// eraseBatches runs update, which erases at most eraseBatch rows older
// than $1, in transactions of their own until it erases fewer.
func (s *Service) eraseBatches(ctx context.Context, update string, cutoff time.Time) (int, error) {
	total := 0
	for {
		var n int64
		err := s.db.Tx(ctx, func(tx *store.Tx) error {
			res, err := tx.ExecContext(ctx, update, cutoff.UnixMilli())
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, err
		}
		total += int(n)
		if n < eraseBatch {
			return total, nil
		}
	}
}

// RequestObject is the signed request (JWT, typ oauth-authz-req+jwt) the
// wallet fetches from the request_uri: signed with the verifier's
// registered key, so the wallet can show who asks.
func (s *Service) RequestObject(ctx context.Context, v *Verifier, id string) (string, error) {
	r, err := s.Request(ctx, v.OrgID, id)
	if err != nil {
		return "", err
	}
	if r.State != Pending {
		return "", ErrAnswered
	}
	now := s.now()
	if !now.Before(r.Expires) {
		return "", ErrExpired
	}
	key, err := s.key(ctx, v.OrgID)
	if err != nil {
		return "", err
	}
	clientID := s.ClientID(v)
	claims := map[string]any{
		"iss": clientID, "aud": "https://self-issued.me/v2", "client_id": clientID,
		"response_type": "vp_token", "response_mode": "direct_post", "response_uri": clientID + "/response",
		"nonce": r.Nonce, "state": r.ID, "dcql_query": r.Query,
		"client_metadata": map[string]any{"vp_formats_supported": map[string]any{credential.Type: map[string]any{
			"sd-jwt_alg_values": []string{"ES256"}, "kb-jwt_alg_values": []string{"ES256"}}}},
		"iat": now.Unix(), "exp": r.Expires.Unix(),
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key.priv},
		(&jose.SignerOptions{}).WithType("oauth-authz-req+jwt").WithHeader("kid", key.kid))
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// Respond takes a wallet's direct_post answer to request state: a
// vp_token, or an error (the citizen declined). Each request is answered
// once; the answer, verified or not, is kept with the reason. A
// presentation that cannot be checked now (ErrCannotCheck) is not an
// answer: nothing is kept and the request still waits.
func (s *Service) Respond(ctx context.Context, v *Verifier, state, vpToken, walletError string) (*Request, error) {
	r, err := s.Request(ctx, v.OrgID, state)
	if err != nil {
		return nil, err
	}
	if r.State != Pending {
		return nil, ErrAnswered
	}
	now := s.now()
	if !now.Before(r.Expires) {
		return nil, ErrExpired
	}
	var verr error
	switch {
	case walletError == "access_denied":
		verr = errors.New("the citizen declined")
	case walletError != "":
		verr = fmt.Errorf("the wallet answered %q", clip(walletError, 60))
	case vpToken == "":
		verr = fmt.Errorf("%w: no vp_token", ErrIncomplete)
	default:
		r.Result, verr = s.verify(ctx, v, r, vpToken, now, true)
		if errors.Is(verr, ErrCannotCheck) {
			return nil, verr // not an answer: the request still waits for one
		}
	}
	r.State, r.Answered = Verified, now
	resultJSON := ""
	if verr != nil {
		r.State, r.Reason, r.Result = Rejected, reason(verr), nil
	} else {
		b, _ := json.Marshal(r.Result)
		resultJSON = string(b)
		r.KeptUntil = now.Add(s.keep)
	}
	var stored string
	if verr == nil {
		stored = vpToken // kept to re-check status; only what was disclosed
	}
	err = s.db.Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE id_requests SET state = $1, vp_token = $2, result = $3, reason = $4, answered_at = $5 WHERE id = $6 AND state = $7`,
			r.State, stored, resultJSON, r.Reason, now.UnixMilli(), r.ID, Pending)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrAnswered
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if verr != nil {
		return r, &Rejection{Reason: r.Reason, Err: verr}
	}
	return r, nil
}

// ErrRejected is a presentation the verifier refused (see Rejection).
var ErrRejected = errors.New("presentation rejected")

// Rejection says why a presentation was refused, for people (Reason) and
// for code (errors.Is on the cause).
type Rejection struct {
	Reason string
	Err    error
}

func (e *Rejection) Error() string   { return "presentation rejected: " + e.Reason }
func (e *Rejection) Unwrap() []error { return []error{ErrRejected, e.Err} }

// Recheck verifies a verified request's presentation again, with the
// issuer's current status list: a credential revoked since is rejected.
// When the check cannot be made (ErrCannotCheck: the issuer's key or
// status list cannot be read) the request is returned as it was, with
// that error.
func (s *Service) Recheck(ctx context.Context, v *Verifier, id string) (*Request, error) {
	r, err := s.Request(ctx, v.OrgID, id)
	if err != nil {
		return nil, err
	}
	if r.State != Verified {
		return r, nil
	}
	if r.Erased {
		return r, ErrErased
	}
	if _, verr := s.verify(ctx, v, r, r.vpToken, s.now(), false); verr != nil {
		if errors.Is(verr, ErrCannotCheck) {
			return r, verr // not checked: the result stands as it was
		}
		r.State, r.Reason, r.Result = Rejected, "On re-check: "+reason(verr), nil
		err := s.db.Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, `UPDATE id_requests SET state = $1, reason = $2, result = '', vp_token = '' WHERE id = $3`, r.State, r.Reason, r.ID)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return r, nil
}

// verify checks a vp_token against the request: for its credential query
// one SD-JWT VC with key binding to this request's nonce and this
// verifier, signed by a trusted issuer, not revoked in the cached status
// list, of an accepted vct and disclosing what the query needs.
func (s *Service) verify(ctx context.Context, v *Verifier, r *Request, vpToken string, now time.Time, fresh bool) (*Result, error) {
	vp, err := ParseVPToken(vpToken)
	if err != nil {
		return nil, err
	}
	if len(r.Query.Credentials) != 1 {
		return nil, fmt.Errorf("%w: one credential query per request", ErrIncomplete)
	}
	cq := r.Query.Credentials[0]
	ps := vp[cq.ID]
	if len(ps) != 1 || len(vp) != 1 {
		return nil, fmt.Errorf("%w: expected exactly one presentation for %q", ErrIncomplete, cq.ID)
	}
	issID, err := unverifiedIssuer(ps[0])
	if err != nil {
		return nil, err
	}
	iss, err := s.issuerByID(ctx, issID)
	if err != nil {
		return nil, unchecked("issuer", err)
	}
	key, err := s.PublicKey(ctx, iss.OrgID)
	if err != nil {
		return nil, unchecked("issuer's key", err)
	}
	o := sdjwt.Options{Now: now, RequireKeyBinding: true, Nonce: r.Nonce, Audience: s.ClientID(v)}
	if fresh {
		o.MaxKBAge = NonceLifetime
	}
	ver, err := credential.Verify(ps[0], key.Key, o, s.lists)
	if err != nil {
		return nil, err
	}
	if cq.Meta == nil || !slices.Contains(cq.Meta.VCTValues, ver.VCT) {
		return nil, fmt.Errorf("%w: a %q credential was presented", ErrIncomplete, ver.VCT)
	}
	if _, ok := dcql.Match(cq, ver.VCT, ver.Claims); !ok {
		return nil, fmt.Errorf("%w: a required claim was not disclosed", ErrIncomplete)
	}
	t := TypeByVCT(ver.VCT)
	if t == nil {
		return nil, fmt.Errorf("%w: unknown credential type %q", ErrIncomplete, ver.VCT)
	}
	return &Result{TypeID: t.ID, Issuer: iss.Name, Claims: ver.Claims}, nil
}

// ParseVPToken reads a vp_token: a JSON object from credential query ids
// to non-empty arrays of presentations (strings, for SD-JWT VCs).
func ParseVPToken(s string) (map[string][]string, error) {
	if len(s) > 256<<10 {
		return nil, fmt.Errorf("%w: vp_token is larger than 256 KiB", ErrIncomplete)
	}
	var vp map[string][]string
	if err := json.Unmarshal([]byte(s), &vp); err != nil || vp == nil {
		return nil, fmt.Errorf("%w: vp_token is not a JSON object of presentation arrays", ErrIncomplete)
	}
	for id, ps := range vp {
		if len(ps) == 0 {
			return nil, fmt.Errorf("%w: vp_token has no presentation for %q", ErrIncomplete, clip(id, 40))
		}
	}
	return vp, nil
}

// unverifiedIssuer reads iss from an SD-JWT's issuer JWT, to choose the
// key it must then verify with.
func unverifiedIssuer(s string) (string, error) {
	p, err := sdjwt.Parse(s)
	if err != nil {
		return "", err
	}
	parts := strings.Split(p.JWT, ".")
	if len(parts) != 3 {
		return "", sdjwt.ErrFormat
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", sdjwt.ErrFormat
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(raw, &c) != nil || c.Iss == "" {
		return "", fmt.Errorf("%w: no iss", ErrUntrusted)
	}
	return c.Iss, nil
}

// statusCache is the verifiers' copy of issuers' status lists: each list
// is fetched whole and kept for its ttl; a verifier never asks an issuer
// about one credential.
type statusCache struct {
	s       *Service
	entries map[string]cachedStatus
}

type cachedStatus struct {
	tok     *statuslist.Token
	fetched time.Time
}

// StatusFetches counts the status lists this node's verifiers downloaded
// (whole lists; never a question about one credential).
func (s *Service) StatusFetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// StatusList implements credential.StatusLists.
func (c *statusCache) StatusList(uri string) (*statuslist.Token, error) {
	s := c.s
	now := s.now()
	s.mu.Lock()
	e, ok := c.entries[uri]
	s.mu.Unlock()
	if ok && now.Sub(e.fetched) < max(e.tok.TTL, time.Second) && (e.tok.Expires.IsZero() || now.Before(e.tok.Expires)) {
		return e.tok, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iss, err := s.issuerByID(ctx, strings.TrimSuffix(uri, "/status"))
	if errors.Is(err, ErrUntrusted) || (err == nil && s.StatusURI(iss) != uri) {
		return nil, fmt.Errorf("%w: status list %s", ErrUntrusted, uri)
	}
	if err != nil {
		return nil, unchecked("status list's issuer", err)
	}
	key, err := s.PublicKey(ctx, iss.OrgID)
	if err != nil {
		return nil, unchecked("status list's key", err)
	}
	hc, err := s.client()
	if err != nil {
		return nil, unchecked("status list", err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	req.Header.Set("Accept", "application/statuslist+jwt")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, unchecked("status list", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: the status list %s answered %s", ErrCannotCheck, uri, resp.Status)
	}
	body, err := readAll(resp, 1<<20)
	if err != nil {
		return nil, unchecked("status list", err)
	}
	tok, err := statuslist.Parse(string(body), uri, key.Key, now)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	c.entries[uri] = cachedStatus{tok, now}
	s.fetches++
	s.mu.Unlock()
	return tok, nil
}

// sentence makes an error readable: the first letter up, a full stop.
func sentence(err error) string {
	m := err.Error()
	m = strings.TrimPrefix(m, "credential: ")
	m = strings.TrimPrefix(m, "sd-jwt: ")
	if m == "" {
		return m
	}
	m = strings.ToUpper(m[:1]) + m[1:]
	if !strings.HasSuffix(m, ".") {
		m += "."
	}
	return m
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// reason names a verification failure for people.
func reason(err error) string {
	for _, c := range []struct {
		err error
		msg string
	}{
		{credential.ErrRevoked, "The credential has been revoked by its issuer."},
		{credential.ErrSuspended, "The credential is suspended."},
		{sdjwt.ErrExpired, "The credential has expired."},
		{sdjwt.ErrNonce, "The key binding is for another request: a replayed presentation."},
		{sdjwt.ErrAudience, "The key binding is for another verifier."},
		{sdjwt.ErrSignature, "The issuer's signature does not verify."},
		{statuslist.ErrSignature, "The status list's signature does not verify."},
	} {
		if errors.Is(err, c.err) {
			return c.msg
		}
	}
	return sentence(err)
}
