package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/civstack/civstack/internal/demo"
	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestDemoExchangeTraffic: serve --demo's exchange has the story
// in it from the start: Amira sees the tax office's audit, verified, and
// not yet the police's covert request, which the DPA sees at once; Jonas
// is asked for his consent; once the deferral ends Amira sees the police
// too. Seeding again adds nothing.
func TestDemoExchangeTraffic(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startCrawledDemo(t, e)
			if err := demo.SeedExchange(context.Background(), w.n.reg, w.n.ex); err != nil {
				t.Fatal(err)
			}
			if _, _, err := w.n.tlog.Integrate(context.Background()); err != nil { // serve's integrator does this within a second
				t.Fatal(err)
			}
			amira, jonas, ana := w.as(t, "Amira Haddad"), w.as(t, "Jonas Weber"), w.as(t, "Ana Costa")
			r := amira.get("/wallet/access")
			expect(t, "Amira's accesses", r, http.StatusOK, "City Tax Office read your Declared income", "TAX-AUDIT", "Verified: entry")
			if n := strings.Count(r.body, `class="card access" id="acc-`); n != 1 || strings.Contains(r.body, "City Police read your") {
				t.Fatalf("Amira sees %d accesses (want the audit only, the police's deferred):\n%s", n, r.body)
			}
			expect(t, "Jonas's home", jonas.get("/"), http.StatusOK, "A request asks", "for your consent")
			expect(t, "Jonas's requests", jonas.get("/wallet/access"), http.StatusOK, "City Police", "WITNESS-CONTACT")
			d := ana.get("/dpa/exchange")
			expect(t, "the DPA's page", d, http.StatusOK, "1 in all", "CRIM-INVESTIGATION", "City Tax Office · TAX-AUDIT: 1")
			if n := strings.Count(d.body, `<td data-label="Log entry">`); n != 3 { // the deferred one, and both among the recent
				t.Fatalf("the DPA's page shows %d accesses, want the deferred one and 2 recent", n)
			}
			w.n.clock.add(30*exchange.Day + 1)
			r = w.as(t, "Amira Haddad").get("/wallet/access") // signed in again: a month outlives a session
			expect(t, "Amira's accesses after the deferral", r, http.StatusOK, "No longer hidden from you", "City Police read your Declared income", "CRIM-INVESTIGATION")
			if n := strings.Count(r.body, `class="card access" id="acc-`); n != 2 {
				t.Fatalf("Amira sees %d accesses after the deferral, want 2:\n%s", n, r.body)
			}
		})
	}
}
