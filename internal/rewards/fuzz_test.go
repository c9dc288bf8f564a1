package rewards

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"
)

// FuzzVoucherCode: a partner's scanned text never panics the parser, and
// only the programme's own signature opens.
func FuzzVoucherCode(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s := &Service{Deps: Deps{Key: key, KeyID: "k", Now: time.Now}}
	good, err := s.Code(&Voucher{ID: "v1", Item: "museum-entry", Partner: "org", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJ2aWQiOiJ4In0.")
	f.Fuzz(func(t *testing.T, code string) {
		c, err := s.open(code)
		if err == nil && (c == nil || c.Voucher == "") {
			t.Fatalf("opened %q without a voucher", code)
		}
		if err == nil && code != good && len(code) > 0 {
			// Another valid encoding of the same signed payload is fine;
			// anything that opens must carry the signed voucher id.
			if c.Voucher != "v1" {
				t.Fatalf("a forged code opened: %q", code)
			}
		}
	})
}
