package dcql

import (
	"errors"
	"testing"
)

const overEighteen = `{"credentials": [{"id": "pid", "format": "dc+sd-jwt", "meta": {"vct_values": ["urn:eudi:pid:1"]},
  "claims": [{"path": ["age_over_18"], "values": [true]}]}]}`

var amira = map[string]any{"given_name": "Amira", "age_over_18": true, "address": map[string]any{"locality": "Bologna"},
	"nationalities": []any{"IT", "MA"}}

func TestMatch(t *testing.T) {
	q, err := Parse([]byte(overEighteen))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := Match(q.Credentials[0], "urn:eudi:pid:1", amira)
	if !ok || len(r.Paths) != 1 || r.Paths[0][0] != "age_over_18" {
		t.Fatalf("over 18: %+v %v", r, ok)
	}
	if _, ok := Match(q.Credentials[0], "urn:example:diploma", amira); ok {
		t.Fatal("another vct matched")
	}
	if _, ok := Match(q.Credentials[0], "urn:eudi:pid:1", map[string]any{"age_over_18": false}); ok {
		t.Fatal("a minor matched a values: [true] query")
	}
	sets, err := Parse([]byte(`{"credentials": [{"id": "pid", "format": "dc+sd-jwt", "meta": {},
	  "claims": [{"id": "a", "path": ["address", "postal_code"]}, {"id": "b", "path": ["address", "locality"]}, {"id": "n", "path": ["nationalities", null]}],
	  "claim_sets": [["a"], ["b", "n"]]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	r, ok = Match(sets.Credentials[0], "urn:eudi:pid:1", amira)
	if !ok || len(r.Paths) != 2 || r.Paths[0][1] != "locality" || r.Paths[1][1] != nil {
		t.Fatalf("claim sets: %+v %v", r, ok)
	}
	idx, _ := Parse([]byte(`{"credentials": [{"id": "x", "format": "dc+sd-jwt", "meta": {}, "claims": [{"path": ["nationalities", 1]}]}]}`))
	if r, ok := Match(idx.Credentials[0], "", amira); !ok || r.Paths[0][1] != 1 {
		t.Fatalf("index path: %+v %v", r, ok)
	}
}

func TestInvalidQueries(t *testing.T) {
	for what, q := range map[string]string{
		"no credentials":       `{"credentials": []}`,
		"duplicate ids":        `{"credentials": [{"id": "a", "format": "dc+sd-jwt", "meta": {}}, {"id": "a", "format": "dc+sd-jwt", "meta": {}}]}`,
		"a bad id":             `{"credentials": [{"id": "a b", "format": "dc+sd-jwt", "meta": {}}]}`,
		"no format":            `{"credentials": [{"id": "a", "meta": {}}]}`,
		"an empty path":        `{"credentials": [{"id": "a", "format": "dc+sd-jwt", "meta": {}, "claims": [{"path": []}]}]}`,
		"a negative index":     `{"credentials": [{"id": "a", "format": "dc+sd-jwt", "meta": {}, "claims": [{"path": ["x", -1]}]}]}`,
		"an unknown claim set": `{"credentials": [{"id": "a", "format": "dc+sd-jwt", "meta": {}, "claims": [{"id": "c", "path": ["x"]}], "claim_sets": [["d"]]}]}`,
		"an unknown set id":    `{"credentials": [{"id": "a", "format": "dc+sd-jwt", "meta": {}}], "credential_sets": [{"options": [["b"]]}]}`,
		"no meta":              `{"credentials": [{"id": "a", "format": "dc+sd-jwt"}]}`,
		"not JSON":             `{`,
	} {
		if _, err := Parse([]byte(q)); !errors.Is(err, ErrQuery) {
			t.Errorf("%s: %v", what, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(overEighteen))
	f.Add([]byte(`{"credentials": [{"id": "p", "format": "dc+sd-jwt", "meta": {}, "claims": [{"id": "a", "path": ["x", null, 0]}], "claim_sets": [["a"]]}], "credential_sets": [{"options": [["p"]]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := Parse(b)
		if err != nil {
			return
		}
		for _, c := range q.Credentials {
			Match(c, "urn:eudi:pid:1", amira)
		}
	})
}
