package certlogic

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/civstack/civstack/internal/conformance"
)

type suiteFile struct {
	Name      string `json:"name"`
	Directive string `json:"directive"`
	Cases     []struct {
		Name       string `json:"name"`
		Directive  string `json:"directive"`
		Expr       any    `json:"certLogicExpression"`
		Assertions []struct {
			Directive string `json:"directive"`
			Expr      any    `json:"certLogicExpression"`
			Data      any    `json:"data"`
			Expected  any    `json:"expected"`
			Message   string `json:"message"`
		} `json:"assertions"`
	} `json:"cases"`
}

func canon(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "unmarshalable: " + err.Error()
	}
	return string(b)
}

// TestEvaluatorSuite runs every non-skipped assertion of the CertLogic
// 1.3.3 test suite.
func TestEvaluatorSuite(t *testing.T) {
	dir := filepath.Dir(conformance.File(t, "certlogic/testSuite/and.json"))
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	pass, total, skipped := 0, 0, 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var s suiteFile
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, c := range s.Cases {
			for i, a := range c.Assertions {
				if s.Directive == "skip" || c.Directive == "skip" || a.Directive == "skip" {
					skipped++
					continue
				}
				total++
				expr := c.Expr
				if a.Expr != nil {
					expr = a.Expr
				}
				where := filepath.Base(f) + ": " + c.Name + " #" + itoa(i) + " " + a.Message
				e, err := Compile(expr)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				got, err := e.Eval(a.Data)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				if canon(got) != canon(a.Expected) {
					t.Errorf("%s: got %s, want %s", where, canon(got), canon(a.Expected))
					continue
				}
				pass++
			}
		}
	}
	t.Logf("CertLogic test suite: %d of %d assertions pass (%d skipped by the suite)", pass, total, skipped)
	if total == 0 {
		t.Fatal("no assertions found")
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestValidationSuite runs every case of the CertLogic validator suite,
// comparing the issues (expression and message) exactly.
func TestValidationSuite(t *testing.T) {
	dir := filepath.Dir(conformance.File(t, "certlogic/validation-testSuite/var-operations.json"))
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	pass, total := 0, 0
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		var s struct {
			Cases []struct {
				Expr   any `json:"certLogicExpression"`
				Issues []struct {
					Expr    any    `json:"expr"`
					Message string `json:"message"`
				} `json:"issues"`
			} `json:"cases"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, c := range s.Cases {
			total++
			got := Validate(c.Expr)
			type pair struct {
				Expr    string
				Message string
			}
			var g, w []pair
			for _, i := range got {
				g = append(g, pair{canon(i.Expr), i.Message})
			}
			for _, i := range c.Issues {
				w = append(w, pair{canon(i.Expr), i.Message})
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("%s: %s: issues %v, want %v", filepath.Base(f), canon(c.Expr), g, w)
				continue
			}
			pass++
		}
	}
	t.Logf("CertLogic validation suite: %d of %d cases pass", pass, total)
}
