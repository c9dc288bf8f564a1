// Package credential owns SD-JWT VCs (draft-ietf-oauth-sd-jwt-vc): the
// "dc+sd-jwt" credentials civstack's issuers sign, with every claim
// selectively disclosable except those the format forbids (iss, nbf, exp,
// cnf, vct, status), a holder key in cnf, and a Token Status List entry at
// a random index; and their verification, status included, from a cached
// status list (a verifier never asks the issuer about one credential).
package credential

import (
	"crypto"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/civstack/civstack/internal/sdjwt"
	"github.com/civstack/civstack/internal/statuslist"
)

// Type is the SD-JWT VC media type.
const Type = "dc+sd-jwt"

// Errors.
var (
	ErrType      = errors.New("credential: not an SD-JWT VC (typ dc+sd-jwt)")
	ErrClaims    = errors.New("credential: claims")
	ErrRevoked   = errors.New("credential: revoked")
	ErrSuspended = errors.New("credential: suspended")
	ErrStatus    = errors.New("credential: status")
)

// neverDisclosable are the claims SD-JWT VC forbids hiding.
var neverDisclosable = []string{"iss", "nbf", "exp", "cnf", "vct", "status"}

// Status is a credential's Token Status List entry.
type Status struct {
	URI string
	Idx int
}

// VC is what an issuer puts in a credential.
type VC struct {
	Issuer   string
	VCT      string // e.g. "urn:eudi:pid:1"
	Holder   jose.JSONWebKey
	Status   *Status
	IssuedAt time.Time
	Expires  time.Time
	// Claims are made selectively disclosable one by one, objects member
	// by member (so "address.locality" can be shown without the street).
	Claims map[string]any
}

// Issue signs an SD-JWT VC.
func Issue(key crypto.Signer, alg jose.SignatureAlgorithm, vc VC, d sdjwt.Discloser) (string, error) {
	if vc.Issuer == "" || vc.VCT == "" {
		return "", fmt.Errorf("%w: iss and vct are required", ErrClaims)
	}
	hj, err := vc.Holder.Public().MarshalJSON()
	if err != nil {
		return "", fmt.Errorf("%w: holder key: %v", ErrClaims, err)
	}
	claims := map[string]any{"iss": vc.Issuer, "vct": vc.VCT, "iat": float64(vc.IssuedAt.Unix()), "exp": float64(vc.Expires.Unix()), "cnf": map[string]any{"jwk": rawJSON(hj)}}
	if vc.Status != nil {
		claims["status"] = map[string]any{"status_list": map[string]any{"idx": float64(vc.Status.Idx), "uri": vc.Status.URI}}
	}
	for k, v := range vc.Claims {
		if _, taken := claims[k]; taken {
			return "", fmt.Errorf("%w: %q is set by the format", ErrClaims, k)
		}
		claims[k] = sdjwt.SD{Value: discloseEach(v)}
	}
	payload, ds, err := sdjwt.Conceal(claims, d)
	if err != nil {
		return "", err
	}
	return sdjwt.Issue(key, alg, Type, payload, ds)
}

func discloseEach(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := make(map[string]any, len(m))
	for k, e := range m {
		out[k] = sdjwt.SD{Value: discloseEach(e)}
	}
	return out
}

// StatusLists gives verified, cached Status List Tokens by URI. Its
// contract: it never contacts the issuer per credential; it may refresh
// a whole list when the cached one's ttl has passed.
type StatusLists interface {
	StatusList(uri string) (*statuslist.Token, error)
}

// Verified is a checked presentation.
type Verified struct {
	VCT    string
	Issuer string
	Claims map[string]any // the disclosed claims only (format claims removed)
	KB     bool
}

// Verify checks a presented SD-JWT VC: sdjwt.Verify (signature,
// disclosures, key binding per o), the typ, the claims SD-JWT VC forbids
// hiding, and the status in the cached list.
func Verify(s string, issuerKey any, o sdjwt.Options, lists StatusLists) (*Verified, error) {
	res, err := sdjwt.Verify(s, issuerKey, o)
	if err != nil {
		return nil, err
	}
	if res.Type != Type {
		return nil, fmt.Errorf("%w: typ %q", ErrType, res.Type)
	}
	for _, k := range neverDisclosable {
		if _, inClaims := res.Claims[k]; inClaims {
			if _, signed := res.Payload[k]; !signed {
				return nil, fmt.Errorf("%w: %q must not be selectively disclosable", ErrClaims, k)
			}
		}
	}
	vct, _ := res.Claims["vct"].(string)
	if vct == "" {
		return nil, fmt.Errorf("%w: no vct", ErrClaims)
	}
	if st, ok := res.Claims["status"]; ok {
		if err := checkStatus(st, lists); err != nil {
			return nil, err
		}
	}
	out := &Verified{VCT: vct, KB: res.KeyBinding, Claims: map[string]any{}}
	out.Issuer, _ = res.Claims["iss"].(string)
	for k, v := range res.Claims {
		switch k {
		case "iss", "nbf", "exp", "iat", "cnf", "vct", "status":
		default:
			out.Claims[k] = v
		}
	}
	return out, nil
}

func checkStatus(st any, lists StatusLists) error {
	ref, _ := st.(map[string]any)["status_list"].(map[string]any)
	uri, _ := ref["uri"].(string)
	idx, ok := ref["idx"].(float64)
	if uri == "" || !ok || idx < 0 || idx != float64(int(idx)) {
		return fmt.Errorf("%w: status_list needs uri and a whole idx", ErrStatus)
	}
	if lists == nil {
		return fmt.Errorf("%w: no status lists to check %s against", ErrStatus, uri)
	}
	tok, err := lists.StatusList(uri)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStatus, err)
	}
	v, err := tok.List.Get(int(idx))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStatus, err)
	}
	switch v {
	case statuslist.Valid:
		return nil
	case statuslist.Invalid:
		return ErrRevoked
	case statuslist.Suspended:
		return ErrSuspended
	}
	return fmt.Errorf("%w: status %d", ErrStatus, v)
}

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }
