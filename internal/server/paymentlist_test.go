package server_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/server"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestPaymentLists: the wallet lists a person's payments page by page and
// downloads them all as CSV; the point of sale totals every payment of the
// day however few it lists, and downloads any days' sales as CSV. Small
// pages and chunks make a few payments span several, on both engines.
func TestPaymentLists(t *testing.T) {
	defer server.SetListSizes(3, 4)()
	defer server.SetExportChunk(2)()
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			li, rossi := w.orgs["Li's Dumpling Cart"], w.orgs["Rossi Groceries"]
			amira, jonas, liWei := w.as(t, "Amira Haddad"), w.as(t, "Jonas Weber"), w.as(t, "Li Wei")
			static := staticCode(t, w, li)
			for _, amount := range []string{"0.01", "0.02", "0.03", "0.04", "0.05", "0.06", "0.07"} {
				expect(t, "pay "+amount, payByPayload(t, amira, static, amount), http.StatusSeeOther)
			}

			// The wallet, three at a time, newest first, down to the demo's
			// top-up: the list adds up to the balance.
			rowRE := regexp.MustCompile(`<tr class="payment-row (in|out)">\s*<td>[^<]*</td><td>([^<]*)</td><td class="amount">([^<]*)</td>`)
			olderRE := regexp.MustCompile(`href="/wallet\?before=([^"#]+)#history-h" id="older-payments"`)
			var amounts []string
			page, pages := "/wallet", 0
			for page != "" {
				r := amira.get(page)
				expect(t, "wallet page "+page, r, http.StatusOK, "Download every payment (CSV)")
				rows := rowRE.FindAllStringSubmatch(r.body, -1)
				if len(rows) == 0 || len(rows) > 3 {
					t.Fatalf("%s lists %d payments, want 1 to 3", page, len(rows))
				}
				for _, row := range rows {
					amounts = append(amounts, row[3])
				}
				page, pages = "", pages+1
				if m := olderRE.FindStringSubmatch(r.body); m != nil {
					page = "/wallet?before=" + m[1]
				}
			}
			want := []string{"-0.07", "-0.06", "-0.05", "-0.04", "-0.03", "-0.02", "-0.01", "200.00"}
			if strings.Join(amounts, " ") != strings.Join(want, " ") || pages != 3 {
				t.Fatalf("the wallet's pages list %v over %d pages, want %v over 3", amounts, pages, want)
			}
			expect(t, "a place no page made", amira.get("/wallet?before=yesterday"), http.StatusBadRequest, "not one this page made", "-0.07")

			// The download: every payment, newest first, in chunks of two.
			r := amira.get("/wallet/payments.csv")
			expect(t, "the wallet's CSV", r, http.StatusOK)
			if cd := r.header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="civstack-payments-`) {
				t.Fatalf("Content-Disposition %q", cd)
			}
			recs, err := csvBody(t, r.body).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 9 || strings.Join(recs[0], ",") != "time (UTC),with,amount (EUR),how,reference,payment,receipt" {
				t.Fatalf("the wallet's CSV has %d lines, header %v", len(recs), recs[0])
			}
			for i, rec := range recs[1:] {
				if rec[2] != want[i] {
					t.Fatalf("CSV line %d: amount %q, want %q (a negative amount stays a number)", i+1, rec[2], want[i])
				}
			}
			if recs[1][1] != "Li's Dumpling Cart" || recs[1][3] != "wallet scan (shop QR)" || !strings.HasSuffix(recs[1][6], "/receipts/"+recs[1][5]) {
				t.Fatalf("CSV line: %v", recs[1])
			}
			if top := recs[8]; top[1] != "Top-up" || top[3] != "top-up" || top[4] != "starting balance" || top[6] != "" {
				t.Fatalf("CSV line of the top-up: %v", top)
			}
			theirs := jonas.get("/wallet/payments.csv")
			if expect(t, "another citizen's CSV", theirs, http.StatusOK); strings.Count(theirs.body, "\n") != 2 || strings.Contains(theirs.body, "Dumpling") {
				t.Fatalf("Jonas's CSV holds more than its header and his top-up:\n%s", theirs.body)
			}

			// The point of sale lists four of the day's seven and totals all.
			expect(t, "the day's figures", liWei.get("/pos/"+li+"/sales"), http.StatusOK,
				`7 payments · taken <strong id="sales-total">0.28</strong>`, "The latest 4 are listed")
			sales := liWei.get("/pos/" + li + "/sales")
			if n := strings.Count(sales.body, `class="sale-row"`); n != 4 {
				t.Fatalf("the point of sale lists %d sales, want 4", n)
			}
			first := regexp.MustCompile(`data-payment="([0-9a-f]+)"`).FindStringSubmatch(sales.body)[1]
			refund := liWei.postForm("/pos/"+li+"/payments/"+first+"/refund", url.Values{"amount": {"0.07"}, "refund": {"r1"}})
			expect(t, "refund the latest", refund, http.StatusSeeOther)
			expect(t, "the day's figures after the refund", liWei.get("/pos/"+li+"/sales"), http.StatusOK,
				`8 payments · taken <strong id="sales-total">0.28</strong> · refunded 0.07`)

			// The day's sales as CSV, oldest first, the refund last.
			r = liWei.get("/pos/" + li + "/sales.csv")
			expect(t, "the sales CSV", r, http.StatusOK)
			recs, err = csvBody(t, r.body).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 9 {
				t.Fatalf("the sales CSV has %d lines, want a header and 8:\n%s", len(recs), r.body)
			}
			if got := recs[1][1] + " " + recs[1][2] + " " + recs[7][2] + " " + recs[7][3] + " " + recs[8][1] + " " + recs[8][2]; got != "sale 0.01 0.07 0.00 refund -0.07" {
				t.Fatalf("the sales CSV reads %q; want the first sale, the refunded one and the refund:\n%s", got, r.body)
			}
			if recs[8][7] != first {
				t.Fatalf("the refund's line names %q as its purchase, want %q", recs[8][7], first)
			}
			if none := liWei.get("/pos/" + li + "/sales.csv?from=2026-01-01&to=2026-01-31"); strings.Count(none.body, "\n") != 1 {
				t.Fatalf("a month without sales: %s", none.body)
			}
			expect(t, "the last day first", liWei.get("/pos/"+li+"/sales.csv?from=2026-02-02&to=2026-02-01"), http.StatusBadRequest, "The last day is before the first")
			expect(t, "not a date", liWei.get("/pos/"+li+"/sales.csv?from=yesterday"), http.StatusBadRequest, "YYYY-MM-DD")
			expect(t, "too many days", liWei.get("/pos/"+li+"/sales.csv?from=2024-01-01&to=2026-01-01"), http.StatusBadRequest, "at most 366 days")
			expect(t, "another shop's sales", liWei.get("/pos/"+rossi+"/sales.csv"), http.StatusNotFound)

			// The day's page, four at a time from the first, every payment once.
			dayRows := regexp.MustCompile(`<a href="/receipts/([0-9a-f]+)">Receipt`)
			laterRE := regexp.MustCompile(`href="(/pos/[^"]+/days\?day=[0-9-]+&amp;after=[^"]+)" id="later-sales"`)
			var listed []string
			for page, n := "/pos/"+li+"/days", 0; page != "" && n < 5; n++ {
				r := liWei.get(page)
				expect(t, "the day's page", r, http.StatusOK, "8 payments · taken <strong>0.28</strong> · refunded 0.07")
				for _, m := range dayRows.FindAllStringSubmatch(r.body, -1) {
					listed = append(listed, m[1])
				}
				page = ""
				if m := laterRE.FindStringSubmatch(r.body); m != nil {
					page = html.UnescapeString(m[1])
				}
			}
			if len(listed) != 8 || listed[7] != recs[8][6] || len(slices.Compact(slices.Sorted(slices.Values(listed)))) != 8 {
				t.Fatalf("the day's pages list %v, want the day's 8 payments once each, the refund last", listed)
			}
			expect(t, "a day that is no date", liWei.get("/pos/"+li+"/days?day=someday"), http.StatusBadRequest, "YYYY-MM-DD")
			expect(t, "a day without sales", liWei.get("/pos/"+li+"/days?day=2026-01-01"), http.StatusOK, "No payments this day", `id="next-day"`)
			expect(t, "another shop's day", liWei.get("/pos/"+rossi+"/days"), http.StatusNotFound)

			// A till system pages through the day's payments by the API.
			till := w.token(t, "Li's Dumpling Cart")
			var ids []string
			next, calls := "", 0
			for {
				q := "/api/v1/payments?limit=3"
				if next != "" {
					q += "&before=" + url.QueryEscape(next)
				}
				var got struct {
					Payments []struct {
						ID     string `json:"id"`
						Amount int64  `json:"amount"`
					} `json:"payments"`
					Next string `json:"next"`
				}
				r := till.get(q)
				expect(t, "the API's page "+q, r, http.StatusOK)
				r.json(t, &got)
				for _, p := range got.Payments {
					ids = append(ids, p.ID)
				}
				if calls++; got.Next == "" || calls > 5 {
					break
				}
				next = got.Next
			}
			if len(ids) != 8 || ids[0] == first || ids[1] != first || len(slices.Compact(slices.Sorted(slices.Values(ids)))) != 8 {
				t.Fatalf("the API's pages gave %d payments over %d calls (%v), want the 8 of the day once each, the refund first", len(ids), calls, ids)
			}
			expectProblem(t, "a made-up page", till.get("/api/v1/payments?before=x"), http.StatusBadRequest, "not a next field")
			expect(t, "a citizen", amira.get("/pos/"+li+"/sales.csv"), http.StatusForbidden)
		})
	}
}

// TestPaymentDaysInZone: with --time-zone Europe/Rome the point of sale's
// day is Rome's, the pages show Rome's time, and the CSV says its zone.
func TestPaymentDaysInZone(t *testing.T) {
	rome, err := time.LoadLocation("Europe/Rome")
	if err != nil {
		t.Fatal(err)
	}
	w := startDemoWith(t, storetest.Engines(t)[0], nodeOptions{zone: rome})
	// 23:30 UTC is 00:30 the next day in Rome (CET, UTC+1).
	at := time.Date(2026, 12, 10, 23, 30, 0, 0, time.UTC)
	w.n.clock.add(time.Until(at))
	li := w.orgs["Li's Dumpling Cart"]
	amira, liWei := w.as(t, "Amira Haddad"), w.as(t, "Li Wei")
	static := staticCode(t, w, li)
	expect(t, "pay at 00:30 in Rome", payByPayload(t, amira, static, "2.00"), http.StatusSeeOther)
	// 40 minutes later it is the next day in UTC, still the same in Rome.
	w.n.clock.add(40 * time.Minute)
	r := liWei.get("/pos/" + li + "/sales")
	expect(t, "Rome's day", r, http.StatusOK, `1 payment · taken <strong id="sales-total">2.00</strong>`)
	if !regexp.MustCompile(`<td data-label="Time">00:3\d:\d\d</td>`).MatchString(r.body) {
		t.Fatalf("the sale's time is not Rome's:\n%s", r.body)
	}
	expect(t, "the wallet shows Rome's time", amira.get("/wallet"), http.StatusOK, "11 Dec 2026 00:3")
	// The daily limit counts Rome's day: the payment of 00:30 counts at
	// 01:10 (00:10 UTC, another UTC day).
	if spent := spentToday(t, amira); spent != 200 {
		t.Fatalf("the wallet says %d cents were spent today in Rome, want 200", spent)
	}
	csvAt := liWei.get("/pos/" + li + "/sales.csv?from=2026-12-11&to=2026-12-11")
	recs, err := csvBody(t, csvAt.body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0][0] != "time (Europe/Rome)" || !strings.HasPrefix(recs[1][0], "2026-12-11 00:3") {
		t.Fatalf("Rome's 11 December as CSV:\n%s", csvAt.body)
	}
	if before := liWei.get("/pos/" + li + "/sales.csv?from=2026-12-10&to=2026-12-10"); strings.Count(before.body, "\n") != 1 {
		t.Fatalf("Rome's 10 December holds the sale made on the 11th:\n%s", before.body)
	}
	// The cash-flow report counts Rome's months too, and says so.
	expect(t, "the report's months", liWei.get("/pos/"+li+"/report"), http.StatusOK, "Calendar months of Europe/Rome.")
}

// spentToday reads the wallet page's daily limit and what is left of it
// and returns the difference, in cents.
func spentToday(t *testing.T, c *client) int64 {
	t.Helper()
	page := c.get("/wallet")
	m := regexp.MustCompile(`([0-9.]+) a day \(([0-9.]+) left today\)`).FindStringSubmatch(page.body)
	if m == nil {
		t.Fatalf("the wallet does not say what is left of today's limit:\n%s", page.body)
	}
	limit, err1 := payment.ParseMoney(m[1])
	left, err2 := payment.ParseMoney(m[2])
	if err1 != nil || err2 != nil {
		t.Fatalf("limits %q: %v %v", m[0], err1, err2)
	}
	return limit - left
}

// TestRefundFromReceipt: yesterday's sale is no longer on the point of
// sale's list; the vendor refunds it from its receipt, in part, then the
// rest. The form sent twice refunds once; the payer sees no such form.
func TestRefundFromReceipt(t *testing.T) {
	w := startDemo(t, storetest.Engines(t)[0])
	li := w.orgs["Li's Dumpling Cart"]
	amira := w.as(t, "Amira Haddad")
	static := staticCode(t, w, li)
	r := payByPayload(t, amira, static, "6.00")
	expect(t, "pay", r, http.StatusSeeOther)
	receipt := strings.TrimSuffix(r.header.Get("Location"), "?paid=1")
	w.n.clock.add(25 * time.Hour)
	liWei, amira := w.as(t, "Li Wei"), w.as(t, "Amira Haddad") // signed in again after a day
	expect(t, "today's list no longer has it", liWei.get("/pos/"+li+"/sales"), http.StatusOK, "No payments yet today")
	yesterday := w.n.clock.now().Add(-25 * time.Hour).UTC().Format(time.DateOnly)
	expect(t, "the day it was made", liWei.get("/pos/"+li+"/days?day="+yesterday), http.StatusOK, "1 payment · taken <strong>6.00</strong>",
		`<a href="`+receipt+`">Receipt · refund</a>`)
	page := liWei.get(receipt)
	expect(t, "the vendor's receipt offers a refund", page, http.StatusOK, `id="receipt-refund-form"`, "at most 6.00")
	if strings.Contains(amira.get(receipt).body, "receipt-refund-form") {
		t.Fatal("the payer's receipt offers her a refund")
	}
	key := regexp.MustCompile(`name="refund" value="([^"]+)"`).FindStringSubmatch(page.body)[1]
	action := regexp.MustCompile(`action="(/pos/[^"]+/refund)" id="receipt-refund-form"`).FindStringSubmatch(page.body)[1]
	refund := url.Values{"refund": {key}, "back": {"receipt"}, "amount": {"2.50"}}
	r = liWei.postForm(action, refund)
	expect(t, "refund 2.50", r, http.StatusSeeOther)
	expect(t, "back on the receipt", liWei.get(r.header.Get("Location")), http.StatusOK, "Refund sent.", "Refunded 2.50 of 6.00", "at most 3.50")
	expect(t, "the form sent twice", liWei.postForm(action, refund), http.StatusSeeOther)
	expect(t, "refunded once", liWei.get(receipt), http.StatusOK, "Refunded 2.50 of 6.00")
	over := url.Values{"refund": {"another"}, "back": {"receipt"}, "amount": {"9.00"}}
	expect(t, "more than is left", liWei.postForm(action, over), http.StatusUnprocessableEntity, "At most 3.50", `id="receipt"`)
	page = liWei.get(receipt)
	key = regexp.MustCompile(`name="refund" value="([^"]+)"`).FindStringSubmatch(page.body)[1]
	expect(t, "the rest", liWei.postForm(action, url.Values{"refund": {key}, "back": {"receipt"}, "amount": {"3.50"}}), http.StatusSeeOther)
	page = liWei.get(receipt)
	if expect(t, "all refunded", page, http.StatusOK, "Refunded 6.00 of 6.00"); strings.Contains(page.body, "receipt-refund-form") {
		t.Fatal("a sale refunded in full still offers a refund")
	}
	expect(t, "her wallet", amira.get("/wallet"), http.StatusOK, "<strong id=\"balance\">200.00</strong>")
}

// staticCode is the printed QR code's payload of the merchant org.
func staticCode(t *testing.T, w *demoWorld, org string) string {
	t.Helper()
	prof, err := w.n.pay.Merchant(context.Background(), org)
	if err != nil {
		t.Fatal(err)
	}
	code, err := w.n.pay.StaticCode(prof)
	if err != nil {
		t.Fatal(err)
	}
	return code
}
