package dcc

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/civstack/civstack/internal/conformance"
)

// TestSchemaSuite runs the DCC schema repository's own valid and invalid
// cases and examples through ValidateSchema.
func TestSchemaSuite(t *testing.T) {
	root := filepath.Dir(conformance.File(t, "dcc-schema/DCC.combined-schema.json"))
	pass, total := 0, 0
	for _, dir := range []string{"test/valid", "test/invalid", "examples/vaccination", "examples/test", "examples/recovery"} {
		files, _ := filepath.Glob(filepath.Join(root, dir, "*.json"))
		if len(files) == 0 {
			t.Fatalf("no cases in %s", dir)
		}
		for _, f := range files {
			total++
			doc := readDoc(t, f)
			err := ValidateSchema(doc)
			wantValid := !strings.HasSuffix(dir, "invalid")
			if (err == nil) != wantValid {
				t.Errorf("%s/%s: want valid=%v, got %v", dir, filepath.Base(f), wantValid, err)
				continue
			}
			pass++
		}
	}
	t.Logf("dcc-schema cases: %d of %d agree", pass, total)
}

func readDoc(t *testing.T, path string) map[string]any {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc
}

// TestSchemaMatchesOfficial compares ValidateSchema with the official JSON
// Schema (each version's, run by a JSON Schema 2020-12 validator with
// format assertions off) on every payload of the EU test data and on
// mutations of each: every member removed, every string made a number,
// names lower-cased, dose numbers zeroed. The only differences allowed are
// the two checks we add on purpose: exactly one of v/t/r (the schemas
// before 1.3.0 allow none or several) and an assigned ISO 3166-1 country.
func TestSchemaMatchesOfficial(t *testing.T) {
	root := filepath.Dir(conformance.File(t, "dcc-schema/DCC.combined-schema.json"))
	schemas := map[string]*jsonschema.Schema{}
	compile := func(ver string) *jsonschema.Schema {
		mm := ver
		if i := strings.LastIndexByte(ver, '.'); i > 0 {
			mm = ver[:i]
		}
		key := ver
		path := filepath.Join(root, "DCC.combined-schema.json")
		if c, _ := filepath.Glob(filepath.Join(root, "older-combined", ver, "*.json")); len(c) == 1 {
			path = c[0]
		} else if mm != "1.3" {
			return nil
		} else {
			key = "1.3.3"
		}
		if s, ok := schemas[key]; ok {
			return s
		}
		c := jsonschema.NewCompiler()
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddResource("file:///schema.json", doc); err != nil {
			t.Fatal(err)
		}
		s, err := c.Compile("file:///schema.json")
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		schemas[key] = s
		return s
	}
	cases, _ := loadDGC(t)
	var docs []map[string]any
	for _, c := range cases {
		if d, err := c.jsonDoc(); err == nil && d != nil {
			docs = append(docs, d)
		}
	}
	compared, designed := 0, 0
	var diffs []string
	for _, base := range docs {
		for _, m := range mutations(base) {
			ver, _ := m.doc["ver"].(string)
			s := compile(ver)
			if s == nil {
				continue
			}
			// Round-trip so that the official validator sees plain JSON.
			raw, _ := json.Marshal(m.doc)
			var plain any
			json.Unmarshal(raw, &plain)
			officialOK := s.Validate(plain) == nil
			ours := ValidateSchema(plain.(map[string]any))
			compared++
			if officialOK == (ours == nil) {
				continue
			}
			if officialOK && ours != nil && (strings.Contains(ours.Error(), "of v, t and r") || strings.Contains(ours.Error(), "entries, want exactly 1") ||
				strings.Contains(ours.Error(), "ISO 3166-1")) {
				designed++
				continue
			}
			diffs = append(diffs, fmt.Sprintf("ver %s, %s: official valid=%v, ours: %v", ver, m.what, officialOK, ours))
		}
	}
	sort.Strings(diffs)
	diffs = compact(diffs)
	for _, d := range diffs {
		t.Error(d)
	}
	t.Logf("%d payloads compared with the official schema: %d agree, %d differ by design (one group, ISO countries), %d otherwise",
		compared, compared-designed-len(diffs), designed, len(diffs))
}

func compact(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

type mutation struct {
	what string
	doc  map[string]any
}

func clone(v any) any {
	raw, _ := json.Marshal(v)
	var out any
	json.Unmarshal(raw, &out)
	return out
}

// mutations returns doc itself and variants, each breaking one thing.
func mutations(doc map[string]any) []mutation {
	out := []mutation{{"as given", doc}}
	// Paths to every member: top level, nam, and the group entry.
	var walk func(prefix []string, v any)
	walk = func(prefix []string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				p := append(append([]string{}, prefix...), k)
				if prefix == nil && k == "ver" {
					continue
				}
				d := clone(doc).(map[string]any)
				delete(lookup(d, prefix).(map[string]any), k)
				out = append(out, mutation{"without " + strings.Join(p, "/"), d})
				if s, ok := e.(string); ok {
					d := clone(doc).(map[string]any)
					lookup(d, prefix).(map[string]any)[k] = 7.0
					out = append(out, mutation{strings.Join(p, "/") + " a number", d})
					if s != strings.ToLower(s) {
						d := clone(doc).(map[string]any)
						lookup(d, prefix).(map[string]any)[k] = strings.ToLower(s)
						out = append(out, mutation{strings.Join(p, "/") + " lower-cased", d})
					}
					d = clone(doc).(map[string]any)
					lookup(d, prefix).(map[string]any)[k] = strings.Repeat("A", 81)
					out = append(out, mutation{strings.Join(p, "/") + " 81 characters", d})
				}
				if _, ok := e.(float64); ok {
					d := clone(doc).(map[string]any)
					lookup(d, prefix).(map[string]any)[k] = 0.0
					out = append(out, mutation{strings.Join(p, "/") + " zero", d})
				}
				walk(p, e)
			}
		case []any:
			if len(x) > 0 {
				walk(append(append([]string{}, prefix...), "0"), x[0])
			}
		}
	}
	walk(nil, doc)
	return out
}

func lookup(v any, path []string) any {
	for _, p := range path {
		switch x := v.(type) {
		case map[string]any:
			v = x[p]
		case []any:
			v = x[0]
		}
	}
	return v
}
