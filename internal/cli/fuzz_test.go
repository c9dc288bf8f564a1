package cli

import (
	"net"
	"testing"
)

func FuzzPublicURL(f *testing.F) {
	for _, s := range []string{"", "http://localhost:8080", "https://civstack.example.org", "http://127.0.0.1", "ftp://x", "https://a/b", "::::", "https://[::1]:443"} {
		f.Add(s, "127.0.0.1:8080", false)
	}
	f.Fuzz(func(t *testing.T, raw, addr string, tlsOn bool) {
		u, err := publicURL(raw, addr, tlsOn)
		if err != nil {
			return
		}
		if u.Host == "" || net.ParseIP(u.Hostname()) != nil || (u.Scheme != "http" && u.Scheme != "https") {
			t.Fatalf("publicURL(%q, %q) = %v", raw, addr, u)
		}
	})
}
