package emv

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/conformance"
)

type vector struct {
	valid   bool
	payload string
	origin  string
}

func readVectors(t testing.TB) []vector {
	t.Helper()
	// External conformance data, read where it lives (never copied in).
	f, err := os.Open(conformance.File(t, "emvqr/vectors.txt"))
	if err != nil {
		t.Fatalf("shared EMV vectors: %v", err)
	}
	defer f.Close()
	var out []vector
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		parts := strings.Split(line, "\t")
		if len(parts) != 3 || (parts[0] != "valid" && parts[0] != "invalid") {
			t.Fatalf("vector line %q: want valid|invalid TAB payload TAB origin", line)
		}
		out = append(out, vector{parts[0] == "valid", parts[1], parts[2]})
	}
	if len(out) == 0 {
		t.Fatal("no vectors read")
	}
	return out
}

// TestSharedVectors reads every valid payload (and writes it back to the
// same text), and refuses every invalid one with a reason.
func TestSharedVectors(t *testing.T) {
	pass := 0
	vs := readVectors(t)
	for _, v := range vs {
		p, err := Parse(v.payload)
		switch {
		case v.valid && err != nil:
			t.Errorf("%s: refused: %v", v.origin, err)
		case v.valid && p.String() != v.payload:
			t.Errorf("%s: re-encodes as\n%s\nnot\n%s", v.origin, p.String(), v.payload)
		case !v.valid && err == nil:
			t.Errorf("%s: accepted an invalid payload", v.origin)
		case !v.valid && !strings.Contains(err.Error(), "wrong CRC"):
			t.Errorf("%s: refused for %v, want the wrong CRC named", v.origin, err)
		default:
			pass++
			if !v.valid {
				t.Logf("%s: refused: %v", v.origin, err)
			}
		}
	}
	t.Logf("EMV QR vectors: %d of %d pass", pass, len(vs))
}

func TestEMVCoSample(t *testing.T) {
	for _, v := range readVectors(t) {
		if !strings.HasPrefix(v.origin, "EMVCo MPM") {
			continue
		}
		p, err := Parse(v.payload)
		if err != nil {
			t.Fatal(err)
		}
		if name, _ := p.Sub("64", "01"); name != "最佳运输" {
			t.Errorf("alternate name = %q", name)
		}
		if city, _ := p.Sub("64", "02"); city != "北京" {
			t.Errorf("alternate city = %q", city)
		}
		if amt, _ := p.Get("54"); amt != "23.72" {
			t.Errorf("amount = %q", amt)
		}
		if ref, _ := p.Sub("62", "07"); ref != "A6008667" {
			t.Errorf("terminal label = %q", ref)
		}
		if _, err := p.Civstack(); !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), "UnionPay") {
			t.Errorf("Civstack() = %v, want a foreign UnionPay code", err)
		}
		return
	}
	t.Fatal("no EMVCo sample among the vectors")
}

func TestForeignSchemes(t *testing.T) {
	want := map[string]string{"Pix": "Pix (Brazil)", "PromptPay": "PromptPay (Thailand)", "PayNow": "PayNow (Singapore)"}
	seen := map[string]bool{}
	for _, v := range readVectors(t) {
		if !v.valid {
			continue
		}
		p, err := Parse(v.payload)
		if err != nil {
			t.Fatal(err)
		}
		for prefix, scheme := range want {
			if strings.HasPrefix(v.origin, prefix) {
				_, err := p.Civstack()
				if !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), scheme) || !strings.Contains(err.Error(), "not a civstack merchant") {
					t.Errorf("%s: Civstack() = %v", v.origin, err)
				}
				seen[prefix] = true
			}
		}
	}
	if len(seen) != len(want) {
		t.Errorf("schemes seen %v, want all of %v", seen, want)
	}
}

func TestCRCCheckValue(t *testing.T) {
	if got := CRC([]byte("123456789")); got != 0x29B1 {
		t.Fatalf("CRC(123456789) = %04X, want 29B1", got)
	}
}

func TestCivstackRoundTrip(t *testing.T) {
	exp := time.Date(2026, 12, 2, 20, 15, 0, 0, time.UTC)
	for _, c := range []Code{
		{Civstack: Civstack{Party: PartyMerchant, ID: "0b7e3c2a-3d1b-4c6e-9a55-1c1b7c1e5d00"}, MCC: "5814", Currency: "978", Country: "IT", Name: "Li's Dumpling Cart", City: "Bologna"},
		{Civstack: Civstack{Party: PartyMerchant, ID: "0b7e3c2a-3d1b-4c6e-9a55-1c1b7c1e5d00", Sale: "S8f3a", Expires: exp}, MCC: "5411", Currency: "978",
			Amount: 1250, Country: "IT", Name: "Rossi Groceries àèì", City: "Bologna", Reference: "order 77", Bill: "B-12"},
		{Civstack: Civstack{Party: PartyPerson, ID: "p7Hk2"}, MCC: "0000", Currency: "978", Country: "IT", Name: "Amira", City: "Bologna"},
	} {
		s, err := c.Encode()
		if err != nil {
			t.Fatalf("encode %+v: %v", c, err)
		}
		p, err := Parse(s)
		if err != nil {
			t.Fatalf("parse own code %q: %v", s, err)
		}
		got, err := p.Civstack()
		if err != nil {
			t.Fatal(err)
		}
		if *got != c.Civstack {
			t.Errorf("civstack template = %+v, want %+v", *got, c.Civstack)
		}
		if name, _ := p.Get("59"); name != c.Name {
			t.Errorf("name = %q, want %q", name, c.Name)
		}
		if c.Amount > 0 {
			v, _ := p.Get("54")
			if n, _ := ParseAmount(v); n != c.Amount {
				t.Errorf("amount %q, want %d", v, c.Amount)
			}
		}
		if len(p.Notes()) != 0 {
			t.Errorf("notes on own code: %v", p.Notes())
		}
	}
}

func TestRefusals(t *testing.T) {
	good, err := Code{Civstack: Civstack{Party: PartyMerchant, ID: "m1"}, MCC: "5814", Currency: "978", Country: "IT", Name: "Cart", City: "Bologna"}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	withCRC := func(body string) string {
		s, _ := Encode(mustParseFields(t, body))
		return s
	}
	cases := map[string]struct{ payload, reason string }{
		"empty":          {"", "empty"},
		"wrong crc":      {good[:len(good)-4] + "0000", "wrong CRC"},
		"lowercase crc":  {good[:len(good)-4] + strings.ToLower(good[len(good)-4:]), "uppercase"},
		"truncated":      {good[:20], "remain"},
		"bad length":     {"00x201", "not two digits"},
		"no crc":         {"000201", "ends with 63"},
		"not first":      {withCRC("010211000201"), "starts with 00"},
		"bad mcc":        {withCRC("00020126080004ab.c52035816"), "merchant category code"},
		"no account":     {withCRC("0002015204581453039785802IT"), "no merchant account"},
		"no gui":         {withCRC("000201260601020M"), "globally unique identifier"},
		"duplicate":      {withCRC("000201260800040abc260800040abc"), "twice"},
		"bad amount":     {withCRC("00020126080004abcd54041,50"), "amount"},
		"invalid utf8":   {"\xff\xfe", "UTF-8"},
		"control":        {withCRC("0002012608000\nabcd"), "control"},
		"bad nested len": {withCRC("00020126080099abcd"), "inside tag 26"},
	}
	for name, c := range cases {
		_, err := Parse(c.payload)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s: Parse(%q) = %v, want a refusal mentioning %q", name, c.payload, err, c.reason)
		}
	}
}

// mustParseFields splits a CRC-less body into top-level fields for Encode.
func mustParseFields(t *testing.T, body string) []Field {
	t.Helper()
	var fs []Field
	rs := []rune(body)
	for i := 0; i+4 <= len(rs); {
		n := int(rs[i+2]-'0')*10 + int(rs[i+3]-'0')
		end := min(i+4+n, len(rs))
		fs = append(fs, Field{ID: string(rs[i : i+2]), Value: string(rs[i+4 : end])})
		i = end
	}
	return fs
}

func TestAmounts(t *testing.T) {
	for s, want := range map[string]int64{"1": 100, "1.5": 150, "100.00": 10000, "23.72": 2372, "0.01": 1, "12.": 1200} {
		if got, err := ParseAmount(s); err != nil || got != want {
			t.Errorf("ParseAmount(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "1.234", "-1", "1e3", "12345678901234", ".5", "1,00"} {
		if _, err := ParseAmount(s); err == nil {
			t.Errorf("ParseAmount(%q) accepted", s)
		}
	}
}

// FuzzParse: Parse never panics, and whatever it accepts encodes back to
// the same text and parses again.
func FuzzParse(f *testing.F) {
	for _, v := range readVectors(f) {
		f.Add(v.payload)
	}
	f.Add("000201")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not wrapping ErrInvalid: %v", err)
			}
			return
		}
		if p.String() != s {
			t.Fatalf("accepted %q but re-encodes as %q", s, p.String())
		}
		_, _ = p.Civstack()
		_ = p.Notes()
	})
}
