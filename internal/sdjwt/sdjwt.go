// Package sdjwt implements Selective Disclosure for JWTs (RFC 9901):
// issuing a JWT whose claims are hidden behind salted digests, presenting
// a chosen subset of their disclosures with an optional key binding JWT,
// and verifying a presentation back to the disclosed claims. JWS signing
// and verification use go-jose; disclosures, digests and the processing
// rules are this package's.
//
// A presentation is only as trustworthy as Verify's checks: it refuses a
// digest that appears twice, a disclosure that nothing references, a
// disclosed name that is "_sd" or "..." or already present, and a key
// binding JWT whose sd_hash, nonce or audience do not match.
package sdjwt

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"

	"errors"
	"fmt"
	jsonv2 "github.com/go-json-experiment/json"
	"io"
	"sort"
	"strings"
)

// Errors, each a distinct failure a verifier reports.
var (
	ErrFormat          = errors.New("sd-jwt: malformed")
	ErrSignature       = errors.New("sd-jwt: issuer signature does not verify")
	ErrDisclosure      = errors.New("sd-jwt: bad disclosure")
	ErrUnreferenced    = errors.New("sd-jwt: disclosure not referenced by the payload")
	ErrDuplicateDigest = errors.New("sd-jwt: digest appears more than once")
	ErrKeyBinding      = errors.New("sd-jwt: key binding")
	ErrSDHash          = errors.New("sd-jwt: key binding sd_hash does not match the presentation")
	ErrNonce           = errors.New("sd-jwt: key binding nonce does not match")
	ErrAudience        = errors.New("sd-jwt: key binding audience does not match")
	ErrExpired         = errors.New("sd-jwt: expired")
	ErrNotYetValid     = errors.New("sd-jwt: not yet valid")
)

// Disclosure is one salted claim: an object property (Name set) or an
// array element (IsElement).
type Disclosure struct {
	Salt      string
	Name      string
	IsElement bool
	Value     any
	Encoded   string // base64url of the JSON array, exactly as transmitted
}

// Digest is base64url(SHA-256(the disclosure's encoded form)).
func (d *Disclosure) Digest() string { return digest(d.Encoded) }

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// newDisclosure encodes a disclosure; the JSON uses ", " separators as the
// RFC's examples do (any encoding is valid: the digest is over the text).
func newDisclosure(salt, name string, element bool, value any) (*Disclosure, error) {
	arr := []any{salt, name, value}
	if element {
		arr = []any{salt, value}
	}
	raw, err := marshalSpaced(arr)
	if err != nil {
		return nil, err
	}
	return &Disclosure{Salt: salt, Name: name, IsElement: element, Value: value, Encoded: base64.RawURLEncoding.EncodeToString(raw)}, nil
}

// marshalSpaced is json.Marshal with Python's default separators (", "
// and ": ") and no HTML escaping, as the reference implementation writes.
func marshalSpaced(v any) ([]byte, error) {
	var sb strings.Builder
	if err := writeSpaced(&sb, v); err != nil {
		return nil, err
	}
	return []byte(sb.String()), nil
}

func writeSpaced(sb *strings.Builder, v any) error {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		sb.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				sb.WriteString(", ")
			}
			writeString(sb, k)
			sb.WriteString(": ")
			if err := writeSpaced(sb, x[k]); err != nil {
				return err
			}
		}
		sb.WriteByte('}')
	case []any:
		sb.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				sb.WriteString(", ")
			}
			if err := writeSpaced(sb, e); err != nil {
				return err
			}
		}
		sb.WriteByte(']')
	case string:
		writeString(sb, x)
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return err
		}
		sb.Write(b)
	}
	return nil
}

func writeString(sb *strings.Builder, s string) {
	// Python's json.dumps with ensure_ascii=False: escape only what JSON requires.
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	sb.WriteString(strings.TrimSuffix(buf.String(), "\n"))
}

// ParseDisclosure decodes one disclosure string.
func ParseDisclosure(s string) (*Disclosure, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url: %v", ErrDisclosure, err)
	}
	var arr []any
	if err := jsonUnmarshal(raw, &arr); err != nil {
		return nil, fmt.Errorf("%w: not a JSON array: %v", ErrDisclosure, err)
	}
	d := &Disclosure{Encoded: s}
	switch len(arr) {
	case 2:
		d.IsElement, d.Value = true, arr[1]
	case 3:
		name, ok := arr[1].(string)
		if !ok {
			return nil, fmt.Errorf("%w: claim name is not a string", ErrDisclosure)
		}
		d.Name, d.Value = name, arr[2]
	default:
		return nil, fmt.Errorf("%w: %d elements, want 2 or 3", ErrDisclosure, len(arr))
	}
	salt, ok := arr[0].(string)
	if !ok {
		return nil, fmt.Errorf("%w: salt is not a string", ErrDisclosure)
	}
	d.Salt = salt
	return d, nil
}

// NewSalt returns 128 bits of randomness, base64url.
func NewSalt(r io.Reader) (string, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// SD marks a claim value (in a map) or an array element as selectively
// disclosable when building a payload with Conceal.
type SD struct{ Value any }

// Decoy, as an element of a []any or a map value under any key, adds a
// decoy digest at that level.
type Decoy struct{}

// Discloser makes the disclosure for a claim (name "" and element true for
// an array element) whose concealed value is value, found in the object or
// array at path (claim names from the top, "[]" for an array element), and
// the salts of decoy digests.
type Discloser interface {
	Disclose(path, name string, element bool, value any) (*Disclosure, error)
	DecoySalt() (string, error)
}

// RandomSalts discloses with fresh 128-bit salts read from r
// (crypto/rand when nil).
func RandomSalts(r io.Reader) Discloser {
	if r == nil {
		r = rand.Reader
	}
	return randomSalts{r}
}

type randomSalts struct{ r io.Reader }

func (s randomSalts) Disclose(_, name string, element bool, value any) (*Disclosure, error) {
	salt, err := NewSalt(s.r)
	if err != nil {
		return nil, err
	}
	return newDisclosure(salt, name, element, value)
}

func (s randomSalts) DecoySalt() (string, error) { return NewSalt(s.r) }

// Conceal turns claims with SD markers into a payload with "_sd" digest
// arrays and "..." array elements, and the disclosures that open them.
// Nested markers are concealed first, so a disclosure may itself hide
// claims (recursive disclosure). Digest arrays are sorted, hiding order.
func Conceal(claims map[string]any, salt Discloser) (map[string]any, []*Disclosure, error) {
	var out []*Disclosure
	v, err := conceal("", claims, salt, &out)
	if err != nil {
		return nil, nil, err
	}
	return v.(map[string]any), out, nil
}

func conceal(path string, v any, salt Discloser, out *[]*Disclosure) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		res := map[string]any{}
		var digests []string
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			e := x[k]
			if _, isDecoy := e.(Decoy); isDecoy {
				s, err := salt.DecoySalt()
				if err != nil {
					return nil, err
				}
				digests = append(digests, digest(s))
				continue
			}
			if sd, ok := e.(SD); ok {
				inner, err := conceal(path+"/"+k, sd.Value, salt, out)
				if err != nil {
					return nil, err
				}
				d, err := salt.Disclose(path, k, false, inner)
				if err != nil {
					return nil, err
				}
				*out = append(*out, d)
				digests = append(digests, d.Digest())
				continue
			}
			inner, err := conceal(path+"/"+k, e, salt, out)
			if err != nil {
				return nil, err
			}
			res[k] = inner
		}
		if len(digests) > 0 {
			sort.Strings(digests)
			res["_sd"] = toAny(digests)
		}
		return res, nil
	case []any:
		res := make([]any, 0, len(x))
		for _, e := range x {
			if _, isDecoy := e.(Decoy); isDecoy {
				s, err := salt.DecoySalt()
				if err != nil {
					return nil, err
				}
				res = append(res, map[string]any{"...": digest(s)})
				continue
			}
			if sd, ok := e.(SD); ok {
				inner, err := conceal(path+"/[]", sd.Value, salt, out)
				if err != nil {
					return nil, err
				}
				d, err := salt.Disclose(path, "", true, inner)
				if err != nil {
					return nil, err
				}
				*out = append(*out, d)
				res = append(res, map[string]any{"...": d.Digest()})
				continue
			}
			inner, err := conceal(path+"/[]", e, salt, out)
			if err != nil {
				return nil, err
			}
			res = append(res, inner)
		}
		return res, nil
	}
	return v, nil
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// jsonUnmarshal decodes outside JSON with JSON v2 (faster here, and it
// refuses duplicate member names and invalid UTF-8).
func jsonUnmarshal(b []byte, v any) error { return jsonv2.Unmarshal(b, v) }
