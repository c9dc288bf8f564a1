package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/conformance"
)

// TestVerifySDJWT checks an SD-JWT made by another RFC 9901
// implementation (the reference outputs in the shared examples).
func TestVerifySDJWT(t *testing.T) {
	pres := conformance.File(t, "sd-jwt/simple/sd_jwt_presentation.txt")
	// The examples' issuer key (settings.yml), public part, as a JWK file.
	jwk := filepath.Join(t.TempDir(), "issuer.jwk")
	os.WriteFile(jwk, []byte(`{"kty":"EC","crv":"P-256","x":"b28d4MwZMjw8-00CG4xfnn9SLMVMM19SlqZpVb_uNtQ","y":"Xv5zWwuoaTgdS6hV43yI6gBwTnjukmFQQnJ_kCxzqk8"}`), 0o644)
	wrong := filepath.Join(t.TempDir(), "wrong.jwk")
	os.WriteFile(wrong, []byte(`{"kty":"EC","crv":"P-256","x":"TCAER19Zvu3OHF4j4W4vfSVoHIP1ILilDls7vCeGemc","y":"ZxjiWWbZMQGHVWKVQ4hbSIirsVfuecCE6t4jT9F2HZQ"}`), 0o644)
	run := func(stdin string, args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		e := &env{stdout: &out, stderr: &errOut, in: strings.NewReader(stdin), getenv: func(string) string { return "" },
			now: func() time.Time { return time.Unix(1700000000, 0) }}
		rc := e.main(context.Background(), append([]string{"verify"}, args...))
		return rc, out.String(), errOut.String()
	}
	rc, out, errOut := run("", "--issuer-key", jwk, "--nonce", "1234567890", "--aud", "https://verifier.example.org", pres)
	var got struct {
		Verified   bool           `json:"verified"`
		KeyBinding bool           `json:"key_binding"`
		Claims     map[string]any `json:"claims"`
	}
	if err := json.Unmarshal([]byte(out), &got); rc != 0 || err != nil || !got.Verified || !got.KeyBinding || got.Claims["given_name"] != "John" || got.Claims["email"] != nil {
		t.Fatalf("reference presentation: rc %d %v\n%s%s", rc, err, out, errOut)
	}
	// The issuer's SD-JWT VC metadata (as /.well-known/jwt-vc-issuer serves it) works too.
	meta := filepath.Join(t.TempDir(), "jwt-vc-issuer.json")
	key, _ := os.ReadFile(jwk)
	os.WriteFile(meta, []byte(`{"issuer":"https://example.com/issuer","jwks":{"keys":[`+string(key)+`]}}`), 0o644)
	if rc, _, errOut = run("", "--issuer-key", meta, pres); rc != 0 {
		t.Fatalf("with issuer metadata: rc %d %s", rc, errOut)
	}
	two := filepath.Join(t.TempDir(), "two.json")
	os.WriteFile(two, []byte(`{"keys":[`+string(key)+`,`+string(key)+`]}`), 0o644)
	if rc, _, errOut = run("", "--issuer-key", two, pres); rc == 0 || !strings.Contains(errOut, "holds 2 keys") {
		t.Fatalf("two keys: rc %d %s", rc, errOut)
	}
	raw, _ := os.ReadFile(pres)
	if rc, _, errOut = run(string(raw), "--issuer-key", jwk, "-"); rc != 0 {
		t.Fatalf("from standard input: rc %d %s", rc, errOut)
	}
	for _, f := range []struct {
		what string
		args []string
		want string
	}{
		{"another nonce", []string{"--issuer-key", jwk, "--nonce", "999", pres}, "key binding nonce does not match"},
		{"another audience", []string{"--issuer-key", jwk, "--aud", "https://other.example", pres}, "key binding audience does not match"},
		{"another issuer key", []string{"--issuer-key", wrong, pres}, "issuer signature does not verify"},
		{"no issuer key", []string{pres}, "needs --issuer-key"},
		{"a key file that is no key", []string{"--issuer-key", pres, pres}, "neither a JWK nor PEM"},
		{"a key file not there", []string{"--issuer-key", "not-there.jwk", pres}, "issuer key not-there.jwk: no such file or directory"},
	} {
		rc, _, errOut := run("", f.args...)
		if rc == 0 || !strings.Contains(errOut, f.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%s: rc %d, stderr %q; want non-zero and one line with %q", f.what, rc, errOut, f.want)
		}
	}
}
