package sdjwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func TestRFCDigestVector(t *testing.T) {
	d := &Disclosure{Encoded: "WyJfMjZiYzRMVC1hYzZxMktJNmNCVzVlcyIsICJmYW1pbHlfbmFtZSIsICJNw7ZiaXVzIl0"}
	if got := d.Digest(); got != "X9yH0Ajrdm1Oij4tWso9UzzKJvPoDxwmuEcO3XAdRC0" {
		t.Fatalf("digest %s", got)
	}
	p, err := ParseDisclosure(d.Encoded)
	if err != nil || p.Name != "family_name" || p.Value != "Möbius" {
		t.Fatalf("parse: %+v %v", p, err)
	}
}

func TestRoundTripAndRefusals(t *testing.T) {
	issuer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	hj, _ := jose.JSONWebKey{Key: &holder.PublicKey}.MarshalJSON()
	var holderJWK any
	json.Unmarshal(hj, &holderJWK)
	now := time.Now()
	claims := map[string]any{
		"iss": "https://registry.example", "iat": float64(now.Unix()), "exp": float64(now.Add(time.Hour).Unix()), "cnf": map[string]any{"jwk": holderJWK},
		"given_name": SD{"Amira"}, "family_name": SD{"Haddad"}, "age_over_18": SD{true},
		"address":       SD{map[string]any{"locality": SD{"Bologna"}, "country": SD{"IT"}}},
		"nationalities": []any{SD{"IT"}, SD{"MA"}, Decoy{}}, "x": Decoy{},
	}
	payload, ds, err := Conceal(claims, RandomSalts(nil))
	if err != nil {
		t.Fatal(err)
	}
	issued, err := Issue(issuer, jose.ES256, "dc+sd-jwt", payload, ds)
	if err != nil {
		t.Fatal(err)
	}
	all, err := Verify(issued, &issuer.PublicKey, Options{Now: now})
	if err != nil || all.Claims["address"].(map[string]any)["locality"] != "Bologna" || len(all.Claims["nationalities"].([]any)) != 2 || all.Type != "dc+sd-jwt" {
		t.Fatalf("issued: %+v %v", all, err)
	}
	onlyAge := func(d *Disclosure) bool { return d.Name == "age_over_18" }
	pres, err := Present(issued, onlyAge, holder, jose.ES256, "n-1", "https://bar.example", now)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Now: now, RequireKeyBinding: true, Nonce: "n-1", Audience: "https://bar.example", MaxKBAge: 5 * time.Minute}
	res, err := Verify(pres, &issuer.PublicKey, opts)
	if err != nil || res.Claims["age_over_18"] != true || res.Claims["given_name"] != nil || res.Claims["address"] != nil || !res.KeyBinding {
		t.Fatalf("over 18 only: %+v %v", res, err)
	}
	if n := res.Claims["nationalities"].([]any); len(n) != 0 {
		t.Fatalf("undisclosed elements shown: %v", n)
	}

	p, _ := Parse(pres)
	var extra string // a real top-level disclosure of the credential, not covered by sd_hash
	for _, d := range ds {
		if d.Name == "given_name" {
			extra = d.Encoded
		}
	}
	foreign, _ := newDisclosure("salt-salt-salt", "role", false, "admin")
	expired := Options{Now: now.Add(2 * time.Hour)}
	cases := []struct {
		what string
		sd   string
		key  any
		o    Options
		want error
	}{
		{"another issuer", pres, &other.PublicKey, opts, ErrSignature},
		{"a disclosure added after key binding", p.JWT + "~" + strings.Join(append(p.Disclosures, extra), "~") + "~" + p.KB, &issuer.PublicKey, opts, ErrSDHash},
		{"another nonce (replay)", pres, &issuer.PublicKey, Options{Nonce: "n-2", Audience: opts.Audience}, ErrNonce},
		{"another audience", pres, &issuer.PublicKey, Options{Nonce: "n-1", Audience: "https://shop.example"}, ErrAudience},
		{"expired", issued, &issuer.PublicKey, expired, ErrExpired},
		{"a disclosure not in the payload", p.JWT + "~" + foreign.Encoded + "~", &issuer.PublicKey, Options{}, ErrUnreferenced},
		{"the same disclosure twice", p.JWT + "~" + p.Disclosures[0] + "~" + p.Disclosures[0] + "~", &issuer.PublicKey, Options{}, ErrDuplicateDigest},
		{"no key binding", p.WithoutKB(), &issuer.PublicKey, opts, ErrKeyBinding},
		{"an old key binding", pres, &issuer.PublicKey, Options{Now: now.Add(30 * time.Minute), MaxKBAge: 5 * time.Minute}, ErrKeyBinding},
		{"not an SD-JWT", "hello", &issuer.PublicKey, Options{}, ErrFormat},
	}
	for _, c := range cases {
		if _, err := Verify(c.sd, c.key, c.o); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.what, err, c.want)
		}
	}
	// A digest used twice in the payload is refused.
	d1, _ := newDisclosure("s1", "a", false, 1)
	dup := map[string]any{"_sd": []any{d1.Digest()}, "b": map[string]any{"_sd": []any{d1.Digest()}}}
	twice, _ := Issue(issuer, jose.ES256, "dc+sd-jwt", dup, []*Disclosure{d1})
	if _, err := Verify(twice, &issuer.PublicKey, Options{}); !errors.Is(err, ErrDuplicateDigest) {
		t.Errorf("a digest twice in the payload: %v", err)
	}
	// A disclosed name that already exists is refused.
	d2, _ := newDisclosure("s2", "given_name", false, "Eve")
	clash, _ := Issue(issuer, jose.ES256, "dc+sd-jwt", map[string]any{"given_name": "Amira", "_sd": []any{d2.Digest()}}, []*Disclosure{d2})
	if _, err := Verify(clash, &issuer.PublicKey, Options{}); !errors.Is(err, ErrDisclosure) {
		t.Errorf("a name clash: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	issuer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	payload, ds, _ := Conceal(map[string]any{"a": SD{"x"}, "b": []any{SD{1.0}}, "c": SD{map[string]any{"d": SD{true}}}}, RandomSalts(nil))
	issued, _ := Issue(issuer, jose.ES256, "dc+sd-jwt", payload, ds)
	f.Add(issued)
	f.Add("a.b.c~WyJzIiwgImEiLCAxXQ~")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = Verify(s, &issuer.PublicKey, Options{})
		if p, err := Parse(s); err == nil {
			for _, d := range p.Disclosures {
				_, _ = ParseDisclosure(d)
			}
		}
	})
}

// TestOtherAlgorithms covers the go-jose path: an EdDSA issuer and an
// EdDSA holder key.
func TestOtherAlgorithms(t *testing.T) {
	ipub, ipriv, _ := ed25519.GenerateKey(rand.Reader)
	hpub, hpriv, _ := ed25519.GenerateKey(rand.Reader)
	hj, _ := jose.JSONWebKey{Key: hpub}.MarshalJSON()
	var jwk any
	json.Unmarshal(hj, &jwk)
	payload, ds, _ := Conceal(map[string]any{"cnf": map[string]any{"jwk": jwk}, "a": SD{"x"}}, RandomSalts(nil))
	issued, err := Issue(ipriv, jose.EdDSA, "dc+sd-jwt", payload, ds)
	if err != nil {
		t.Fatal(err)
	}
	pres, err := Present(issued, func(*Disclosure) bool { return true }, hpriv, jose.EdDSA, "n", "aud", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	res, err := Verify(pres, ipub, Options{RequireKeyBinding: true, Nonce: "n", Audience: "aud"})
	if err != nil || res.Claims["a"] != "x" || !res.KeyBinding {
		t.Fatalf("EdDSA: %+v %v", res, err)
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := Verify(pres, other, Options{}); !errors.Is(err, ErrSignature) {
		t.Fatalf("EdDSA, another key: %v", err)
	}
	// alg "none" is never accepted.
	p, _ := Parse(issued)
	none := "eyJhbGciOiJub25lIn0." + p.JWT[strings.IndexByte(p.JWT, '.')+1:strings.LastIndexByte(p.JWT, '.')] + ".~"
	if _, err := Verify(none, ipub, Options{}); !errors.Is(err, ErrFormat) {
		t.Fatalf("alg none: %v", err)
	}
}

// TestKeepPaths: a DCQL path to an object reveals all of it; a path to an
// array element reveals that element only.
func TestKeepPaths(t *testing.T) {
	issuer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	payload, ds, _ := Conceal(map[string]any{"given_name": SD{"Amira"}, "address": SD{map[string]any{"locality": SD{"Bologna"}, "country": SD{"IT"}}},
		"nationalities": []any{SD{"IT"}, SD{"MA"}}}, RandomSalts(nil))
	issued, _ := Issue(issuer, jose.ES256, "dc+sd-jwt", payload, ds)
	for _, c := range []struct {
		want  []Path
		check func(map[string]any) bool
	}{
		{[]Path{{"address"}}, func(m map[string]any) bool {
			a, _ := m["address"].(map[string]any)
			return len(m) == 2 && a["locality"] == "Bologna" && a["country"] == "IT" // nationalities stays, empty
		}},
		{[]Path{{"address", "country"}}, func(m map[string]any) bool {
			a, _ := m["address"].(map[string]any)
			return a["country"] == "IT" && a["locality"] == nil && m["given_name"] == nil
		}},
		{[]Path{{"nationalities", 1}}, func(m map[string]any) bool {
			n, _ := m["nationalities"].([]any)
			return len(n) == 1 && n[0] == "MA"
		}},
		{[]Path{{"nationalities", nil}}, func(m map[string]any) bool { return len(m["nationalities"].([]any)) == 2 }},
	} {
		keep, err := KeepPaths(issued, c.want)
		if err != nil {
			t.Fatal(err)
		}
		pres, _ := Present(issued, keep, nil, "", "", "", time.Time{})
		res, err := Verify(pres, &issuer.PublicKey, Options{})
		if err != nil || !c.check(res.Claims) {
			t.Errorf("%v: %v %v", c.want, res.Claims, err)
		}
	}
}
