package healthpass

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/keyring"
)

func TestDefaultRulesDecide(t *testing.T) {
	r, err := ParseRules(DefaultRules())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		a      Answers
		colour Colour
		rule   string
	}{
		{Answers{Test: "none"}, Green, ""},
		{Answers{Test: "negative", Travel: true}, Green, ""},
		{Answers{Test: "none", Travel: true}, Yellow, "HC-YELLOW-TRAVEL"},
		{Answers{Test: "none", Symptoms: true}, Yellow, "HC-YELLOW-SYMPTOMS"},
		{Answers{Test: "none", Contact: true}, Yellow, "HC-YELLOW-CONTACT"},
		{Answers{Test: "negative", Contact: true}, Green, ""},
		{Answers{Test: "none", Contact: true, Symptoms: true}, Red, "HC-RED-SYMPTOMS-CONTACT"},
		{Answers{Test: "positive"}, Red, "HC-RED-POSITIVE"},
	} {
		d, err := r.Decide(c.a, now)
		if err != nil || d.Colour != c.colour || d.RuleID != c.rule || d.Reason == "" || d.RulesVersion != "1.0.0" {
			t.Errorf("%+v → %+v, %v; want %s %s", c.a, d, err, c.colour, c.rule)
		}
	}
	if _, err := r.Decide(Answers{Test: "maybe"}, now); err == nil {
		t.Error("an unknown test result was decided")
	}
}

func TestRulesFileErrors(t *testing.T) {
	for what, edit := range map[string]func(m map[string]any){
		"no version":   func(m map[string]any) { delete(m, "version") },
		"a green rule": func(m map[string]any) { m["code"].([]any)[0].(map[string]any)["color"] = "green" },
		"invalid logic": func(m map[string]any) {
			m["code"].([]any)[0].(map[string]any)["logic"] = map[string]any{"all": []any{}}
		},
		"no days":         func(m map[string]any) { m["days"] = map[string]any{} },
		"a float literal": func(m map[string]any) { m["certificates"].([]any)[0].(map[string]any)["logic"] = 1.5 },
	} {
		var m map[string]any
		json.Unmarshal(DefaultRules(), &m)
		edit(m)
		b, _ := json.Marshal(m)
		if _, err := ParseRules(b); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
}

func TestTrustListSignature(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	cert, err := DSC(t.TempDir(), "k1", key, "IT", now)
	if err != nil {
		t.Fatal(err)
	}
	// Another node with the same key makes the same certificate (its hash
	// is the kid of the passes either signs); another key, or the same key
	// under another id, another.
	again, err := DSC(filepath.Dir(filepath.Join(t.TempDir(), "x")), "k1", key, "IT", now)
	if err != nil || !again.Equal(cert) {
		t.Fatalf("another directory made another DSC for the same key: %v", err)
	}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for what, mk := range map[string]func() (*x509.Certificate, error){
		"another key":           func() (*x509.Certificate, error) { return DSC(t.TempDir(), "k1", otherKey, "IT", now) },
		"another key id":        func() (*x509.Certificate, error) { return DSC(t.TempDir(), "k2", key, "IT", now) },
		"another creation time": func() (*x509.Certificate, error) { return DSC(t.TempDir(), "k1", key, "IT", now.Add(time.Hour)) },
	} {
		if c, err := mk(); err != nil || c.Equal(cert) || c.SerialNumber.Sign() <= 0 {
			t.Errorf("%s: %v, the same certificate or a bad serial", what, err)
		}
	}
	tl, err := NewTrustList("test list", append([]*x509.Certificate{}, cert), key, now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(tl, "", "  ")
	if _, trust, err := ParseTrustList(b); err != nil || len(trust.Signers()) != 1 {
		t.Fatalf("own list: %v", err)
	}
	for what, bad := range map[string][]byte{
		"renamed":  bytes.Replace(b, []byte("test list"), []byte("best list"), 1),
		"unsigned": bytes.Replace(b, []byte(`"signature"`), []byte(`"signaturX"`), 1),
		"not JSON": []byte("{"),
	} {
		if _, _, err := ParseTrustList(bad); err == nil {
			t.Errorf("%s trust list accepted", what)
		}
	}
	if _, info, err := LoadTrust(b); err != nil || !strings.Contains(info, "1 signers") {
		t.Fatalf("LoadTrust: %q %v", info, err)
	}
}

func FuzzParseTrustList(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, _ := DSC(f.TempDir(), "k", key, "IT", time.Now())
	tl, _ := NewTrustList("l", append([]*x509.Certificate{}, cert), key, time.Now())
	b, _ := json.Marshal(tl)
	f.Add(b)
	f.Add([]byte(`{"signature":{"alg":"ES256"}}`))
	// LoadTrust's other two forms: PEM certificates and one DER certificate.
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	f.Add(cert.Raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = ParseTrustList(b)
		if trust, info, err := LoadTrust(b); err == nil && (trust == nil || info == "") {
			t.Fatalf("LoadTrust accepted %q without a trust or a description", b)
		}
	})
}

func FuzzParseRules(f *testing.F) {
	f.Add(DefaultRules())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRules(b)
		if err != nil {
			return
		}
		_, _ = r.Decide(Answers{Test: "none", Symptoms: true}, time.Now())
		_ = r.CheckCertificate(map[string]any{"v": []any{map[string]any{"dn": 1.0, "sd": 2.0}}}, "v", time.Now())
	})
}

// TestLuhnModN: a UCI with its check character validates (the check over
// the whole string, factor 1 from the right, sums to 0 mod N).
func TestLuhnModN(t *testing.T) {
	valid := func(s string) bool {
		n := len(uciCodePoints)
		factor, sum := 1, 0
		for i := len(s) - 1; i >= 0; i-- {
			cp := strings.IndexByte(uciCodePoints, s[i])
			if cp < 0 {
				continue
			}
			addend := factor * cp
			factor = 3 - factor
			sum += addend/n + addend%n
		}
		return sum%n == 0
	}
	for _, uci := range []string{"URN:UVCI:01:IT:0190A1B2C3D47E5F8A9B00000", "URN:UVCI:01:NL:187/37512422923", "A"} {
		c := luhnModN(uci)
		if !valid(uci + string(c)) {
			t.Errorf("%s + %c does not validate", uci, c)
		}
		wrong := uciCodePoints[(strings.IndexByte(uciCodePoints, c)+1)%len(uciCodePoints)]
		if valid(uci + string(wrong)) {
			t.Errorf("%s + %c (wrong) validates", uci, wrong)
		}
	}
}

// TestSetupTrustsAddedAuthorities: a DSC dropped into trusted/ is in the
// re-signed list at the next start, and gone when removed.
func TestSetupTrustsAddedAuthorities(t *testing.T) {
	now := time.Now()
	dir := t.TempDir()
	keys, err := keyring.Open(filepath.Join(dir, "keys"), time.Now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	first, err := Setup(filepath.Join(dir, "health"), keys, "IT", now)
	if err != nil || len(first.Verifier.Trust.Signers()) != 1 {
		t.Fatalf("first start: %v", err)
	}
	again, _ := Setup(filepath.Join(dir, "health"), keys, "IT", now.Add(time.Hour))
	if !bytes.Equal(again.TrustList, first.TrustList) {
		t.Fatal("an unchanged set was re-signed")
	}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := DSC(t.TempDir(), "fr", otherKey, "FR", now)
	os.MkdirAll(filepath.Join(dir, "health", "trusted"), 0o755)
	added := filepath.Join(dir, "health", "trusted", "fr.pem")
	os.WriteFile(added, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Raw}), 0o644)
	withFR, err := Setup(filepath.Join(dir, "health"), keys, "IT", now.Add(2*time.Hour))
	if err != nil || len(withFR.Verifier.Trust.Signers()) != 2 || !strings.Contains(withFR.Verifier.TrustInfo, "2 signers") {
		t.Fatalf("with a French DSC: %v %q", err, withFR.Verifier.TrustInfo)
	}
	os.Remove(added)
	if back, _ := Setup(filepath.Join(dir, "health"), keys, "IT", now.Add(3*time.Hour)); len(back.Verifier.Trust.Signers()) != 1 {
		t.Fatal("a removed DSC is still trusted")
	}
}
