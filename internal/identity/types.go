package identity

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/language"

	"github.com/civstack/civstack/internal/sdjwt"
	"github.com/civstack/civstack/internal/text"
)

// Field is one claim of a credential type: the issuer's officer types it
// (Derived ones are computed), the wallet and verifier show its Label.
// Name is the claims path with "." between object members.
type Field struct {
	Name  string
	Label string
	// Kind is "text", "date" (YYYY-MM-DD), "country" (an ISO 3166-1
	// alpha-2 code) or "list" (comma-separated alpha-2 codes).
	Kind string
	// Optional fields may be left empty; they are then not in the
	// credential at all.
	Optional bool
	// Past dates (a birth, an award) cannot be later than the day of
	// issuance: a later one is a slip of the officer's keyboard.
	Past bool
}

// Type is a credential type a registered issuer may offer.
type Type struct {
	ID       string // the OpenID4VCI credential configuration id
	VCT      string
	Name     string
	Fields   []Field
	Derived  []Field // computed at issuance (age flags) or set by the issuer
	Validity time.Duration
}

// Types is the catalog: the PID (names, birth date, age flags,
// nationality, address), the social-services card (social security and
// health insurance), and a university diploma.
var Types = []*Type{
	{ID: "pid", VCT: "urn:eudi:pid:1", Name: "National identity (PID)", Validity: 90 * 24 * time.Hour,
		Fields: []Field{
			{Name: "given_name", Label: "Given name", Kind: "text"},
			{Name: "family_name", Label: "Family name", Kind: "text"},
			{Name: "birthdate", Label: "Date of birth", Kind: "date", Past: true},
			{Name: "nationalities", Label: "Nationalities", Kind: "list"},
			{Name: "address.street_address", Label: "Street address", Kind: "text", Optional: true},
			{Name: "address.postal_code", Label: "Postal code", Kind: "text", Optional: true},
			{Name: "address.locality", Label: "Town or city", Kind: "text", Optional: true},
			{Name: "address.country", Label: "Country of residence", Kind: "country", Optional: true},
		},
		Derived: []Field{
			{Name: "age_over_18", Label: "Over 18"},
			{Name: "age_over_65", Label: "Over 65"},
			{Name: "issuing_authority", Label: "Issuing authority"},
			{Name: "issuing_country", Label: "Issuing country"},
		}},
	{ID: "social-security", VCT: "urn:civstack:social-security:1", Name: "Social-services card", Validity: 365 * 24 * time.Hour,
		Fields: []Field{
			{Name: "given_name", Label: "Given name", Kind: "text"},
			{Name: "family_name", Label: "Family name", Kind: "text"},
			{Name: "birthdate", Label: "Date of birth", Kind: "date", Past: true},
			{Name: "social_security_number", Label: "Social security number", Kind: "text"},
			{Name: "health_insurance.provider", Label: "Health insurer", Kind: "text"},
			{Name: "health_insurance.valid_until", Label: "Insured until", Kind: "date"},
		},
		Derived: []Field{{Name: "issuing_authority", Label: "Issuing authority"}}},
	{ID: "diploma", VCT: "urn:civstack:diploma:1", Name: "University diploma", Validity: 10 * 365 * 24 * time.Hour,
		Fields: []Field{
			{Name: "given_name", Label: "Given name", Kind: "text"},
			{Name: "family_name", Label: "Family name", Kind: "text"},
			{Name: "degree", Label: "Degree", Kind: "text"},
			{Name: "field_of_study", Label: "Field of study", Kind: "text"},
			{Name: "awarded", Label: "Awarded on", Kind: "date", Past: true},
		},
		Derived: []Field{{Name: "issuing_authority", Label: "Awarded by"}}},
}

// TypeByID returns a catalog type, or nil.
func TypeByID(id string) *Type {
	for _, t := range Types {
		if t.ID == id {
			return t
		}
	}
	return nil
}

// TypeByVCT returns the catalog type with that vct, or nil.
func TypeByVCT(vct string) *Type {
	for _, t := range Types {
		if t.VCT == vct {
			return t
		}
	}
	return nil
}

// Claims lists every claim of the type, typed and derived.
func (t *Type) Claims() []Field { return append(append([]Field{}, t.Fields...), t.Derived...) }

// Field returns the type's claim called name, or false.
func (t *Type) Field(name string) (Field, bool) {
	for _, f := range t.Claims() {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// Label names a claim for people ("address.locality" → "Town or city").
func (t *Type) Label(name string) string {
	if f, ok := t.Field(name); ok {
		return f.Label
	}
	return name
}

// Path is the claim's DCQL claims path.
func (f Field) Path() sdjwt.Path {
	var p sdjwt.Path
	for _, s := range strings.Split(f.Name, ".") {
		p = append(p, s)
	}
	return p
}

// PathName is the inverse of Field.Path for paths of object members.
func PathName(p []any) (string, bool) {
	var parts []string
	for _, e := range p {
		s, ok := e.(string)
		if !ok {
			return "", false
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "."), len(parts) > 0
}

var alpha2 = regexp.MustCompile(`^[A-Z]{2}$`)

// isCountryCode reports whether s is an assigned ISO 3166-1 alpha-2 code
// (or XK, Kosovo's user-assigned code, which EU wallets take): "XY" and
// "EU" are typing errors on an identity document, not countries.
func isCountryCode(s string) bool {
	if !alpha2.MatchString(s) {
		return false
	}
	r, err := language.ParseRegion(s)
	return err == nil && r.IsCountry() && (!r.IsPrivateUse() || s == "XK")
}

// LatestDay is the latest date (YYYY-MM-DD) a Past field may hold at now:
// a day's grace, as the issuer's today may be the citizen's tomorrow. The
// issuer's form offers no later day.
func LatestDay(now time.Time) string {
	return now.Add(24 * time.Hour).UTC().Format(time.DateOnly)
}

// BuildClaims checks what an officer typed for a credential of type t
// (value gives each field's text) and returns the claims, with the
// derived ones computed at now.
func (t *Type) BuildClaims(value func(name string) string, issuer, country string, now time.Time) (map[string]any, error) {
	claims := map[string]any{}
	for _, f := range t.Fields {
		v := strings.TrimSpace(value(f.Name))
		if v == "" {
			if f.Optional {
				continue
			}
			return nil, fmt.Errorf("%w: %s is required", ErrInvalid, f.Label)
		}
		switch {
		case !utf8.ValidString(v):
			return nil, fmt.Errorf("%w: %s is not valid UTF-8 text", ErrInvalid, f.Label)
		case utf8.RuneCountInString(v) > 200:
			return nil, fmt.Errorf("%w: %s is too long (at most 200 characters)", ErrInvalid, f.Label)
		case !text.Line(v):
			// A signed claim is shown to every verifier it is presented
			// to: one line, read as written.
			return nil, fmt.Errorf("%w: %s is one line of text (no line breaks, control characters or bidirectional overrides)", ErrInvalid, f.Label)
		}
		var val any = v
		switch f.Kind {
		case "date":
			if _, err := time.Parse(time.DateOnly, v); err != nil {
				return nil, fmt.Errorf("%w: %s %q is not a date (YYYY-MM-DD)", ErrInvalid, f.Label, v)
			}
			if f.Past && v > LatestDay(now) {
				return nil, fmt.Errorf("%w: %s %s is in the future", ErrInvalid, f.Label, v)
			}
		case "country":
			v = strings.ToUpper(v)
			if !isCountryCode(v) {
				return nil, fmt.Errorf("%w: %s %q is not a two-letter country code (such as IT)", ErrInvalid, f.Label, v)
			}
			val = v
		case "list":
			var list []any
			for _, e := range strings.Split(v, ",") {
				e = strings.ToUpper(strings.TrimSpace(e))
				if !isCountryCode(e) {
					return nil, fmt.Errorf("%w: %s: %q is not a two-letter country code", ErrInvalid, f.Label, e)
				}
				list = append(list, e)
			}
			val = list
		}
		setPath(claims, f.Name, val)
	}
	for _, f := range t.Derived {
		switch f.Name {
		case "age_over_18", "age_over_65":
			born, _ := time.Parse(time.DateOnly, claims["birthdate"].(string))
			years := 18
			if f.Name == "age_over_65" {
				years = 65
			}
			claims[f.Name] = !born.AddDate(years, 0, 0).After(now)
		case "issuing_authority":
			claims[f.Name] = issuer
		case "issuing_country":
			claims[f.Name] = country
		}
	}
	return claims, nil
}

func setPath(m map[string]any, name string, v any) {
	parts := strings.Split(name, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = v
}

// Flatten lists a credential's claims as catalog names with display text,
// in the type's order ("address.locality" → "Bologna").
func (t *Type) Flatten(claims map[string]any) []Claim {
	var out []Claim
	for _, f := range t.Claims() {
		if v, ok := lookup(claims, f.Name); ok {
			out = append(out, Claim{Name: f.Name, Label: f.Label, Value: display(v)})
		}
	}
	return out
}

// Claim is one claim for display.
type Claim struct {
	Name, Label, Value string
}

func lookup(m map[string]any, name string) (any, bool) {
	parts := strings.Split(name, ".")
	var cur any = m
	for _, p := range parts {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func display(v any) string {
	switch x := v.(type) {
	case bool:
		if x {
			return "true"
		}
		return "false"
	case []any:
		var parts []string
		for _, e := range x {
			parts = append(parts, display(e))
		}
		return strings.Join(parts, ", ")
	case string:
		return x
	}
	return fmt.Sprint(v)
}
