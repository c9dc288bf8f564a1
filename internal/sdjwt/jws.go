package sdjwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Algorithms accepted for issuer and key binding signatures (never "none").
var Algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.EdDSA, jose.RS256, jose.PS256}

// SDJWT is a parsed compact SD-JWT: the issuer-signed JWT, the
// disclosures as transmitted, and the key binding JWT ("" when absent).
type SDJWT struct {
	JWT         string
	Disclosures []string
	KB          string
}

// Parse splits a compact SD-JWT (issuance "<JWT>~<D>~…~" or presentation,
// optionally ending in a KB-JWT).
func Parse(s string) (*SDJWT, error) {
	s = strings.TrimSpace(s)
	parts := strings.Split(s, "~")
	if len(parts) < 2 {
		return nil, fmt.Errorf("%w: no '~' after the issuer-signed JWT", ErrFormat)
	}
	if strings.Count(parts[0], ".") != 2 {
		return nil, fmt.Errorf("%w: the issuer-signed part is not a compact JWS", ErrFormat)
	}
	out := &SDJWT{JWT: parts[0], KB: parts[len(parts)-1]}
	for _, d := range parts[1 : len(parts)-1] {
		if d == "" {
			return nil, fmt.Errorf("%w: an empty disclosure", ErrFormat)
		}
		out.Disclosures = append(out.Disclosures, d)
	}
	if out.KB != "" && strings.Count(out.KB, ".") != 2 {
		return nil, fmt.Errorf("%w: the key binding JWT is not a compact JWS", ErrFormat)
	}
	return out, nil
}

// WithoutKB is the presentation text the key binding's sd_hash covers:
// "<JWT>~<D1>~…~<Dn>~".
func (s *SDJWT) WithoutKB() string {
	var b strings.Builder
	b.WriteString(s.JWT)
	b.WriteByte('~')
	for _, d := range s.Disclosures {
		b.WriteString(d)
		b.WriteByte('~')
	}
	return b.String()
}

// String is the compact form.
func (s *SDJWT) String() string { return s.WithoutKB() + s.KB }

func sign(key crypto.Signer, alg jose.SignatureAlgorithm, typ string, extra map[jose.HeaderKey]any, payload []byte) (string, error) {
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	for k, v := range extra {
		opts = opts.WithHeader(k, v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return "", fmt.Errorf("sd-jwt: signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sd-jwt: sign: %w", err)
	}
	return jws.CompactSerialize()
}

// Issue signs payload (already concealed) and appends the disclosures.
func Issue(key crypto.Signer, alg jose.SignatureAlgorithm, typ string, payload map[string]any, ds []*Disclosure) (string, error) {
	if _, ok := payload["_sd_alg"]; !ok && len(ds) > 0 {
		payload["_sd_alg"] = "sha-256"
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		return "", fmt.Errorf("sd-jwt: payload: %w", err)
	}
	jwt, err := sign(key, alg, typ, nil, raw)
	if err != nil {
		return "", err
	}
	s := &SDJWT{JWT: jwt}
	for _, d := range ds {
		s.Disclosures = append(s.Disclosures, d.Encoded)
	}
	return s.String(), nil
}

// Present keeps the disclosures keep accepts and, with a holder key, adds
// a key binding JWT for nonce and aud at iat.
func Present(issued string, keep func(*Disclosure) bool, holder crypto.Signer, alg jose.SignatureAlgorithm, nonce, aud string, iat time.Time) (string, error) {
	s, err := Parse(issued)
	if err != nil {
		return "", err
	}
	p := &SDJWT{JWT: s.JWT}
	for _, enc := range s.Disclosures {
		d, err := ParseDisclosure(enc)
		if err != nil {
			return "", err
		}
		if keep(d) {
			p.Disclosures = append(p.Disclosures, enc)
		}
	}
	if holder == nil {
		return p.String(), nil
	}
	kb, err := json.Marshal(map[string]any{"iat": iat.Unix(), "aud": aud, "nonce": nonce, "sd_hash": digest(p.WithoutKB())})
	if err != nil {
		return "", err
	}
	if p.KB, err = sign(holder, alg, "kb+jwt", nil, kb); err != nil {
		return "", err
	}
	return p.String(), nil
}

// jwsHeader is the part of a JWS protected header Verify reads.
type jwsHeader struct {
	Alg  string   `json:"alg"`
	Typ  string   `json:"typ"`
	Crit []string `json:"crit"` // any: left to go-jose, which refuses what it does not understand
}

// verifyJWS checks a compact JWS with key and returns its header and
// payload. ES256 with an ECDSA P-256 key (nearly every SD-JWT) is checked
// directly: SHA-256 of the signing input, then ECDSA over r‖s. Every other
// algorithm and key goes through go-jose. "none" and unlisted algorithms
// are refused either way.
func verifyJWS(compact string, key any) (*jwsHeader, []byte, error) {
	hp, payload, err := splitJWS(compact)
	if err != nil {
		return nil, nil, err
	}
	h := *hp
	last := strings.LastIndexByte(compact, '.') // splitJWS found it
	if !slices.Contains(Algorithms, jose.SignatureAlgorithm(h.Alg)) {
		return nil, nil, fmt.Errorf("%w: algorithm %q is not accepted", ErrFormat, h.Alg)
	}
	if ec, ok := key.(*ecdsa.PublicKey); ok && h.Alg == string(jose.ES256) && ec.Curve == elliptic.P256() && h.Crit == nil {
		sig, err := base64.RawURLEncoding.DecodeString(compact[last+1:])
		if err != nil || len(sig) != 64 {
			return nil, nil, errBadSignature
		}
		d := sha256.Sum256([]byte(compact[:last]))
		if !ecdsa.Verify(ec, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			return nil, nil, errBadSignature
		}
		return &h, payload, nil
	}
	jws, err := jose.ParseSignedCompact(compact, Algorithms)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	verified, err := jws.Verify(key)
	if err != nil {
		return nil, nil, errBadSignature
	}
	return &h, verified, nil
}

var errBadSignature = errors.New("signature does not verify")

// splitJWS decodes a compact JWS's header and payload without verifying.
func splitJWS(compact string) (*jwsHeader, []byte, error) {
	first := strings.IndexByte(compact, '.')
	last := strings.LastIndexByte(compact, '.')
	if first < 0 || first == last {
		return nil, nil, fmt.Errorf("%w: not a compact JWS", ErrFormat)
	}
	hb, err := base64.RawURLEncoding.DecodeString(compact[:first])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: JWS header is not base64url", ErrFormat)
	}
	var h jwsHeader
	if err := jsonUnmarshal(hb, &h); err != nil {
		return nil, nil, fmt.Errorf("%w: JWS header is not JSON", ErrFormat)
	}
	payload, err := base64.RawURLEncoding.DecodeString(compact[first+1 : last])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: JWS payload is not base64url", ErrFormat)
	}
	return &h, payload, nil
}
