package dcc

import (
	"bytes"
	"compress/zlib"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestBase45RFC9285(t *testing.T) {
	for in, want := range map[string]string{"AB": "BB8", "Hello!!": "%69 VD92EX0", "base-45": "UJCLQE7W581", "ietf!": "QED8WEX0", "": ""} {
		if got := Base45Encode([]byte(in)); got != want {
			t.Errorf("encode %q = %q, want %q", in, got, want)
		}
		got, err := Base45Decode(want)
		if err != nil || string(got) != in {
			t.Errorf("decode %q = %q, %v; want %q", want, got, err, in)
		}
	}
	for in, why := range map[string]string{"GGW": "above 65535", "A": "one character over", "aB8": "not in the alphabet", "BB8:;": "not in the alphabet", "BBB:": "one character over", "::": "above 255"} {
		if _, err := Base45Decode(in); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("decode %q: %v, want %q", in, err, why)
		}
	}
}

// testDSC makes a self-signed document signing certificate valid from nb
// to na, with the given HCERT extended key usages.
func testDSC(t testing.TB, key crypto.Signer, nb, na time.Time, ekus ...asn1.ObjectIdentifier) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test DSC", Country: []string{"IT"}},
		NotBefore: nb, NotAfter: na, UnknownExtKeyUsage: ekus}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var sampleDoc = map[string]any{
	"ver": "1.3.0", "dob": "1990-04-01",
	"nam": map[string]any{"fn": "Rossi", "fnt": "ROSSI", "gn": "Giulia", "gnt": "GIULIA"},
	"v": []any{map[string]any{"tg": "840539006", "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215",
		"dn": 2, "sd": 2, "dt": "2021-06-01", "co": "IT", "is": "Ministero della Salute", "ci": "URN:UVCI:01:IT:ABCDEF#1"}},
}

func TestIssueAndVerify(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, key := range map[string]crypto.Signer{"ES256": ec, "PS256": rk} {
		t.Run(name, func(t *testing.T) {
			cert := testDSC(t, key, now.AddDate(-1, 0, 0), now.AddDate(1, 0, 0), oidVaccination)
			is := &Issuer{Key: key, Cert: cert, Country: "IT"}
			qr, err := is.Issue(sampleDoc, now.Add(-time.Hour), now.AddDate(0, 0, 30))
			if err != nil {
				t.Fatal(err)
			}
			trust, err := NewTrust(cert)
			if err != nil {
				t.Fatal(err)
			}
			r := Verify(qr, Options{Trust: trust, At: now})
			if !r.Valid() {
				t.Fatalf("own certificate does not verify: %+v", r.Results)
			}
			if len(r.Results) != len(Checks) || r.Doc["nam"].(map[string]any)["gn"] != "Giulia" || r.Claims.Issuer != "IT" {
				t.Fatalf("report %+v doc %v", r.Results, r.Doc)
			}
			if r.Doc["v"].([]any)[0].(map[string]any)["dn"] != float64(2) {
				t.Fatalf("dose number lost: %v", r.Doc["v"])
			}
			wantFail := func(what string, r *Report, check Check, detail string) {
				t.Helper()
				f := r.Failed()
				if f == nil || f.Check != check || !strings.Contains(f.Detail, detail) {
					t.Fatalf("%s: first failure %+v, want %s containing %q (all: %+v)", what, f, check, detail, r.Results)
				}
				for _, res := range r.Results[len(r.Results)-1:] {
					if res.Check != check && res.Status != StatusNotRun {
						t.Fatalf("%s: a check after the failure ran: %+v", what, r.Results)
					}
				}
			}
			wantFail("expired", Verify(qr, Options{Trust: trust, At: now.AddDate(0, 1, 0)}), CheckExpiry, "expired")
			wantFail("future", Verify(qr, Options{Trust: trust, At: now.Add(-2 * time.Hour)}), CheckExpiry, "in the future")
			other := testDSC(t, key, now.AddDate(-1, 0, 0), now.AddDate(1, 0, 0))
			otherTrust, _ := NewTrust(other)
			wantFail("unknown signer", Verify(qr, Options{Trust: otherTrust, At: now}), CheckSignature, "not in the trust list")
			wantFail("no prefix", Verify(strings.TrimPrefix(qr, "HC1:"), Options{Trust: trust, At: now}), CheckPrefix, "no HC1: prefix")
			wantFail("version 2", Verify("HC2:"+qr[4:], Options{Trust: trust, At: now}), CheckPrefix, "version 2")
			wantFail("too long", Verify("HC1:"+strings.Repeat("A", MaxPayload), Options{Trust: trust, At: now}), CheckPrefix, "more than a QR code holds")
			wantFail("bad base45", Verify(qr[:len(qr)-1]+"a", Options{Trust: trust, At: now}), CheckBase45, "alphabet")
			testOnly := testDSC(t, key, now.AddDate(-1, 0, 0), now.AddDate(1, 0, 0), oidTest)
			is.Cert = testOnly
			qr2, _ := is.Issue(sampleDoc, now.Add(-time.Hour), now.AddDate(0, 0, 30))
			tt, _ := NewTrust(testOnly)
			wantFail("key usage", Verify(qr2, Options{Trust: tt, At: now}), CheckKeyUsage, "may not sign vaccination")

			// A flipped byte in the signed payload breaks the signature.
			cose, _ := is.Sign1(sampleDoc, now.Add(-time.Hour), now.AddDate(0, 0, 30))
			i := bytes.Index(cose, []byte("Giulia"))
			cose[i] = 'X'
			wantFail("tampered", Verify(Prefix+Base45Encode(Deflate(cose)), Options{Trust: tt, At: now}), CheckSignature, "does not verify")

			dec := Verify(qr, Options{DecodeOnly: true})
			if !dec.Valid() || len(dec.Results) != 5 {
				t.Fatalf("decode only: %+v", dec.Results)
			}
		})
	}
}

func TestZipBombRefused(t *testing.T) {
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	zw.Write(make([]byte, 10<<20))
	zw.Close()
	if _, err := Inflate(buf.Bytes()); err == nil || !strings.Contains(err.Error(), "inflates past") {
		t.Fatalf("10 MiB of zeros: %v", err)
	}
	if _, err := Inflate([]byte("not zlib")); err == nil {
		t.Fatal("non-zlib accepted")
	}
}

func FuzzVerify(f *testing.F) {
	now := time.Now()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert := testDSC(f, key, now.AddDate(-1, 0, 0), now.AddDate(1, 0, 0))
	qr, err := (&Issuer{Key: key, Cert: cert}).Issue(sampleDoc, now, now.Add(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	trust, _ := NewTrust(cert)
	f.Add(qr)
	f.Add("HC1:")
	f.Add("HC1:BB8")
	f.Fuzz(func(t *testing.T, s string) {
		if full := Verify(s, Options{Trust: trust, At: now}); full.Valid() && full.Signer == nil {
			t.Fatal("valid without a signer")
		}
		r := Verify(s, Options{DecodeOnly: true})
		if r.Valid() && r.Doc == nil {
			t.Fatal("valid without a payload")
		}
		if r.Doc != nil {
			_ = ValidateSchema(r.Doc)
		}
	})
}

func FuzzBase45(f *testing.F) {
	f.Add("%69 VD92EX0")
	f.Add("GGW")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := Base45Decode(s)
		if err != nil {
			return
		}
		if got := Base45Encode(b); got != s {
			t.Fatalf("round trip %q → %x → %q", s, b, got)
		}
	})
}
