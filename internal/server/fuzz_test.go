package server

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"display_name":"A"}`, `{`, `{"x":1}`, `{"display_name":"A"} {}`, `null`, `[]`, strings.Repeat("[", 10000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var v struct {
			DisplayName string `json:"display_name"`
		}
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		err := decodeJSON(httptest.NewRecorder(), r, &v)
		if err == nil && strings.Contains(body, `"x"`) && !strings.Contains(body, `display_name`) {
			t.Fatalf("accepted an unknown field in %q", body)
		}
	})
}

func FuzzParsePasskeyID(f *testing.F) {
	for _, s := range []string{"AAEC", "", "%%", "not*base64", strings.Repeat("A", 2000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := parsePasskeyID(s)
		if err == nil && passkeyIDText(b) != s {
			t.Fatalf("round trip %q -> %q", s, passkeyIDText(b))
		}
	})
}

func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/", "/account", "//evil.example", "/\\evil", "https://evil.example", "", "account"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := safeNext(s)
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.HasPrefix(got, "/\\") {
			t.Fatalf("safeNext(%q) = %q leaves the site", s, got)
		}
	})
}
