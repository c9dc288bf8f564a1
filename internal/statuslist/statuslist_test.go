package statuslist

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
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
