package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/server"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/web"
)

// TestExchangeConsentLifetime: consent is asked for and given for a
// while. A request the citizen does not answer lapses; an approval the
// agency does not use lapses; until the agency collects, the citizen can
// withdraw an approval, and then nothing is released or logged. The
// citizen sees what they approved and until when; the agency sees each
// request's deadline and, afterwards, why it got nothing, and can cancel
// a request it no longer needs. Its waiting requests stay in reach behind
// any number of newer ones, and every release it got is in its CSV.
func TestExchangeConsentLifetime(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			_, police := exWorld(t, w)
			amira := w.people["Amira Haddad"]
			policeAPI := w.apiClient(t, police, registry.Agency, "case system")
			day := func(d time.Duration) string { return w.n.clock.now().Add(d).UTC().Format("2 Jan 2006") }
			type request struct {
				ID     string    `json:"id"`
				State  string    `json:"state"`
				Reason string    `json:"reason"`
				Lapses time.Time `json:"lapses_at"`
			}
			askAddress := func(what string) request {
				t.Helper()
				r := policeAPI.postJSON("/api/v1/exchange/requests", map[string]any{"citizen": amira, "service": "population", "fields": []string{"address"},
					"purpose": "WITNESS-CONTACT", "legal_basis": "Police Act §12"})
				expect(t, what, r, http.StatusOK)
				var out request
				r.json(t, &out)
				if out.State != exchange.AwaitConsent || out.Lapses.Sub(w.n.clock.now().Add(exchange.AnswerWithin)).Abs() > time.Minute {
					t.Fatalf("%s: %+v, want waiting until about %v", what, out, w.n.clock.now().Add(exchange.AnswerWithin))
				}
				return out
			}
			readBack := func(what, id string) request {
				t.Helper()
				r := policeAPI.get("/api/v1/exchange/requests/" + id)
				expect(t, what, r, http.StatusOK)
				var out request
				r.json(t, &out)
				return out
			}
			decide := func(decision, id string) *response {
				return w.as(t, "Amira Haddad").postForm("/wallet/access/requests/"+id, url.Values{"decision": {decision}})
			}
			// past is how her page tells how one request ended ("" if not listed).
			at := func(d time.Duration) string { return web.Date(w.n.clock.now().Add(d)) }
			// around does act and gives the minute, as pages show it, just
			// before and just after: a time the page shows of act is one
			// of them (a minute may turn meanwhile).
			around := func(act func()) [2]string {
				before := at(0)
				act()
				return [2]string{before, at(0)}
			}
			// aroundAt is around for the minute d after act, and d2 after.
			aroundAt := func(d, d2 time.Duration, act func()) (first, second [2]string) {
				b, b2 := at(d), at(d2)
				act()
				return [2]string{b, at(d)}, [2]string{b2, at(d2)}
			}
			sayOne := func(what, got, format string, minutes [2]string) {
				t.Helper()
				if got != fmt.Sprintf(format, minutes[0]) && got != fmt.Sprintf(format, minutes[1]) {
					t.Fatalf("her past requests say %q of the %s one, want %q", got, what, fmt.Sprintf(format, minutes[1]))
				}
			}
			past := func(id string) string {
				t.Helper()
				r := w.as(t, "Amira Haddad").get("/wallet/access")
				expect(t, "her page", r, http.StatusOK)
				_, card, ok := strings.Cut(r.body, `id="past-`+id+`"`)
				if !ok {
					return ""
				}
				card, _, _ = strings.Cut(card, "</article>")
				_, outcome, _ := strings.Cut(card, `class="outcome">`)
				outcome, _, _ = strings.Cut(outcome, "</p>")
				return outcome
			}
			// openIDs are the police's open requests by the API, in its order.
			openIDs := func(c *client) []string {
				t.Helper()
				r := c.get("/api/v1/exchange/open-requests")
				expect(t, "open requests", r, http.StatusOK)
				var out struct{ Requests []request }
				r.json(t, &out)
				var ids []string
				for _, q := range out.Requests {
					if q.State != exchange.AwaitConsent && q.State != exchange.Consented || q.Lapses.IsZero() {
						t.Fatalf("an open request reads %+v", q)
					}
					ids = append(ids, q.ID)
				}
				return ids
			}

			// The officer's page says until when the citizen may answer.
			expect(t, "ask on the page", ask(w.as(t, "Eva Lind"), police, amira, "population", "WITNESS-CONTACT", "Police Act §12", 0, "address"),
				http.StatusOK, "waiting in their wallet. It lapses if they do not answer by "+day(exchange.AnswerWithin))
			var unanswered request
			answerBy, _ := aroundAt(exchange.AnswerWithin, 0, func() { unanswered = askAddress("a request nobody answers") })
			expect(t, "her home page says two requests wait", w.as(t, "Amira Haddad").get("/"), http.StatusOK, `href="/wallet/access"`, "2 requests ask for your consent")
			if body := w.as(t, "Jonas Weber").get("/").body; strings.Contains(body, "consent-waiting") {
				t.Fatal("another citizen's home page counts her requests")
			}
			expect(t, "an answer that is neither", decide("maybe", unanswered.ID), http.StatusBadRequest, "Choose approve, refuse or withdraw")
			expect(t, "withdraw what was never given", decide("withdraw", unanswered.ID), http.StatusConflict, "no consent to withdraw")
			if got := readBack("still waiting", unanswered.ID); got.State != exchange.AwaitConsent {
				t.Fatalf("a bad answer changed the request: %+v", got)
			}
			if got := openIDs(policeAPI); len(got) != 2 || got[1] != unanswered.ID {
				t.Fatalf("the police's open requests: %v, want the page's and then %s", got, unanswered.ID)
			}
			if got := openIDs(w.apiClient(t, w.orgs["City Tax Office"], registry.Agency, "tax system")); len(got) != 0 {
				t.Fatalf("the tax office sees the police's open requests: %v", got)
			}
			expectProblem(t, "no open requests", policeAPI.get("/api/v1/exchange/open-requests?limit=0"), http.StatusUnprocessableEntity, "The request does not fit the API: expected number >= 1 (query.limit).")

			// Withdrawn before the agency collects: refused, nothing released.
			withdrawn := askAddress("a request the citizen approves, then withdraws")
			expect(t, "approve", decide("approve", withdrawn.ID), http.StatusOK, "may collect the data once, until "+day(exchange.CollectWithin), "withdraw")
			expect(t, "the approval in the wallet", w.as(t, "Amira Haddad").get("/wallet/access"), http.StatusOK,
				"You approved this on", "Withdraw consent", "Answer by "+day(exchange.AnswerWithin))
			if got := readBack("approved", withdrawn.ID); got.State != exchange.Consented || got.Lapses.Sub(w.n.clock.now().Add(exchange.CollectWithin)).Abs() > time.Minute {
				t.Fatalf("approved: %+v", got)
			}
			withdrew := around(func() {
				expect(t, "withdraw", decide("withdraw", withdrawn.ID), http.StatusOK, "Consent withdrawn. City Police is told")
			})
			expect(t, "withdraw twice", decide("withdraw", withdrawn.ID), http.StatusOK, "You withdrew your consent already", "nothing changed")
			expect(t, "approve after withdrawing", decide("approve", withdrawn.ID), http.StatusConflict)
			expectProblem(t, "collect a withdrawn consent", policeAPI.postJSON("/api/v1/exchange/requests/"+withdrawn.ID+"/collect", nil), http.StatusBadRequest, "withdrew consent")
			if got := readBack("withdrawn", withdrawn.ID); got.State != exchange.RefusedConsent || !strings.Contains(got.Reason, "withdrew consent") {
				t.Fatalf("withdrawn: %+v", got)
			}
			expect(t, "the DPA sees the withdrawal", w.as(t, "Ana Costa").get("/dpa/exchange"), http.StatusOK, "withdrew consent")
			if n := accessEntries(t, w.n.db); n != 0 {
				t.Fatalf("%d access entries after a withdrawn consent, want none", n)
			}
			sayOne("withdrawn", past(withdrawn.ID), "You withdrew your consent on %s. Nothing was released.", withdrew)
			refused := askAddress("a request the citizen refuses")
			if got := past(refused.ID); got != "" {
				t.Fatalf("a waiting request is among her past ones: %q", got)
			}
			refusedAt := around(func() { expect(t, "refuse", decide("refuse", refused.ID), http.StatusOK, "Refused") })
			sayOne("refused", past(refused.ID), "You refused on %s. Nothing was released.", refusedAt)
			if body := w.as(t, "Jonas Weber").get("/wallet/access").body; strings.Contains(body, "Past requests") {
				t.Fatal("another citizen sees her past requests")
			}

			// Collected first: nothing left to withdraw, and the access is hers to see.
			collected := askAddress("a request collected before a withdrawal")
			expect(t, "approve", decide("approve", collected.ID), http.StatusOK, "Approved")
			expect(t, "collect", policeAPI.postJSON("/api/v1/exchange/requests/"+collected.ID+"/collect", nil), http.StatusOK, "Via Zamboni 33")
			expect(t, "withdraw too late", decide("withdraw", collected.ID), http.StatusConflict, "City Police collected the data already")
			// The police's list says until when they may keep what they collected.
			list := w.as(t, "Eva Lind").get("/exchange/" + police)
			expect(t, "the police's list after collecting", list, http.StatusOK, `<td data-label="Keep until">`+day(30*exchange.Day))
			if strings.Contains(list.body, "passed: delete it") {
				t.Fatal("a retention just begun shows as passed")
			}

			// The agency cancels what it no longer needs, waiting or approved.
			for _, approved := range []bool{false, true} {
				mistaken := askAddress("a request the police cancel")
				if approved {
					expect(t, "approve", decide("approve", mistaken.ID), http.StatusOK, "Approved")
				}
				expect(t, "another agency cancels", w.as(t, "Tomas Novak").postForm("/exchange/"+w.orgs["City Tax Office"]+"/requests/"+mistaken.ID+"/cancel", nil), http.StatusNotFound)
				expect(t, "a citizen cancels", w.as(t, "Amira Haddad").postForm("/exchange/"+police+"/requests/"+mistaken.ID+"/cancel", nil), http.StatusForbidden)
				expect(t, "the officer sees a cancel button", w.as(t, "Eva Lind").get("/exchange/"+police), http.StatusOK, `action="/exchange/`+police+`/requests/`+mistaken.ID+`/cancel"`)
				officer := w.as(t, "Eva Lind")
				cancelled := around(func() {
					if approved {
						r := policeAPI.postJSON("/api/v1/exchange/requests/"+mistaken.ID+"/cancel", nil)
						expect(t, "cancel an approved request by the API", r, http.StatusOK, `"state":"cancelled by the agency"`)
					} else {
						expect(t, "cancel a waiting request on the page", officer.postForm("/exchange/"+police+"/requests/"+mistaken.ID+"/cancel", nil), http.StatusOK,
							"Cancelled. The citizen is no longer asked")
					}
				})
				expectProblem(t, "cancel twice", policeAPI.postJSON("/api/v1/exchange/requests/"+mistaken.ID+"/cancel", nil), http.StatusConflict, "this one is cancelled by the agency")
				expectProblem(t, "collect a cancelled request", policeAPI.postJSON("/api/v1/exchange/requests/"+mistaken.ID+"/collect", nil), http.StatusBadRequest, "Cancelled by the agency")
				expect(t, "answer a cancelled request", decide("approve", mistaken.ID), http.StatusConflict)
				expect(t, "withdraw from a cancelled request", decide("withdraw", mistaken.ID), http.StatusConflict)
				if body := w.as(t, "Amira Haddad").get("/wallet/access").body; strings.Contains(body, "req-"+mistaken.ID) {
					t.Fatal("a cancelled request is still in her wallet")
				}
				sayOne("cancelled", past(mistaken.ID), "City Police cancelled the request on %s. Nothing was released.", cancelled)
			}
			expectProblem(t, "cancel a released request", policeAPI.postJSON("/api/v1/exchange/requests/"+collected.ID+"/cancel", nil), http.StatusConflict, "this one is released")
			if n := accessEntries(t, w.n.db); n != 1 {
				t.Fatalf("%d access entries after cancelling, want the one collected", n)
			}

			// An approval the agency does not use lapses.
			unused := askAddress("an approval never collected")
			approvedOn, collectBy := aroundAt(0, exchange.CollectWithin, func() {
				expect(t, "approve", decide("approve", unused.ID), http.StatusOK, "Approved")
			})
			w.n.clock.add(exchange.CollectWithin - time.Hour)
			if got := readBack("an hour before its consent lapses", unused.ID); got.State != exchange.Consented {
				t.Fatalf("lapsed early: %+v", got)
			}
			if got := past(unused.ID); got != "" {
				t.Fatalf("an approval not yet lapsed is among her past requests: %q", got)
			}
			w.n.clock.add(2 * time.Hour)
			expectProblem(t, "collect after the consent lapsed", policeAPI.postJSON("/api/v1/exchange/requests/"+unused.ID+"/collect", nil), http.StatusGone,
				"Not collected within 30 days of the citizen's consent. Ask again")
			expect(t, "withdraw a lapsed consent", decide("withdraw", unused.ID), http.StatusGone, "ran out")
			if got := readBack("lapsed unused", unused.ID); got.State != exchange.Lapsed {
				t.Fatalf("an unused consent did not lapse: %+v", got)
			}
			unusedSays := "You approved it on %s; City Police did not collect it by %s, so it lapsed. Nothing was released."
			if got := past(unused.ID); got != fmt.Sprintf(unusedSays, approvedOn[0], collectBy[0]) && got != fmt.Sprintf(unusedSays, approvedOn[1], collectBy[1]) {
				t.Fatalf("her past requests say %q of the unused approval, want %q", got, fmt.Sprintf(unusedSays, approvedOn[1], collectBy[1]))
			}

			// A request nobody answered lapses (it was asked 30 days and an hour ago).
			if got := readBack("lapsed unanswered", unanswered.ID); got.State != exchange.Lapsed || !strings.Contains(got.Reason, "did not answer within 30 days") {
				t.Fatalf("an unanswered request did not lapse: %+v", got)
			}
			expect(t, "approve a lapsed request", decide("approve", unanswered.ID), http.StatusGone, "not answered within 30 days")
			expect(t, "refuse a lapsed request", decide("refuse", unanswered.ID), http.StatusGone)
			sayOne("unanswered", past(unanswered.ID), "You did not answer by %s, so it lapsed. Nothing was released.", answerBy)
			page := w.as(t, "Amira Haddad").get("/wallet/access")
			expect(t, "her page after the lapses", page, http.StatusOK, "City Police read your Population register")
			if strings.Contains(page.body, `id="pending-h"`) || strings.Contains(w.as(t, "Amira Haddad").get("/").body, "consent-waiting") {
				t.Fatal("lapsed requests still ask for her consent")
			}
			expect(t, "the police's list", w.as(t, "Eva Lind").get("/exchange/"+police), http.StatusOK, "lapsed: The citizen did not answer", "lapsed: Not collected within 30 days",
				"passed: delete it") // the address collected 30 days and an hour ago, kept for 30 days
			if n := accessEntries(t, w.n.db); n != 1 {
				t.Fatalf("%d access entries, want the one collected", n)
			}
			// Everything asked so far has ended or lapsed: nothing is open.
			if got := openIDs(policeAPI); len(got) != 0 {
				t.Fatalf("lapsed requests are open: %v", got)
			}

			// An open request stays in reach however many newer ones the agency makes.
			old := askAddress("a request older than the recent list")
			// The deadline the page shows: the approval's time plus the
			// collection period, to the minute.
			collectOldBy, _ := aroundAt(exchange.CollectWithin, 0, func() {
				expect(t, "approve", decide("approve", old.ID), http.StatusOK, "Approved")
			})
			for i := range 30 {
				r := policeAPI.postJSON("/api/v1/exchange/requests", map[string]any{"citizen": amira, "service": "tax-income", "fields": []string{"employer"},
					"purpose": "CRIM-INVESTIGATION", "legal_basis": "Criminal Procedure §100"})
				expect(t, fmt.Sprintf("direct request %d", i), r, http.StatusOK, `"state":"released"`)
			}
			list = w.as(t, "Eva Lind").get("/exchange/" + police)
			_, recent, _ := strings.Cut(list.body, `id="recent-h"`)
			_, waiting, _ := strings.Cut(list.body, `id="open-requests"`)
			waiting, _, _ = strings.Cut(waiting, "</table>")
			collectOld := `action="/exchange/` + police + `/requests/` + old.ID + `/collect"`
			deadline := strings.Contains(waiting, "consented: collect by "+collectOldBy[0]) || strings.Contains(waiting, "consented: collect by "+collectOldBy[1])
			if strings.Contains(recent, "WITNESS-CONTACT") || !strings.Contains(waiting, collectOld) || !deadline {
				t.Fatalf("the approved request is not in reach on the police's page:\n%s", clip(waiting))
			}
			if got := openIDs(policeAPI); len(got) != 1 || got[0] != old.ID {
				t.Fatalf("the police's open requests: %v, want %s", got, old.ID)
			}
			expect(t, "collect it from the page", w.as(t, "Eva Lind").postForm("/exchange/"+police+"/requests/"+old.ID+"/collect", nil), http.StatusOK, "Via Zamboni 33")
			if got := openIDs(policeAPI); len(got) != 0 {
				t.Fatalf("a collected request is open: %v", got)
			}

			// Every release, beyond the page's 30, as CSV: newest first, with its retention.
			defer server.SetExportChunk(7)()
			expect(t, "the CSV link", w.as(t, "Eva Lind").get("/exchange/"+police), http.StatusOK, `href="/exchange/`+police+`/releases.csv"`)
			r := w.as(t, "Eva Lind").get("/exchange/" + police + "/releases.csv")
			recs, err := csvBody(t, r.body).ReadAll()
			if r.status != http.StatusOK || err != nil || len(recs) != 33 || !strings.Contains(r.header.Get("Content-Disposition"), "civstack-releases-"+strings.ToLower(police)) {
				t.Fatalf("the police's releases as CSV: %d rows, %v\n%.600s", len(recs), err, r.body)
			}
			first, last := recs[1], recs[32]
			if first[1] != old.ID || first[8] != "given" || first[11] != "running" || last[1] != collected.ID || last[6] != "WITNESS-CONTACT" || last[11] != "passed: delete it" {
				t.Fatalf("the police's releases: first %v, last %v", first, last)
			}
			for _, rec := range recs[2:32] {
				if rec[6] != "CRIM-INVESTIGATION" || rec[3] != "system: case system" || rec[8] != "not needed" || rec[9] != "at once" {
					t.Fatalf("a direct release reads %v", rec)
				}
			}
			expect(t, "another agency's releases", w.as(t, "Tomas Novak").get("/exchange/"+police+"/releases.csv"), http.StatusNotFound)
			expect(t, "a citizen on the police's releases", w.as(t, "Amira Haddad").get("/exchange/"+police+"/releases.csv"), http.StatusForbidden)
		})
	}
}
