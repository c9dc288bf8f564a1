package server_test

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestAgencyHistory: an agency reaches every request it made, not only
// its latest 30: its page links to older ones, page by page, and its
// system pages through the same list by the API; each request once,
// newest first, released, waiting and denied alike. Nobody else sees the
// list, and a cursor that is not one gets a clear error.
func TestAgencyHistory(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			tax, police := exWorld(t, w)
			amira := w.people["Amira Haddad"]
			policeAPI := w.apiClient(t, police, registry.Agency, "case system")
			var made []string // oldest first
			for i := range 40 {
				w.n.clock.add(time.Second) // one request a second: the order is the order made
				body := map[string]any{"citizen": amira, "service": "tax-income", "fields": []string{"employer"}, "purpose": "CRIM-INVESTIGATION", "legal_basis": "Criminal Procedure §100"}
				switch i % 4 {
				case 0:
					body["service"], body["fields"], body["purpose"], body["legal_basis"] = "population", []string{"address"}, "WITNESS-CONTACT", "Police Act §12"
				case 1:
					body["purpose"] = "CURIOSITY"
				}
				r := policeAPI.postJSON("/api/v1/exchange/requests", body)
				var out struct {
					ID     string `json:"id"`
					Errors []struct {
						Message  string `json:"message"`
						Location string `json:"location"`
					} `json:"errors"`
				}
				r.json(t, &out)
				if i%4 == 1 {
					expect(t, fmt.Sprintf("denied request %d", i), r, http.StatusForbidden)
					if len(out.Errors) != 1 || out.Errors[0].Location != "request_id" {
						t.Fatalf("a denied request's id: %s", r.body)
					}
					out.ID = out.Errors[0].Message
				} else {
					expect(t, fmt.Sprintf("request %d", i), r, http.StatusOK)
				}
				made = append(made, out.ID)
			}
			newest := slices.Clone(made)
			slices.Reverse(newest)

			// The page: the latest 30, then older ones by the link.
			rowID := regexp.MustCompile(`<tr id="req-([^"]+)"`)
			older := regexp.MustCompile(`<a href="([^"]+)" id="older">`)
			read := func(who, path string) (ids []string, next string) {
				t.Helper()
				r := w.as(t, who).get(path)
				expect(t, path, r, http.StatusOK)
				_, table, _ := strings.Cut(r.body, `<table id="requests"`)
				for _, m := range rowID.FindAllStringSubmatch(table, -1) {
					ids = append(ids, m[1])
				}
				if m := older.FindStringSubmatch(r.body); m != nil {
					next = html.UnescapeString(m[1])
				}
				return ids, next
			}
			first, next := read("Eva Lind", "/exchange/"+police)
			if !slices.Equal(first, newest[:30]) || !strings.HasPrefix(next, "/exchange/"+police+"/requests?before=") {
				t.Fatalf("the police's page: %d requests (want the latest 30 of 40), older at %q", len(first), next)
			}
			rest, end := read("Eva Lind", next)
			if !slices.Equal(rest, newest[30:]) || end != "" {
				t.Fatalf("the older requests: %d (want the oldest 10), older at %q", len(rest), end)
			}
			all, end := read("Eva Lind", "/exchange/"+police+"/requests")
			if !slices.Equal(all, newest) || end != "" {
				t.Fatalf("all requests on one page: %d of 40, older at %q", len(all), end)
			}
			expect(t, "the list says what each did", w.as(t, "Eva Lind").get("/exchange/"+police+"/requests"), http.StatusOK,
				"All requests · City Police", "denied: ", "awaiting consent until", "released")

			// The API: the same list, newest first, in pages of 7.
			type page struct {
				Requests []struct {
					ID    string `json:"id"`
					State string `json:"state"`
				} `json:"requests"`
				Next string `json:"next"`
			}
			walk := func(c *client, limit int) []string {
				t.Helper()
				var ids []string
				before := ""
				for n := 0; n < 100; n++ {
					r := c.get(fmt.Sprintf("/api/v1/exchange/requests?limit=%d&before=%s", limit, url.QueryEscape(before)))
					expect(t, "a page of requests", r, http.StatusOK)
					var p page
					r.json(t, &p)
					for _, q := range p.Requests {
						ids = append(ids, q.ID)
					}
					if p.Next == "" {
						return ids
					}
					before = p.Next
				}
				t.Fatal("the pages do not end")
				return nil
			}
			if got := walk(policeAPI, 7); !slices.Equal(got, newest) {
				t.Fatalf("the police's requests by the API, 7 a page: %d of 40, in order: %v", len(got), slices.Equal(got, newest))
			}
			if got := walk(policeAPI, 1000); !slices.Equal(got, newest) {
				t.Fatalf("the police's requests by the API at once: %d of 40", len(got))
			}
			taxAPI := w.apiClient(t, tax, registry.Agency, "tax system")
			if got := walk(taxAPI, 100); len(got) != 0 {
				t.Fatalf("the tax office sees %d of the police's requests", len(got))
			}

			// Nobody else, and no made-up place in the list.
			expect(t, "another agency's list", w.as(t, "Tomas Novak").get("/exchange/"+police+"/requests"), http.StatusNotFound)
			expect(t, "a citizen on the police's list", w.as(t, "Amira Haddad").get("/exchange/"+police+"/requests"), http.StatusForbidden)
			expect(t, "a made-up cursor on the page", w.as(t, "Eva Lind").get("/exchange/"+police+"/requests?before=nonsense"), http.StatusBadRequest,
				"not a place in the list of requests")
			expectProblem(t, "a made-up cursor by the API", policeAPI.get("/api/v1/exchange/requests?before=1.2"), http.StatusBadRequest, "not a place in the list of requests")
			expect(t, "a page too big", policeAPI.get("/api/v1/exchange/requests?limit=1001"), http.StatusUnprocessableEntity)
		})
	}
}
