// Package dcql reads and answers Digital Credentials Query Language
// queries (OpenID4VP 1.0, section 6): which credentials a verifier asks
// for, which of their claims, and the alternatives it accepts. Parse
// refuses queries the specification calls invalid; Match says which
// claims paths of a held SD-JWT VC answer a credential query, so the
// wallet discloses those and nothing else.
package dcql

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"

	"github.com/civstack/civstack/internal/sdjwt"
)

// ErrQuery is a query that does not follow DCQL.
var ErrQuery = errors.New("dcql: invalid query")

// Query is a DCQL query.
type Query struct {
	Credentials    []CredentialQuery `json:"credentials"`
	CredentialSets []CredentialSet   `json:"credential_sets,omitempty"`
}

// CredentialQuery asks for one credential.
type CredentialQuery struct {
	ID       string `json:"id"`
	Format   string `json:"format"`
	Multiple bool   `json:"multiple,omitempty"`
	Meta     *Meta  `json:"meta"`
	// TrustedAuthorities narrow the issuers the verifier accepts.
	TrustedAuthorities []struct {
		Type   string   `json:"type"`
		Values []string `json:"values"`
	} `json:"trusted_authorities,omitempty"`
	Claims                     []ClaimQuery `json:"claims,omitempty"`
	ClaimSets                  [][]string   `json:"claim_sets,omitempty"`
	RequireCryptographicHolder *bool        `json:"require_cryptographic_holder_binding,omitempty"`
}

// Meta holds format-specific constraints ("dc+sd-jwt": vct_values).
type Meta struct {
	VCTValues    []string `json:"vct_values,omitempty"`
	DoctypeValue string   `json:"doctype_value,omitempty"`
}

// ClaimQuery asks for one claim, optionally with accepted values.
type ClaimQuery struct {
	ID     string `json:"id,omitempty"`
	Path   []any  `json:"path"`
	Values []any  `json:"values,omitempty"`
}

// CredentialSet lists alternatives (each a list of credential query ids).
type CredentialSet struct {
	Options  [][]string `json:"options"`
	Required *bool      `json:"required,omitempty"`
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Parse reads and validates a query.
func Parse(b []byte) (*Query, error) {
	// Unknown members are ignored, as extensions may add them.
	var q Query
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&q); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrQuery, err)
	}
	if err := q.Validate(); err != nil {
		return nil, err
	}
	return &q, nil
}

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrQuery, fmt.Sprintf(format, args...))
}

// Validate checks the rules DCQL states.
func (q *Query) Validate() error {
	if len(q.Credentials) == 0 {
		return bad("credentials must not be empty")
	}
	ids := map[string]bool{}
	for _, c := range q.Credentials {
		if !idRE.MatchString(c.ID) {
			return bad("credential id %q is not alphanumeric, _ or -", c.ID)
		}
		if ids[c.ID] {
			return bad("credential id %q is used twice", c.ID)
		}
		ids[c.ID] = true
		if c.Format == "" {
			return bad("credential %q has no format", c.ID)
		}
		if c.Meta == nil {
			return bad("credential %q has no meta", c.ID)
		}
		claimIDs := map[string]bool{}
		for _, cl := range c.Claims {
			if len(cl.Path) == 0 {
				return bad("credential %q: a claim has an empty path", c.ID)
			}
			for _, p := range cl.Path {
				switch x := p.(type) {
				case string, nil:
				case float64:
					if x < 0 || x != float64(int(x)) {
						return bad("credential %q: path index %v is not a non-negative integer", c.ID, x)
					}
				default:
					return bad("credential %q: path element %v is not a string, null or an index", c.ID, p)
				}
			}
			if len(c.ClaimSets) > 0 && cl.ID == "" {
				return bad("credential %q: claims need ids when claim_sets is given", c.ID)
			}
			if cl.ID != "" {
				if !idRE.MatchString(cl.ID) || claimIDs[cl.ID] {
					return bad("credential %q: claim id %q is invalid or used twice", c.ID, cl.ID)
				}
				claimIDs[cl.ID] = true
			}
		}
		if len(c.ClaimSets) > 0 && len(c.Claims) == 0 {
			return bad("credential %q: claim_sets without claims", c.ID)
		}
		for _, set := range c.ClaimSets {
			if len(set) == 0 {
				return bad("credential %q: an empty claim set", c.ID)
			}
			for _, id := range set {
				if !claimIDs[id] {
					return bad("credential %q: claim set names unknown claim %q", c.ID, id)
				}
			}
		}
	}
	for _, s := range q.CredentialSets {
		if len(s.Options) == 0 {
			return bad("a credential set has no options")
		}
		for _, opt := range s.Options {
			if len(opt) == 0 {
				return bad("a credential set has an empty option")
			}
			for _, id := range opt {
				if !ids[id] {
					return bad("a credential set names unknown credential %q", id)
				}
			}
		}
	}
	return nil
}

// Requested is what a credential query asks of one held credential.
type Requested struct {
	Paths []sdjwt.Path // claims to disclose
}

// Match answers a "dc+sd-jwt" credential query with a credential whose
// full claims (as the holder sees them) and vct are given. It returns
// the paths to disclose, or false when the credential does not answer.
// With claim_sets, the first set the credential satisfies wins (the
// verifier's order is its preference); without claims, nothing but the
// always-visible claims is disclosed.
func Match(cq CredentialQuery, vct string, claims map[string]any) (*Requested, bool) {
	if cq.Format != "dc+sd-jwt" {
		return nil, false
	}
	if cq.Meta == nil || len(cq.Meta.VCTValues) > 0 && !slices.Contains(cq.Meta.VCTValues, vct) {
		return nil, false
	}
	satisfied := func(cl ClaimQuery) bool {
		vals := resolve(claims, cl.Path)
		if len(vals) == 0 {
			return false
		}
		if len(cl.Values) == 0 {
			return true
		}
		for _, v := range vals {
			for _, want := range cl.Values {
				if reflect.DeepEqual(v, want) {
					return true
				}
			}
		}
		return false
	}
	pathOf := func(cl ClaimQuery) sdjwt.Path {
		p := make(sdjwt.Path, len(cl.Path))
		for i, e := range cl.Path {
			if f, ok := e.(float64); ok {
				p[i] = int(f)
			} else {
				p[i] = e
			}
		}
		return p
	}
	if len(cq.ClaimSets) == 0 {
		r := &Requested{}
		for _, cl := range cq.Claims {
			if !satisfied(cl) {
				return nil, false
			}
			r.Paths = append(r.Paths, pathOf(cl))
		}
		return r, true
	}
	byID := map[string]ClaimQuery{}
	for _, cl := range cq.Claims {
		byID[cl.ID] = cl
	}
	for _, set := range cq.ClaimSets {
		r := &Requested{}
		ok := true
		for _, id := range set {
			if !satisfied(byID[id]) {
				ok = false
				break
			}
			r.Paths = append(r.Paths, pathOf(byID[id]))
		}
		if ok {
			return r, true
		}
	}
	return nil, false
}

// resolve returns the values a claims path points to.
func resolve(v any, path []any) []any {
	if len(path) == 0 {
		return []any{v}
	}
	switch p := path[0].(type) {
	case string:
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		e, ok := m[p]
		if !ok {
			return nil
		}
		return resolve(e, path[1:])
	case nil:
		arr, ok := v.([]any)
		if !ok {
			return nil
		}
		var out []any
		for _, e := range arr {
			out = append(out, resolve(e, path[1:])...)
		}
		return out
	case float64:
		arr, ok := v.([]any)
		if !ok || int(p) >= len(arr) {
			return nil
		}
		return resolve(arr[int(p)], path[1:])
	}
	return nil
}
