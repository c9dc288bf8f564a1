// Package issuance holds the OpenID4VCI 1.0 wire formats civstack's
// issuers speak: credential issuer metadata, credential offers (as a link
// or QR), and the holder's proof of possession (openid4vci-proof+jwt).
// The HTTP endpoints that use them live in the server; this package owns
// their shape and validation, so both sides (issuer and wallet) share it.
package issuance

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Errors, named after the OpenID4VCI error codes they become.
var (
	ErrInvalidRequest = errors.New("invalid_request")
	ErrInvalidProof   = errors.New("invalid_proof")
	ErrInvalidNonce   = errors.New("invalid_nonce")
)

// PreAuthorizedGrant is the grant type of the pre-authorized code flow.
const PreAuthorizedGrant = "urn:ietf:params:oauth:grant-type:pre-authorized_code"

// ProofType is the JWT proof's typ.
const ProofType = "openid4vci-proof+jwt"

// TxCode describes the transaction code the holder must type.
type TxCode struct {
	InputMode   string `json:"input_mode,omitempty"` // "numeric" (default) or "text"
	Length      int    `json:"length,omitempty"`
	Description string `json:"description,omitempty"`
}

// Offer is a credential offer.
type Offer struct {
	CredentialIssuer           string   `json:"credential_issuer"`
	CredentialConfigurationIDs []string `json:"credential_configuration_ids"`
	Grants                     struct {
		PreAuthorized *struct {
			Code   string  `json:"pre-authorized_code"`
			TxCode *TxCode `json:"tx_code,omitempty"`
		} `json:"urn:ietf:params:oauth:grant-type:pre-authorized_code,omitempty"`
	} `json:"grants"`
}

// NewOffer makes a pre-authorized offer.
func NewOffer(issuer string, configs []string, code string, tx *TxCode) *Offer {
	o := &Offer{CredentialIssuer: issuer, CredentialConfigurationIDs: configs}
	o.Grants.PreAuthorized = &struct {
		Code   string  `json:"pre-authorized_code"`
		TxCode *TxCode `json:"tx_code,omitempty"`
	}{code, tx}
	return o
}

// Validate checks the offer's required members.
func (o *Offer) Validate() error {
	u, err := url.Parse(o.CredentialIssuer)
	if err != nil || u.Scheme != "https" && !(u.Scheme == "http" && u.Hostname() == "localhost") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%w: credential_issuer %q is not an https URL without query or fragment", ErrInvalidRequest, o.CredentialIssuer)
	}
	if len(o.CredentialConfigurationIDs) == 0 {
		return fmt.Errorf("%w: credential_configuration_ids is empty", ErrInvalidRequest)
	}
	if g := o.Grants.PreAuthorized; g != nil {
		if g.Code == "" {
			return fmt.Errorf("%w: empty pre-authorized_code", ErrInvalidRequest)
		}
		if tx := g.TxCode; tx != nil {
			if tx.InputMode != "" && tx.InputMode != "numeric" && tx.InputMode != "text" {
				return fmt.Errorf("%w: tx_code input_mode %q", ErrInvalidRequest, tx.InputMode)
			}
			if len(tx.Description) > 300 {
				return fmt.Errorf("%w: tx_code description longer than 300 characters", ErrInvalidRequest)
			}
		}
	} else {
		return fmt.Errorf("%w: no grant civstack supports (pre-authorized code)", ErrInvalidRequest)
	}
	return nil
}

// Link is the offer as an openid-credential-offer:// link (for a QR code
// or a same-device tap), carrying the offer by value.
func (o *Offer) Link() string {
	b, _ := json.Marshal(o)
	return "openid-credential-offer://?credential_offer=" + url.QueryEscape(string(b))
}

// ParseOffer reads an offer link (by value; credential_offer_uri is the
// caller's to fetch) or the offer JSON itself.
func ParseOffer(s string) (*Offer, error) {
	s = strings.TrimSpace(s)
	raw := s
	if !strings.HasPrefix(s, "{") {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%w: not an offer link", ErrInvalidRequest)
		}
		q := u.Query()
		switch byValue, byRef := q.Has("credential_offer"), q.Has("credential_offer_uri"); {
		case byValue && byRef:
			return nil, fmt.Errorf("%w: the link holds both an offer and a link to one (credential_offer and credential_offer_uri)", ErrInvalidRequest)
		case byRef:
			return nil, fmt.Errorf("%w: the link only points to an offer (credential_offer_uri), which must be fetched first", ErrInvalidRequest)
		case !byValue:
			return nil, fmt.Errorf("%w: the link holds no offer (an offer link starts with openid-credential-offer:// and holds credential_offer)", ErrInvalidRequest)
		}
		raw = q.Get("credential_offer")
	}
	var o Offer
	if err := json.Unmarshal([]byte(raw), &o); err != nil {
		return nil, fmt.Errorf("%w: the offer is not JSON: %v", ErrInvalidRequest, err)
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return &o, nil
}

// Proof makes a holder's JWT proof for the issuer and nonce.
func Proof(holder crypto.Signer, alg jose.SignatureAlgorithm, issuer, nonce string, iat time.Time) (string, error) {
	jwk := jose.JSONWebKey{Key: holder.Public()}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: holder}, (&jose.SignerOptions{}).WithType(ProofType).WithHeader("jwk", jwk))
	if err != nil {
		return "", fmt.Errorf("proof: %w", err)
	}
	payload, _ := json.Marshal(map[string]any{"aud": issuer, "iat": iat.Unix(), "nonce": nonce})
	jws, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("proof: %w", err)
	}
	return jws.CompactSerialize()
}

// VerifyProof checks a JWT proof: typ, an embedded public JWK (the key the
// credential will bind), the signature with it, aud = issuer, a fresh iat,
// and the nonce (which nonceOK must accept once). It returns the key.
func VerifyProof(proof, issuer string, now time.Time, maxAge time.Duration, nonceOK func(string) bool) (*jose.JSONWebKey, error) {
	jws, err := jose.ParseSignedCompact(proof, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.PS256, jose.RS256})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidProof, err)
	}
	h := jws.Signatures[0].Header
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != ProofType {
		return nil, fmt.Errorf("%w: typ %q is not %s", ErrInvalidProof, typ, ProofType)
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.Valid() || !h.JSONWebKey.IsPublic() || h.KeyID != "" {
		return nil, fmt.Errorf("%w: the header needs exactly one public jwk", ErrInvalidProof)
	}
	raw, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		return nil, fmt.Errorf("%w: signature does not verify with its jwk", ErrInvalidProof)
	}
	var c struct {
		Aud   any    `json:"aud"`
		IAT   *int64 `json:"iat"`
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal(raw, &c); err != nil || c.IAT == nil {
		return nil, fmt.Errorf("%w: claims need aud, iat and nonce", ErrInvalidProof)
	}
	aud, _ := c.Aud.(string)
	if aud != issuer {
		return nil, fmt.Errorf("%w: aud %v is not this issuer", ErrInvalidProof, c.Aud)
	}
	if iat := time.Unix(*c.IAT, 0); now.Sub(iat) > maxAge || iat.After(now.Add(time.Minute)) {
		return nil, fmt.Errorf("%w: iat outside the accepted window", ErrInvalidProof)
	}
	if c.Nonce == "" || !nonceOK(c.Nonce) {
		return nil, ErrInvalidNonce
	}
	return h.JSONWebKey, nil
}
