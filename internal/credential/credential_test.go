package credential

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/civstack/civstack/internal/sdjwt"
	"github.com/civstack/civstack/internal/statuslist"
)

type lists map[string]*statuslist.Token

func (l lists) StatusList(uri string) (*statuslist.Token, error) {
	if t := l[uri]; t != nil {
		return t, nil
	}
	return nil, errors.New("unknown list")
}

func TestPIDOverEighteen(t *testing.T) {
	issuer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	const uri = "https://registry.example/status/1"
	list, _ := statuslist.New(1, 1<<16)
	vc := VC{Issuer: "https://registry.example", VCT: "urn:eudi:pid:1", Holder: jose.JSONWebKey{Key: &holder.PublicKey},
		Status: &Status{URI: uri, Idx: 4242}, IssuedAt: now, Expires: now.Add(24 * time.Hour),
		Claims: map[string]any{"given_name": "Amira", "family_name": "Haddad", "birthdate": "1990-04-01", "age_over_18": true,
			"address": map[string]any{"locality": "Bologna", "street_address": "Via Zamboni 33"}}}
	issued, err := Issue(issuer, jose.ES256, vc, sdjwt.RandomSalts(nil))
	if err != nil {
		t.Fatal(err)
	}
	pres, err := sdjwt.Present(issued, func(d *sdjwt.Disclosure) bool { return d.Name == "age_over_18" }, holder, jose.ES256, "n1", "https://bar.example", now)
	if err != nil {
		t.Fatal(err)
	}
	o := sdjwt.Options{Now: now, RequireKeyBinding: true, Nonce: "n1", Audience: "https://bar.example"}
	check := func(want error) *Verified {
		t.Helper()
		v, err := Verify(pres, &issuer.PublicKey, o, lists{uri: mustList(t, list, uri, issuer, now)})
		if !errors.Is(err, want) {
			t.Fatalf("verify: %v, want %v", err, want)
		}
		return v
	}
	v := check(nil)
	if len(v.Claims) != 1 || v.Claims["age_over_18"] != true || v.VCT != "urn:eudi:pid:1" || !v.KB {
		t.Fatalf("over 18 only: %+v", v)
	}
	// Only the locality of the address.
	pres2, _ := sdjwt.Present(issued, func(d *sdjwt.Disclosure) bool { return d.Name == "address" || d.Name == "locality" }, holder, jose.ES256, "n1", "https://bar.example", now)
	v2, err := Verify(pres2, &issuer.PublicKey, o, lists{uri: mustList(t, list, uri, issuer, now)})
	if err != nil || v2.Claims["address"].(map[string]any)["locality"] != "Bologna" || v2.Claims["address"].(map[string]any)["street_address"] != nil {
		t.Fatalf("locality only: %+v %v", v2, err)
	}
	if err := list.Set(4242, statuslist.Invalid); err != nil {
		t.Fatal(err)
	}
	check(ErrRevoked)
	if _, err := Verify(pres, &issuer.PublicKey, o, nil); !errors.Is(err, ErrStatus) {
		t.Fatalf("no status lists: %v", err)
	}

	// vct hidden behind a disclosure is refused.
	payload, ds, _ := sdjwt.Conceal(map[string]any{"iss": "x", "vct": sdjwt.SD{Value: "urn:eudi:pid:1"}}, sdjwt.RandomSalts(nil))
	bad, _ := sdjwt.Issue(issuer, jose.ES256, Type, payload, ds)
	if _, err := Verify(bad, &issuer.PublicKey, sdjwt.Options{}, nil); !errors.Is(err, ErrClaims) {
		t.Fatalf("disclosable vct: %v", err)
	}
	other, _ := sdjwt.Issue(issuer, jose.ES256, "example+sd-jwt", map[string]any{"vct": "x"}, nil)
	if _, err := Verify(other, &issuer.PublicKey, sdjwt.Options{}, nil); !errors.Is(err, ErrType) {
		t.Fatalf("another typ: %v", err)
	}
	if _, err := Issue(issuer, jose.ES256, VC{Issuer: "x", VCT: "y", Holder: vc.Holder, Claims: map[string]any{"cnf": 1}}, sdjwt.RandomSalts(nil)); !errors.Is(err, ErrClaims) {
		t.Fatalf("a claim named cnf: %v", err)
	}
}

func mustList(t *testing.T, l *statuslist.List, uri string, key *ecdsa.PrivateKey, now time.Time) *statuslist.Token {
	tok, err := statuslist.Sign(l, uri, key, jose.ES256, "", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := statuslist.Parse(tok, uri, &key.PublicKey, now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
