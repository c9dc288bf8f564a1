package server_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestCashFlowOverHTTP: the merchant's report page, sharing with a lender
// whose link gives the signed report (verified offline, as `civstack
// verify` does), another merchant refused, and stopping the share.
func TestCashFlowOverHTTP(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			ctx := context.Background()
			o, err := w.n.reg.OrganisationByName(ctx, "Li's Dumpling Cart")
			if err != nil {
				t.Fatal(err)
			}
			li, sofia := w.as(t, "Li Wei"), w.as(t, "Sofia Rossi")
			expect(t, "the report page", li.get("/pos/"+o.ID+"/report"), http.StatusOK, "Cash-flow report", "Volatility", "standard deviation")
			expect(t, "another merchant's report", sofia.get("/pos/"+o.ID+"/report"), http.StatusNotFound)
			expect(t, "a citizen", w.as(t, "Amira Haddad").get("/pos/"+o.ID+"/report"), http.StatusForbidden)
			expect(t, "no lender named", li.postForm("/pos/"+o.ID+"/report/shares", map[string][]string{"lender": {" "}}), http.StatusBadRequest, "Name the lender")
			key := regexp.MustCompile(`name="key" value="([^"]+)"`).FindStringSubmatch(li.get("/pos/" + o.ID + "/report").body)
			if key == nil {
				t.Fatal("no key in the share form")
			}
			share := map[string][]string{"lender": {"Emilia Credit Union"}, "key": {key[1]}}
			r := li.postForm("/pos/"+o.ID+"/report/shares", share)
			expect(t, "share", r, http.StatusOK, "Shared with Emilia Credit Union")
			link := regexp.MustCompile(`id="link"[^>]*>([^<]+)<`).FindStringSubmatch(r.body)
			if link == nil {
				t.Fatal("no lender link")
			}
			r = li.postForm("/pos/"+o.ID+"/report/shares", share)
			expect(t, "the form sent twice", r, http.StatusOK, "This form was sent already", "Emilia Credit Union")
			if regexp.MustCompile(`id="link"[^>]*>`).MatchString(r.body) {
				t.Fatal("the form sent twice shows a link")
			}
			if shares, err := w.n.pay.Shares(ctx, o.ID); err != nil || len(shares) != 1 {
				t.Fatalf("%d shares after the form was sent twice, want 1 (%v)", len(shares), err)
			}
			// The shared report is a document of its own, not an invoice.
			var doc string
			if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT id FROM payment_documents WHERE org_id = $1 AND kind = $2`, o.ID, payment.TypeCashFlow).Scan(&doc); err != nil {
				t.Fatalf("the shared report's document: %v", err)
			}
			pos := li.get("/pos/" + o.ID).body
			invoices := pos[strings.Index(pos, `id="invoices"`):]
			if invoices = invoices[:strings.Index(invoices, "</table>")]; strings.Contains(invoices, doc) {
				t.Fatalf("the merchant's invoices list the shared report: %s", invoices)
			}
			if _, _, err := w.n.tlog.Integrate(ctx); err != nil {
				t.Fatal(err)
			}
			lender := newClient(t, w.n.URL)
			path := strings.TrimPrefix(link[1], w.n.URL)
			dl := lender.get(path)
			expect(t, "the lender's download", dl, http.StatusOK, `"type": "cashflow"`, `"recipient": "Emilia Credit Union"`)
			rep, err := payment.Verify(strings.NewReader(dl.body), w.n.vkey)
			if err != nil || !rep.OK() {
				t.Fatalf("the lender's report does not verify: %v %s", err, rep.Failed())
			}
			expect(t, "a made-up link", lender.get("/reports/"+strings.Repeat("A", 43)), http.StatusNotFound)
			id := regexp.MustCompile(`/report/shares/([0-9a-f-]+)/stop`).FindStringSubmatch(li.get("/pos/" + o.ID + "/report").body)
			if id == nil {
				t.Fatal("no stop button")
			}
			expect(t, "another merchant stops it", sofia.postForm("/pos/"+o.ID+"/report/shares/"+id[1]+"/stop", nil), http.StatusNotFound)
			expect(t, "stop", li.postForm("/pos/"+o.ID+"/report/shares/"+id[1]+"/stop", nil), http.StatusOK, "gets no further updates")
			expect(t, "the link after stopping", lender.get(path), http.StatusGone, "stopped sharing")
		})
	}
}
