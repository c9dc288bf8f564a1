package dcc

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/language"
)

// The DCC JSON schema (1.0.0 to 1.3.3) as Go checks. The schema is the
// normative reference; the conformance tests compare these checks with the
// schema itself. Value sets are annotations in the schema and are not
// enforced; JSON Schema formats ("date", "date-time") are not asserted, as
// in the schema's own reference validation.
var (
	verPattern      = regexp.MustCompile(`^\d+.\d+.\d+$`)
	stdNamePattern  = regexp.MustCompile(`^[A-Z<]*$`)
	dobFull         = regexp.MustCompile(`(19|20)\d{2}-\d{2}-\d{2}`)         // 1.0.x, unanchored as in the schema
	dobPartial      = regexp.MustCompile(`^(19|20)\d\d(-\d\d){0,2}$`)        // 1.1.0 – 1.2.1
	dobPartialEmpty = regexp.MustCompile(`^((19|20)\d\d(-\d\d){0,2}){0,1}$`) // 1.3.x
	countryPattern  = regexp.MustCompile(`[A-Z]{1,10}`)
)

// SchemaError is a payload that does not follow the DCC schema; Path names
// the member (JSON-pointer style).
type SchemaError struct {
	Path   string
	Reason string
}

func (e *SchemaError) Error() string { return fmt.Sprintf("schema: %s: %s", e.Path, e.Reason) }

// isCountry reports whether s is acceptable as a country of vaccination or
// test: the schema asks for "ISO 3166 alpha-2 where possible" (longer
// capitals, up to 10, name organisations such as UNHCR), so a two-letter
// code must be an assigned ISO 3166-1 code (or XK, Kosovo's user-assigned
// code that member states accept); an unassigned one such as "XY" is a
// forgery or a typing error.
func isCountry(s string) bool {
	if len(s) != 2 {
		return len(s) <= 10
	}
	r, err := language.ParseRegion(s)
	return err == nil && r.IsCountry() && (!r.IsPrivateUse() || s == "XK")
}

type schemaVersion struct{ major, minor, patch int }

func (v schemaVersion) atLeast(major, minor, patch int) bool {
	if v.major != major {
		return v.major > major
	}
	if v.minor != minor {
		return v.minor > minor
	}
	return v.patch >= patch
}

// ValidateSchema checks a DCC payload (decoded JSON: maps, slices, strings,
// float64) against the schema of the version its "ver" names, and that it
// holds exactly one of v, t and r with exactly one entry.
func ValidateSchema(doc map[string]any) error {
	verRaw, ok := doc["ver"].(string)
	if !ok {
		return &SchemaError{"/ver", "missing or not a string"}
	}
	if !verPattern.MatchString(verRaw) {
		return &SchemaError{"/ver", fmt.Sprintf("%q is not a version", verRaw)}
	}
	var ver schemaVersion
	parts := strings.FieldsFunc(verRaw, func(r rune) bool { return r < '0' || r > '9' })
	if len(parts) == 3 {
		ver.major, _ = strconv.Atoi(parts[0])
		ver.minor, _ = strconv.Atoi(parts[1])
		ver.patch, _ = strconv.Atoi(parts[2])
	}
	if ver.major != 1 || ver.minor > 3 {
		return &SchemaError{"/ver", fmt.Sprintf("schema version %s is not supported (1.0.0 to 1.3.x)", verRaw)}
	}
	nameMax := 80
	if !ver.atLeast(1, 3, 0) {
		nameMax = 50
	}
	nam, ok := doc["nam"].(map[string]any)
	if !ok {
		return &SchemaError{"/nam", "missing or not an object"}
	}
	for _, f := range []string{"fn", "gn", "fnt", "gnt"} {
		v, present := nam[f]
		if !present {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return &SchemaError{"/nam/" + f, "not a string"}
		}
		if utf8.RuneCountInString(s) > nameMax {
			return &SchemaError{"/nam/" + f, fmt.Sprintf("longer than %d characters", nameMax)}
		}
		if (f == "fnt" || f == "gnt") && !stdNamePattern.MatchString(s) {
			return &SchemaError{"/nam/" + f, "not in the ICAO 9303 alphabet (A-Z and <)"}
		}
	}
	_, hasFnt := nam["fnt"]
	_, hasGnt := nam["gnt"]
	if ver.atLeast(1, 3, 2) {
		if !hasFnt && !hasGnt {
			return &SchemaError{"/nam", "neither fnt nor gnt"}
		}
	} else if !hasFnt {
		return &SchemaError{"/nam/fnt", "missing"}
	}
	dob, ok := doc["dob"].(string)
	if !ok {
		return &SchemaError{"/dob", "missing or not a string"}
	}
	dobOK := dobPartialEmpty
	switch {
	case !ver.atLeast(1, 1, 0):
		dobOK = dobFull
	case !ver.atLeast(1, 3, 0):
		dobOK = dobPartial
	}
	if !dobOK.MatchString(dob) {
		return &SchemaError{"/dob", fmt.Sprintf("%q is not a date of birth schema %s allows", dob, verRaw)}
	}
	groups := 0
	for _, g := range []string{"v", "t", "r"} {
		raw, present := doc[g]
		if !present {
			continue
		}
		groups++
		arr, ok := raw.([]any)
		if !ok {
			return &SchemaError{"/" + g, "not an array"}
		}
		if len(arr) != 1 {
			return &SchemaError{"/" + g, fmt.Sprintf("%d entries, want exactly 1", len(arr))}
		}
		entry, ok := arr[0].(map[string]any)
		if !ok {
			return &SchemaError{"/" + g + "/0", "not an object"}
		}
		if err := validateEntry(g, entry, ver); err != nil {
			return err
		}
	}
	if groups != 1 {
		return &SchemaError{"/", fmt.Sprintf("%d of v, t and r present, want exactly 1", groups)}
	}
	return nil
}

func validateEntry(group string, e map[string]any, ver schemaVersion) error {
	var required []string
	textMax := 80
	if !ver.atLeast(1, 3, 0) {
		textMax = 50
	}
	switch group {
	case "v":
		required = []string{"tg", "vp", "mp", "ma", "dn", "sd", "dt", "co", "is", "ci"}
	case "t":
		required = []string{"tg", "tt", "sc", "tr", "co", "is", "ci"}
		if !ver.atLeast(1, 3, 0) {
			required = append(required, "tc")
		}
	case "r":
		required = []string{"tg", "fr", "co", "is", "df", "du", "ci"}
	}
	path := "/" + group + "/0/"
	for _, f := range required {
		if _, ok := e[f]; !ok {
			return &SchemaError{path + f, "missing"}
		}
	}
	for f, v := range e {
		switch f {
		case "dn", "sd":
			n, ok := v.(float64)
			if !ok || n != float64(int64(n)) {
				return &SchemaError{path + f, "not an integer"}
			}
			if n < 1 {
				return &SchemaError{path + f, "below 1"}
			}
		case "tg", "vp", "mp", "ma", "dt", "co", "is", "ci", "tt", "nm", "sc", "tr", "tc", "fr", "df", "du", "dr":
			if f == "dr" && ver.atLeast(1, 3, 0) {
				continue // the test result date left the schema in 1.3.0
			}
			s, ok := v.(string)
			if !ok {
				return &SchemaError{path + f, "not a string"}
			}
			switch f {
			case "is", "ci", "nm", "tc":
				if f == "nm" && !ver.atLeast(1, 3, 0) {
					break // no length limit on the test name before 1.3.0
				}
				if utf8.RuneCountInString(s) > textMax {
					return &SchemaError{path + f, fmt.Sprintf("longer than %d characters", textMax)}
				}
			case "co":
				if !countryPattern.MatchString(s) || !isCountry(s) {
					return &SchemaError{path + f, fmt.Sprintf("%q is not an ISO 3166-1 country code", s)}
				}
			}
		}
	}
	return nil
}
