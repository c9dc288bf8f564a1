package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/server"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/web"
)

// TestComplaintPages: Amira asks the DPA about an access on her page; the
// words she sends are checked (refused words come back in the form), a
// second send changes nothing, and nobody else can read or make a
// complaint about her access; an access still hidden from her cannot be
// complained about until its deferral ends. The DPA's overview counts the
// open complaints, its list shows the access and her words (not her
// name), and its answer, given once, is what Amira then reads.
func TestComplaintPages(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
			w := startDemo(t, e)
			tax, police := exWorld(t, w)
			amira := w.people["Amira Haddad"]
			askAPI(t, w, w.apiClient(t, tax, registry.Agency, "tax system"), map[string]any{"citizen": amira, "service": "tax-income", "fields": []string{"declared_income"},
				"purpose": "TAX-AUDIT", "legal_basis": "Tax Code §93"}, "released")
			covert, err := w.n.ex.Submit(ctx, exchange.Ask{Requester: police, Officer: "Eva Lind", Citizen: amira, Service: "tax-income",
				Fields: []string{"declared_income"}, Purpose: "CRIM-INVESTIGATION", LegalBasis: "Criminal Procedure §100", Defer: 10 * exchange.Day})
			if err != nil || covert.State != exchange.Released {
				t.Fatalf("the police's covert read: %+v %v", covert, err)
			}
			byAgency := func(org string) int64 {
				t.Helper()
				as, err := w.n.ex.Accesses(ctx, exchange.AccessQuery{Agency: org, Limit: 10})
				if err != nil {
					t.Fatal(err)
				}
				for _, a := range as {
					if a.Request != "" && (org != police || a.Request == covert.ID) {
						return a.LogIndex
					}
				}
				t.Fatalf("no access by %s", org)
				return 0
			}
			complaintPath := func(idx int64) string { return fmt.Sprint("/wallet/access/complaints/", idx) }
			audit, hidden := byAgency(tax), byAgency(police)
			page := complaintPath(audit)

			amiraC := w.as(t, "Amira Haddad")
			r := amiraC.get("/wallet/access")
			expect(t, "Amira's accesses", r, http.StatusOK, `<a href="`+page+`">Ask the data-protection authority about this access</a>`)
			if strings.Contains(r.body, complaintPath(hidden)) {
				t.Fatal("Amira's page links to a complaint about an access still hidden from her")
			}
			expect(t, "the form", amiraC.get(page), http.StatusOK, `id="complaint-form"`, "Tax Code §93", "GDPR Art. 77", fmt.Sprintf("kept for %d days after the answer, then deleted", exchange.KeepComplaints/exchange.Day))

			// Not hers, not one she sees, not an access: all alike.
			jonasC := w.as(t, "Jonas Weber")
			for _, c := range []struct {
				who  *client
				path string
			}{{jonasC, page}, {amiraC, complaintPath(hidden)}, {amiraC, complaintPath(1 << 40)}, {amiraC, "/wallet/access/complaints/x"}, {amiraC, "/wallet/access/complaints/-3"}} {
				expect(t, "the page at "+c.path, c.who.get(c.path), http.StatusNotFound, "None of the accesses to your data is at")
				expect(t, "a complaint at "+c.path, c.who.postForm(c.path, url.Values{"message": {"Why?"}}), http.StatusNotFound, "None of the accesses to your data is at")
			}
			if n, err := w.n.ex.OpenComplaints(ctx); err != nil || n != 0 {
				t.Fatalf("%d complaints after refused ones (%v)", n, err)
			}

			// Words checked; refused ones come back to be mended.
			long := strings.Repeat("why ", exchange.ComplaintMax/4) + "?"
			expect(t, "words too long", amiraC.postForm(page, url.Values{"message": {long}}), http.StatusBadRequest,
				fmt.Sprintf("longer than %d characters", exchange.ComplaintMax), `id="complaint-form"`, "why why why")
			words := "Why did the tax office read my income?\nI was not audited."
			r = amiraC.postForm(page, url.Values{"message": {words}})
			expect(t, "the complaint", r, http.StatusOK, "Sent.", `id="complaint-open"`, "I was not audited.")
			if strings.Contains(r.body, `id="complaint-form"`) {
				t.Fatal("the form is still shown after the complaint")
			}
			expect(t, "the complaint sent twice", amiraC.postForm(page, url.Values{"message": {"Again"}}), http.StatusOK, "already", "I was not audited.")
			expect(t, "Amira's accesses", amiraC.get("/wallet/access"), http.StatusOK, "You asked the data-protection authority about this on")

			// The DPA: the count, the access and her words, not her name.
			expect(t, "a citizen on the DPA's list", amiraC.get("/dpa/exchange/complaints"), http.StatusForbidden)
			dpa := w.as(t, "Ana Costa")
			expect(t, "the DPA's overview", dpa.get("/dpa/exchange"), http.StatusOK, "<strong>1</strong> complaint waits for your answer")
			r = dpa.get("/dpa/exchange/complaints")
			expect(t, "the DPA's list", r, http.StatusOK, fmt.Sprintf("About log entry %d", audit), "I was not audited.", "Tax Code §93", "TAX-AUDIT")
			main, _, _ := strings.Cut(r.body, `<aside class="personas"`) // the demo's persona switcher names everyone
			if strings.Contains(main, "Amira") || strings.Contains(main, amira) {
				t.Fatal("the DPA's list of complaints names the citizen")
			}
			id := regexp.MustCompile(`action="/dpa/exchange/complaints/([^/"]+)/answer"`).FindStringSubmatch(r.body)
			if id == nil {
				t.Fatal("no answer form on the DPA's list")
			}
			answerPath := "/dpa/exchange/complaints/" + id[1] + "/answer"
			expect(t, "a citizen answering", amiraC.postForm(answerPath, url.Values{"answer": {"Fine."}}), http.StatusForbidden)
			expect(t, "an empty answer", dpa.postForm(answerPath, url.Values{"answer": {"  "}}), http.StatusBadRequest, "The answer is empty")
			expect(t, "an answer to no complaint", dpa.postForm("/dpa/exchange/complaints/nope/answer", url.Values{"answer": {"Fine."}}), http.StatusNotFound)
			answer := "We asked the tax office: the audit was a random one under Tax Code §93."
			expect(t, "the answer", dpa.postForm(answerPath, url.Values{"answer": {answer}}), http.StatusOK, "Answered.", "No complaint waits for an answer.", "the audit was a random one", "The answer, by Ana Costa:")
			expect(t, "a second answer", dpa.postForm(answerPath, url.Values{"answer": {"Again."}}), http.StatusConflict, "was answered on")
			expect(t, "after no open complaint", dpa.get("/dpa/exchange/complaints?after="+id[1]), http.StatusBadRequest, "Here are the oldest.")

			// Amira reads the answer: her home says so, her page lists it.
			expect(t, "Amira's home", amiraC.get("/"), http.StatusOK, `id="complaints-answered"`, "answered your complaint about an access")
			if r := jonasC.get("/"); strings.Contains(r.body, `id="complaints-answered"`) {
				t.Fatal("Jonas's home says a complaint was answered")
			}
			kept, err := w.n.ex.ComplaintsOf(ctx, amira, audit, audit)
			if err != nil || kept[audit] == nil {
				t.Fatalf("Amira's complaint: %v %v", kept, err)
			}
			expect(t, "Amira's complaint", amiraC.get(page), http.StatusOK, `id="complaint-answer"`, "the audit was a random one",
				`id="complaint-kept">Your complaint and the answer are kept until `+web.DateIn(kept[audit].Answered.Add(exchange.KeepComplaints), time.UTC))
			expect(t, "Amira's accesses", amiraC.get("/wallet/access"), http.StatusOK, "The data-protection authority answered your complaint on",
				`id="my-complaints"`, `<a href="`+page+`">City Tax Office read your Declared income on`, "<strong>answered on")
			if r := jonasC.get("/wallet/access"); strings.Contains(r.body, `id="my-complaints"`) {
				t.Fatal("Jonas's page lists complaints")
			}
			// Her export carries her words and the answer beside the access,
			// and still verifies; Jonas's carries no complaint.
			if _, _, err := w.n.tlog.Integrate(ctx); err != nil { // serve's integrator does this within a second
				t.Fatal(err)
			}
			var export exchange.Export
			r = amiraC.get("/wallet/access.json")
			if err := json.Unmarshal([]byte(r.body), &export); err != nil {
				t.Fatalf("Amira's export: %v", err)
			}
			var carried []*exchange.ExportedComplaint
			for _, a := range export.Accesses {
				if a.Complaint != nil {
					carried = append(carried, a.Complaint)
					if a.Agency != "City Tax Office" || a.Proof == nil || a.Proof.Index != audit {
						t.Fatalf("the complaint is beside another access: %s, %+v", a.Agency, a.Proof)
					}
				}
			}
			if len(carried) != 1 || carried[0].Message != words || carried[0].Answer != answer || carried[0].AnsweredAt.IsZero() {
				t.Fatalf("the complaints in Amira's export: %+v", carried)
			}
			if rep, err := exchange.VerifyExport(strings.NewReader(r.body), w.n.vkey); err != nil || !rep.OK() || !strings.Contains(rep.Checks[0].Detail, "1 with the citizen's complaint") {
				t.Fatalf("Amira's export with her complaint does not verify: %+v %v", rep, err)
			}
			if body := jonasC.get("/wallet/access.json").body; strings.Contains(body, `"complaint"`) {
				t.Fatal("Jonas's export carries a complaint")
			}

			// The covert read, once its deferral ends.
			w.n.clock.add(11 * exchange.Day)
			amiraC, dpa = w.as(t, "Amira Haddad"), w.as(t, "Ana Costa") // the sessions ended meanwhile
			expect(t, "a complaint about a read no longer hidden", amiraC.postForm(complaintPath(hidden), url.Values{"message": {""}}), http.StatusOK, "Sent.", "look into this access")
			expect(t, "the DPA's overview", dpa.get("/dpa/exchange"), http.StatusOK, "<strong>1</strong> complaint waits for your answer")
			r = amiraC.get("/wallet/access")
			expect(t, "Amira's complaints", r, http.StatusOK, "City Police read your Declared income on", "not answered yet")
			if strings.Index(r.body, complaintPath(hidden)+`">City Police`) > strings.Index(r.body, page+`">City Tax Office`) {
				t.Fatal("Amira's complaints are not listed by access, the newest first")
			}
			// The DPA's file of every complaint, open or answered, by access,
			// read a complaint at a time: her words, its answer and who gave
			// it, never who she is.
			restore := server.SetExportChunk(1)
			r = dpa.get("/dpa/exchange/complaints.csv")
			restore()
			expect(t, "the complaints as CSV", r, http.StatusOK)
			if cd := r.header.Get("Content-Disposition"); !strings.Contains(cd, `attachment; filename="civstack-complaints-`) {
				t.Fatalf("the complaints' CSV is not a download: %q", cd)
			}
			rows, err := csvBody(t, r.body).ReadAll()
			if err != nil || len(rows) != 3 {
				t.Fatalf("the complaints' CSV: %d rows (want a header and 2) %v\n%s", len(rows), err, r.body)
			}
			if h := rows[0]; h[0] != "sent (UTC)" || h[2] != "access time (UTC)" || h[11] != "citizen's words" || h[14] != "answered by" {
				t.Fatalf("the complaints' CSV header: %q", h)
			}
			a, c := rows[1], rows[2]
			if a[1] != fmt.Sprint(audit) || a[3] != "City Tax Office" || a[5] != "system: tax system" || a[11] != words || a[12] != answer || a[13] == "" || a[14] != "Ana Costa" ||
				c[1] != fmt.Sprint(hidden) || c[3] != "City Police" || c[10] != "kept" || c[11] != "" || c[12] != "" || c[13] != "" {
				t.Fatalf("the complaints' CSV rows:\n%q\n%q", a, c)
			}
			if strings.Contains(r.body, w.people["Amira Haddad"]) || strings.Contains(r.body, "Amira") {
				t.Fatal("the complaints' CSV names the citizen")
			}
			expect(t, "a citizen asking for the complaints' CSV", amiraC.get("/dpa/exchange/complaints.csv"), http.StatusForbidden)
			expect(t, "the link to it", dpa.get("/dpa/exchange/complaints"), http.StatusOK, `href="/dpa/exchange/complaints.csv"`)
			// Thirty days after the answer her home no longer says so.
			w.n.clock.add(exchange.AnswerNewsWithin)
			if r := w.as(t, "Amira Haddad").get("/"); strings.Contains(r.body, `id="complaints-answered"`) {
				t.Fatal("Amira's home still says her complaint was answered, 41 days on")
			}
		})
	}
}
