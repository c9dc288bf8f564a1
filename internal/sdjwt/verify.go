package sdjwt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"

	"errors"
	"fmt"
	"math"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Options say what Verify requires beyond the issuer's signature.
type Options struct {
	// Now, when set, is checked against exp and nbf; Leeway widens both.
	Now    time.Time
	Leeway time.Duration
	// RequireKeyBinding refuses presentations without a KB-JWT; a KB-JWT
	// that is present is always checked.
	RequireKeyBinding bool
	Nonce, Audience   string // when set, the KB-JWT's must equal them
	// MaxKBAge, when set with Now, bounds how old the KB-JWT's iat may be.
	MaxKBAge time.Duration
}

// Result is a verified SD-JWT: the processed claims (disclosed claims in
// place, "_sd" and "_sd_alg" removed) and what the JWS headers said.
type Result struct {
	Claims map[string]any
	// Payload is the issuer-signed payload as signed (digests, no
	// disclosures applied), for rules about what may not be disclosable.
	Payload    map[string]any
	Type       string // the issuer JWT's typ
	KeyBinding bool   // a KB-JWT was present and verified
}

// Verify checks an SD-JWT against the issuer's public key (a JWK, or a
// crypto public key) and returns the disclosed claims.
func Verify(s string, issuerKey any, o Options) (*Result, error) {
	p, err := Parse(s)
	if err != nil {
		return nil, err
	}
	if k, ok := issuerKey.(jose.JSONWebKey); ok {
		issuerKey = k.Key
	} else if k, ok := issuerKey.(*jose.JSONWebKey); ok {
		issuerKey = k.Key
	}
	hdr, raw, err := verifyJWS(p.JWT, issuerKey)
	if errors.Is(err, errBadSignature) {
		return nil, ErrSignature
	}
	if err != nil {
		return nil, fmt.Errorf("issuer JWT: %w", err)
	}
	var payload map[string]any
	if err := jsonUnmarshal(raw, &payload); err != nil {
		return nil, fmt.Errorf("%w: issuer JWT payload is not a JSON object", ErrFormat)
	}
	if alg, ok := payload["_sd_alg"]; ok && alg != "sha-256" {
		return nil, fmt.Errorf("%w: _sd_alg %v is not supported (sha-256 only)", ErrFormat, alg)
	}
	delete(payload, "_sd_alg")
	byDigest := map[string]*Disclosure{}
	for _, enc := range p.Disclosures {
		d, err := ParseDisclosure(enc)
		if err != nil {
			return nil, err
		}
		dg := d.Digest()
		if byDigest[dg] != nil {
			return nil, fmt.Errorf("%w: a disclosure is presented twice", ErrDuplicateDigest)
		}
		byDigest[dg] = d
	}
	st := &state{disclosures: byDigest, seen: map[string]bool{}, used: map[string]bool{}}
	claims, err := st.process(payload, 0)
	if err != nil {
		return nil, err
	}
	for dg := range byDigest {
		if !st.used[dg] {
			return nil, fmt.Errorf("%w (%s)", ErrUnreferenced, dg)
		}
	}
	res := &Result{Claims: claims.(map[string]any), Payload: payload, Type: hdr.Typ}
	if !o.Now.IsZero() {
		if exp, ok := numericDate(res.Claims["exp"]); ok && !o.Now.Before(exp.Add(o.Leeway)) {
			return nil, fmt.Errorf("%w at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
		}
		if nbf, ok := numericDate(res.Claims["nbf"]); ok && o.Now.Add(o.Leeway).Before(nbf) {
			return nil, fmt.Errorf("%w until %s", ErrNotYetValid, nbf.UTC().Format(time.RFC3339))
		}
	}
	if p.KB == "" {
		if o.RequireKeyBinding {
			return nil, fmt.Errorf("%w: required but absent", ErrKeyBinding)
		}
		return res, nil
	}
	if err := checkKB(p, res.Claims, o); err != nil {
		return nil, err
	}
	res.KeyBinding = true
	return res, nil
}

func numericDate(v any) (time.Time, bool) {
	f, ok := v.(float64)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

type state struct {
	disclosures map[string]*Disclosure
	seen, used  map[string]bool
}

func (st *state) mark(dg string) error {
	if st.seen[dg] {
		return fmt.Errorf("%w (%s)", ErrDuplicateDigest, dg)
	}
	st.seen[dg] = true
	return nil
}

func (st *state) process(v any, depth int) (any, error) {
	if depth > 64 {
		return nil, fmt.Errorf("%w: nested too deeply", ErrFormat)
	}
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if k == "_sd" {
				continue
			}
			pe, err := st.process(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = pe
		}
		if sd, ok := x["_sd"]; ok {
			list, ok := sd.([]any)
			if !ok {
				return nil, fmt.Errorf("%w: _sd is not an array", ErrFormat)
			}
			for _, item := range list {
				dg, ok := item.(string)
				if !ok {
					return nil, fmt.Errorf("%w: an _sd entry is not a string", ErrFormat)
				}
				if err := st.mark(dg); err != nil {
					return nil, err
				}
				d := st.disclosures[dg]
				if d == nil {
					continue // a decoy, or not disclosed
				}
				if d.IsElement {
					return nil, fmt.Errorf("%w: an array-element disclosure is referenced from _sd", ErrDisclosure)
				}
				if d.Name == "_sd" || d.Name == "..." {
					return nil, fmt.Errorf("%w: claim name %q is reserved", ErrDisclosure, d.Name)
				}
				if _, exists := out[d.Name]; exists {
					return nil, fmt.Errorf("%w: claim %q is already present", ErrDisclosure, d.Name)
				}
				st.used[dg] = true
				pv, err := st.process(d.Value, depth+1)
				if err != nil {
					return nil, err
				}
				out[d.Name] = pv
			}
		}
		return out, nil
	case []any:
		out := make([]any, 0, len(x))
		for _, e := range x {
			if m, ok := e.(map[string]any); ok && len(m) == 1 {
				if dgv, ok := m["..."]; ok {
					dg, ok := dgv.(string)
					if !ok {
						return nil, fmt.Errorf("%w: an array-element digest is not a string", ErrFormat)
					}
					if err := st.mark(dg); err != nil {
						return nil, err
					}
					d := st.disclosures[dg]
					if d == nil {
						continue // undisclosed element: removed
					}
					if !d.IsElement {
						return nil, fmt.Errorf("%w: an object-property disclosure is referenced from an array", ErrDisclosure)
					}
					st.used[dg] = true
					pv, err := st.process(d.Value, depth+1)
					if err != nil {
						return nil, err
					}
					out = append(out, pv)
					continue
				}
			}
			pe, err := st.process(e, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, pe)
		}
		return out, nil
	}
	return v, nil
}

// checkKB verifies the key binding JWT with the holder key in cnf.jwk.
func checkKB(p *SDJWT, claims map[string]any, o Options) error {
	cnf, _ := claims["cnf"].(map[string]any)
	jwkRaw, ok := cnf["jwk"]
	if !ok {
		return fmt.Errorf("%w: no cnf.jwk holder key in the credential", ErrKeyBinding)
	}
	holderKey, err := publicJWK(jwkRaw)
	if err != nil {
		return fmt.Errorf("%w: cnf.jwk is not a valid public key", ErrKeyBinding)
	}
	hdr, raw, err := verifyJWS(p.KB, holderKey)
	if errors.Is(err, errBadSignature) {
		return fmt.Errorf("%w: signature does not verify with the holder key", ErrKeyBinding)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrKeyBinding, err)
	}
	if hdr.Typ != "kb+jwt" {
		return fmt.Errorf("%w: typ %q is not kb+jwt", ErrKeyBinding, hdr.Typ)
	}
	var kb struct {
		IAT    *float64 `json:"iat"`
		Aud    any      `json:"aud"`
		Nonce  *string  `json:"nonce"`
		SDHash string   `json:"sd_hash"`
	}
	if err := json.Unmarshal(raw, &kb); err != nil || kb.IAT == nil || kb.Nonce == nil {
		return fmt.Errorf("%w: payload lacks iat, aud, nonce or sd_hash", ErrKeyBinding)
	}
	aud, ok := kb.Aud.(string)
	if !ok {
		return fmt.Errorf("%w: aud is not a single string", ErrKeyBinding)
	}
	if kb.SDHash != digest(p.WithoutKB()) {
		return ErrSDHash
	}
	if o.Nonce != "" && *kb.Nonce != o.Nonce {
		return ErrNonce
	}
	if o.Audience != "" && aud != o.Audience {
		return ErrAudience
	}
	if !o.Now.IsZero() && o.MaxKBAge > 0 {
		iat := time.Unix(int64(*kb.IAT), 0)
		if o.Now.Sub(iat) > o.MaxKBAge || iat.After(o.Now.Add(o.Leeway+time.Minute)) {
			return fmt.Errorf("%w: iat %s is outside the accepted window", ErrKeyBinding, iat.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// publicJWK reads a holder key from cnf.jwk: P-256 EC keys directly (the
// common case, without a JSON round trip), anything else through go-jose.
func publicJWK(v any) (any, error) {
	if m, ok := v.(map[string]any); ok && m["kty"] == "EC" && m["crv"] == "P-256" && m["d"] == nil {
		xs, _ := m["x"].(string)
		ys, _ := m["y"].(string)
		x, err1 := base64.RawURLEncoding.DecodeString(xs)
		y, err2 := base64.RawURLEncoding.DecodeString(ys)
		if err1 == nil && err2 == nil && len(x) == 32 && len(y) == 32 {
			pt := append(append([]byte{4}, x...), y...)
			if k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt); err == nil {
				return k, nil
			}
		}
		return nil, errors.New("bad P-256 key")
	}
	b, _ := json.Marshal(v)
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(b); err != nil || !jwk.Valid() || !jwk.IsPublic() {
		return nil, errors.New("bad JWK")
	}
	return jwk.Key, nil
}
