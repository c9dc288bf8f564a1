package sdjwt

import "fmt"

// Path is a claims path pointer (OpenID4VP DCQL): a string selects an
// object member, nil every element of an array, an int one element.
type Path []any

// DisclosurePaths resolves where each disclosure of an issued SD-JWT sits
// in the claims (array elements get their index among the array's
// elements as issued). Disclosures nothing references are left out.
func DisclosurePaths(issued string) (map[string]Path, error) {
	p, err := Parse(issued)
	if err != nil {
		return nil, err
	}
	// The payload is read, not verified: this is the holder's own credential.
	payload, err := unverifiedPayload(p.JWT)
	if err != nil {
		return nil, err
	}
	byDigest := map[string]*Disclosure{}
	for _, enc := range p.Disclosures {
		d, err := ParseDisclosure(enc)
		if err != nil {
			return nil, err
		}
		byDigest[d.Digest()] = d
	}
	out := map[string]Path{}
	var walk func(path Path, v any)
	walk = func(path Path, v any) {
		switch x := v.(type) {
		case map[string]any:
			if sd, ok := x["_sd"].([]any); ok {
				for _, dg := range sd {
					s, _ := dg.(string)
					if d := byDigest[s]; d != nil && !d.IsElement {
						dp := append(append(Path{}, path...), d.Name)
						out[d.Encoded] = dp
						walk(dp, d.Value)
					}
				}
			}
			for k, e := range x {
				if k != "_sd" {
					walk(append(append(Path{}, path...), k), e)
				}
			}
		case []any:
			for i, e := range x {
				ep := append(append(Path{}, path...), i)
				if m, ok := e.(map[string]any); ok && len(m) == 1 {
					if s, ok := m["..."].(string); ok {
						if d := byDigest[s]; d != nil && d.IsElement {
							out[d.Encoded] = ep
							walk(ep, d.Value)
						}
						continue
					}
				}
				walk(ep, e)
			}
		}
	}
	walk(Path{}, payload)
	return out, nil
}

// covers reports whether revealing want needs the disclosure at have: it
// lies on the way to want (a prefix), or, with below, inside it (want asks
// for the whole object or array).
func covers(want, have Path, below bool) bool {
	if !below && len(have) > len(want) {
		return false
	}
	n := min(len(want), len(have))
	for i := 0; i < n; i++ {
		switch w := want[i].(type) {
		case nil:
			if _, isIndex := have[i].(int); !isIndex {
				return false
			}
		case string:
			if h, ok := have[i].(string); !ok || h != w {
				return false
			}
		case int:
			if h, ok := have[i].(int); !ok || h != w {
				return false
			}
		case float64:
			if h, ok := have[i].(int); !ok || float64(h) != w {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// KeepPaths returns a Present filter that keeps exactly the disclosures
// needed to reveal the wanted paths and everything below them (DCQL: a
// path to an object asks for all of it).
func KeepPaths(issued string, want []Path) (func(*Disclosure) bool, error) {
	return keep(issued, want, true)
}

// KeepOnly is KeepPaths without what lies below the wanted paths: a
// disclosed object shows only its always-visible members until its own
// disclosable members are asked for too.
func KeepOnly(issued string, want []Path) (func(*Disclosure) bool, error) {
	return keep(issued, want, false)
}

func keep(issued string, want []Path, below bool) (func(*Disclosure) bool, error) {
	paths, err := DisclosurePaths(issued)
	if err != nil {
		return nil, err
	}
	return func(d *Disclosure) bool {
		have, ok := paths[d.Encoded]
		if !ok {
			return false
		}
		for _, w := range want {
			if covers(w, have, below) {
				return true
			}
		}
		return false
	}, nil
}

func unverifiedPayload(jwt string) (map[string]any, error) {
	_, raw, err := splitJWS(jwt)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := jsonUnmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: payload is not a JSON object", ErrFormat)
	}
	return m, nil
}
