package statuslist

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// The draft's examples: decoding is byte-exact (encoding round-trips only,
// as compressors differ).
func TestDraftExamples(t *testing.T) {
	for _, c := range []struct {
		bits   int
		lst    string
		status []byte
	}{
		{1, "eNrbuRgAAhcBXQ", []byte{1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1}},
		{2, "eNo76fITAAPfAgc", []byte{1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3}},
	} {
		l, err := Decode(c.bits, c.lst)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range c.status {
			if got, _ := l.Get(i); got != want {
				t.Errorf("bits %d: status[%d] = %d, want %d", c.bits, i, got, want)
			}
		}
		fresh, _ := New(c.bits, len(c.status))
		for i, v := range c.status {
			fresh.Set(i, v)
		}
		back, err := Decode(c.bits, fresh.Encode())
		if err != nil || string(back.data) != string(l.data) {
			t.Errorf("bits %d: encode round trip %x, want %x (%v)", c.bits, back.data, l.data, err)
		}
	}
}

func TestSignedToken(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	l, _ := New(1, 1<<17)
	l.Set(77777, Invalid)
	if err := l.Set(3, Suspended); err == nil {
		t.Fatal("a 2-bit status in a 1-bit list")
	}
	now := time.Now()
	const uri = "https://registry.example/status/1"
	tok, err := Sign(l, uri, key, jose.ES256, "k1", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(tok, uri, &key.PublicKey, now)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := got.List.Get(77777); s != Invalid {
		t.Fatalf("revoked entry reads %d", s)
	}
	if s, _ := got.List.Get(77776); s != Valid {
		t.Fatalf("neighbour reads %d", s)
	}
	if _, err := got.List.Get(1 << 17); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("out of range: %v", err)
	}
	for what, c := range map[string]struct {
		key  any
		uri  string
		at   time.Time
		want error
	}{
		"another key": {&other.PublicKey, uri, now, ErrSignature},
		"another uri": {&key.PublicKey, uri + "x", now, ErrSubject},
		"expired":     {&key.PublicKey, uri, now.Add(3 * time.Hour), ErrExpired},
	} {
		if _, err := Parse(tok, c.uri, c.key, c.at); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", what, err, c.want)
		}
	}
}

// TestTTL: a token's ttl is read as that many seconds, however many; a
// negative one is refused. 2^55+1 seconds once wrapped around to one.
func TestTTL(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	l, _ := New(1, 1<<10)
	const uri = "https://registry.example/status/1"
	now := time.Now()
	for ttl, want := range map[int64]time.Duration{
		0: 0, 300: 5 * time.Minute, 1<<55 + 1: math.MaxInt64 / time.Second * time.Second, math.MaxInt64: math.MaxInt64 / time.Second * time.Second, -5: -1,
	} {
		c := claims{Sub: uri, IAT: now.Unix(), TTL: ttl}
		c.StatusList.Bits, c.StatusList.Lst = l.Bits, l.Encode()
		tok, err := sign(c, key, jose.ES256, "")
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(tok, uri, &key.PublicKey, now)
		switch {
		case want < 0 && !errors.Is(err, ErrFormat):
			t.Errorf("ttl %d: %v, want a format error", ttl, err)
		case want >= 0 && (err != nil || got.TTL != want):
			t.Errorf("ttl %d: read as %v (%v), want %v", ttl, got, err, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(1, "eNrbuRgAAhcBXQ")
	f.Add(2, "eNo76fITAAPfAgc")
	f.Fuzz(func(t *testing.T, bits int, lst string) {
		l, err := Decode(bits, lst)
		if err != nil {
			return
		}
		for i := 0; i < l.Size() && i < 64; i++ {
			if _, err := l.Get(i); err != nil {
				t.Fatal(err)
			}
		}
	})
}
