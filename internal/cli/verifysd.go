package cli

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/civstack/civstack/internal/sdjwt"
)

// sdPattern recognises a compact SD-JWT: a JWS followed by "~".
var sdPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+~`)

func isSDJWT(s string) bool { return sdPattern.MatchString(s) }

type sdOptions struct {
	keyFile, nonce, aud, at string
}

// loadPublicKey reads a JWK (JSON), a JWK set or SD-JWT VC issuer
// metadata (/.well-known/jwt-vc-issuer/…) holding one key, or a PEM public
// key or certificate.
func loadPublicKey(path string) (any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("issuer key %s: %w", path, errors.Unwrap(err))
	}
	if blk, _ := pem.Decode(b); blk != nil {
		switch blk.Type {
		case "PUBLIC KEY":
			return x509.ParsePKIXPublicKey(blk.Bytes)
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("issuer key: %w", err)
			}
			return c.PublicKey, nil
		}
		return nil, fmt.Errorf("issuer key: PEM block %q is not a public key or certificate", blk.Type)
	}
	var set struct {
		Keys []jose.JSONWebKey `json:"keys"`
		JWKS *struct {
			Keys []jose.JSONWebKey `json:"keys"`
		} `json:"jwks"`
	}
	if json.Unmarshal(b, &set) == nil && (set.Keys != nil || set.JWKS != nil) {
		keys := set.Keys
		if set.JWKS != nil {
			keys = set.JWKS.Keys
		}
		if len(keys) != 1 || !keys[0].Valid() {
			return nil, fmt.Errorf("issuer key: %s holds %d keys; pass a file with exactly one", path, len(keys))
		}
		return keys[0].Public().Key, nil
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(b); err != nil || !k.Valid() {
		return nil, fmt.Errorf("issuer key: %s is neither a JWK nor PEM", path)
	}
	return k.Public().Key, nil
}

func verifySDJWT(e *env, text string, o sdOptions) error {
	if o.keyFile == "" {
		return fmt.Errorf("%w: an SD-JWT needs --issuer-key FILE (the issuer's JWK or PEM public key)", errUsage)
	}
	key, err := loadPublicKey(o.keyFile)
	if err != nil {
		return err
	}
	opts := sdjwt.Options{Nonce: o.nonce, Audience: o.aud, Now: e.now()}
	if o.at != "" {
		if opts.Now, err = time.Parse(time.RFC3339, o.at); err != nil {
			return fmt.Errorf("%w: --at %q is not an RFC 3339 time", errUsage, o.at)
		}
	}
	if o.nonce != "" || o.aud != "" {
		opts.RequireKeyBinding = true
	}
	res, err := sdjwt.Verify(text, key, opts)
	if err != nil {
		return fmt.Errorf("not verified: %w", err)
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(map[string]any{"verified": true, "typ": res.Type, "key_binding": res.KeyBinding, "claims": res.Claims})
}
