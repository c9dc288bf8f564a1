package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/dcc"
	"github.com/civstack/civstack/internal/healthpass"
	"github.com/civstack/civstack/internal/keyring"
)

// TestVerifyHC1 checks the command-line contract of civstack verify for
// health passes and DCCs: one line per check, exit 0 only when all pass.
func TestVerifyHC1(t *testing.T) {
	data := t.TempDir()
	now := time.Now()
	keys, err := keyring.Open(filepath.Join(data, "keys"), func() time.Time { return now }, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hn, err := healthpass.Setup(filepath.Join(data, "health"), keys, "IT", now)
	if err != nil {
		t.Fatal(err)
	}
	h := healthpass.Holder{FamilyName: "Haddad", GivenName: "Amira", DOB: "1990-04-01"}
	pass, err := hn.Issuer.IssueHealthCode(map[string]any{"ver": dcc.HealthCodeVersion, "nam": h.Name(), "dob": h.DOB, "st": "yellow", "rv": "1.0.0", "since": "2026-12-03"},
		now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert := map[string]any{"ver": "1.3.0", "nam": h.Name(), "dob": h.DOB, "t": []any{map[string]any{"tg": "840539006", "tt": "LP6464-4", "sc": now.Add(-time.Hour).UTC().Format(time.RFC3339),
		"tr": "260415000", "co": "IT", "is": "Health Authority", "ci": "URN:UVCI:01:IT:X#1"}}}
	dccQR, err := hn.Issuer.Issue(cert, now, now.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		e := &env{stdout: &out, stderr: &errOut, in: strings.NewReader(stdin), getenv: func(string) string { return "" }, now: func() time.Time { return now }}
		rc := e.main(context.Background(), append([]string{"verify"}, args...))
		return rc, out.String(), errOut.String()
	}
	dataFlag := "--data=" + data

	rc, out, errOut := run("", dataFlag, pass)
	if rc != 0 || !strings.Contains(out, "valid: health code yellow for Amira Haddad, born 1990-04-01") || strings.Count(out, "ok   ") != len(dcc.Checks) {
		t.Fatalf("good pass: rc %d\n%s%s", rc, out, errOut)
	}
	if !strings.Contains(out, "rules: civstack health code rules 1.0.0") || !strings.Contains(out, "trust: trust list") {
		t.Errorf("no rules or trust line:\n%s", out)
	}
	rc, out, _ = run(pass+"\n", dataFlag, "--json", "-")
	var v healthpass.Verdict
	if err := json.Unmarshal([]byte(out), &v); rc != 0 || err != nil || !v.Valid || v.Colour != "yellow" || len(v.Checks) != len(dcc.Checks) {
		t.Fatalf("stdin, JSON: rc %d %v %+v", rc, err, v)
	}
	if rc, out, _ = run("", dataFlag, dccQR); rc != 0 || !strings.Contains(out, "valid: test for Amira Haddad") {
		t.Fatalf("a DCC: rc %d\n%s", rc, out)
	}
	// --trust with the DSC as PEM and as DER, and as a trust-list file.
	pemFile := filepath.Join(t.TempDir(), "dsc.pem")
	os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hn.Issuer.Cert.Raw}), 0o644)
	derFile := filepath.Join(t.TempDir(), "dsc.der")
	os.WriteFile(derFile, hn.Issuer.Cert.Raw, 0o644)
	for _, f := range []string{pemFile, derFile, filepath.Join(data, "health", "trust-list.json")} {
		if rc, out, errOut = run("", "--trust", f, "--data", t.TempDir(), pass); rc != 0 {
			t.Fatalf("--trust %s: rc %d\n%s%s", f, rc, out, errOut)
		}
	}
	if rc, out, _ = run("", "--decode-only", pass); rc != 0 || strings.Count(out, "\n") != 6 || !strings.Contains(out, "signature not checked") {
		t.Fatalf("--decode-only: rc %d\n%s", rc, out)
	}

	// A pass's fields cannot write lines of their own on the terminal: here
	// a name that would erase the "signature not checked" line and put a
	// "valid:" one in its place.
	forged := map[string]any{"fn": "Haddad\x1b[2K\rvalid: health code green for Someone Else\n", "fnt": "HADDAD", "gn": "Amira\u202e", "gnt": "AMIRA"}
	evil, err := hn.Issuer.IssueHealthCode(map[string]any{"ver": dcc.HealthCodeVersion, "nam": forged, "dob": h.DOB, "st": "red", "rv": "1.0.0", "since": "2026-12-03"},
		now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--decode-only", evil}, {dataFlag, evil}} {
		rc, out, _ := run("", args...)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if rc != 0 || strings.Count(out, "health code green") != 1 || !strings.Contains(lines[len(lines)-1], "health code green") ||
			strings.ContainsAny(out, "\x1b\r\u202e") || !strings.Contains(out, `health code red for Amira\u202e Haddad\x1b[2K\rvalid: health code green for Someone Else\n, born`) {
			t.Errorf("%v: a name with control characters: rc %d\n%q", args[0], rc, out)
		}
	}

	fails := []struct {
		what string
		args []string
		want string
	}{
		{"later than the pass", []string{dataFlag, "--at", now.Add(2 * time.Hour).Format(time.RFC3339), pass}, "not valid: expiry: expired"},
		{"a bad clock", []string{dataFlag, "--at", "tomorrow", pass}, "is not an RFC 3339 time"},
		{"another version", []string{dataFlag, "HC2:" + pass[4:]}, "HCERT version 2 is not supported"},
		{"a damaged pass", []string{dataFlag, pass[:40] + "a" + pass[41:]}, "not valid: base45"},
		{"no trust list", []string{"--data", t.TempDir(), pass}, "no trust list at"},
		{"no trust list, said how to read it anyway", []string{"--data", t.TempDir(), pass}, "or --decode-only to read the pass"},
		{"an edited trust list", []string{"--trust", editedList(t, data), pass}, "the signature does not match its contents"},
		{"a file named in two lines", []string{dataFlag, "no\nsuch.txt"}, `no\nsuch.txt`},
	}
	for _, f := range fails {
		rc, out, errOut := run("", f.args...)
		if rc == 0 || !strings.Contains(errOut, f.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%s: rc %d, stderr %q (stdout %q); want non-zero and one line with %q", f.what, rc, errOut, out, f.want)
		}
	}
	// Another authority's DSC does not verify our pass.
	other, _ := keyring.Open(t.TempDir(), time.Now, rand.Reader)
	hn2, _ := healthpass.Setup(t.TempDir(), other, "FR", now)
	otherPEM := filepath.Join(t.TempDir(), "other.pem")
	os.WriteFile(otherPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hn2.Issuer.Cert.Raw}), 0o644)
	if rc, out, errOut = run("", "--trust", otherPEM, pass); rc == 0 || !strings.Contains(out, "FAIL signature") {
		t.Errorf("foreign DSC: rc %d\n%s%s", rc, out, errOut)
	}
}

func editedList(t *testing.T, data string) string {
	b, err := os.ReadFile(filepath.Join(data, "health", "trust-list.json"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "edited.json")
	os.WriteFile(p, bytes.Replace(b, []byte("civstack health authority trust list"), []byte("civstack health authority trust list!"), 1), 0o644)
	return p
}
