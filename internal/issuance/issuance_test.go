package issuance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func TestOfferLinkRoundTrip(t *testing.T) {
	o := NewOffer("https://registry.example", []string{"pid"}, "code-123", &TxCode{InputMode: "numeric", Length: 6, Description: "Sent by SMS"})
	back, err := ParseOffer(o.Link())
	if err != nil {
		t.Fatal(err)
	}
	if back.Grants.PreAuthorized.Code != "code-123" || back.Grants.PreAuthorized.TxCode.Length != 6 || back.CredentialConfigurationIDs[0] != "pid" {
		t.Fatalf("%+v", back)
	}
	for what, s := range map[string]string{
		"no configurations": `{"credential_issuer": "https://a.example", "credential_configuration_ids": [], "grants": {}}`,
		"no grant":          `{"credential_issuer": "https://a.example", "credential_configuration_ids": ["pid"], "grants": {}}`,
		"http issuer":       `{"credential_issuer": "http://a.example", "credential_configuration_ids": ["pid"], "grants": {"urn:ietf:params:oauth:grant-type:pre-authorized_code": {"pre-authorized_code": "x"}}}`,
		"both parameters":   "openid-credential-offer://?credential_offer=%7B%7D&credential_offer_uri=https%3A%2F%2Fa.example",
		"bad tx mode":       `{"credential_issuer": "https://a.example", "credential_configuration_ids": ["pid"], "grants": {"urn:ietf:params:oauth:grant-type:pre-authorized_code": {"pre-authorized_code": "x", "tx_code": {"input_mode": "voice"}}}}`,
		"not JSON":          `{`,
	} {
		if _, err := ParseOffer(s); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%s: %v", what, err)
		}
	}
	// A link that is not an offer says what an offer link looks like.
	for s, want := range map[string]string{
		"":                    "holds no offer (an offer link starts with openid-credential-offer://",
		"zzz":                 "holds no offer",
		"https://a.example/x": "holds no offer",
		"openid-credential-offer://?credential_offer_uri=https%3A%2F%2Fa.example":   "only points to an offer",
		"openid-credential-offer://?credential_offer=%7B%7D&credential_offer_uri=x": "holds both",
		"openid-credential-offer://?credential_offer=%7B":                           "the offer is not JSON",
	} {
		if _, err := ParseOffer(s); !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", s, err, want)
		}
	}
}

func TestProof(t *testing.T) {
	holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	used := map[string]bool{}
	once := func(n string) bool {
		if n != "n-1" || used[n] {
			return false
		}
		used[n] = true
		return true
	}
	p, err := Proof(holder, jose.ES256, "https://registry.example", "n-1", now)
	if err != nil {
		t.Fatal(err)
	}
	k, err := VerifyProof(p, "https://registry.example", now, 5*time.Minute, once)
	if err != nil || !k.Key.(*ecdsa.PublicKey).Equal(&holder.PublicKey) {
		t.Fatalf("proof: %v", err)
	}
	if _, err := VerifyProof(p, "https://registry.example", now, 5*time.Minute, once); !errors.Is(err, ErrInvalidNonce) {
		t.Fatalf("replayed nonce: %v", err)
	}
	if _, err := VerifyProof(p, "https://other.example", now, 5*time.Minute, func(string) bool { return true }); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("another issuer: %v", err)
	}
	if _, err := VerifyProof(p, "https://registry.example", now.Add(time.Hour), 5*time.Minute, func(string) bool { return true }); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("old proof: %v", err)
	}
	if _, err := VerifyProof("a.b.c", "https://registry.example", now, time.Minute, func(string) bool { return true }); !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("garbage: %v", err)
	}
}

func FuzzParseOffer(f *testing.F) {
	f.Add(NewOffer("https://registry.example", []string{"pid"}, "c", nil).Link())
	f.Add(`{"credential_issuer": "https://a.example"}`)
	f.Fuzz(func(t *testing.T, s string) {
		if o, err := ParseOffer(s); err == nil {
			if _, err := ParseOffer(o.Link()); err != nil {
				t.Fatalf("a valid offer does not round-trip: %v", err)
			}
		}
	})
}
