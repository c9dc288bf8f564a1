package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/server"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestMerchantStatement: the merchant's account statement lists every
// movement of its account (sales, refunds, and a payout the back office
// made through the ledger's API, which the sales pages do not show) with
// the balance after each, the opening and closing balances, pages and a
// CSV of the same; it names no customer; only the merchant's people open
// it; bad days and a bad place to go on from are refused with the reason.
func TestMerchantStatement(t *testing.T) {
	defer server.SetListSizes(0, 3)()
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			li := w.orgs["Li's Dumpling Cart"]
			liWei := w.as(t, "Li Wei")
			static := staticCode(t, w, li)
			amira, jonas := w.as(t, "Amira Haddad"), w.as(t, "Jonas Weber")
			r := payByPayload(t, amira, static, "6.00")
			expect(t, "Amira pays", r, http.StatusSeeOther)
			sale := strings.TrimSuffix(strings.TrimPrefix(r.header.Get("Location"), "/receipts/"), "?paid=1")
			expect(t, "Jonas pays", payByPayload(t, jonas, static, "4.00"), http.StatusSeeOther)
			expect(t, "a refund", liWei.postForm("/pos/"+li+"/payments/"+sale+"/refund", url.Values{"refund": {"statement-1"}, "amount": {"2.50"}}), http.StatusSeeOther)

			// The operator pays 5.00 out to the merchant's bank.
			op := w.operator(t, "payouts")
			bank := fmt.Sprintf("%032x", 7)
			expect(t, "the back office's account", op.postJSON("/api/v1/ledger/accounts", map[string]any{"id": bank, "ledger": 1, "kind": 1, "owner": "bank", "flags": 0}), http.StatusCreated)
			expect(t, "a payout", op.postJSON("/api/v1/ledger/transfers", map[string]any{"transfers": []map[string]any{
				{"id": fmt.Sprintf("%032x", 8), "debit": payment.MerchantAccount(li).String(), "credit": bank, "amount": 5_00, "code": 6, "reference": "payout to IT60X0542811101"}}}),
				http.StatusOK, `"results":["ok"]`)

			expect(t, "the point of sale links it", liWei.get("/pos/"+li), http.StatusOK, `account balance <a href="/pos/`+li+`/account" id="statement-link">2.50</a>`)
			page := liWei.get("/pos/" + li + "/account")
			expect(t, "the statement's first page", page, http.StatusOK, `<strong id="opening">0.00</strong>`, `<strong id="closing">2.50</strong>`, `id="later-movements"`)
			rows := regexp.MustCompile(`(?s)<tr class="movement (\w+)">.*?data-label="Amount">([^<]+)</td>\s*<td class="amount" data-label="Balance">([^<]+)</td>`)
			got := func(body string) (out []string) {
				for _, m := range rows.FindAllStringSubmatch(body, -1) {
					out = append(out, m[1]+" "+m[2]+" "+m[3])
				}
				return out
			}
			if g := strings.Join(got(page.body), "; "); g != "sale +6.00 6.00; sale +4.00 10.00; refund -2.50 7.50" {
				t.Fatalf("first page: %s", g)
			}
			later := regexp.MustCompile(`href="(/pos/[^"]+/account\?[^"]+after=\d+)" id="later-movements"`).FindStringSubmatch(page.body)
			if later == nil {
				t.Fatalf("no link to later movements: %s", clip(page.body))
			}
			next := liWei.get(strings.ReplaceAll(later[1], "&amp;", "&"))
			expect(t, "the second page", next, http.StatusOK, "Back office</strong> · transfer payout to IT60X0542811101", "from the first")
			if g := strings.Join(got(next.body), "; "); g != "other -5.00 2.50" {
				t.Fatalf("second page: %s", g)
			}
			main := page.body[strings.Index(page.body, "<main"):strings.Index(page.body, "</main>")]
			for _, who := range []string{"Amira", "Jonas", w.people["Amira Haddad"], w.people["Jonas Weber"]} {
				if strings.Contains(main, who) {
					t.Fatalf("the statement names a customer (%s)", who)
				}
			}
			if !strings.Contains(main, `href="/receipts/`+sale+`"`) {
				t.Fatalf("the sale's receipt is not linked: %s", clip(main))
			}

			// The CSV has every movement, whatever the page's size.
			csvR := liWei.get("/pos/" + li + "/account.csv")
			expect(t, "the CSV", csvR, http.StatusOK)
			recs, err := csvBody(t, csvR.body).ReadAll()
			if err != nil || len(recs) != 5 {
				t.Fatalf("CSV: %d records, %v: %s", len(recs), err, csvR.body)
			}
			if h := strings.Join(recs[0], ","); !strings.HasPrefix(h, "time (") || !strings.Contains(h, "kind,amount (EUR),balance (EUR),what,payment,refund of,transfer") {
				t.Fatalf("CSV header: %s", h)
			}
			if p := recs[4]; p[1] != "other" || p[2] != "-5.00" || p[3] != "2.50" || p[4] != "transfer payout to IT60X0542811101" || p[5] != "" {
				t.Fatalf("the payout's line: %q", p)
			}
			if s := recs[1]; s[1] != "sale" || s[2] != "6.00" || s[5] != sale {
				t.Fatalf("the sale's line: %q", s)
			}
			if r := recs[3]; r[1] != "refund" || r[2] != "-2.50" || r[3] != "7.50" || r[6] != sale || r[5] == "" {
				t.Fatalf("the refund's line: %q", r)
			}

			// The till's API gives the same.
			till := w.token(t, "Li's Dumpling Cart")
			type statement struct {
				Opening   int64 `json:"opening_balance"`
				Movements []struct {
					Kind, Payment, What string
					RefundOf            string `json:"refund_of"`
					Amount, Balance     int64
				}
				Next string
			}
			var st statement
			api := till.get("/api/v1/payments/statement?limit=3")
			expect(t, "the API's first page", api, http.StatusOK)
			api.json(t, &st)
			if len(st.Movements) != 3 || st.Next == "" || st.Opening != 0 || st.Movements[0].Payment != sale || st.Movements[2].Kind != "refund" ||
				st.Movements[2].RefundOf != sale || st.Movements[2].Balance != 7_50 {
				t.Fatalf("the API's first page: %+v", st)
			}
			api = till.get("/api/v1/payments/statement?limit=3&after=" + st.Next)
			st.Next = ""
			api.json(t, &st)
			if len(st.Movements) != 1 || st.Next != "" || st.Movements[0].Kind != "other" || st.Movements[0].Amount != -5_00 || st.Movements[0].What != "transfer payout to IT60X0542811101" {
				t.Fatalf("the API's second page: %+v", st)
			}
			expectProblem(t, "a made-up next", till.get("/api/v1/payments/statement?after=12"), http.StatusBadRequest, "The after parameter is not a next field this API gave for these times.")
			expectProblem(t, "to before from", till.get("/api/v1/payments/statement?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"), http.StatusBadRequest, "from must be before to.")
			rossi := w.token(t, "Rossi Groceries").get("/api/v1/payments/statement")
			if expect(t, "another merchant's statement", rossi, http.StatusOK); strings.Contains(rossi.body, sale) || strings.Contains(rossi.body, "IT60X") {
				t.Fatalf("another merchant's statement shows Li's movements: %s", rossi.body)
			}

			// Days before the first sale: nothing moved, and a balance of 0.
			expect(t, "an earlier range", liWei.get("/pos/"+li+"/account?from=2020-01-01&to=2020-01-31"), http.StatusOK,
				"No movements on these days.", `<strong id="opening">0.00</strong>`, `<strong id="closing">0.00</strong>`)
			// Far years (beyond what an int64 of nanoseconds holds) are
			// those years, not others wrapped around to them.
			expect(t, "the year 1000", liWei.get("/pos/"+li+"/account?from=1000-01-01&to=1000-12-31"), http.StatusOK,
				"No movements on these days.", `<strong id="opening">0.00</strong>`, `<strong id="closing">0.00</strong>`)
			expect(t, "the year 9000", liWei.get("/pos/"+li+"/account?from=9000-01-01&to=9000-12-31"), http.StatusOK,
				"No movements on these days.", `<strong id="opening">2.50</strong>`, `<strong id="closing">2.50</strong>`)
			st = statement{}
			till.get("/api/v1/payments/statement?from=1000-01-01T00:00:00Z&to=9999-12-31T00:00:00Z").json(t, &st)
			if len(st.Movements) != 4 || st.Opening != 0 || st.Movements[3].Balance != 2_50 {
				t.Fatalf("the API over every year: %+v", st)
			}
			till.get("/api/v1/payments/statement?from=9000-01-01T00:00:00Z&to=9999-12-31T00:00:00Z").json(t, &st)
			if len(st.Movements) != 0 || st.Opening != 2_50 {
				t.Fatalf("the API after the year 9000: %+v", st)
			}
			for q, want := range map[string]string{
				"from=yesterday":                  "Give the days as dates (YYYY-MM-DD).",
				"from=2026-02-01&to=2026-01-01":   "The last day is before the first.",
				"from=2020-01-01&to=2026-01-01":   "One download covers at most 366 days.",
				"after=soon":                      "The place to list later movements from is not one this page made.",
				"from=2026-11-01&after=123456789": "The place to list later movements from is not one this page made.",
			} {
				expect(t, q, liWei.get("/pos/"+li+"/account?"+q), http.StatusBadRequest, want)
			}
			expect(t, "only the last day", liWei.get("/pos/"+li+"/account?to=2020-01-31"), http.StatusOK, `id="statement-from" name="from" type="date" value="2020-01-02"`)
			expect(t, "a bad CSV range", liWei.get("/pos/"+li+"/account.csv?to=2020-13-01"), http.StatusBadRequest, "Give the days as dates")

			// Only the merchant's people.
			expect(t, "another merchant", w.as(t, "Sofia Rossi").get("/pos/"+li+"/account"), http.StatusNotFound)
			expect(t, "another merchant's CSV", w.as(t, "Sofia Rossi").get("/pos/"+li+"/account.csv"), http.StatusNotFound)
			expect(t, "a customer", amira.get("/pos/"+li+"/account"), http.StatusForbidden)
			expect(t, "her own", w.as(t, "Sofia Rossi").get("/pos/"+w.orgs["Rossi Groceries"]+"/account"), http.StatusOK, "Rossi Groceries: account statement")
		})
	}
}
