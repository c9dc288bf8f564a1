package dcc

import "fmt"

// HealthCodeVersion is the "ver" of civstack's health code payload:
//
//	{"ver": "civstack-hc/1", "nam": {fn, fnt, gn, gnt}, "dob": "YYYY[-MM[-DD]]",
//	 "st": "green"|"yellow"|"red", "rv": "<rules version>", "since": "YYYY-MM-DD"}
//
// It holds what a verifier needs (the colour, the holder's name and date of
// birth, which rules decided) and never the questionnaire answers or the
// reason.
const HealthCodeVersion = "civstack-hc/1"

// ValidateHealthCode checks a health code payload's shape.
func ValidateHealthCode(doc map[string]any) error {
	if doc["ver"] != HealthCodeVersion {
		return &SchemaError{"/ver", fmt.Sprintf("%v is not %s", doc["ver"], HealthCodeVersion)}
	}
	switch doc["st"] {
	case "green", "yellow", "red":
	default:
		return &SchemaError{"/st", fmt.Sprintf("%v is not green, yellow or red", doc["st"])}
	}
	nam, ok := doc["nam"].(map[string]any)
	if !ok {
		return &SchemaError{"/nam", "missing or not an object"}
	}
	for _, f := range []string{"fn", "gn", "fnt", "gnt"} {
		if v, present := nam[f]; present {
			if _, ok := v.(string); !ok {
				return &SchemaError{"/nam/" + f, "not a string"}
			}
		}
	}
	dob, ok := doc["dob"].(string)
	if !ok || !dobPartialEmpty.MatchString(dob) {
		return &SchemaError{"/dob", "missing or not a date of birth"}
	}
	for _, f := range []string{"rv", "since"} {
		if _, ok := doc[f].(string); !ok {
			return &SchemaError{"/" + f, "missing or not a string"}
		}
	}
	return nil
}
