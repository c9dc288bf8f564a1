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
	"github.com/civstack/civstack/internal/server"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

var accessRowRE = regexp.MustCompile(`<tr(?: class="missing")?><td data-label="When">[^<]*</td><td data-label="Log entry">(\d+)</td>`)
var olderRE = regexp.MustCompile(`href="([^"]+)" id="older"`)

// TestDPAAccesses: the data-protection authority opens one agency's
// accesses for one purpose from the overview, pages back through all of
// them (some indexed, some not yet), sees a covert access at once, and
// downloads them as a CSV a spreadsheet opens without running a formula;
// nobody else may, and bad input gets a readable answer.
func TestDPAAccesses(t *testing.T) {
	defer server.SetExportChunk(2)() // the CSV in chunks of two
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			ctx := context.Background()
			tax, police := exWorld(t, w)
			amira := w.people["Amira Haddad"]
			officer, cop, dpa := w.as(t, "Tomas Novak"), w.as(t, "Eva Lind"), w.as(t, "Ana Costa")
			if _, err := w.n.ex.CreatePolicy(ctx, exchange.Policy{Requester: tax, Service: "tax-income", Fields: []string{"declared_income"},
				Purpose: "FORMULA-TEST", LegalBasis: `=HYPERLINK("http://evil.example","§1")`, Retention: exchange.Day}, "test"); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 7; i++ {
				expect(t, "audit", ask(officer, tax, amira, "tax-income", "TAX-AUDIT", "Tax Code §93", 0, "declared_income"), http.StatusOK, "Released")
				if i == 3 { // the first four indexed, the rest read from the log's rows
					if _, _, err := w.n.tlog.Integrate(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			expect(t, "formula", ask(officer, tax, amira, "tax-income", "FORMULA-TEST", `=HYPERLINK("http://evil.example","§1")`, 0, "declared_income"), http.StatusOK, "Released")
			expect(t, "covert", ask(cop, police, amira, "tax-income", "CRIM-INVESTIGATION", "Criminal Procedure §100", 9, "declared_income"), http.StatusOK, "deferral ends")

			// From the overview to the agency and purpose.
			link := "/dpa/exchange/accesses?agency=" + url.QueryEscape(tax) + "&amp;purpose=TAX-AUDIT"
			expect(t, "the overview links to the list", dpa.get("/dpa/exchange"), http.StatusOK, link, "City Tax Office · TAX-AUDIT: 7")
			var seen []int
			pageRows, body := dpaPages(t, dpa, html.UnescapeString(link)+"&n=3", accessRowRE, 3, "Accesses by City Tax Office for TAX-AUDIT")
			for _, row := range pageRows {
				i, _ := strconv.Atoi(row)
				seen = append(seen, i)
			}
			if strings.Contains(body, "CRIM-INVESTIGATION") || strings.Contains(body, "FORMULA-TEST") {
				t.Fatalf("another agency's or purpose's access on the pages:\n%s", clip(body))
			}
			// The audits were asked first: every access entry but the two newest.
			want := accessIndexes(t, w.n.db)
			if len(want) != 9 || !slices.Equal(seen, want[2:]) {
				t.Fatalf("the pages showed log entries %v, want %v (newest first, each once)", seen, want)
			}
			// The covert access: at once, with the day the citizen sees it.
			expect(t, "the police's accesses", dpa.get("/dpa/exchange/accesses?agency="+url.QueryEscape(police)), http.StatusOK,
				"Accesses by City Police", "CRIM-INVESTIGATION", "Eva Lind", "from "+w.n.clock.now().Add(9*exchange.Day).UTC().Format("2 Jan 2006"))

			// Only the deferred ones: counted on the overview, listed and
			// downloaded on their own.
			expect(t, "the overview counts the deferred", dpa.get("/dpa/exchange"), http.StatusOK,
				`<p class="hint" id="deferred-count">1 in all, the soonest visible first (<a href="/dpa/exchange/accesses?deferred=1" id="all-deferred">`)
			r := dpa.get("/dpa/exchange/accesses?deferred=1")
			expect(t, "the deferred accesses", r, http.StatusOK, "<h1>Deferred accesses</h1>", "CRIM-INVESTIGATION", "Eva Lind", `href="/dpa/exchange/accesses.csv?deferred=1"`)
			if strings.Contains(r.body, "TAX-AUDIT") || len(accessRowRE.FindAllString(r.body, -1)) != 1 {
				t.Fatalf("the deferred accesses list more than the covert one:\n%s", clip(r.body))
			}
			r = dpa.get("/dpa/exchange/accesses.csv?deferred=1&agency=" + url.QueryEscape(police))
			if recs, err := csvBody(t, r.body).ReadAll(); err != nil || r.status != http.StatusOK || len(recs) != 2 || recs[1][7] != "CRIM-INVESTIGATION" ||
				!strings.Contains(r.header.Get("Content-Disposition"), `filename="civstack-accesses-`+strings.ToLower(police)+"-deferred-") {
				t.Fatalf("the deferred CSV: %d %v %v\n%s", r.status, r.header, err, clip(r.body))
			}

			// Past the overview's 50 it says how many, and links to the rest.
			for i := range exchange.DPAOverview {
				if r, err := w.n.ex.Submit(ctx, exchange.Ask{Requester: police, Officer: "Eva Lind", Citizen: amira, Service: "tax-income", Fields: []string{"declared_income"},
					Purpose: "CRIM-INVESTIGATION", LegalBasis: "Criminal Procedure §100", Defer: time.Duration(i%9+1) * exchange.Day}); err != nil || r.State != exchange.Released {
					t.Fatalf("covert release %d: %+v %v", i, r, err)
				}
			}
			expect(t, "the overview past its 50 deferred", dpa.get("/dpa/exchange"), http.StatusOK,
				fmt.Sprintf(`%d in all; these %d become visible soonest. <a href="/dpa/exchange/accesses?deferred=1" id="all-deferred">`, exchange.DPAOverview+1, exchange.DPAOverview))

			// The CSV: every access of the agency, formulas defused.
			r = dpa.get("/dpa/exchange/accesses.csv?agency=" + url.QueryEscape(tax))
			if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") ||
				!strings.Contains(r.header.Get("Content-Disposition"), `filename="civstack-accesses-`+strings.ToLower(tax)+"-") {
				t.Fatalf("csv: %d %v\n%s", r.status, r.header, clip(r.body))
			}
			recs, err := csvBody(t, r.body).ReadAll()
			if err != nil {
				t.Fatalf("the CSV does not parse: %v\n%s", err, r.body)
			}
			if len(recs) != 1+8 || recs[0][0] != "time (UTC)" || recs[0][8] != "legal basis" {
				t.Fatalf("the CSV has %d lines, want a header and 8:\n%s", len(recs), r.body)
			}
			var formula bool
			for _, rec := range recs[1:] {
				if rec[2] != "City Tax Office" || rec[3] != tax || rec[4] != "Tomas Novak" || rec[9] != "not needed" || rec[10] != "at once" || rec[12] != "kept" {
					t.Fatalf("a CSV line: %q", rec)
				}
				if rec[7] == "FORMULA-TEST" {
					formula = rec[8] == `'=HYPERLINK("http://evil.example","§1")`
				}
			}
			if !formula {
				t.Fatalf("the legal basis that looks like a formula is not defused:\n%s", r.body)
			}

			// Only the DPA.
			for _, who := range []string{"Amira Haddad", "Tomas Novak", "Olu Adeyemi"} {
				expect(t, who+" on the DPA's list", w.as(t, who).get("/dpa/exchange/accesses"), http.StatusForbidden)
				expect(t, who+" on the DPA's CSV", w.as(t, who).get("/dpa/exchange/accesses.csv"), http.StatusForbidden)
			}
			// Bad input: a readable answer.
			for q, want := range map[string]string{
				"n=0": "page size", "n=5000": "page size", "before=abc": "positive log index", "before=-3": "positive log index",
				"purpose=tax-audit": "purpose code", "agency=%3Cscript%3E": "not an organisation id", "deferred=yes": "deferred=1 lists only",
			} {
				expect(t, q, dpa.get("/dpa/exchange/accesses?"+q), http.StatusBadRequest, want)
				expect(t, q+" (CSV)", dpa.get("/dpa/exchange/accesses.csv?"+q), http.StatusBadRequest, want)
			}
		})
	}
}

// TestDPAAccessesByDay: the DPA lists (and downloads) the accesses made
// between two days of the node's zone, both included, from the index and
// from the log's rows past it; days it cannot read get a readable answer.
func TestDPAAccessesByDay(t *testing.T) {
	rome, err := time.LoadLocation("Europe/Rome")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemoWith(t, e, nodeOptions{zone: rome})
			ctx := context.Background()
			tax, _ := exWorld(t, w)
			amira := w.people["Amira Haddad"]
			var days []string
			for i := range 3 {
				if i > 0 {
					w.n.clock.add(48 * time.Hour)
				}
				if r, err := w.n.ex.Submit(ctx, exchange.Ask{Requester: tax, Officer: "Tomas Novak", Citizen: amira, Service: "tax-income",
					Fields: []string{"declared_income"}, Purpose: "TAX-AUDIT", LegalBasis: "Tax Code §93"}); err != nil || r.State != exchange.Released {
					t.Fatalf("release %d: %v %+v", i, err, r)
				}
				days = append(days, w.n.clock.now().In(rome).Format(time.DateOnly))
				if i == 1 { // the first two indexed, the third read from the log's rows
					if _, _, err := w.n.tlog.Integrate(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			idx := accessIndexes(t, w.n.db)
			if len(idx) != 3 {
				t.Fatalf("%d access entries, want 3", len(idx))
			}
			newest, middle, oldest := strconv.Itoa(idx[0]), strconv.Itoa(idx[1]), strconv.Itoa(idx[2])
			dpa := w.as(t, "Ana Costa") // signed in now: the clock moved on four days
			base := "/dpa/exchange/accesses?agency=" + url.QueryEscape(tax) + "&purpose=TAX-AUDIT"
			for q, want := range map[string][]string{
				"":                                    {newest, middle, oldest},
				"&from=" + days[1]:                    {newest, middle},
				"&to=" + days[0]:                      {oldest},
				"&from=" + days[1] + "&to=" + days[1]: {middle},
				"&from=" + days[2]:                    {newest},
				"&from=" + days[0] + "&to=" + days[2]: {newest, middle, oldest},
			} {
				r := dpa.get(base + q)
				var got []string
				for _, m := range accessRowRE.FindAllStringSubmatch(r.body, -1) {
					got = append(got, m[1])
				}
				if r.status != http.StatusOK || !slices.Equal(got, want) {
					t.Errorf("%s: %d, log entries %v, want %v", q, r.status, got, want)
				}
			}
			one := "&from=" + days[1] + "&to=" + days[1]
			// Fields by their labels, on the DPA's lists and the agency's
			// (a release, and a request denied: each read its own way).
			if r, err := w.n.ex.Submit(ctx, exchange.Ask{Requester: tax, Officer: "Tomas Novak", Citizen: amira, Service: "tax-income",
				Fields: []string{"employer"}, Purpose: "TAX-AUDIT", LegalBasis: "Tax Code §93"}); err != nil || r.State != exchange.Denied {
				t.Fatalf("a request outside the policy: %v %+v", err, r)
			}
			const labelled, denied = `<td data-label="Fields">Declared income</td>`, `<td data-label="Fields">Employer</td>`
			expect(t, "the agency's requests", w.as(t, "Tomas Novak").get("/exchange/"+tax+"/requests"), http.StatusOK, labelled, denied)
			expect(t, "the DPA's denied requests", dpa.get("/dpa/exchange/denied"), http.StatusOK, denied)
			expect(t, "a day's page", dpa.get(base+one), http.StatusOK, labelled, "for TAX-AUDIT from "+days[1]+" to "+days[1],
				`name="from" value="`+days[1]+`"`, `name="to" value="`+days[1]+`"`, "in Europe/Rome",
				`href="/dpa/exchange/accesses.csv?agency=`+url.QueryEscape(tax)+`&amp;from=`+days[1]+`&amp;purpose=TAX-AUDIT&amp;to=`+days[1]+`"`)
			r := dpa.get(strings.Replace(base, "accesses?", "accesses.csv?", 1) + one)
			recs, err := csvBody(t, r.body).ReadAll()
			if err != nil || r.status != http.StatusOK || len(recs) != 2 || recs[1][1] != middle ||
				!strings.Contains(r.header.Get("Content-Disposition"), "-"+days[1]+"-to-"+days[1]+"-") {
				t.Fatalf("a day's CSV: %d %v %v\n%s", r.status, r.header, err, clip(r.body))
			}
			for q, want := range map[string]string{
				"from=2026-02-30": "is a date such as", "to=yesterday": "is a date such as", "from=1999-12-31": "is in the year 2000 or later",
				"from=" + days[2] + "&to=" + days[0]: "comes before the day from",
			} {
				expect(t, q, dpa.get("/dpa/exchange/accesses?"+q), http.StatusBadRequest, want)
				expect(t, q+" (CSV)", dpa.get("/dpa/exchange/accesses.csv?"+q), http.StatusBadRequest, want)
			}
		})
	}
}

// accessIndexes are the log's entries of data accesses, newest first.
func accessIndexes(t *testing.T, db *store.DB) []int {
	t.Helper()
	rows, err := db.Reader().QueryContext(context.Background(), `SELECT idx FROM tlog_entries WHERE kind = $1 ORDER BY idx DESC`, int(tlog.KindDataAccess))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var i int
		if err := rows.Scan(&i); err != nil {
			t.Fatal(err)
		}
		out = append(out, i)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

var deniedRowRE = regexp.MustCompile(`<tr id="req-([^"]+)">`)

// TestDPADenied: the DPA pages through one agency's (and every agency's)
// denied, refused, cancelled and lapsed requests, each once, newest first,
// with the reason, and not one still open; some made in the same
// millisecond, so that the pages also rest on the ids' order.
func TestDPADenied(t *testing.T) {
	defer server.SetExportChunk(2)() // the CSV in chunks of two
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			ctx := context.Background()
			tax, police := exWorld(t, w)
			amira := w.people["Amira Haddad"]
			officer, cop, dpa := w.as(t, "Tomas Novak"), w.as(t, "Eva Lind"), w.as(t, "Ana Costa")
			for i := 0; i < 3; i++ {
				expect(t, "outside the policy", ask(officer, tax, amira, "tax-income", "TAX-AUDIT", "Tax Code §93", 0, "employer"), http.StatusForbidden)
			}
			expect(t, "no such purpose", ask(officer, tax, amira, "tax-income", "MARKETING", "Tax Code §93", 0, "declared_income"), http.StatusForbidden)
			expect(t, "the police, no such purpose", ask(cop, police, amira, "tax-income", "CURIOSITY", "none", 0, "declared_income"), http.StatusForbidden)
			expect(t, "consent asked", ask(cop, police, amira, "population", "WITNESS-CONTACT", "Police Act §12", 0, "address"), http.StatusOK)
			var reqID string
			if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT id FROM ex_requests WHERE state = $1`, exchange.AwaitConsent).Scan(&reqID); err != nil {
				t.Fatal(err)
			}
			expect(t, "refuse", w.as(t, "Amira Haddad").postForm("/wallet/access/requests/"+reqID, url.Values{"decision": {"refuse"}}), http.StatusOK)
			expect(t, "consent asked again", ask(cop, police, amira, "population", "WITNESS-CONTACT", "Police Act §12", 0, "address"), http.StatusOK)
			var cancelID string
			if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT id FROM ex_requests WHERE state = $1`, exchange.AwaitConsent).Scan(&cancelID); err != nil {
				t.Fatal(err)
			}
			expect(t, "the police cancel it", cop.postForm("/exchange/"+police+"/requests/"+cancelID+"/cancel", nil), http.StatusOK, "Cancelled")
			// Three more of the police's: one Amira never answered, one she
			// approved that they never collected (both lapsed, asked 40
			// days ago), and one approved a while ago, still to collect.
			var lapsed []string
			for i, decided := range []int{-1, 40, 20} {
				expect(t, "consent asked once more", ask(cop, police, amira, "population", "WITNESS-CONTACT", "Police Act §12", 0, "address"), http.StatusOK)
				var id string
				if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT id FROM ex_requests WHERE state = $1 ORDER BY created_at DESC LIMIT 1`, exchange.AwaitConsent).Scan(&id); err != nil {
					t.Fatal(err)
				}
				if decided >= 0 {
					expect(t, "approve", w.as(t, "Amira Haddad").postForm("/wallet/access/requests/"+id, url.Values{"decision": {"approve"}}), http.StatusOK)
				}
				now := w.n.clock.now()
				execSQL(t, w.n.db, `UPDATE ex_requests SET created_at = $1, decided_at = CASE WHEN decided_at = 0 THEN 0 ELSE CAST($2 AS BIGINT) END WHERE id = $3`,
					now.Add(-40*exchange.Day).UnixMilli()+int64(i), now.Add(-time.Duration(decided)*exchange.Day).UnixMilli(), id)
				if i < 2 {
					lapsed = append(lapsed, id)
				}
			}

			execSQL(t, w.n.db, `UPDATE ex_requests SET created_at = (SELECT MIN(created_at) FROM ex_requests)
				WHERE id IN (SELECT id FROM ex_requests ORDER BY created_at, id LIMIT 3)`)
			expect(t, "the overview links to the agency's denials", dpa.get("/dpa/exchange"), http.StatusOK, `href="/dpa/exchange/denied?agency=`+url.QueryEscape(tax)+`"`)
			pages := func(first string) ([]string, string) {
				t.Helper()
				ids, bodies := dpaPages(t, dpa, first, deniedRowRE, 2, "Denied, refused, cancelled and lapsed requests")
				rowsNameRequests(t, first, bodies, "req-")
				return ids, bodies
			}
			wantIDs := func(where string, args ...any) []string {
				t.Helper()
				rows, err := w.n.db.Reader().QueryContext(ctx, `SELECT id FROM ex_requests WHERE (state IN ('denied', 'refused by the citizen', 'cancelled by the agency') OR id IN ('`+strings.Join(lapsed, "', '")+`')) `+where+` ORDER BY created_at DESC, id DESC`, args...)
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				var out []string
				for rows.Next() {
					var id string
					rows.Scan(&id)
					out = append(out, id)
				}
				return out
			}
			ids, body := pages("/dpa/exchange/denied?agency=" + url.QueryEscape(tax) + "&n=2")
			if want := wantIDs(`AND requester_org = $1`, tax); len(want) != 4 || !slices.Equal(ids, want) {
				t.Fatalf("the tax office's denials: %v, want %v", ids, want)
			}
			if !strings.Contains(body, "Employer is outside the policy") || strings.Contains(body, "CURIOSITY") || !strings.Contains(body, "of City Tax Office") {
				t.Fatalf("the tax office's denials show the wrong ones:\n%s", clip(body))
			}
			ids, body = pages("/dpa/exchange/denied?n=2")
			if want := wantIDs(``); len(want) != 9 || !slices.Equal(ids, want) {
				t.Fatalf("every denial: %v, want %v", ids, want)
			}
			if !strings.Contains(body, "refused by the citizen") || !strings.Contains(body, "CURIOSITY") || !strings.Contains(body, `<tr id="req-`+cancelID+`">`) ||
				!strings.Contains(body, "cancelled by the agency: Cancelled by the agency.") {
				t.Fatalf("every denial lacks the refusal, the cancellation or the police's:\n%s", clip(body))
			}
			if !strings.Contains(body, "lapsed: The citizen did not answer within 30 days.") || !strings.Contains(body, "or it lapsed (the citizen did not answer within 30 days, or the agency did not collect within 30 days") || !strings.Contains(body, "lapsed: Not collected within 30 days of the citizen&#39;s consent.") {
				t.Fatalf("every denial lacks the lapsed requests:\n%s", clip(body))
			}

			// The CSV: the same, in the same order.
			r := dpa.get("/dpa/exchange/denied.csv")
			recs, err := csvBody(t, r.body).ReadAll()
			if r.status != http.StatusOK || err != nil || len(recs) != 10 || recs[0][1] != "request" {
				t.Fatalf("the denials' CSV: %d %v\n%s", r.status, err, r.body)
			}
			var csvIDs []string
			var refused, cancelled, unanswered bool
			for _, rec := range recs[1:] {
				csvIDs = append(csvIDs, rec[1])
				refused = refused || (rec[1] == reqID && rec[9] == exchange.RefusedConsent && rec[2] == "City Police" && rec[4] == "Eva Lind")
				cancelled = cancelled || (rec[1] == cancelID && rec[9] == exchange.Cancelled)
				unanswered = unanswered || (rec[1] == lapsed[0] && rec[9] == exchange.Lapsed && strings.Contains(rec[10], "did not answer"))
			}
			if !slices.Equal(csvIDs, wantIDs(``)) || !refused || !cancelled || !unanswered {
				t.Fatalf("the denials' CSV:\n%s", r.body)
			}
			r = dpa.get("/dpa/exchange/denied.csv?agency=" + url.QueryEscape(police))
			if recs, err := csvBody(t, r.body).ReadAll(); err != nil || len(recs) != 6 || !strings.Contains(r.header.Get("Content-Disposition"), "civstack-denied-"+strings.ToLower(police)) {
				t.Fatalf("the police's denials as CSV: %v\n%s", err, r.body)
			}
			expect(t, "the CSV with a purpose", dpa.get("/dpa/exchange/denied.csv?purpose=TAX-AUDIT"), http.StatusBadRequest, "by agency only")
			for _, who := range []string{"Amira Haddad", "Tomas Novak", "Olu Adeyemi"} {
				expect(t, who+" on the DPA's denials", w.as(t, who).get("/dpa/exchange/denied"), http.StatusForbidden)
				expect(t, who+" on the DPA's denials as CSV", w.as(t, who).get("/dpa/exchange/denied.csv"), http.StatusForbidden)
			}
			expect(t, "a bad page id", dpa.get("/dpa/exchange/denied?before_request=%3Cx%3E"), http.StatusBadRequest, "not a request id")
			expect(t, "a released request as the page", dpa.get("/dpa/exchange/denied?before_request="+url.QueryEscape(reqID+"x")), http.StatusBadRequest, "not a denied, refused, cancelled or lapsed one")
			expect(t, "a purpose", dpa.get("/dpa/exchange/denied?purpose=TAX-AUDIT"), http.StatusBadRequest, "by agency only")
		})
	}
}

// dpaPages follows a DPA list's "older" links from first, checking that
// each page says title and has 1 to n rows (rowRE), and returns every row's
// first group in order and all the pages' bodies.
func dpaPages(t *testing.T, c *client, first string, rowRE *regexp.Regexp, n int, title string) (rows []string, bodies string) {
	t.Helper()
	for next, pages := first, 0; next != ""; pages++ {
		if pages > 10 {
			t.Fatal("the pages do not end")
		}
		r := c.get(next)
		expect(t, "a page of "+title, r, http.StatusOK, title)
		ms := rowRE.FindAllStringSubmatch(r.body, -1)
		if len(ms) == 0 || len(ms) > n {
			t.Fatalf("%s has %d rows, want 1 to %d:\n%s", next, len(ms), n, clip(r.body))
		}
		for _, m := range ms {
			rows = append(rows, m[1])
		}
		bodies += r.body
		next = ""
		if m := olderRE.FindStringSubmatch(r.body); m != nil {
			next = html.UnescapeString(m[1])
		}
	}
	return rows, bodies
}
