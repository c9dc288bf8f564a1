package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/civstack/civstack/internal/store/storetest"
)

// TestCrawlAPI calls every operation the API describes, on both engines,
// with the tokens of every demo organisation's roles and with paths,
// queries and bodies made from its own schema and filled with values
// real (the demo's ids) and odd (empty, very long, extreme numbers,
// markup): no answer is a 5xx and the node logs no error. The API's own
// tests check what the answers say; this one checks that no input,
// whoever sends it, breaks an operation. The values come from a fixed
// seed, so a failure repeats.
func TestCrawlAPI(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startCrawledDemo(t, e)
			orgs, err := w.n.reg.Organisations(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var tokens []*client
			ids := []string{"x", "12", ""}
			for _, o := range orgs {
				ids = append(ids, o.ID)
				for _, role := range o.Roles {
					tokens = append(tokens, w.apiClient(t, o.ID, role, "crawl"))
				}
			}
			for _, id := range w.people {
				ids = append(ids, id)
			}
			var spec struct {
				Paths      map[string]map[string]apiOperation `json:"paths"`
				Components struct {
					Schemas map[string]map[string]any `json:"schemas"`
				} `json:"components"`
			}
			newClient(t, w.n.URL).get("/api/v1/openapi.json").json(t, &spec)
			var people, orgIDs []any
			for _, id := range w.people {
				people = append(people, id)
			}
			for _, o := range orgs {
				orgIDs = append(orgIDs, o.ID)
			}
			slices.SortFunc(people, func(a, b any) int { return strings.Compare(a.(string), b.(string)) })
			g := &schemaGen{r: rand.New(rand.NewPCG(1, 2)), refs: spec.Components.Schemas, ids: ids, hints: map[string][]any{
				"citizen": people, "person": people, "owner": orgIDs, "partner": orgIDs, "service": {"tax-income", "population"}, "fields[]": {"declared_income", "address"},
				"purpose": {"TAX-AUDIT"}, "legal_basis": {"Tax Code §93"}, "officer": {"Crawl"}, "label": {"Crawl"}, "name": {"Crawl"}, "reference": {"crawl-1"},
				"reason": {"Crawl"}, "buyer_name": {"Crawl"}, "buyer_tax_id": {"IT12345678901"}, "role": {"agency", "merchant", "partner"},
				"amount": {12, 1250}, "price": {12}, "points": {12}, "daily_cap": {100}, "valid_days": {30}, "defer_days": {0, 3}, "ttl_seconds": {300},
			}}
			var paths []string
			for p := range spec.Paths {
				paths = append(paths, p)
			}
			slices.Sort(paths)
			var problems []string
			calls, answered := 0, map[int]int{}
			for _, p := range paths {
				var methods []string
				for m := range spec.Paths[p] {
					methods = append(methods, m)
				}
				slices.Sort(methods)
				for _, m := range methods {
					op := spec.Paths[p][m]
					// The tokens whose role the operation takes: each is
					// tried once, and those it refuses for their role are
					// left out (unless it refuses every one).
					fit := tokens
					for i := range 30 + len(tokens) {
						c := tokens[i%len(tokens)]
						if i >= len(tokens) {
							c = fit[g.r.IntN(len(fit))]
						}
						path, query := p, url.Values{}
						for _, prm := range op.Parameters {
							switch {
							case prm.In == "path":
								path = strings.ReplaceAll(path, "{"+prm.Name+"}", url.PathEscape(g.pick(g.ids)))
							case prm.In == "query" && g.r.IntN(2) == 0:
								query.Set(prm.Name, fmt.Sprint(g.value(prm.Schema, prm.Name, 0)))
							}
						}
						target := "/api/v1" + path
						if len(query) > 0 {
							target += "?" + query.Encode()
						}
						var r *response
						if body, ok := op.RequestBody.Content["application/json"]; ok {
							b, _ := json.Marshal(g.value(body.Schema, "", 0))
							r = c.do(strings.ToUpper(m), target, strings.NewReader(string(b)), "application/json")
						} else {
							r = c.do(strings.ToUpper(m), target, nil, "")
						}
						calls++
						answered[r.status/100]++
						if i < len(tokens) && strings.Contains(r.body, "needs a token with the") {
							fit = slices.DeleteFunc(slices.Clone(fit), func(x *client) bool { return x == c })
						}
						if len(fit) == 0 {
							fit = tokens
						}
						if r.status >= 500 {
							problems = append(problems, fmt.Sprintf("%s %s: %d %.200s", strings.ToUpper(m), target, r.status, r.body))
						}
					}
				}
			}
			problems = append(problems, logErrors(w.n.logs.String())...)
			t.Logf("%d calls as %d tokens: %d answered 2xx, %d 4xx", calls, len(tokens), answered[2], answered[4])
			if calls < 500 || answered[2] < 50 {
				t.Fatalf("the crawl reached too little (%d calls, %d answered 2xx): it checks nothing", calls, answered[2])
			}
			if len(problems) > 0 {
				t.Fatalf("%d problems:\n%s", len(problems), strings.Join(problems, "\n"))
			}
		})
	}
}

// apiOperation is what TestCrawlAPI reads of an OpenAPI operation.
type apiOperation struct {
	Parameters []struct {
		Name   string         `json:"name"`
		In     string         `json:"in"`
		Schema map[string]any `json:"schema"`
	} `json:"parameters"`
	RequestBody struct {
		Content map[string]struct {
			Schema map[string]any `json:"schema"`
		} `json:"content"`
	} `json:"requestBody"`
}

// schemaGen makes JSON values that fit a JSON schema's shape, with values
// that may not fit its limits: four times in five, for a property it has a
// hint for, a value that passes (so that the others reach what lies past
// the checks), sometimes with a control character at its end.
type schemaGen struct {
	r     *rand.Rand
	refs  map[string]map[string]any
	ids   []string
	hints map[string][]any // by property name ("fields[]": an item of fields)
}

func (g *schemaGen) pick(from []string) string { return from[g.r.IntN(len(from))] }

func (g *schemaGen) value(s map[string]any, name string, depth int) any {
	if ref, ok := s["$ref"].(string); ok {
		s = g.refs[ref[strings.LastIndex(ref, "/")+1:]]
	}
	if enum, ok := s["enum"].([]any); ok && len(enum) > 0 && g.r.IntN(4) > 0 {
		return enum[g.r.IntN(len(enum))]
	}
	typ, _ := s["type"].(string)
	if types, ok := s["type"].([]any); ok && len(types) > 0 {
		typ, _ = types[0].(string)
	}
	if hint := g.hints[name]; len(hint) > 0 && g.r.IntN(5) > 0 {
		switch v := hint[g.r.IntN(len(hint))].(type) {
		case string:
			if typ == "string" && g.r.IntN(20) == 0 {
				return v + []string{"\x00", "\x01", "\n", "\u2028", "\x7f"}[g.r.IntN(5)]
			}
			if typ == "string" {
				return v
			}
		case int:
			if typ == "integer" {
				return v
			}
		}
	}
	switch {
	case typ == "object" && depth < 4:
		out := map[string]any{}
		required, _ := s["required"].([]any)
		props, _ := s["properties"].(map[string]any)
		var names []string
		for name := range props {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			if slices.Contains(required, any(name)) || g.r.IntN(3) > 0 {
				ps, _ := props[name].(map[string]any)
				out[name] = g.value(ps, name, depth+1)
			}
		}
		return out
	case typ == "array" && depth < 4:
		items, _ := s["items"].(map[string]any)
		out := []any{}
		for range []int{1, 1, 2, 0, 120}[g.r.IntN(5)] {
			out = append(out, g.value(items, name+"[]", depth+1))
		}
		return out
	case typ == "integer":
		return []int64{0, 1, -1, 12, 1000, math.MaxInt64, math.MinInt64, int64(g.r.IntN(100000))}[g.r.IntN(8)]
	case typ == "number":
		return []float64{0, 0.5, -1, 12, 1e300}[g.r.IntN(5)]
	case typ == "boolean":
		return g.r.IntN(2) == 0
	}
	return g.pick(append([]string{"", "12", "TAX-AUDIT", "declared_income", "tax-income", "EUR", strings.Repeat("é", 3000), "<b>'\"", "2026-02-30", "-1"}, g.ids...))
}
