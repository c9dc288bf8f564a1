package server

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// TestSecurityHeaders: every answer carries the security headers, and
// Strict-Transport-Security too when the node is reached over https,
// directly or (its public URL saying https) through a TLS-terminating
// proxy; a node on plain http sends none.
func TestSecurityHeaders(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	for public, hsts := range map[string]bool{"https://city.example": true, "http://localhost:8080": false} {
		u, _ := url.Parse(public)
		s := &Server{cfg: Config{PublicURL: u}}
		w := httptest.NewRecorder()
		s.securityHeaders(ok).ServeHTTP(w, httptest.NewRequest("GET", "http://"+u.Host+"/", nil))
		for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options", "Permissions-Policy", "Cross-Origin-Opener-Policy"} {
			if w.Header().Get(h) == "" {
				t.Errorf("%s: no %s", public, h)
			}
		}
		if got := w.Header().Get("Strict-Transport-Security") != ""; got != hsts {
			t.Errorf("%s: Strict-Transport-Security sent: %v, want %v", public, got, hsts)
		}
	}
}
