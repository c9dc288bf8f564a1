package server_test

import (
	"context"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/civstack/civstack/internal/demo"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestRolePagesLeadToWork: each demo persona's home page says what their
// role's console is for, and the console links, for each of their
// organisations, the page where that role's work is done (an agency's
// requests, a partner's points, the DPA's audit, a shop's point of sale),
// which opens.
func TestRolePagesLeadToWork(t *testing.T) {
	work := map[registry.Role]func(org string) string{
		registry.Merchant: func(org string) string { return "/pos/" + org },
		registry.Issuer:   func(org string) string { return "/issue/" + org },
		registry.Verifier: func(org string) string { return "/check/" + org },
		registry.Agency:   func(org string) string { return "/exchange/" + org },
		registry.Partner:  func(org string) string { return "/rewards/" + org },
		registry.DPA:      func(string) string { return "/dpa/exchange" },
	}
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			for _, p := range demo.Personas {
				link, ok := work[p.Role]
				if !ok {
					continue // citizens; the operator's console is its own page
				}
				c := w.as(t, p.Name)
				home := c.get("/")
				expect(t, p.Name+"'s home", home, http.StatusOK, `href="/`+string(p.Role)+`"`)
				tile := regexp.MustCompile(`<a href="/` + string(p.Role) + `">[^<]*</a></h3><p>([^<]+)</p>`).FindStringSubmatch(home.body)
				if tile == nil || html.UnescapeString(tile[1]) != consoleDescription(t, c, p.Role) {
					t.Fatalf("%s's home: the %s tile says nothing of what it is for (%v)", p.Name, p.Role, tile)
				}
				org, err := w.n.reg.OrganisationByName(context.Background(), p.Org)
				if err != nil {
					t.Fatal(err)
				}
				want := link(org.ID)
				console := c.get("/" + string(p.Role))
				expect(t, p.Name+"'s console", console, http.StatusOK)
				// The organisations' list, not the menu, links the work.
				_, orgs, _ := strings.Cut(console.body, `id="orgs-h"`)
				orgs, _, _ = strings.Cut(orgs, "</section>")
				if !strings.Contains(orgs, html.EscapeString(p.Org)) || !strings.Contains(orgs, `href="`+want+`"`) {
					t.Fatalf("%s's console lists %s without a link to %s:\n%s", p.Name, p.Org, want, orgs)
				}
				expect(t, p.Name+"'s work", c.get(want), http.StatusOK)
			}
		})
	}
}

// consoleDescription is the description the role's console opens with.
func consoleDescription(t *testing.T, c *client, role registry.Role) string {
	t.Helper()
	r := c.get("/" + string(role))
	m := regexp.MustCompile(`<h1>[^<]*</h1>\s*<p>([^<]+)</p>`).FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("the %s console has no description:\n%s", role, r.body)
	}
	return html.UnescapeString(m[1])
}
