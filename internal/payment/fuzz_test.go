package payment

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// FuzzVerify: the bundle reader never panics on outside input.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(`{"document":{"type":"receipt","id":"x","payment":"x","issued_at":"","merchant":{"id":"m","name":"n","tax_id":"t","city":"c"},"currency":"EUR","net":1,"vat":0,"total":1},"jws":"a.b.c","merchant_key":{"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"k"}}`))
	f.Add([]byte(`{"jws":"eyJhbGciOiJFUzI1NiJ9.e30.AAAA","merchant_key":{},"log":{"checkpoint":"x\n1\nAAAA\n","entry":"AQI="}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := Verify(bytes.NewReader(b), "pay.test/log+01234567+AQ")
		if err == nil && rep.OK() {
			t.Fatalf("fuzzed bundle verified: %s", b)
		}
	})
}

// FuzzParseCode: payment-code parsing never panics, and matching a code
// against a secret never accepts a random one at a fixed time.
func FuzzParseCode(f *testing.F) {
	f.Add("881234567801234567")
	f.Add("88abc")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseCode(s)
		if err != nil {
			return
		}
		_, _ = matchStep(p, []byte("secret"), time.Unix(1_790_000_000, 0))
	})
}

// FuzzParseMoney: amounts typed by people never panic, and what parses
// prints back to the same value.
func FuzzParseMoney(f *testing.F) {
	for _, s := range []string{"4.50", "12", "0,5", "999999999.99", "-1", "1e3", " 7 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseMoney(s)
		if err != nil {
			return
		}
		back, err := ParseMoney(Money(n))
		if err != nil || back != n || n < 0 {
			t.Fatalf("%q → %d → %q → %d, %v", s, n, Money(n), back, err)
		}
	})
}

// FuzzParseCursor: a list's place from a link never panics, and what parses
// prints back to itself.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"", "1790000000000.0123456789abcdef0123456789abcdef", "-1.x", "1.", ".0123456789abcdef0123456789abcdef", "99999999999999999999.00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			return
		}
		again, err := ParseCursor(c.String())
		if err != nil || again != c {
			t.Fatalf("%q: parsed %+v, printed %q, read back %+v, %v", s, c, c.String(), again, err)
		}
	})
}

// TestParseCodeSays: a mistyped code is told apart from a short one.
func TestParseCodeSays(t *testing.T) {
	for code, want := range map[string]string{
		"abcdef":              "A payment code has digits only.",
		"88123456780123456x":  "A payment code has digits only.",
		"881234":              "A payment code has 18 digits; this one has 6.",
		"8812345678012345678": "A payment code has 18 digits; this one has 19.",
		"771234567801234567":  "This is not a civstack payment code (they start with 88).",
	} {
		_, err := parseCode(code)
		var r *Refusal
		if !errors.As(err, &r) || r.Code != "bad_code" || r.Message != want {
			t.Errorf("%q: %v, want %q", code, err, want)
		}
	}
}
