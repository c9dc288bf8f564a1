package certlogic

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/civstack/civstack/internal/conformance"
)

// TestBusinessRules runs every member-state rule in dcc-business-rules
// against its own tests: the rule compiles, evaluates without an error,
// and yields the expected boolean.
func TestBusinessRules(t *testing.T) {
	root := filepath.Dir(conformance.File(t, "dcc-business-rules/README.md"))
	var defaultSets any
	raw, err := os.ReadFile(filepath.Join(root, "valuesets", "valueSets.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &defaultSets); err != nil {
		t.Fatal(err)
	}
	rules, _ := filepath.Glob(filepath.Join(root, "*", "*", "rule.json"))
	if len(rules) == 0 {
		t.Fatal("no rules")
	}
	pass, total := 0, 0
	var failures []string
	for _, rf := range rules {
		var rule struct {
			Identifier string
			Logic      any
		}
		raw, _ := os.ReadFile(rf)
		if err := json.Unmarshal(raw, &rule); err != nil {
			t.Fatalf("%s: %v", rf, err)
		}
		expr, compileErr := Compile(rule.Logic)
		tests, _ := filepath.Glob(filepath.Join(filepath.Dir(rf), "tests", "*.json"))
		for _, tf := range tests {
			total++
			var tc struct {
				Name     string
				Payload  any
				External map[string]any
				Expected bool
			}
			raw, _ := os.ReadFile(tf)
			if err := json.Unmarshal(raw, &tc); err != nil {
				t.Fatalf("%s: %v", tf, err)
			}
			where := rule.Identifier + "/" + filepath.Base(tf) + " (" + tc.Name + ")"
			if compileErr != nil {
				failures = append(failures, where+": "+compileErr.Error())
				continue
			}
			if tc.External == nil {
				tc.External = map[string]any{}
			}
			if _, ok := tc.External["valueSets"]; !ok {
				tc.External["valueSets"] = defaultSets
			}
			got, err := expr.Eval(map[string]any{"payload": tc.Payload, "external": tc.External})
			switch {
			case err != nil:
				failures = append(failures, where+": "+err.Error())
			case got != tc.Expected:
				failures = append(failures, where+": got "+canon(got)+", want "+canon(tc.Expected))
			default:
				pass++
			}
		}
	}
	sort.Strings(failures)
	for _, f := range failures {
		t.Error(f)
	}
	t.Logf("business rules: %d of %d tests pass (%d rules)", pass, total, len(rules))
}
