package server_test

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/exchange"
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
				rowsNameRequests(t, path, table, "req-")
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

// TestAgencyWaiting: an agency reaches every request still waiting, not
// only the oldest 100: the page's waiting list goes on by a link, and its
// system lists them by the API page by page, oldest first; a place in the
// list that is not one of its requests gets a clear error.
func TestAgencyWaiting(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			tax, police := exWorld(t, w)
			amira := w.people["Amira Haddad"]
			policeAPI := w.apiClient(t, police, registry.Agency, "case system")
			var waiting []string // oldest first
			for range 103 {
				waiting = append(waiting, askConsent(t, w, policeAPI, amira))
			}
			taxAPI := w.apiClient(t, tax, registry.Agency, "tax system")
			r := taxAPI.postJSON("/api/v1/exchange/requests", map[string]any{"citizen": amira, "service": "tax-income", "fields": []string{"employer"},
				"purpose": "TAX-AUDIT", "legal_basis": "Tax Code §93"})
			expect(t, "the tax office's request, denied", r, http.StatusForbidden)

			// The page: the oldest 100, then the rest by the link.
			rowID := regexp.MustCompile(`<tr id="open-([^"]+)"`)
			later := regexp.MustCompile(`<a href="([^"]+)" id="later-open">`)
			read := func(path string, status int) (ids []string, next string) {
				t.Helper()
				ids, next, body := listPage(t, w.as(t, "Eva Lind"), path, status, rowID, later)
				rowsNameRequests(t, path, body, "open-")
				return ids, next
			}
			first, next := read("/exchange/"+police, http.StatusOK)
			if !slices.Equal(first, waiting[:100]) || !strings.Contains(next, "waiting_after="+waiting[99]) {
				t.Fatalf("the police's page: %d waiting (want the oldest 100 of 103), later at %q", len(first), next)
			}
			rest, end := read(next, http.StatusOK)
			if !slices.Equal(rest, waiting[100:]) || end != "" {
				t.Fatalf("the later waiting requests: %d (want 3), later at %q", len(rest), end)
			}
			expect(t, "the later list says where it starts", w.as(t, "Eva Lind").get(next), http.StatusOK, "from where the last list ended", `id="first-open"`)
			none, _ := read("/exchange/"+police+"?waiting_after="+waiting[102], http.StatusOK)
			if len(none) != 0 {
				t.Fatalf("after the newest: %d waiting", len(none))
			}
			expect(t, "after the newest", w.as(t, "Eva Lind").get("/exchange/"+police+"?waiting_after="+waiting[102]), http.StatusOK, "No later waiting requests.")
			for _, bad := range []string{"nonsense", waiting[0] + "x"} {
				ids, _ := read("/exchange/"+police+"?waiting_after="+url.QueryEscape(bad), http.StatusBadRequest)
				if !slices.Equal(ids, waiting[:100]) {
					t.Fatalf("a made-up place %q: %d waiting, want the list from the oldest", bad, len(ids))
				}
			}
			expect(t, "a made-up place", w.as(t, "Eva Lind").get("/exchange/"+police+"?waiting_after=nonsense"), http.StatusBadRequest,
				"not one of your waiting requests")

			// The API: the same, in lists of 40.
			var got []string
			after := ""
			for n := 0; n < 10; n++ {
				r := policeAPI.get("/api/v1/exchange/open-requests?limit=40&after=" + url.QueryEscape(after))
				expect(t, "a list of waiting requests", r, http.StatusOK)
				var out struct {
					Requests []struct {
						ID string `json:"id"`
					} `json:"requests"`
					Next string `json:"next"`
				}
				r.json(t, &out)
				for _, q := range out.Requests {
					got = append(got, q.ID)
				}
				if after = out.Next; after == "" {
					break
				}
			}
			if !slices.Equal(got, waiting) {
				t.Fatalf("the police's waiting requests by the API, 40 at a time: %d of 103", len(got))
			}
			var taxDenied struct {
				Errors []struct {
					Message string `json:"message"`
				} `json:"errors"`
			}
			r.json(t, &taxDenied)
			expectProblem(t, "after another agency's request", policeAPI.get("/api/v1/exchange/open-requests?after="+url.QueryEscape(taxDenied.Errors[0].Message)), http.StatusBadRequest,
				"not one of your waiting requests")
		})
	}
}

// TestCitizenPast: a citizen reaches every request that ended without a
// release, not only the latest 20: the page's past requests go on by a
// link, newest first, each once; a place in the list that is not one of
// the citizen's own past requests gets a clear error and the list from
// the newest.
func TestCitizenPast(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			_, police := exWorld(t, w)
			amira := w.people["Amira Haddad"]
			policeAPI := w.apiClient(t, police, registry.Agency, "case system")
			var refused []string // newest first
			for range 23 {
				id := askConsent(t, w, policeAPI, amira)
				expect(t, "refuse it", w.as(t, "Amira Haddad").postForm("/wallet/access/requests/"+id, url.Values{"decision": {"refuse"}}), http.StatusOK, "Refused.")
				refused = slices.Insert(refused, 0, id)
			}
			waiting := askConsent(t, w, policeAPI, amira)

			card := regexp.MustCompile(`<article class="card past-request" id="past-([^"]+)"`)
			older := regexp.MustCompile(`<a href="([^"]+)" id="older-past">`)
			read := func(path string, status int) (ids []string, next string, body string) {
				t.Helper()
				return listPage(t, w.as(t, "Amira Haddad"), path, status, card, older)
			}
			first, next, body := read("/wallet/access", http.StatusOK)
			if !slices.Equal(first, refused[:20]) || !strings.Contains(next, "past_before="+refused[19]) || !strings.Contains(body, "req-"+waiting) {
				t.Fatalf("Amira's page: %d past requests (want the newest 20 of 23), older at %q", len(first), next)
			}
			rest, end, body := read(next, http.StatusOK)
			if !slices.Equal(rest, refused[20:]) || end != "" {
				t.Fatalf("the older past requests: %d (want 3), older at %q", len(rest), end)
			}
			if !strings.Contains(body, "from where the last list ended") || !strings.Contains(body, `id="newest-past"`) || !strings.Contains(body, "req-"+waiting) {
				t.Fatal("the older list does not say where it starts, or hides what waits for an answer")
			}
			none, _, body := read("/wallet/access?past_before="+refused[22], http.StatusOK)
			if len(none) != 0 || !strings.Contains(body, "No older past requests.") {
				t.Fatalf("after the oldest: %d past requests", len(none))
			}
			// Not a place: made up, one still waiting, or another's.
			for _, bad := range []string{"nonsense", waiting, refused[0] + "x"} {
				ids, _, body := read("/wallet/access?past_before="+url.QueryEscape(bad), http.StatusBadRequest)
				if !slices.Equal(ids, refused[:20]) || !strings.Contains(body, "not one of your past requests") {
					t.Fatalf("a made-up place %q: %d past requests, want the list from the newest and the reason", bad, len(ids))
				}
			}
			r := w.as(t, "Jonas Weber").get("/wallet/access?past_before=" + refused[0])
			expect(t, "another citizen's request as a place", r, http.StatusBadRequest, "not one of your past requests")
			if strings.Contains(r.body, refused[0]+`"`) || strings.Contains(r.body, "past-request") {
				t.Fatal("another citizen's page shows Amira's past request")
			}
		})
	}
}

// askConsent has the police's system ask for citizen's address, a request
// that waits for the citizen's consent, a second after the one before; it
// returns the request's id.
func askConsent(t *testing.T, w *demoWorld, police *client, citizen string) string {
	t.Helper()
	return askAPI(t, w, police, map[string]any{"citizen": citizen, "service": "population", "fields": []string{"address"},
		"purpose": "WITNESS-CONTACT", "legal_basis": "Police Act §12"}, "awaiting consent")
}

// askAPI has an agency's system (c) make the request body says, a second
// after the one before, expecting it to end in state; it returns the
// request's id.
func askAPI(t *testing.T, w *demoWorld, c *client, body map[string]any, state string) string {
	t.Helper()
	w.n.clock.add(time.Second)
	r := c.postJSON("/api/v1/exchange/requests", body)
	expect(t, "a request that ends "+state, r, http.StatusOK, `"state":"`+state+`"`)
	var out struct {
		ID string `json:"id"`
	}
	r.json(t, &out)
	return out.ID
}

// TestCitizenPending: the requests waiting for Amira are listed 20 at a
// time, the oldest asked first, with a link to those asked later, each
// once; approved ones not yet collected are among them; her home counts
// only those waiting for her answer. A place that is not one of her
// requests gets a sentence and the list from the oldest.
func TestCitizenPending(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			_, police := exWorld(t, w)
			amira := w.people["Amira Haddad"]
			policeAPI := w.apiClient(t, police, registry.Agency, "case system")
			var waiting []string // the oldest first
			for range 25 {
				waiting = append(waiting, askConsent(t, w, policeAPI, amira))
			}
			expect(t, "approve one", w.as(t, "Amira Haddad").postForm("/wallet/access/requests/"+waiting[3], url.Values{"decision": {"approve"}}), http.StatusOK, "Approved.")
			refused := askConsent(t, w, policeAPI, amira)
			expect(t, "refuse one", w.as(t, "Amira Haddad").postForm("/wallet/access/requests/"+refused, url.Values{"decision": {"refuse"}}), http.StatusOK, "Refused.")
			expect(t, "her home", w.as(t, "Amira Haddad").get("/"), http.StatusOK, `24 requests ask for your consent.`)

			card := regexp.MustCompile(`<article class="card consent-request" id="req-([^"]+)"`)
			later := regexp.MustCompile(`<a href="([^"]+)" id="later-pending">`)
			read := func(path string, status int) (ids []string, next string, body string) {
				t.Helper()
				return listPage(t, w.as(t, "Amira Haddad"), path, status, card, later)
			}
			first, next, body := read("/wallet/access", http.StatusOK)
			if !slices.Equal(first, waiting[:20]) || !strings.Contains(next, "pending_after="+waiting[19]) {
				t.Fatalf("Amira's page: %d waiting requests (want the oldest 20 of 25), later at %q", len(first), next)
			}
			if !strings.Contains(body, "You approved this on") || !strings.Contains(body, "20 at a time") {
				t.Fatal("the first list hides the approved request or does not say it is one of several pages")
			}
			rest, end, body := read(next, http.StatusOK)
			if !slices.Equal(rest, waiting[20:]) || end != "" {
				t.Fatalf("the requests asked later: %d (want 5), later at %q", len(rest), end)
			}
			if !strings.Contains(body, "from where the last list ended") || !strings.Contains(body, `id="oldest-pending"`) {
				t.Fatal("the later list does not say where it starts")
			}
			// A request she answered meanwhile is still a place to list on
			// from (she may have refused the last one shown); made-up ones
			// and another's are not.
			if after, _, _ := read("/wallet/access?pending_after="+refused, http.StatusOK); len(after) != 0 {
				t.Fatalf("after the newest request: %d waiting", len(after))
			}
			for _, bad := range []string{"nonsense", waiting[0] + "x"} {
				ids, _, body := read("/wallet/access?pending_after="+url.QueryEscape(bad), http.StatusBadRequest)
				if !slices.Equal(ids, waiting[:20]) || !strings.Contains(body, "not one of your waiting requests") {
					t.Fatalf("a made-up place %q: %d waiting requests, want the list from the oldest and the reason", bad, len(ids))
				}
			}
			r := w.as(t, "Jonas Weber").get("/wallet/access?pending_after=" + waiting[0])
			expect(t, "another citizen's request as a place", r, http.StatusBadRequest, "not one of your waiting requests")
			if strings.Contains(r.body, waiting[1]) || strings.Contains(r.body, "consent-request") {
				t.Fatal("another citizen's page shows Amira's waiting requests")
			}
		})
	}
}

// listPage reads one page of a list as c, expecting status: the first
// group of each row (rowRE) in order, where the link on (nextRE) leads,
// and the page.
func listPage(t *testing.T, c *client, path string, status int, rowRE, nextRE *regexp.Regexp) (ids []string, next, body string) {
	t.Helper()
	r := c.get(path)
	expect(t, path, r, status)
	for _, m := range rowRE.FindAllStringSubmatch(r.body, -1) {
		ids = append(ids, m[1])
	}
	if m := nextRE.FindStringSubmatch(r.body); m != nil {
		next = html.UnescapeString(m[1])
	}
	return ids, next, r.body
}

// rowsNameRequests fails unless every row of body whose id is prefix and a
// request id shows that id in its Request cell: the pages name no citizen,
// so the id is an officer's or the DPA's one handle on a row.
func rowsNameRequests(t *testing.T, where, body, prefix string) {
	t.Helper()
	for _, row := range strings.Split(body, `<tr id="`+prefix)[1:] {
		id, _, _ := strings.Cut(row, `"`)
		if !strings.Contains(row, `<td data-label="Request"><code>`+id+`</code></td></tr>`) {
			t.Fatalf("%s: the row of request %s does not name it", where, id)
		}
	}
}

// TestCitizenAccessPages: "Who looked at my data" lists the accesses 50 at
// a time, newest first, with a link to older ones, each once; the export
// still has every one. A place that is no log entry number gets a
// readable 400 and the list from the newest, and a place taken from
// another citizen's list shows only the citizen's own accesses. Picked
// by agency, the list is that agency's accesses alone, page by page (its
// links keep the agency); an agency that read nothing says so, and one
// that reads nothing through the exchange gets a readable 400 and every
// agency's list.
func TestCitizenAccessPages(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			tax, police := exWorld(t, w)
			amira, jonas := w.people["Amira Haddad"], w.people["Jonas Weber"]
			taxAPI := w.apiClient(t, tax, registry.Agency, "tax system")
			release := func(citizen string) string {
				t.Helper()
				return askAPI(t, w, taxAPI, map[string]any{"citizen": citizen, "service": "tax-income", "fields": []string{"declared_income"},
					"purpose": "TAX-AUDIT", "legal_basis": "Tax Code §93"}, "released")
			}
			var made, jonasMade []string // newest first
			for i := range 53 {
				made = slices.Insert(made, 0, release(amira))
				if i%10 == 0 {
					jonasMade = slices.Insert(jonasMade, 0, release(jonas))
				}
			}

			card := regexp.MustCompile(`<article class="card access" id="acc-([^"]+)"`)
			older := regexp.MustCompile(`<a href="([^"]+)" id="older-acc">`)
			read := func(who, path string, status int) (ids []string, next string, body string) {
				t.Helper()
				return listPage(t, w.as(t, who), path, status, card, older)
			}
			// A card is named by its record's id; the requests made, by
			// their ids: the exchange's whole list ties the two.
			records := func(person string, made []string) []string {
				t.Helper()
				all, err := w.n.ex.ForCitizen(context.Background(), person)
				if err != nil || len(all) != len(made) {
					t.Fatalf("%d records for %d releases: %v", len(all), len(made), err)
				}
				var ids []string
				for i, v := range all {
					if v.Request != made[i] {
						t.Fatalf("record %d answers request %s, want %s (newest first)", i, v.Request, made[i])
					}
					ids = append(ids, v.ID)
				}
				return ids
			}
			made, jonasMade = records(amira, made), records(jonas, jonasMade)
			first, next, body := read("Amira Haddad", "/wallet/access", http.StatusOK)
			if !slices.Equal(first, made[:50]) || !strings.HasPrefix(next, "/wallet/access?before=") || !strings.Contains(body, "50 at a time") {
				t.Fatalf("Amira's page: %d accesses (want the newest 50 of 53), older at %q", len(first), next)
			}
			rest, end, body := read("Amira Haddad", next, http.StatusOK)
			if !slices.Equal(rest, made[50:]) || end != "" {
				t.Fatalf("the older accesses: %d (want 3), older at %q", len(rest), end)
			}
			if !strings.Contains(body, "from where the last list ended") || !strings.Contains(body, `id="newest-acc"`) {
				t.Fatal("the older list does not say where it starts")
			}
			_, oldest, _ := strings.Cut(next, "before=")
			oldest, _, _ = strings.Cut(oldest, "#")
			n, err := strconv.ParseInt(oldest, 10, 64)
			if err != nil {
				t.Fatalf("the link to older accesses: %q", next)
			}
			none, _, body := read("Amira Haddad", "/wallet/access?before=1", http.StatusOK)
			if len(none) != 0 || !strings.Contains(body, "No older accesses.") || strings.Contains(body, "Nobody has read your data") {
				t.Fatalf("below entry 1: %d accesses", len(none))
			}

			// The export has every one.
			r := w.as(t, "Amira Haddad").get("/wallet/access.json")
			expect(t, "the export", r, http.StatusOK)
			var export struct {
				Accesses []struct {
					ID string `json:"id"`
				} `json:"accesses"`
			}
			r.json(t, &export)
			if len(export.Accesses) != 53 {
				t.Fatalf("the export has %d accesses, want 53", len(export.Accesses))
			}

			// Not a place: the reason, and the list from the newest.
			for _, bad := range []string{"nonsense", "0", "-4", "1e3", "99999999999999999999"} {
				ids, _, body := read("Amira Haddad", "/wallet/access?before="+url.QueryEscape(bad), http.StatusBadRequest)
				if !slices.Equal(ids, made[:50]) || !strings.Contains(body, "not a log entry number") {
					t.Fatalf("a made-up place %q: %d accesses, want the list from the newest and the reason", bad, len(ids))
				}
			}
			// A place from Amira's list on Jonas's page: only his own, below it.
			ids, _, _ := read("Jonas Weber", "/wallet/access?before="+strconv.FormatInt(n, 10), http.StatusOK)
			if len(ids) == 0 || len(ids) >= len(jonasMade) || !slices.Equal(ids, jonasMade[len(jonasMade)-len(ids):]) {
				t.Fatalf("Jonas below Amira's place: %v, want the oldest of his own %v", ids, jonasMade)
			}

			// The police read Amira's data three times, once hidden from her
			// for a day, which has passed: the page's top shows it apart.
			var byPolice []string // newest first
			for _, deferral := range []time.Duration{0, exchange.Day, 0} {
				r, err := w.n.ex.Submit(context.Background(), exchange.Ask{Requester: police, Officer: "Eva Lind", Citizen: amira, Service: "tax-income",
					Fields: []string{"declared_income"}, Purpose: "CRIM-INVESTIGATION", LegalBasis: "Criminal Procedure §100", Defer: deferral})
				if err != nil || r.State != exchange.Released {
					t.Fatalf("police release: %+v %v", r, err)
				}
				byPolice = slices.Insert(byPolice, 0, r.ID)
			}
			w.n.clock.add(2 * exchange.Day)
			all, err := w.n.ex.ForCitizen(context.Background(), amira)
			if err != nil || len(all) != 56 {
				t.Fatalf("Amira's accesses after the police's: %d %v", len(all), err)
			}
			for i, v := range all[:3] {
				if v.Request != byPolice[i] {
					t.Fatalf("the newest access answers %s, want the police's %s", v.Request, byPolice[i])
				}
				byPolice[i] = v.ID
			}
			ids, _, body = read("Amira Haddad", "/wallet/access", http.StatusOK)
			if !slices.Equal(ids, slices.Concat(byPolice, made[:47])) || !strings.Contains(body, "No longer hidden") || !strings.Contains(body, `id="acc-filter"`) ||
				!strings.Contains(body, `<option value="`+tax+`">City Tax Office</option>`) || !strings.Contains(body, `<option value="`+police+`">City Police</option>`) {
				t.Fatalf("every agency's list: %d accesses, or no choice of the agencies", len(ids))
			}
			first, next, body = read("Amira Haddad", "/wallet/access?agency="+tax, http.StatusOK)
			if !slices.Equal(first, made[:50]) || !strings.Contains(body, "Accesses by City Tax Office") ||
				!strings.Contains(body, `<option value="`+tax+`" selected>`) || !strings.Contains(body, `id="every-agency"`) {
				t.Fatalf("the tax office's accesses: %d (want the newest 50 of its 53), or the page does not say whose", len(first))
			}
			if q, err := url.ParseQuery(strings.TrimPrefix(strings.TrimSuffix(next, "#acc-h"), "/wallet/access?")); err != nil || q.Get("agency") != tax || q.Get("before") == "" {
				t.Fatalf("the link to the tax office's older accesses: %q", next)
			}
			rest, end, body = read("Amira Haddad", next, http.StatusOK)
			if !slices.Equal(rest, made[50:]) || end != "" || !strings.Contains(body, `href="/wallet/access?agency=`+tax+`#acc-h" id="newest-acc"`) {
				t.Fatalf("the tax office's older accesses: %d (want 3), older at %q, or no link to its newest", len(rest), end)
			}
			if ids, _, body = read("Amira Haddad", "/wallet/access?agency="+police, http.StatusOK); !slices.Equal(ids, byPolice) || strings.Contains(body, "No longer hidden") {
				t.Fatalf("the police's accesses: %v, want its three alone %v", ids, byPolice)
			}
			if ids, _, body = read("Jonas Weber", "/wallet/access?agency="+police, http.StatusOK); len(ids) != 0 || !strings.Contains(body, "City Police has not read your data") {
				t.Fatalf("Jonas's accesses by the police: %d, or no word that there are none", len(ids))
			}
			for _, bad := range []string{"nonsense", strings.ToUpper(tax), tax + "x"} {
				ids, _, body := read("Amira Haddad", "/wallet/access?agency="+url.QueryEscape(bad), http.StatusBadRequest)
				if !slices.Equal(ids, slices.Concat(byPolice, made[:47])) || !strings.Contains(body, "No agency by that id") {
					t.Fatalf("a made-up agency %q: %d accesses, want every agency's and the reason", bad, len(ids))
				}
			}
		})
	}
}

// TestCitizenDisclosedMany: past a page's worth of accesses no longer
// hidden, the section on top shows the newest 50 and says where the
// others are.
func TestCitizenDisclosedMany(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			_, police := exWorld(t, w)
			jonas := w.people["Jonas Weber"]
			for range 51 {
				r, err := w.n.ex.Submit(context.Background(), exchange.Ask{Requester: police, Officer: "Eva Lind", Citizen: jonas, Service: "tax-income",
					Fields: []string{"declared_income"}, Purpose: "CRIM-INVESTIGATION", LegalBasis: "Criminal Procedure §100", Defer: exchange.Day})
				if err != nil || r.State != exchange.Released {
					t.Fatalf("covert release: %+v %v", r, err)
				}
			}
			r := w.as(t, "Jonas Weber").get("/wallet/access")
			if strings.Contains(r.body, `id="disc-h"`) || strings.Contains(r.body, "CRIM-INVESTIGATION") {
				t.Fatal("the accesses show before their deferral ends")
			}
			w.n.clock.add(2 * exchange.Day)
			r = w.as(t, "Jonas Weber").get("/wallet/access")
			expect(t, "no longer hidden", r, http.StatusOK, `id="disc-h"`, `<p class="hint" id="more-disclosed">These are the newest 50;`)
			if n := strings.Count(r.body, `<article class="card access" id="disc-`); n != 50 {
				t.Fatalf("%d accesses on top, want the newest 50 of 51", n)
			}
			if r := w.as(t, "Amira Haddad").get("/wallet/access"); strings.Contains(r.body, `id="disc-h"`) {
				t.Fatal("another citizen sees his disclosed accesses")
			}
		})
	}
}
