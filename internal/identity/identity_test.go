package identity

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/dcql"
)

func TestBuildClaims(t *testing.T) {
	pid := TypeByID("pid")
	form := map[string]string{"given_name": "Amira", "family_name": "Haddad", "birthdate": "2008-12-03", "nationalities": "it, tn, xk", "address.locality": "Bologna"}
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	c, err := pid.BuildClaims(func(n string) string { return form[n] }, "Civil Registry Office", "IT", now)
	if err != nil {
		t.Fatal(err)
	}
	if c["age_over_18"] != true || c["age_over_65"] != false || c["issuing_country"] != "IT" || c["issuing_authority"] != "Civil Registry Office" {
		t.Fatalf("derived claims: %v", c)
	}
	if addr := c["address"].(map[string]any); addr["locality"] != "Bologna" || len(addr) != 1 {
		t.Fatalf("address: %v", addr)
	}
	// Born today (or, where the citizen is, tomorrow); a country in lower case.
	form["birthdate"], form["address.country"] = "2026-12-04", "it"
	c, err = pid.BuildClaims(func(n string) string { return form[n] }, "R", "IT", now)
	if err != nil {
		t.Fatal(err)
	}
	delete(form, "address.country")
	form["birthdate"] = "2008-12-03"
	if addr := c["address"].(map[string]any); addr["country"] != "IT" {
		t.Fatalf("address: %v", addr)
	}
	if n := c["nationalities"].([]any); len(n) != 3 || n[1] != "TN" || n[2] != "XK" {
		t.Fatalf("nationalities: %v", n)
	}
	// Eighteen tomorrow is not over 18 today.
	form["birthdate"] = "2008-12-04"
	c, _ = pid.BuildClaims(func(n string) string { return form[n] }, "R", "IT", now)
	if c["age_over_18"] != false {
		t.Fatalf("a day short of 18: %v", c["age_over_18"])
	}
	// Limits count characters: 200 in Cyrillic are 400 bytes. A right-to-
	// left name may carry the mark RLM.
	for k, v := range map[string]string{"family_name": strings.Repeat("Ж", 200), "given_name": "\u200fأميرة"} {
		old := form[k]
		form[k] = v
		if _, err := pid.BuildClaims(func(n string) string { return form[n] }, "R", "IT", now); err != nil {
			t.Errorf("%s %q: %v", k, v, err)
		}
		form[k] = old
	}
	shown := pid.Flatten(c)
	if shown[0].Label != "Given name" || shown[0].Value != "Amira" {
		t.Fatalf("flatten: %+v", shown)
	}
	for _, bad := range []struct{ field, value, want string }{
		{"birthdate", "04/12/2008", "is not a date"},
		{"nationalities", "Italy", "is not a two-letter country code"},
		{"given_name", "", "Given name is required"},
		{"family_name", strings.Repeat("x", 201), "too long"},
		{"family_name", strings.Repeat("Ж", 201), "too long (at most 200 characters)"},
		{"family_name", "Had\ndad", "Family name is one line of text"},
		{"given_name", "Amira\x1b[8m", "Given name is one line of text"},
		{"given_name", "\u202eArima", "Given name is one line of text"},
		{"address.locality", "Bol\xffogna", "Town or city is not valid UTF-8 text"},
		{"birthdate", "2026-12-05", "Date of birth 2026-12-05 is in the future"},
		{"address.country", "Italia", `Country of residence "ITALIA" is not a two-letter country code`},
		{"address.country", "xy", `Country of residence "XY" is not a two-letter country code`},
		{"nationalities", "IT, EU", `"EU" is not a two-letter country code`},
		{"nationalities", "IT, ZZ", `"ZZ" is not a two-letter country code`},
	} {
		f := map[string]string{}
		for k, v := range form {
			f[k] = v
		}
		f[bad.field] = bad.value
		_, err := pid.BuildClaims(func(n string) string { return f[n] }, "R", "IT", now)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s=%q: %v, want %q", bad.field, bad.value, err, bad.want)
		}
	}
}

func TestSlugify(t *testing.T) {
	for in, want := range map[string]string{"Civil Registry Office": "civil-registry-office", "Li's Dumpling Cart": "li-s-dumpling-cart", "  ": "org", "Ünïcode Café": "n-code-caf"} {
		if got := slugify(in); got != want {
			t.Errorf("slugify(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRequiredClaims(t *testing.T) {
	cq := dcql.CredentialQuery{Claims: []dcql.ClaimQuery{{ID: "a"}, {ID: "b"}}}
	if r := requiredClaims(cq); !r["a"] || !r["b"] {
		t.Fatalf("without claim sets every claim is required: %v", r)
	}
	cq.ClaimSets = [][]string{{"a", "b"}, {"a"}}
	if r := requiredClaims(cq); !r["a"] || r["b"] {
		t.Fatalf("with claim sets only those in every set are required: %v", r)
	}
}

func TestParseRequestLink(t *testing.T) {
	c, u, err := ParseRequestLink("openid4vp://?client_id=https%3A%2F%2Fn.example%2Fverifiers%2Fbar&request_uri=https%3A%2F%2Fn.example%2Fverifiers%2Fbar%2Frequests%2F1")
	if err != nil || c != "https://n.example/verifiers/bar" || u != "https://n.example/verifiers/bar/requests/1" {
		t.Fatalf("%q %q %v", c, u, err)
	}
	for link, want := range map[string]string{
		"openid4vp://?client_id=x&dcql_query=%7B%7D":   "unsigned requests are refused",
		"openid4vp://?client_id=x":                     "needs client_id and request_uri",
		"mailto:x?client_id=a&request_uri=https://b/c": "not an OpenID4VP request link (one starts with openid4vp:// or https://)",
		"zzz": "this is not an OpenID4VP request link",
		"openid4vp://?client_id=a&request_uri=javascript": "request_uri is not a URL",
		"%zz": "does not parse",
	} {
		if _, _, err := ParseRequestLink(link); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", link, err, want)
		}
	}
}

func TestParseVPToken(t *testing.T) {
	vp, err := ParseVPToken(`{"pid":["a~b~c"]}`)
	if err != nil || vp["pid"][0] != "a~b~c" {
		t.Fatalf("%v %v", vp, err)
	}
	for _, bad := range []string{``, `null`, `[]`, `{"pid":"a~"}`, `{"pid":[]}`, `{"pid":[1]}`} {
		if _, err := ParseVPToken(bad); !errors.Is(err, ErrIncomplete) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func FuzzParseRequestLink(f *testing.F) {
	f.Add("openid4vp://?client_id=https%3A%2F%2Fn.example%2Fverifiers%2Fbar&request_uri=https%3A%2F%2Fn.example%2Fr%2F1")
	f.Add("https://n.example/wallet/present?client_id=a&request_uri=https://n.example/x")
	f.Add("openid4vp://?request=eyJ")
	f.Fuzz(func(t *testing.T, link string) {
		c, u, err := ParseRequestLink(link)
		if err == nil && (c == "" || u == "") {
			t.Fatalf("accepted %q without client_id or request_uri", link)
		}
	})
}

func FuzzParseVPToken(f *testing.F) {
	f.Add(`{"pid":["eyJ.eyJ.sig~WyJ~"]}`)
	f.Add(`{"a":[],"b":["x"]}`)
	f.Fuzz(func(t *testing.T, s string) {
		vp, err := ParseVPToken(s)
		if err == nil {
			for _, ps := range vp {
				if len(ps) == 0 {
					t.Fatalf("accepted an empty array in %q", s)
				}
			}
		}
	})
}

func FuzzUnverifiedIssuer(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL2EifQ.c2ln~")
	f.Add("a.b.c~d~e")
	f.Fuzz(func(t *testing.T, s string) {
		iss, err := unverifiedIssuer(s)
		if err == nil && iss == "" {
			t.Fatal("an empty issuer accepted")
		}
	})
}
