package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"

	"github.com/civstack/civstack/internal/credential"
	"github.com/civstack/civstack/internal/dcql"
	"github.com/civstack/civstack/internal/issuance"
	"github.com/civstack/civstack/internal/sdjwt"
	"github.com/civstack/civstack/internal/store"
)

// ErrRefused is an issuer's or verifier's refusal, with its description.
var ErrRefused = errors.New("refused")

// refusal is an issuer's or verifier's error answer: its HTTP status
// and description. It is ErrRefused.
type refusal struct {
	status int
	msg    string
}

func (e *refusal) Error() string        { return ErrRefused.Error() + ": " + e.msg }
func (e *refusal) Is(target error) bool { return target == ErrRefused }

// The wallet side. The node keeps each citizen's credentials and holder
// keys sealed at rest; every credential of a batch has its own key and
// salts and is presented once.

type held struct {
	Credential string `json:"credential"`
	Key        []byte `json:"key"` // the holder's EC private key (SEC 1 DER)
}

// call makes one HTTP request to an issuer or verifier on this node and
// decodes a JSON answer into out (or returns the body when out is nil).
func (s *Service) call(ctx context.Context, method, target string, body io.Reader, header http.Header, out any) ([]byte, error) {
	if !strings.HasPrefix(target, s.base+"/") {
		return nil, fmt.Errorf("%w: this wallet only talks to issuers and verifiers registered on %s, not %s", ErrNotAllowed, s.base, clip(target, 80))
	}
	hc, err := s.client()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := readAll(resp, 1<<20)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
			Detail      string `json:"detail"`
		}
		_ = json.Unmarshal(b, &e)
		msg := e.Description
		if msg == "" {
			msg = e.Detail
		}
		if msg == "" {
			msg = e.Error
		}
		if msg == "" {
			msg = resp.Status
		}
		return nil, &refusal{status: resp.StatusCode, msg: msg}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("%s answered with something that is not the expected JSON: %v", clip(target, 80), err)
		}
	}
	return b, nil
}

func readAll(resp *http.Response, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("the answer is larger than %d bytes", limit)
	}
	return b, nil
}

// wellKnown inserts /.well-known/name between an identifier's host and
// path (RFC 8414 style, as OpenID4VCI and SD-JWT VC do).
func wellKnown(id, name string) (string, error) {
	u, err := url.Parse(id)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("%w: %q is not an issuer identifier", ErrInvalid, id)
	}
	u.Path = "/.well-known/" + name + strings.TrimRight(u.Path, "/")
	return u.String(), nil
}

// AcceptOffer takes a credential offer link and its transaction code
// through the whole pre-authorized flow: metadata, token, nonce, a batch
// of WalletBatch credentials each bound to a fresh holder key, their
// verification against the issuer's published key, and storage.
// It returns how many credentials the wallet now holds from the offer.
func (s *Service) AcceptOffer(ctx context.Context, personID, link, txCode string) (int, error) {
	link = strings.TrimSpace(link)
	if link == "" {
		return 0, fmt.Errorf("%w: paste the offer's link (openid-credential-offer://…), or scan its QR code", ErrInvalid)
	}
	offer, err := issuance.ParseOffer(link)
	if err != nil {
		return 0, fmt.Errorf("%w: this is not a credential offer this wallet can take: %s", ErrInvalid,
			strings.TrimPrefix(err.Error(), issuance.ErrInvalidRequest.Error()+": "))
	}
	g := offer.Grants.PreAuthorized
	if g == nil {
		return 0, fmt.Errorf("%w: this wallet takes pre-authorized offers only", ErrInvalid)
	}
	txCode = strings.TrimSpace(txCode)
	if g.TxCode != nil && txCode == "" {
		return 0, fmt.Errorf("%w: the offer needs the code the issuer gave you", ErrInvalid)
	}
	issuerID := offer.CredentialIssuer
	metaURL, err := wellKnown(issuerID, "openid-credential-issuer")
	if err != nil {
		return 0, err
	}
	var meta struct {
		CredentialIssuer string         `json:"credential_issuer"`
		CredentialURL    string         `json:"credential_endpoint"`
		NonceURL         string         `json:"nonce_endpoint"`
		Configs          map[string]any `json:"credential_configurations_supported"`
		Batch            struct {
			Size int `json:"batch_size"`
		} `json:"batch_credential_issuance"`
	}
	if _, err := s.call(ctx, http.MethodGet, metaURL, nil, nil, &meta); err != nil {
		return 0, fmt.Errorf("issuer metadata: %w", err)
	}
	if meta.CredentialIssuer != issuerID {
		return 0, fmt.Errorf("%w: the metadata is for %q, not %q", ErrInvalid, meta.CredentialIssuer, issuerID)
	}
	config := offer.CredentialConfigurationIDs[0]
	if _, ok := meta.Configs[config]; !ok {
		return 0, fmt.Errorf("%w: the issuer does not offer %q", ErrInvalid, config)
	}
	asURL, _ := wellKnown(issuerID, "oauth-authorization-server")
	var as struct {
		TokenURL string `json:"token_endpoint"`
	}
	if _, err := s.call(ctx, http.MethodGet, asURL, nil, nil, &as); err != nil {
		return 0, fmt.Errorf("issuer metadata: %w", err)
	}
	form := url.Values{"grant_type": {issuance.PreAuthorizedGrant}, "pre-authorized_code": {g.Code}}
	if g.TxCode != nil {
		form.Set("tx_code", txCode)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if _, err := s.call(ctx, http.MethodPost, as.TokenURL, strings.NewReader(form.Encode()), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, &tok); err != nil {
		return 0, fmt.Errorf("the issuer did not accept the offer: %w", err)
	}
	var nonce struct {
		CNonce string `json:"c_nonce"`
	}
	if _, err := s.call(ctx, http.MethodPost, meta.NonceURL, nil, nil, &nonce); err != nil {
		return 0, fmt.Errorf("nonce: %w", err)
	}
	n := WalletBatch
	if meta.Batch.Size < n {
		n = max(meta.Batch.Size, 1)
	}
	keys := make([]*ecdsa.PrivateKey, n)
	proofs := make([]string, n)
	now := s.now()
	for i := range keys {
		if keys[i], err = ecdsa.GenerateKey(elliptic.P256(), s.rand); err != nil {
			return 0, err
		}
		if proofs[i], err = issuance.Proof(keys[i], jose.ES256, issuerID, nonce.CNonce, now); err != nil {
			return 0, err
		}
	}
	body, _ := json.Marshal(map[string]any{"credential_configuration_id": config, "proofs": map[string][]string{"jwt": proofs}})
	var creds struct {
		Credentials []struct {
			Credential string `json:"credential"`
		} `json:"credentials"`
	}
	if _, err := s.call(ctx, http.MethodPost, meta.CredentialURL, strings.NewReader(string(body)),
		http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + tok.AccessToken}}, &creds); err != nil {
		return 0, fmt.Errorf("credential request: %w", err)
	}
	if len(creds.Credentials) != n {
		return 0, fmt.Errorf("%w: asked for %d credentials, got %d", ErrInvalid, n, len(creds.Credentials))
	}
	issKey, err := s.issuerKey(ctx, issuerID)
	if err != nil {
		return 0, err
	}
	batch := uuid.Must(uuid.NewRandomFromReader(s.rand)).String()
	type row struct {
		id, vct string
		sealed  []byte
		exp     int64
	}
	var rows []row
	for i, c := range creds.Credentials {
		res, err := sdjwt.Verify(c.Credential, issKey, sdjwt.Options{Now: now})
		if err != nil {
			return 0, fmt.Errorf("credential %d does not verify: %w", i+1, err)
		}
		if res.Type != credential.Type || res.Claims["iss"] != issuerID {
			return 0, fmt.Errorf("%w: credential %d is not a %s from %s", ErrInvalid, i+1, credential.Type, issuerID)
		}
		if !boundTo(res.Claims, &keys[i].PublicKey) {
			return 0, fmt.Errorf("%w: credential %d is not bound to the key its proof showed", ErrInvalid, i+1)
		}
		vct, _ := res.Claims["vct"].(string)
		exp, _ := res.Claims["exp"].(float64)
		der, err := x509.MarshalECPrivateKey(keys[i])
		if err != nil {
			return 0, err
		}
		id := uuid.Must(uuid.NewRandomFromReader(s.rand)).String()
		plain, _ := json.Marshal(held{Credential: c.Credential, Key: der})
		sealed, err := s.seal.Seal(plain, "wallet:"+personID+":"+id)
		if err != nil {
			return 0, err
		}
		rows = append(rows, row{id, vct, sealed, int64(exp) * 1000})
	}
	err = s.db.Tx(ctx, func(tx *store.Tx) error {
		for _, r := range rows {
			if _, err := tx.ExecContext(ctx, `INSERT INTO id_wallet (id, person_id, batch_id, issuer, vct, sealed, received_at, expires_at, used_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0)`, r.id, personID, batch, issuerID, r.vct, r.sealed, now.UnixMilli(), r.exp); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("wallet: %w", err)
	}
	return len(rows), nil
}

// issuerKey fetches an issuer's key from its SD-JWT VC issuer metadata.
func (s *Service) issuerKey(ctx context.Context, issuerID string) (any, error) {
	u, err := wellKnown(issuerID, "jwt-vc-issuer")
	if err != nil {
		return nil, err
	}
	var meta struct {
		Issuer string             `json:"issuer"`
		JWKS   jose.JSONWebKeySet `json:"jwks"`
	}
	if _, err := s.call(ctx, http.MethodGet, u, nil, nil, &meta); err != nil {
		return nil, fmt.Errorf("issuer key: %w", err)
	}
	if meta.Issuer != issuerID || len(meta.JWKS.Keys) == 0 {
		return nil, fmt.Errorf("%w: the issuer metadata names %q and %d keys", ErrInvalid, meta.Issuer, len(meta.JWKS.Keys))
	}
	return meta.JWKS.Keys[0].Key, nil
}

func boundTo(claims map[string]any, pub *ecdsa.PublicKey) bool {
	cnf, _ := claims["cnf"].(map[string]any)
	raw, err := json.Marshal(cnf["jwk"])
	if err != nil {
		return false
	}
	var k jose.JSONWebKey
	if k.UnmarshalJSON(raw) != nil {
		return false
	}
	p, ok := k.Key.(*ecdsa.PublicKey)
	return ok && p.Equal(pub)
}

// Held is one credential in a wallet: a batch of single-use copies.
type Held struct {
	BatchID, IssuerID, Issuer string
	Type                      *Type
	Claims                    []Claim
	claims                    map[string]any
	Received, Expires         time.Time
	Left, Total               int
	Revoked                   bool
	Expired                   bool // past its validity: no verifier accepts it
	// Unchecked: the issuer's status list could not be read just now, so
	// whether it is revoked is not known (a verifier checks for itself).
	Unchecked bool
	// Replaced: another credential of the same type from the same issuer
	// is the one that counts (the newest with copies left, which answers
	// verifiers; or, when none has, the newest), so this one is kept for
	// the record and needs nothing done.
	Replaced bool
	// KindLeft is the copies left of every credential of this type from
	// this issuer that a verifier could still be shown (not revoked, not
	// expired): the wallet uses them newest first.
	KindLeft int
}

// Credentials lists the citizen's credentials with their claims, and
// whether the issuer's (cached) status list says they are revoked.
func (s *Service) Credentials(ctx context.Context, personID string) ([]*Held, error) {
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT id, batch_id, issuer, vct, sealed, received_at, expires_at, used_at FROM id_wallet
		WHERE person_id = $1 ORDER BY received_at, batch_id, id`, personID)
	if err != nil {
		return nil, fmt.Errorf("wallet: %w", err)
	}
	type rec struct {
		id, batch, issuer, vct string
		sealed                 []byte
		at, exp, used          int64
	}
	var recs []rec
	for rows.Next() {
		var r rec
		if err := rows.Scan(&r.id, &r.batch, &r.issuer, &r.vct, &r.sealed, &r.at, &r.exp, &r.used); err != nil {
			rows.Close()
			return nil, err
		}
		recs = append(recs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []*Held
	byBatch := map[string]*Held{}
	for _, r := range recs {
		h := byBatch[r.batch]
		if h == nil {
			h = &Held{BatchID: r.batch, IssuerID: r.issuer, Type: TypeByVCT(r.vct), Received: time.UnixMilli(r.at).UTC(), Expires: time.UnixMilli(r.exp).UTC()}
			h.Expired = !s.now().Before(h.Expires)
			if h.Type == nil {
				continue
			}
			c, err := s.open(personID, r.id, r.sealed)
			if err != nil {
				return nil, err
			}
			iss, err := s.issuerByID(ctx, r.issuer)
			if err != nil {
				return nil, err
			}
			h.Issuer = iss.Name
			key, err := s.PublicKey(ctx, iss.OrgID)
			if err != nil {
				return nil, err
			}
			res, err := sdjwt.Verify(c.Credential, key.Key, sdjwt.Options{})
			if err != nil {
				return nil, fmt.Errorf("wallet: a stored credential does not verify: %w", err)
			}
			h.claims, h.Claims = res.Claims, h.Type.Flatten(res.Claims)
			switch _, err := credential.Verify(c.Credential, key.Key, sdjwt.Options{}, s.lists); {
			case errors.Is(err, credential.ErrRevoked):
				h.Revoked = true
			case errors.Is(err, ErrCannotCheck):
				h.Unchecked = true
			}
			byBatch[r.batch] = h
			out = append(out, h)
		}
		h.Total++
		if r.used == 0 {
			h.Left++
		}
	}
	// The list is oldest first. Of each kind the newest usable one counts,
	// or the newest if none is usable; the others are kept for the record.
	type kind struct {
		t   *Type
		iss string
	}
	current, left := map[kind]*Held{}, map[kind]int{}
	for _, h := range out {
		k := kind{h.Type, h.IssuerID}
		if h.usable() {
			left[k] += h.Left
		}
		if c := current[k]; c == nil || h.usable() || !c.usable() {
			current[k] = h
		}
	}
	for _, h := range out {
		k := kind{h.Type, h.IssuerID}
		h.Replaced, h.KindLeft = current[k] != h, left[k]
	}
	return out, nil
}

// RenewCopiesBelow is how few copies left make a credential one to renew:
// the wallet warns from here on.
const RenewCopiesBelow = 3

// RunningLow reports whether the wallet should say to ask the issuer for a
// new one because copies run out (not for one revoked, expired or
// replaced, which the page says otherwise).
func (h *Held) RunningLow() bool {
	return !h.Revoked && !h.Expired && !h.Replaced && h.KindLeft < RenewCopiesBelow
}

// usable reports whether a verifier could be shown a copy of it.
func (h *Held) usable() bool { return !h.Revoked && !h.Expired && h.Left > 0 }

// ToRenew counts the kinds of credential (a type from an issuer) with
// fewer than RenewCopiesBelow copies left in those not expired, for
// the home page. It reads only the wallet's rows: no credential is opened
// or verified, and revocation is left to the Credentials page.
func (s *Service) ToRenew(ctx context.Context, personID string) (int, error) {
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT issuer, vct, MAX(expires_at),
		SUM(CASE WHEN used_at = 0 THEN 1 ELSE 0 END) FROM id_wallet WHERE person_id = $1 GROUP BY batch_id, issuer, vct`, personID)
	if err != nil {
		return 0, fmt.Errorf("wallet: %w", err)
	}
	defer rows.Close()
	now := s.now().UnixMilli()
	left := map[[2]string]int64{}
	for rows.Next() {
		var k [2]string
		var exp, n int64
		if err := rows.Scan(&k[0], &k[1], &exp, &n); err != nil {
			return 0, fmt.Errorf("wallet: %w", err)
		}
		if TypeByVCT(k[1]) == nil {
			continue
		}
		if exp <= now {
			n = 0
		}
		left[k] += n
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("wallet: %w", err)
	}
	n := 0
	for _, l := range left {
		if l < RenewCopiesBelow {
			n++
		}
	}
	return n, nil
}

func (s *Service) open(personID, id string, sealed []byte) (*held, error) {
	plain, err := s.seal.Open(sealed, "wallet:"+personID+":"+id)
	if err != nil {
		return nil, err
	}
	var h held
	if err := json.Unmarshal(plain, &h); err != nil {
		return nil, fmt.Errorf("wallet: %w", err)
	}
	return &h, nil
}

// Consent is a verifier's request as the wallet shows it.
type Consent struct {
	Verifier *Verifier
	ClientID string
	Type     *Type
	Held     *Held // the credential that answers, nil when none does
	Items    []ConsentItem
	OverAsk  bool
	Expires  time.Time

	nonce, state, responseURI string
	query                     dcql.CredentialQuery
}

// ConsentItem is one requested claim.
type ConsentItem struct {
	Name, Label, Value string
	Required           bool // in every claim set the verifier accepts
	Registered         bool // the verifier registered it
	Checked            bool // the wallet's default: registered claims only
	Available          bool // the credential has it
}

// OpenRequest reads a verifier's request link (openid4vp:// or this
// node's /wallet/present link): fetches the signed request from its
// request_uri, checks the signature with the verifier's registered key,
// and matches its DCQL query to the citizen's credentials.
func (s *Service) OpenRequest(ctx context.Context, personID, link string) (*Consent, error) {
	clientID, requestURI, err := ParseRequestLink(link)
	if err != nil {
		return nil, err
	}
	v, err := s.verifierByClientID(ctx, clientID)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(requestURI, clientID+"/requests/") {
		return nil, fmt.Errorf("%w: the request_uri is not the verifier's", ErrInvalid)
	}
	b, err := s.call(ctx, http.MethodGet, requestURI, nil, http.Header{"Accept": {"application/oauth-authz-req+jwt"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("the verifier's request: %w", err)
	}
	jws, err := jose.ParseSignedCompact(string(b), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return nil, fmt.Errorf("%w: the request is not a signed JWT", ErrInvalid)
	}
	if typ, _ := jws.Signatures[0].Header.ExtraHeaders[jose.HeaderType].(string); typ != "oauth-authz-req+jwt" {
		return nil, fmt.Errorf("%w: the request's typ is %q", ErrInvalid, typ)
	}
	key, err := s.PublicKey(ctx, v.OrgID)
	if err != nil {
		return nil, err
	}
	raw, err := jws.Verify(key.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: the request is not signed by %s", ErrInvalid, v.Name)
	}
	var ro struct {
		ClientID     string          `json:"client_id"`
		ResponseType string          `json:"response_type"`
		ResponseMode string          `json:"response_mode"`
		ResponseURI  string          `json:"response_uri"`
		Nonce        string          `json:"nonce"`
		State        string          `json:"state"`
		Exp          int64           `json:"exp"`
		DCQL         json.RawMessage `json:"dcql_query"`
	}
	if err := json.Unmarshal(raw, &ro); err != nil {
		return nil, fmt.Errorf("%w: the request's claims: %v", ErrInvalid, err)
	}
	switch {
	case ro.ClientID != clientID:
		return nil, fmt.Errorf("%w: the signed request is for another client_id", ErrInvalid)
	case ro.ResponseType != "vp_token" || ro.ResponseMode != "direct_post":
		return nil, fmt.Errorf("%w: only vp_token by direct_post is supported", ErrInvalid)
	case ro.ResponseURI != clientID+"/response":
		return nil, fmt.Errorf("%w: the response_uri is not the verifier's", ErrInvalid)
	case ro.Nonce == "" || ro.State == "":
		return nil, fmt.Errorf("%w: the request has no nonce or state", ErrInvalid)
	case !s.now().Before(time.Unix(ro.Exp, 0)):
		return nil, ErrExpired
	}
	query, err := dcql.Parse(ro.DCQL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(query.Credentials) != 1 {
		return nil, fmt.Errorf("%w: this wallet answers one credential per request", ErrInvalid)
	}
	cq := query.Credentials[0]
	if cq.Format != credential.Type || cq.Meta == nil || len(cq.Meta.VCTValues) == 0 {
		return nil, fmt.Errorf("%w: this wallet holds %s credentials only", ErrInvalid, credential.Type)
	}
	c := &Consent{Verifier: v, ClientID: clientID, Expires: time.Unix(ro.Exp, 0).UTC(), nonce: ro.Nonce, state: ro.State, responseURI: ro.ResponseURI, query: cq}
	for _, vct := range cq.Meta.VCTValues {
		if c.Type = TypeByVCT(vct); c.Type != nil {
			break
		}
	}
	if c.Type == nil {
		return nil, fmt.Errorf("%w: the verifier asks for a credential type this wallet does not know", ErrNoCredential)
	}
	helds, err := s.Credentials(ctx, personID)
	if err != nil {
		return nil, err
	}
	for _, h := range helds {
		if h.Type == c.Type && h.Left > 0 && !h.Revoked && !h.Expired {
			c.Held = h // the newest usable one wins
		}
	}
	required := requiredClaims(cq)
	for _, cl := range cq.Claims {
		name, ok := PathName(cl.Path)
		if !ok {
			return nil, fmt.Errorf("%w: unsupported claims path", ErrInvalid)
		}
		it := ConsentItem{Name: name, Label: c.Type.Label(name), Required: required[cl.ID], Registered: v.Registered(c.Type.ID, name)}
		it.Checked = it.Registered
		if c.Held != nil {
			if val, ok := lookup(c.Held.claims, name); ok {
				it.Available, it.Value = true, display(val)
			}
		}
		if !it.Registered {
			c.OverAsk = true
		}
		c.Items = append(c.Items, it)
	}
	return c, nil
}

// ParseRequestLink reads an OpenID4VP request link (openid4vp://?…, or
// any https link with the same query, such as this node's /wallet/present
// link) by reference: client_id and request_uri. Requests by value are
// refused, as they are unsigned.
func ParseRequestLink(link string) (clientID, requestURI string, err error) {
	link = strings.TrimSpace(link)
	if len(link) > 4096 {
		return "", "", fmt.Errorf("%w: the request link is longer than 4096 characters", ErrInvalid)
	}
	u, err := url.Parse(link)
	if err != nil {
		return "", "", fmt.Errorf("%w: the request link does not parse", ErrInvalid)
	}
	if u.Scheme != "openid4vp" && u.Scheme != "https" && u.Scheme != "http" {
		return "", "", fmt.Errorf("%w: this is not an OpenID4VP request link (one starts with openid4vp:// or https://)", ErrInvalid)
	}
	q := u.Query()
	if q.Get("request") != "" || q.Get("dcql_query") != "" {
		return "", "", fmt.Errorf("%w: unsigned requests are refused: a verifier must sign its request", ErrInvalid)
	}
	clientID, requestURI = q.Get("client_id"), q.Get("request_uri")
	if clientID == "" || requestURI == "" {
		return "", "", fmt.Errorf("%w: the link needs client_id and request_uri", ErrInvalid)
	}
	if ru, err := url.Parse(requestURI); err != nil || ru.Host == "" || ru.Scheme != "https" && ru.Scheme != "http" {
		return "", "", fmt.Errorf("%w: request_uri is not a URL", ErrInvalid)
	}
	return clientID, requestURI, nil
}

// requiredClaims: claims in every claim set (all claims without sets).
func requiredClaims(cq dcql.CredentialQuery) map[string]bool {
	out := map[string]bool{}
	if len(cq.ClaimSets) == 0 {
		for _, c := range cq.Claims {
			out[c.ID] = true
		}
		return out
	}
	for _, c := range cq.Claims {
		in := true
		for _, set := range cq.ClaimSets {
			in = in && slices.Contains(set, c.ID)
		}
		out[c.ID] = in
	}
	return out
}

// Outcome is what became of an answer.
type Outcome struct {
	Shared    bool
	Presented []string
	Reason    string
	// Unchecked: the verifier could not check the presentation at all
	// (it recorded nothing, and the request still waits for an answer).
	Unchecked bool
}

// Answer answers a request: declined (the verifier is told
// access_denied), or approved with the chosen claims, presented from an
// unused copy of the credential with a key binding to this request.
// Either way the citizen's presentation log gets a row.
func (s *Service) Answer(ctx context.Context, personID, link string, approve bool, chosen []string) (*Outcome, error) {
	c, err := s.OpenRequest(ctx, personID, link)
	if err != nil {
		return nil, err
	}
	var requested, presented []string
	var paths []sdjwt.Path
	for _, it := range c.Items {
		requested = append(requested, it.Name)
		if approve && it.Available && slices.Contains(chosen, it.Name) {
			presented = append(presented, it.Name)
			f, _ := c.Type.Field(it.Name)
			paths = append(paths, f.Path())
		}
	}
	out := &Outcome{}
	form := url.Values{"state": {c.state}}
	var copyID string // the credential copy presented
	switch {
	case !approve:
		form.Set("error", "access_denied")
		out.Reason = "You declined."
	case c.Held == nil:
		return nil, ErrNoCredential
	case len(presented) == 0:
		return nil, fmt.Errorf("%w: choose at least one claim to share, or decline", ErrInvalid)
	default:
		var vp string
		if vp, copyID, err = s.present(ctx, personID, c, paths); err != nil {
			return nil, err
		}
		form.Set("vp_token", vp)
	}
	_, err = s.call(ctx, http.MethodPost, c.responseURI, strings.NewReader(form.Encode()), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, nil)
	outcome := "declined"
	var rf *refusal
	switch {
	case approve && err == nil:
		outcome, out.Shared, out.Presented = "shared", true, presented
	case approve && errors.As(err, &rf) && rf.status == http.StatusServiceUnavailable:
		outcome, out.Presented, out.Unchecked, out.Reason = "not checked", presented, true, rf.msg
	case approve && errors.Is(err, ErrRefused):
		outcome, out.Presented = "rejected", presented
		out.Reason = "The verifier rejected it: " + strings.TrimPrefix(err.Error(), ErrRefused.Error()+": ")
	case err != nil && !errors.Is(err, ErrRefused):
		return nil, err
	}
	if outcome == "shared" || outcome == "rejected" {
		// The request is settled: its copy is never presented again. Not
		// checked, or the verifier unreachable, the copy stays this
		// request's, for a retry. Should this write fail, the copy stays
		// bound to a request the verifier has answered: it is still never
		// shown to another.
		_ = s.settleCopy(ctx, copyID)
	}
	if !approve {
		presented = nil
	}
	if err := s.logPresentation(ctx, personID, c, requested, presented, outcome, out.Reason); err != nil {
		return nil, err
	}
	return out, nil
}

// present presents the paths from one copy of the credential and returns
// the presentation and the copy's id. The copy is the one this request was
// last given, if its answer then could not be trusted (a retry: the
// verifier may hold that copy already); otherwise an unused copy, marked
// used (and this request's) before it leaves: a copy is never shown to two
// requests, even if the post fails.
func (s *Service) present(ctx context.Context, personID string, c *Consent, paths []sdjwt.Path) (string, string, error) {
	var id string
	var sealed []byte
	req := c.requestHash()
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT id, sealed FROM id_wallet WHERE person_id = $1 AND batch_id = $2 AND used_for = $3 ORDER BY id LIMIT 1`,
			personID, c.Held.BatchID, req).Scan(&id, &sealed)
		if err == nil {
			return nil // this request's copy, again
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		err = tx.QueryRowContext(ctx, `SELECT id, sealed FROM id_wallet WHERE person_id = $1 AND batch_id = $2 AND used_at = 0 ORDER BY id LIMIT 1`,
			personID, c.Held.BatchID).Scan(&id, &sealed)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: every single-use copy has been used; ask %s for a new batch", ErrNoCredential, c.Held.Issuer)
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE id_wallet SET used_at = $1, used_for = $2 WHERE id = $3`, s.now().UnixMilli(), req, id)
		return err
	})
	if err != nil {
		return "", "", err
	}
	h, err := s.open(personID, id, sealed)
	if err != nil {
		return "", "", err
	}
	key, err := x509.ParseECPrivateKey(h.Key)
	if err != nil {
		return "", "", fmt.Errorf("wallet: holder key: %w", err)
	}
	keep, err := sdjwt.KeepPaths(h.Credential, paths)
	if err != nil {
		return "", "", err
	}
	p, err := sdjwt.Present(h.Credential, keep, key, jose.ES256, c.nonce, c.ClientID, s.now())
	if err != nil {
		return "", "", err
	}
	vp, _ := json.Marshal(map[string][]string{c.query.ID: {p}})
	return string(vp), id, nil
}

// settleCopy ends a copy's tie to the request it was presented to.
func (s *Service) settleCopy(ctx context.Context, id string) error {
	return s.db.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE id_wallet SET used_for = NULL WHERE id = $1`, id)
		return err
	})
}

// requestHash names a verifier's request (its client, nonce, state and
// response address) for the copy presented to it.
func (c *Consent) requestHash() []byte {
	h := sha256.Sum256([]byte(c.ClientID + "\x00" + c.nonce + "\x00" + c.state + "\x00" + c.responseURI))
	return h[:]
}

// Presentation is one row of the citizen's presentation log.
type Presentation struct {
	ID        string    `json:"id"`
	At        time.Time `json:"time"`
	Verifier  string    `json:"verifier"`
	ClientID  string    `json:"verifier_id"`
	Purpose   string    `json:"purpose"`
	Requested []string  `json:"requested"`
	Presented []string  `json:"presented"`
	Outcome   string    `json:"outcome"`
	Reason    string    `json:"reason,omitempty"`
}

func (s *Service) logPresentation(ctx context.Context, personID string, c *Consent, requested, presented []string, outcome, reason string) error {
	rj, _ := json.Marshal(requested)
	pj, _ := json.Marshal(presented)
	if presented == nil {
		pj = []byte("[]")
	}
	return s.db.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO id_presentations (id, person_id, verifier_org, verifier, purpose, requested, presented, outcome, reason, at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, uuid.Must(uuid.NewRandomFromReader(s.rand)).String(), personID, c.Verifier.OrgID,
			c.Verifier.Name, c.Verifier.Purpose, string(rj), string(pj), outcome, reason, s.now().UnixMilli())
		return err
	})
}

// Presentations is the citizen's presentation log, newest first.
func (s *Service) Presentations(ctx context.Context, personID string) ([]Presentation, error) {
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT p.id, p.at, p.verifier, COALESCE(v.slug, ''), p.purpose, p.requested, p.presented, p.outcome, p.reason
		FROM id_presentations p LEFT JOIN id_verifiers v ON v.org_id = p.verifier_org WHERE p.person_id = $1 ORDER BY p.at DESC, p.id`, personID)
	if err != nil {
		return nil, fmt.Errorf("presentations: %w", err)
	}
	defer rows.Close()
	out := []Presentation{}
	for rows.Next() {
		var p Presentation
		var at int64
		var slug, req, pres string
		if err := rows.Scan(&p.ID, &at, &p.Verifier, &slug, &p.Purpose, &req, &pres, &p.Outcome, &p.Reason); err != nil {
			return nil, err
		}
		p.At = time.UnixMilli(at).UTC()
		if slug != "" {
			p.ClientID = s.base + "/verifiers/" + slug
		}
		_ = json.Unmarshal([]byte(req), &p.Requested)
		_ = json.Unmarshal([]byte(pres), &p.Presented)
		out = append(out, p)
	}
	return out, rows.Err()
}
