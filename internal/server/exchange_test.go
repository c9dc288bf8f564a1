package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
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
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

// exWorld publishes a tax service and a population register and puts
// policies in force: the tax office reads income for audits; the police
// read income covertly (up to 30 days) and addresses with consent.
func exWorld(t *testing.T, w *demoWorld) (tax, police string) {
	ctx := context.Background()
	for _, name := range []string{"City Tax Office", "City Police"} {
		org, err := w.n.reg.OrganisationByName(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		w.orgs[name] = org.ID
	}
	tax, police = w.orgs["City Tax Office"], w.orgs["City Police"]
	x := w.n.ex
	if _, err := x.PublishService(ctx, tax, exchange.Service{ID: "tax-income", Name: "Declared income", Fields: []exchange.Field{
		{Name: "declared_income", Label: "Declared income", Type: "number"}, {Name: "employer", Label: "Employer", Type: "text"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := x.PublishService(ctx, tax, exchange.Service{ID: "population", Name: "Population register", Fields: []exchange.Field{
		{Name: "address", Label: "Address", Type: "text"}}}); err != nil {
		t.Fatal(err)
	}
	if err := x.SetValues(ctx, tax, "tax-income", w.people["Amira Haddad"], map[string]string{"declared_income": "41250", "employer": "Bologna Labs"}); err != nil {
		t.Fatal(err)
	}
	if err := x.SetValues(ctx, tax, "population", w.people["Amira Haddad"], map[string]string{"address": "Via Zamboni 33"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []exchange.Policy{
		{Requester: tax, Service: "tax-income", Fields: []string{"declared_income"}, Purpose: "TAX-AUDIT", LegalBasis: "Tax Code §93", Retention: 365 * exchange.Day},
		{Requester: police, Service: "tax-income", Fields: []string{"declared_income", "employer"}, Purpose: "CRIM-INVESTIGATION", LegalBasis: "Criminal Procedure §100", MaxDeferral: 30 * exchange.Day, Retention: 90 * exchange.Day},
		{Requester: police, Service: "population", Fields: []string{"address"}, Purpose: "WITNESS-CONTACT", LegalBasis: "Police Act §12", Consent: true, Retention: 30 * exchange.Day},
	} {
		if _, err := x.CreatePolicy(ctx, p, "test"); err != nil {
			t.Fatal(err)
		}
	}
	return tax, police
}

func ask(c *client, org, citizen, service, purpose, basis string, deferDays int, fields ...string) *response {
	return c.postForm("/exchange/"+org+"/requests", url.Values{"citizen": {citizen}, "service": {service}, "field": fields, "purpose": {purpose},
		"legal_basis": {basis}, "defer_days": {strconv.Itoa(deferDays)}})
}

// accessEntries counts the data-access entries in the log.
func accessEntries(t *testing.T, db *store.DB) int {
	t.Helper()
	return len(accessIndexes(t, db))
}

func countRows(t *testing.T, db *store.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Reader().QueryRowContext(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// execSQL changes the database behind the server's back, in a transaction
// of its own, as an intruder or a failing disk would.
func execSQL(t *testing.T, db *store.DB, q string, args ...any) {
	t.Helper()
	ctx := context.Background()
	if err := db.Tx(ctx, func(tx *store.Tx) error { _, err := tx.ExecContext(ctx, q, args...); return err }); err != nil {
		t.Fatal(err)
	}
}

func TestExchangeOverHTTP(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			ctx := context.Background()
			tax, police := exWorld(t, w)
			amira := w.people["Amira Haddad"]
			officer, cop := w.as(t, "Tomas Novak"), w.as(t, "Eva Lind")

			expect(t, "citizen on the agency console", w.as(t, "Amira Haddad").get("/exchange/"+tax), http.StatusForbidden)
			expect(t, "police on the tax console", cop.get("/exchange/"+tax), http.StatusNotFound)
			// The form suggests the agency's own purposes and legal bases, and
			// in the demo the made-up citizens' account numbers.
			expect(t, "the tax console's form", officer.get("/exchange/"+tax), http.StatusOK,
				`Your policies: Declared income for TAX-AUDIT`, `<option value="TAX-AUDIT">`, `<option value="Tax Code §93">`, `<option value="`+amira+`">Amira Haddad</option>`)
			if body := officer.get("/exchange/" + tax).body; strings.Contains(body, "CRIM-INVESTIGATION") || strings.Contains(body, `">Tomas Novak</option>`) {
				t.Fatal("the tax console suggests the police's purposes or a non-citizen")
			}

			r := ask(officer, tax, amira, "tax-income", "TAX-AUDIT", "Tax Code §93", 0, "declared_income")
			expect(t, "audit", r, http.StatusOK, "Released", "41250", "The policy lets you keep it until "+w.n.clock.now().Add(365*exchange.Day).UTC().Format("2 Jan 2006"))
			r = ask(officer, tax, amira, "tax-income", "TAX-AUDIT", "Tax Code §93", 0, "declared_income", "employer")
			expect(t, "field outside the policy", r, http.StatusForbidden, "Denied: Employer is outside the policy")
			expect(t, "no citizen", ask(officer, tax, " ", "tax-income", "TAX-AUDIT", "Tax Code §93", 0, "declared_income"), http.StatusBadRequest, "Enter the citizen&#39;s id.")
			expect(t, "an unknown citizen", ask(officer, tax, "Amira Haddad", "tax-income", "TAX-AUDIT", "Tax Code §93", 0, "declared_income"), http.StatusBadRequest, "There is no citizen with that id.")
			r = ask(officer, tax, amira, "tax-income", "MARKETING", "Tax Code §93", 0, "declared_income")
			expect(t, "no policy for the purpose", r, http.StatusForbidden, "No policy lets City Tax Office read Declared income for purpose MARKETING")
			r = ask(officer, tax, amira, "tax-income", "TAX-AUDIT", "Tax Code §93", 5, "declared_income")
			expect(t, "deferral not allowed", r, http.StatusForbidden, "does not allow hiding")
			if strings.Contains(r.body, "41250") {
				t.Fatal("a denied request released data")
			}

			// Consent: nothing until the citizen approves, and only once.
			r = ask(cop, police, amira, "population", "WITNESS-CONTACT", "Police Act §12", 0, "address")
			expect(t, "consent needed", r, http.StatusOK, "waiting in their wallet")
			var reqID string
			if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT id FROM ex_requests WHERE state = $1`, exchange.AwaitConsent).Scan(&reqID); err != nil {
				t.Fatal(err)
			}
			expect(t, "collect before consent", cop.postForm("/exchange/"+police+"/requests/"+reqID+"/collect", nil), http.StatusBadRequest, "has not answered")
			citizen := w.as(t, "Amira Haddad")
			expect(t, "consent request in the wallet", citizen.get("/wallet/access"), http.StatusOK, "City Police asks for your Population register", "WITNESS-CONTACT",
				// what she consents to includes how long the police may keep it
				`<p class="retention">City Police may keep what it reads for 30 days (<a href="/wallet/access/rules#rule-`)
			expect(t, "another citizen cannot approve", w.as(t, "Jonas Weber").postForm("/wallet/access/requests/"+reqID, url.Values{"decision": {"approve"}}), http.StatusNotFound)
			expect(t, "approve", citizen.postForm("/wallet/access/requests/"+reqID, url.Values{"decision": {"approve"}}), http.StatusOK, "Approved")
			expect(t, "approve sent twice", citizen.postForm("/wallet/access/requests/"+reqID, url.Values{"decision": {"approve"}}), http.StatusOK, "You approved it already", "nothing changed")
			expect(t, "refuse after approving", citizen.postForm("/wallet/access/requests/"+reqID, url.Values{"decision": {"refuse"}}), http.StatusConflict)
			expect(t, "collect", cop.postForm("/exchange/"+police+"/requests/"+reqID+"/collect", nil), http.StatusOK, "Via Zamboni 33")
			expect(t, "collect twice", cop.postForm("/exchange/"+police+"/requests/"+reqID+"/collect", nil), http.StatusConflict)

			// Covert: the DPA sees it at once, the citizen after the deferral.
			r = ask(cop, police, amira, "tax-income", "CRIM-INVESTIGATION", "Criminal Procedure §100", 9, "declared_income")
			expect(t, "deferred", r, http.StatusOK, "sees it when the deferral ends")
			expect(t, "DPA sees it", w.as(t, "Ana Costa").get("/dpa/exchange"), http.StatusOK, "CRIM-INVESTIGATION", "Eva Lind", "Employer is outside the policy")
			if _, _, err := w.n.tlog.Integrate(ctx); err != nil {
				t.Fatal(err)
			}
			r = citizen.get("/wallet/access")
			expect(t, "citizen's page", r, http.StatusOK, "City Tax Office read your Declared income", "TAX-AUDIT", "Verified: entry", "City Police read your Population register")
			publicLogHoldsNoRecord(t, w)
			if strings.Contains(r.body, "CRIM-INVESTIGATION") {
				t.Fatal("a deferred access shows before its deferral ends")
			}
			expect(t, "others see nothing of hers", w.as(t, "Jonas Weber").get("/wallet/access"), http.StatusOK, "Nobody has read your data")
			// Her home counts what she can see of the last 30 days: the
			// audit and the collection, not the access still hidden.
			recent := func(c *client, want string) {
				t.Helper()
				expect(t, "the accesses on the home page", c.get("/"), http.StatusOK, `<p class="hint" id="recent-accesses">`+want+` in the last 30 days.</p>`)
			}
			recent(citizen, "2 accesses to your data")
			recent(w.as(t, "Jonas Weber"), "No agency read your data through the exchange")
			// She keeps an export, dated; the one after the deferral checks
			// against it: nothing gone, the covert access hidden then.
			exportFile := func() string {
				t.Helper()
				r := w.as(t, "Amira Haddad").get("/wallet/access.json")
				name := "civstack-data-accesses-" + w.n.clock.now().In(time.UTC).Format(time.DateOnly) + ".json"
				if cd := r.header.Get("Content-Disposition"); cd != `attachment; filename="`+name+`"` {
					t.Fatalf("the export's name: %q, want %s", cd, name)
				}
				return r.body
			}
			kept := exportFile()
			w.n.clock.add(10 * exchange.Day)
			cmp, err := exchange.CompareExports(strings.NewReader(kept), strings.NewReader(exportFile()), w.n.vkey)
			if err != nil || !cmp.OK() || !slices.ContainsFunc(cmp.Checks, func(c exchange.ExportCheck) bool {
				return c.Name == "since the earlier export" && c.Detail == "0 accesses made since; 1 access hidden from you then (deferred) and shown now"
			}) {
				t.Fatalf("her exports before and after the deferral: %v %+v", err, cmp)
			}
			citizen = w.as(t, "Amira Haddad")
			r = citizen.get("/wallet/access")
			expect(t, "after the deferral", r, http.StatusOK, "CRIM-INVESTIGATION", "hidden from you until")
			// On top as well, for a while: by its time it may sit below
			// newer accesses.
			disclosed := func(body string) string {
				i := strings.Index(body, `<h2 id="disc-h">`)
				if i < 0 {
					return ""
				}
				return body[i : i+strings.Index(body[i:], "</section>")]
			}
			if d := disclosed(r.body); !strings.Contains(d, "City Police read your Declared income") || !strings.Contains(d, "CRIM-INVESTIGATION") ||
				strings.Contains(d, "TAX-AUDIT") || !strings.Contains(d, "Verified: entry") || !strings.Contains(d, `id="disc-`) {
				t.Fatalf("the access no longer hidden is not on top, alone and verified:\n%s", clip(d))
			}
			expect(t, "her home says so", citizen.get("/"), http.StatusOK, `<p class="notice" id="disclosed">An access that was hidden from you is no longer hidden.</p>`)
			recent(citizen, "3 accesses to your data")
			if r := w.as(t, "Jonas Weber").get("/"); strings.Contains(r.body, `id="disclosed"`) {
				t.Fatal("another citizen's home tells of her disclosed access")
			}
			if d := disclosed(citizen.get("/wallet/access?before=1000000").body); d != "" {
				t.Fatalf("an older page repeats the section on top:\n%s", clip(d))
			}
			if d := disclosed(w.as(t, "Jonas Weber").get("/wallet/access").body); d != "" {
				t.Fatalf("another citizen sees her disclosed access:\n%s", clip(d))
			}
			w.n.clock.add(exchange.DisclosedWithin)
			citizen = w.as(t, "Amira Haddad")
			if r = citizen.get("/wallet/access"); disclosed(r.body) != "" || !strings.Contains(r.body, "CRIM-INVESTIGATION") {
				t.Fatalf("a month after its deferral ended, the access should be in the list only:\n%s", clip(r.body))
			}
			if r := citizen.get("/"); r.status != http.StatusOK || strings.Contains(r.body, `id="disclosed"`) {
				t.Fatalf("a month after its deferral ended, her home still tells of it (%d)", r.status)
			}
			recent(citizen, "No agency read your data through the exchange")
			if n := accessEntries(t, w.n.db); n != 3 {
				t.Fatalf("%d access entries in the log, want 3", n)
			}
			// Her export checks offline against the log's key: all three,
			// the covert one saying until when it was hidden from her.
			verifyExport := func(c *client) *exchange.ExportReport {
				t.Helper()
				r := c.get("/wallet/access.json")
				expect(t, "export", r, http.StatusOK)
				if cd := r.header.Get("Content-Disposition"); !strings.Contains(cd, "attachment") {
					t.Fatalf("the export is not a download: %q", cd)
				}
				rep, err := exchange.VerifyExport(strings.NewReader(r.body), w.n.vkey)
				if err != nil {
					t.Fatal(err)
				}
				return rep
			}
			if rep := verifyExport(citizen); !rep.OK() || rep.Accesses != 3 || rep.Person != amira {
				t.Fatalf("her export: %+v (%s)", rep, rep.Failed())
			}
			if body := citizen.get("/wallet/access.json").body; !strings.Contains(body, `"hidden_until"`) || !strings.Contains(body, "CRIM-INVESTIGATION") {
				t.Fatalf("the export lacks the covert access or its deferral: %s", clip(body))
			}
			// Who asked is for the agency and the DPA, not the citizen
			// (CJEU C-579/21): her page and her export (records and all)
			// name no officer; the DPA's page and the agencies' do.
			page := citizen.get("/wallet/access").body // the demo's persona list aside
			page = page[strings.Index(page, "<main"):strings.Index(page, "</main>")]
			for what, body := range map[string]string{"page": page, "export": citizen.get("/wallet/access.json").body} {
				if strings.Contains(body, "Tomas Novak") || strings.Contains(body, "Eva Lind") || !strings.Contains(body, "TAX-AUDIT") {
					i := max(strings.Index(body, "Tomas Novak"), strings.Index(body, "Eva Lind"), 0)
					t.Fatalf("the citizen's %s names an officer: %s", what, body[max(0, i-300):min(len(body), i+100)])
				}
			}
			expect(t, "the DPA sees the officers", w.as(t, "Ana Costa").get("/dpa/exchange"), http.StatusOK, "Tomas Novak", "Eva Lind")
			expect(t, "the tax office sees its officer", w.as(t, "Tomas Novak").get("/exchange/"+tax), http.StatusOK, `<td data-label="Officer">Tomas Novak</td>`)
			if rep := verifyExport(w.as(t, "Jonas Weber")); !rep.OK() || rep.Accesses != 0 {
				t.Fatalf("his export: %+v", rep)
			}
			// Tampering with a record is seen by the citizen and by the audit.
			auditWith := func(secret []byte) []string {
				t.Helper()
				entries := map[int64]*tlog.Entry{}
				rows, _ := w.n.db.Reader().QueryContext(ctx, `SELECT idx, data FROM tlog_entries WHERE kind = $1`, int(tlog.KindDataAccess))
				for rows.Next() {
					var idx int64
					var b []byte
					_ = rows.Scan(&idx, &b)
					entries[idx], _ = tlog.Parse(b)
				}
				rows.Close()
				checked, problems, err := exchange.Audit(ctx, w.n.db, entries, 1<<40, secret)
				if err != nil {
					t.Fatal(err)
				}
				if checked+len(problems) < 3 {
					t.Fatalf("audit checked %d records", checked)
				}
				// log verify audits range by range: ranges of three entries
				// find the same, in log order.
				var size int64
				w.n.db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM tlog_entries`).Scan(&size)
				a, err := exchange.NewAuditor(ctx, w.n.db, size, secret)
				if err != nil {
					t.Fatal(err)
				}
				for lo := int64(0); lo < size; lo += 3 {
					hi := min(lo+3, size)
					part := map[int64]*tlog.Entry{}
					for idx, e := range entries {
						if idx >= lo && idx < hi {
							part[idx] = e
						}
					}
					if err := a.Check(ctx, hi, part); err != nil {
						t.Fatal(err)
					}
				}
				rangedChecked, ranged, err := a.Finish(ctx)
				if err != nil || rangedChecked != checked || !slices.Equal(slices.Sorted(slices.Values(ranged)), slices.Sorted(slices.Values(problems))) {
					t.Fatalf("audited by ranges: %d %q %v, at once: %d %q", rangedChecked, ranged, err, checked, problems)
				}
				return problems
			}
			audit := func() []string { return auditWith(w.n.exKey) }
			if p := audit(); len(p) != 0 {
				t.Fatalf("audit of untouched records: %v", p)
			}
			exec := func(q string, args ...any) { t.Helper(); execSQL(t, w.n.db, q, args...) }
			// An index row moved to another citizen shows the record to
			// neither of them as theirs, and the audit sees it hidden.
			var auditIdx int64
			if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT log_index FROM ex_access WHERE purpose = 'TAX-AUDIT'`).Scan(&auditIdx); err != nil {
				t.Fatalf("the audit's access is not indexed: %v", err)
			}
			exec(`UPDATE ex_access SET person_id = $1 WHERE log_index = $2`, w.people["Jonas Weber"], auditIdx)
			expect(t, "moved index row", w.as(t, "Jonas Weber").get("/wallet/access"), http.StatusOK, "Nobody has read your data")
			if p := audit(); len(p) != 1 || !strings.Contains(p[0], "HIDDEN FROM THE CITIZEN") {
				t.Fatalf("audit of a moved index row: %v", p)
			}
			// The DPA's counts, lowered to hide an access from the DPA.
			exec(`UPDATE ex_access_counts SET n = n - 1 WHERE purpose = 'TAX-AUDIT'`)
			if p := audit(); len(p) != 2 || !strings.Contains(p[1], "THE DPA'S COUNT IS WRONG") || !strings.Contains(p[1], "TAX-AUDIT shows 0 accesses, the index holds 1") {
				t.Fatalf("audit of a lowered count: %v", p)
			}
			exec(`UPDATE ex_access_counts SET n = n + 1 WHERE purpose = 'TAX-AUDIT'`)
			exec(`DELETE FROM ex_access WHERE log_index = $1`, auditIdx)
			if p := audit(); len(p) != 2 || !strings.Contains(p[0], "HIDDEN FROM THE CITIZEN") || !strings.Contains(p[1], "THE DPA'S COUNT IS WRONG") {
				t.Fatalf("audit of a deleted index row: %v", p)
			}
			exec(`INSERT INTO ex_access (log_index, request_id, person_id, requester_org, purpose, at, defer_until)
				SELECT idx, 'x', $1, 'x', 'x', 0, 0 FROM tlog_entries WHERE kind <> $2 ORDER BY idx LIMIT 1`, amira, int(tlog.KindDataAccess))
			if p := audit(); !strings.Contains(strings.Join(p, "\n"), "which is not a data access") {
				t.Fatalf("audit of a stray index row: %v", p)
			}
			exec(`DELETE FROM ex_access WHERE request_id = 'x'`)
			// Rebuild the index row (and the counts) from the record, as
			// the index would.
			exec(`DELETE FROM ex_index_state`)
			exec(`INSERT INTO ex_index_state (name, value) VALUES ('indexed', $1)`, auditIdx)
			exec(`DELETE FROM ex_access WHERE log_index >= $1`, auditIdx)
			exec(`DELETE FROM ex_access_counts`)
			exec(`INSERT INTO ex_access_counts (requester_org, purpose, n) SELECT requester_org, purpose, COUNT(*) FROM ex_access GROUP BY requester_org, purpose`)
			appendReceipts(t, w.n, 1)
			if p := audit(); len(p) != 0 {
				t.Fatalf("audit after re-indexing: %v", p)
			}
			// A record moved to another citizen, index row and all: its
			// commitment still opens, but its entry's pseudonym is not that
			// citizen's. Only the exchange's secret tells.
			amiraID, jonasID := w.people["Amira Haddad"], w.people["Jonas Weber"]
			if len(amiraID) != len(jonasID) {
				t.Fatalf("person ids of different lengths: %q %q", amiraID, jonasID)
			}
			tamperOpenings(t, w.n.db, string(rune(len(amiraID)))+amiraID, string(rune(len(jonasID)))+jonasID)
			exec(`UPDATE ex_access SET person_id = $1 WHERE person_id = $2`, jonasID, amiraID)
			if p := audit(); len(p) == 0 || !strings.Contains(strings.Join(p, "\n"), "IS HIDDEN FROM THE CITIZEN: it names another citizen than its log entry's pseudonym is for") {
				t.Fatalf("audit of a moved record: %v", p)
			}
			if p := auditWith(nil); len(p) != 0 {
				t.Fatalf("audit without the secret of a moved record: %v", p)
			}
			tamperOpenings(t, w.n.db, string(rune(len(jonasID)))+jonasID, string(rune(len(amiraID)))+amiraID)
			exec(`UPDATE ex_access SET person_id = $1 WHERE person_id = $2`, amiraID, jonasID)
			if p := audit(); len(p) != 0 {
				t.Fatalf("audit after moving the record back: %v", p)
			}
			// Another officer put beside a record no longer opens the
			// record's seal: the audit sees the record changed.
			tamperOpenings(t, w.n.db, "Tomas Novak", "Tomas Nowak")
			if p := audit(); len(p) != 1 || !strings.Contains(p[0], "WAS CHANGED") {
				t.Fatalf("audit of a changed officer: %v", p)
			}
			tamperOpenings(t, w.n.db, "Tomas Nowak", "Tomas Novak")
			if p := audit(); len(p) != 0 {
				t.Fatalf("audit after restoring the officer: %v", p)
			}
			// The policy an access was released under, changed behind the
			// exchange's back (policies never change once in force), or
			// deleted, or said to have been retired before the release: the
			// audit reports the record as not released under a policy in
			// force. Each change is undone after.
			var polID, polFields string
			var polCreated int64
			if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT id, fields, created_at FROM ex_policies WHERE purpose = 'TAX-AUDIT'`).Scan(&polID, &polFields, &polCreated); err != nil {
				t.Fatal(err)
			}
			var released int64
			if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT at FROM ex_access WHERE log_index = $1`, auditIdx).Scan(&released); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct{ what, change, undo, want string }{
				{"a field taken out", `UPDATE ex_policies SET fields = '["employer"]' WHERE id = $1`, `UPDATE ex_policies SET fields = '` + polFields + `' WHERE id = $1`, "does not allow the field declared_income"},
				{"another purpose", `UPDATE ex_policies SET purpose = 'TAX-REFUND' WHERE id = $1`, `UPDATE ex_policies SET purpose = 'TAX-AUDIT' WHERE id = $1`, "for another agency, service, purpose or legal basis"},
				{"consent needed", `UPDATE ex_policies SET consent = 1 WHERE id = $1`, `UPDATE ex_policies SET consent = 0 WHERE id = $1`, "needs the citizen's consent"},
				{"a shorter retention", `UPDATE ex_policies SET retention = retention - 86400000 WHERE id = $1`, `UPDATE ex_policies SET retention = retention + 86400000 WHERE id = $1`, "kept longer than its policy"},
				{"put in force after the release", `UPDATE ex_policies SET created_at = ` + strconv.FormatInt(released+3_600_000, 10) + ` WHERE id = $1`,
					`UPDATE ex_policies SET created_at = ` + strconv.FormatInt(polCreated, 10) + ` WHERE id = $1`, "was in force from"},
				{"retired before the release", `UPDATE ex_policies SET active = 0, retired_at = ` + strconv.FormatInt(released-3_600_000, 10) + ` WHERE id = $1`,
					`UPDATE ex_policies SET active = 1, retired_at = NULL WHERE id = $1`, "was in force from"},
			} {
				exec(c.change, polID)
				if p := audit(); len(p) != 1 || !strings.Contains(p[0], fmt.Sprintf("ACCESS RECORD %d WAS NOT RELEASED UNDER A POLICY IN FORCE", auditIdx)) || !strings.Contains(p[0], c.want) {
					t.Fatalf("audit of a policy with %s: %v", c.what, p)
				}
				exec(c.undo, polID)
			}
			// Retired a second after the release (a retirement in flight
			// while the release committed, or another node's clock): not a
			// problem. Retired later still: neither.
			exec(`UPDATE ex_policies SET active = 0, retired_at = $2 WHERE id = $1`, polID, released-1000)
			if p := audit(); len(p) != 0 {
				t.Fatalf("audit of a policy retired within the clocks' skew of the release: %v", p)
			}
			exec(`UPDATE ex_policies SET active = 1, retired_at = NULL WHERE id = $1`, polID)
			exec(`UPDATE ex_policies SET id = 'gone' WHERE id = $1`, polID)
			if p := audit(); len(p) != 1 || !strings.Contains(p[0], "its policy "+polID+" is not in the database") {
				t.Fatalf("audit of a deleted policy: %v", p)
			}
			exec(`UPDATE ex_policies SET id = $1 WHERE id = 'gone'`, polID)
			if p := audit(); len(p) != 0 {
				t.Fatalf("audit after restoring the policy: %v", p)
			}
			// A changed record (its legal basis) no longer opens its entry.
			tamperOpenings(t, w.n.db, "Tax Code §93", "Tax Code §94")
			expect(t, "tampered", citizen.get("/wallet/access"), http.StatusOK, "NOT VERIFIED: the record does not match its log entry")
			if rep := verifyExport(citizen); rep.OK() || !strings.Contains(rep.Failed(), "had not verified it") {
				t.Fatalf("the export of a tampered record: %+v", rep)
			}
			if p := audit(); len(p) != 1 || !strings.Contains(p[0], "WAS CHANGED") {
				t.Fatalf("audit: %v", p)
			}
			// A deleted record: the citizen is told it is missing.
			exec(`UPDATE tlog_entries SET opening = NULL WHERE idx = $1`, auditIdx)
			expect(t, "deleted", citizen.get("/wallet/access"), http.StatusOK, "NOT VERIFIED: the record of this access is missing")
			// The DPA is told too, on the overview as on the full list,
			// with the entry's number (not a row of blanks).
			missing := fmt.Sprintf(`<tr class="missing"><td data-label="When">%s</td><td data-label="Log entry">%d</td>`, `[^<]+`, auditIdx)
			for _, page := range []string{"/dpa/exchange", "/dpa/exchange/accesses"} {
				r := w.as(t, "Ana Costa").get(page)
				expect(t, "deleted, on "+page, r, http.StatusOK, "The record of this access is missing from the database")
				if !regexp.MustCompile(missing).MatchString(r.body) {
					t.Fatalf("%s does not show entry %d as missing:\n%s", page, auditIdx, clip(r.body))
				}
			}
			if p := audit(); len(p) != 1 || !strings.Contains(p[0], "AN ACCESS RECORD WAS DELETED") {
				t.Fatalf("audit: %v", p)
			}
		})
	}
}

// TestExchangeFormSentTwice: the ask form carries an idempotency key, so
// the same form sent twice (a reload, a double click) answers with the
// first request and releases nothing again.
func TestExchangeFormSentTwice(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			tax, _ := exWorld(t, w)
			amira := w.people["Amira Haddad"]
			officer := w.as(t, "Tomas Novak")
			formKey := regexp.MustCompile(`name="key" value="([^"]+)"`).FindStringSubmatch(officer.get("/exchange/" + tax).body)
			if formKey == nil {
				t.Fatal("the ask form has no idempotency key")
			}
			twice := url.Values{"citizen": {amira}, "service": {"tax-income"}, "field": {"declared_income"}, "purpose": {"TAX-AUDIT"}, "legal_basis": {"Tax Code §93"},
				"defer_days": {"0"}, "key": {formKey[1]}}
			expect(t, "a form sent once", officer.postForm("/exchange/"+tax+"/requests", twice), http.StatusOK, "Released", "41250")
			sent := accessEntries(t, w.n.db)
			r := officer.postForm("/exchange/"+tax+"/requests", twice)
			expect(t, "the same form again", r, http.StatusOK, "This form was sent already", "are not shown again")
			if strings.Contains(r.body, "41250") || accessEntries(t, w.n.db) != sent {
				t.Fatalf("the form sent again released again (%d access entries, was %d)", accessEntries(t, w.n.db), sent)
			}
			if again := regexp.MustCompile(`name="key" value="([^"]+)"`).FindStringSubmatch(r.body); again == nil || again[1] == formKey[1] {
				t.Fatal("the form shown after an answer reuses the key it was sent with")
			}
			// Without its key (an older page, a script) a form asks again.
			delete(twice, "key")
			expect(t, "a form without a key", officer.postForm("/exchange/"+tax+"/requests", twice), http.StatusOK, "Released", "41250")
			if accessEntries(t, w.n.db) != sent+1 {
				t.Fatalf("a form without a key: %d access entries, want %d", accessEntries(t, w.n.db), sent+1)
			}
		})
	}
}

// tamperOpenings replaces old by new in every access record's opening.
func tamperOpenings(t *testing.T, db *store.DB, old, new string) {
	t.Helper()
	ctx := context.Background()
	err := db.Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT idx, opening FROM tlog_entries WHERE opening IS NOT NULL`)
		if err != nil {
			return err
		}
		changed := map[int64][]byte{}
		for rows.Next() {
			var idx int64
			var b []byte
			if err := rows.Scan(&idx, &b); err != nil {
				rows.Close()
				return err
			}
			if nb := bytes.ReplaceAll(b, []byte(old), []byte(new)); !bytes.Equal(nb, b) {
				changed[idx] = nb
			}
		}
		rows.Close()
		if len(changed) == 0 {
			return fmt.Errorf("no opening holds %q", old)
		}
		for idx, b := range changed {
			if _, err := tx.ExecContext(ctx, `UPDATE tlog_entries SET opening = $1 WHERE idx = $2`, b, idx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestExchangeNothingWithoutLog injects a failure after the access record is
// written and before the transaction commits: nothing is released.
func TestExchangeNothingWithoutLog(t *testing.T) {
	e := storetest.Engines(t)[0]
	opts := e.Open(t)
	n := startNode(t, nodeOptions{demo: true, store: &opts, fault: func(string) error { return errors.New("injected") }})
	w := &demoWorld{n: n, people: map[string]string{}, orgs: map[string]string{}}
	people, _ := n.reg.DemoPeople(context.Background())
	for _, p := range people {
		w.people[p.DisplayName] = p.ID
	}
	tax, _ := exWorld(t, w)
	r := ask(w.as(t, "Tomas Novak"), tax, w.people["Amira Haddad"], "tax-income", "TAX-AUDIT", "Tax Code §93", 0, "declared_income")
	if r.status == http.StatusOK || strings.Contains(r.body, "41250") {
		t.Fatalf("released despite the failure: %d %s", r.status, clip(r.body))
	}
	for q, want := range map[string]int{
		`SELECT COUNT(*) FROM ex_access`:                              0,
		`SELECT COUNT(*) FROM tlog_entries WHERE opening IS NOT NULL`: 0,
		`SELECT COUNT(*) FROM tlog_entries WHERE kind = 4`:            0,
		`SELECT COUNT(*) FROM ex_requests WHERE state = 'released'`:   0,
	} {
		if got := countRows(t, n.db, q); got != want {
			t.Fatalf("%s = %d, want %d", q, got, want)
		}
	}
}

// TestExchangePolicyChangedElsewhere: a node decides on a cached catalog,
// so another node's changes must still hold: a policy retired elsewhere
// releases nothing more (the check is in the release's transaction), and
// a policy added elsewhere is found before a request is denied.
func TestExchangePolicyChangedElsewhere(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			ctx := context.Background()
			tax, _ := exWorld(t, w)
			amira := w.people["Amira Haddad"]
			officer := w.as(t, "Tomas Novak")
			// Another node: its own exchange on the same database.
			otherLog, err := tlog.New(w.n.db, "other.civstack/log", nil, w.n.clock.now)
			if err != nil {
				t.Fatal(err)
			}
			other, err := exchange.New(exchange.Deps{DB: w.n.db, Log: otherLog, Secret: make([]byte, 32), Now: w.n.clock.now})
			if err != nil {
				t.Fatal(err)
			}
			r := ask(officer, tax, amira, "tax-income", "TAX-AUDIT", "Tax Code §93", 0, "declared_income")
			expect(t, "audit (the catalog is now cached)", r, http.StatusOK, "Released", "41250")
			ps, err := other.Policies(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				if p.Requester == tax && p.Purpose == "TAX-AUDIT" {
					if err := other.RetirePolicy(ctx, p.ID, "test"); err != nil {
						t.Fatal(err)
					}
				}
			}
			before := countRows(t, w.n.db, `SELECT COUNT(*) FROM ex_access`)
			r = ask(officer, tax, amira, "tax-income", "TAX-AUDIT", "Tax Code §93", 0, "declared_income")
			expect(t, "audit after the policy was retired elsewhere", r, http.StatusForbidden, "No policy lets City Tax Office")
			if strings.Contains(r.body, "41250") || countRows(t, w.n.db, `SELECT COUNT(*) FROM ex_access`) != before {
				t.Fatalf("a retired policy released data: %s", clip(r.body))
			}
			if _, err := other.CreatePolicy(ctx, exchange.Policy{Requester: tax, Service: "tax-income", Fields: []string{"employer"}, Purpose: "TAX-EMPLOYER",
				LegalBasis: "Tax Code §94", Retention: exchange.Day}, "test"); err != nil {
				t.Fatal(err)
			}
			w.n.clock.add(2 * time.Second) // past the catalog's recheck interval
			r = ask(officer, tax, amira, "tax-income", "TAX-EMPLOYER", "Tax Code §94", 0, "employer")
			expect(t, "policy added elsewhere", r, http.StatusOK, "Released", "Bologna Labs")
		})
	}
}

// publicLogHoldsNoRecord fetches every entry bundle the log serves and
// checks that no access record (or its nonce) is in them: the log holds
// commitments only.
func publicLogHoldsNoRecord(t *testing.T, w *demoWorld) {
	t.Helper()
	ctx := context.Background()
	var size int64
	if err := w.n.db.Reader().QueryRowContext(ctx, `SELECT value FROM tlog_counters WHERE name = 'integrated'`).Scan(&size); err != nil {
		t.Fatal(err)
	}
	var public []byte
	c := newClient(t, w.n.URL)
	for k := int64(0); k*256 < size; k++ {
		path := fmt.Sprintf("/log/tile/entries/%03d", k) // C2SP tlog-tiles, for logs under 256,000 entries
		if width := size - k*256; width < 256 {
			path += fmt.Sprintf(".p/%d", width)
		}
		r := c.get(path)
		expect(t, "entry bundle", r, http.StatusOK)
		public = append(public, r.body...)
	}
	rows, err := w.n.db.Reader().QueryContext(ctx, `SELECT data, opening FROM tlog_entries WHERE opening IS NOT NULL AND idx < $1`, size)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var data, opening []byte
		if err := rows.Scan(&data, &opening); err != nil {
			t.Fatal(err)
		}
		n++
		if !bytes.Contains(public, data) {
			t.Fatal("an access entry is not in the public log's bundles") // the search below would find nothing
		}
		if bytes.Contains(public, opening[1:33]) {
			t.Fatal("a record's nonce is in the public log")
		}
	}
	if n == 0 {
		t.Fatal("no access records to look for")
	}
	for _, secret := range []string{"Tax Code §93", "TAX-AUDIT", w.people["Amira Haddad"], "declared_income"} {
		if bytes.Contains(public, []byte(secret)) {
			t.Fatalf("%q is in the public log", secret)
		}
	}
}

// TestExchangeAPI is the agency systems' side: tokens, publishing a
// service and its values, requests released, denied (a problem with the
// request's id) and waiting for consent, collecting once, reading a
// request back, and what other callers may not do.
func TestExchangeAPI(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			tax, police := exWorld(t, w)
			amira := w.people["Amira Haddad"]
			taxAPI, policeAPI := w.apiClient(t, tax, registry.Agency, "case system"), w.apiClient(t, police, registry.Agency, "case system")
			type request struct {
				ID          string            `json:"id"`
				State       string            `json:"state"`
				Reason      string            `json:"reason"`
				Officer     string            `json:"officer"`
				Values      map[string]string `json:"values"`
				RetainUntil time.Time         `json:"retain_until"`
			}
			askAPI := func(c *client, body map[string]any) (*response, request) {
				t.Helper()
				r := c.postJSON("/api/v1/exchange/requests", body)
				var out request
				if r.status == http.StatusOK {
					r.json(t, &out)
				}
				return r, out
			}
			within := func(what string, got time.Time, days int) {
				t.Helper()
				if want := w.n.clock.now().Add(time.Duration(days) * exchange.Day); got.Sub(want).Abs() > time.Minute {
					t.Fatalf("%s: retain until %v, want about %v", what, got, want)
				}
			}

			// The holder publishes a service and feeds it.
			expect(t, "publish", taxAPI.putJSON("/api/v1/exchange/services/tax-refunds", map[string]any{
				"name": "Tax refunds", "fields": []exchange.Field{{Name: "refund", Label: "Refund (EUR)", Type: "number"}}}), http.StatusOK, `"holder":"`+tax+`"`)
			expect(t, "values", taxAPI.putJSON("/api/v1/exchange/services/tax-refunds/values/"+amira, map[string]string{"refund": "310"}), http.StatusNoContent)
			expectProblem(t, "another holder's service id", policeAPI.putJSON("/api/v1/exchange/services/tax-refunds", map[string]any{
				"name": "Refunds", "fields": []exchange.Field{{Name: "refund", Label: "Refund (EUR)", Type: "number"}}}), http.StatusBadRequest, `The service id "tax-refunds" belongs to another organisation.`)
			expectProblem(t, "a value of the wrong type", taxAPI.putJSON("/api/v1/exchange/services/tax-refunds/values/"+amira, map[string]string{"refund": "a lot"}), http.StatusBadRequest, "must be a number")
			// A problem says where the body is wrong, without echoing
			// what it holds about the citizen.
			r := taxAPI.putJSON("/api/v1/exchange/services/tax-refunds/values/"+amira, map[string]any{"refund": 52173})
			expectProblem(t, "a value that is not a string", r, http.StatusUnprocessableEntity, "The request does not fit the API: expected string (body.refund).")
			if !strings.Contains(r.body, `"location":"body.refund"`) || strings.Contains(r.body, "52173") || strings.Contains(r.body, `"value"`) {
				t.Fatalf("a problem about a value: %s; want its location and not the value", r.body)
			}
			r = taxAPI.postJSON("/api/v1/exchange/requests", map[string]any{"citizen": amira, "service": "tax-refunds", "fields": []string{"refund"},
				"purpose": "TAX-AUDIT", "legal_basis": "Tax Code §93", "note": "an unknown property"})
			expectProblem(t, "a request with a property too many", r, http.StatusUnprocessableEntity, "The request does not fit the API: unexpected property (body.note).")
			if !strings.Contains(r.body, `"location":"body.note"`) || strings.Contains(r.body, amira) {
				t.Fatalf("a problem about a request: %s; want its location and not the citizen", r.body)
			}
			expectProblem(t, "an empty request", taxAPI.postJSON("/api/v1/exchange/requests", map[string]any{}), http.StatusUnprocessableEntity,
				"The request does not fit the API: expected required property ")
			expectProblem(t, "an empty request", taxAPI.postJSON("/api/v1/exchange/requests", map[string]any{}), http.StatusUnprocessableEntity, " (body), and 4 more.")
			expectProblem(t, "values about nobody", taxAPI.putJSON("/api/v1/exchange/services/tax-refunds/values/no-such-person", map[string]string{"refund": "1"}), http.StatusNotFound, "no citizen")
			if r := policeAPI.putJSON("/api/v1/exchange/services/tax-refunds/values/"+amira, map[string]string{"refund": "0"}); r.status < 400 {
				t.Fatalf("another agency changed the tax office's values: %d %s", r.status, r.body)
			}
			expect(t, "services", policeAPI.get("/api/v1/exchange/services"), http.StatusOK, `"id":"tax-refunds"`, `"Refund (EUR)"`)
			// Changing a field's type must fit what is stored; the holder
			// removes what it holds, and only the holder.
			refunds := "/api/v1/exchange/services/tax-refunds"
			asDate := map[string]any{"name": "Tax refunds", "fields": []exchange.Field{{Name: "refund", Label: "Refund date", Type: "date"}}}
			expectProblem(t, "a type the stored value does not fit", taxAPI.putJSON(refunds, asDate), http.StatusConflict, "1 of its stored values does not fit it (Refund date must be a date (YYYY-MM-DD)); correct or remove them first")
			expectProblem(t, "removing another agency's values", policeAPI.do(http.MethodDelete, refunds+"/values/"+amira, nil, ""), http.StatusNotFound, "not your service")
			expectProblem(t, "removing a field the service does not have", taxAPI.do(http.MethodDelete, refunds+"/values/"+amira+"?fields=refund,bonus", nil, ""), http.StatusBadRequest, `has no field "bonus"`)
			if n := countRows(t, w.n.db, `SELECT COUNT(*) FROM ex_values WHERE service_id = 'tax-refunds'`); n != 1 {
				t.Fatalf("refused removals: %d values of 1 left", n)
			}
			expect(t, "remove", taxAPI.do(http.MethodDelete, refunds+"/values/"+amira+"?fields=refund", nil, ""), http.StatusNoContent)
			if n := countRows(t, w.n.db, `SELECT COUNT(*) FROM ex_values WHERE service_id = 'tax-refunds'`); n != 0 {
				t.Fatalf("removed: %d values left", n)
			}
			expect(t, "removing what a register no longer knows", taxAPI.do(http.MethodDelete, refunds+"/values/no-such-person", nil, ""), http.StatusNoContent)
			expect(t, "the type changes once nothing refuses it", taxAPI.putJSON(refunds, asDate), http.StatusOK, `"type":"date"`)
			// Withdrawing a service: only its holder, only with no policy in
			// force naming it; then nobody may ask for it.
			expectProblem(t, "another agency withdraws it", policeAPI.do(http.MethodDelete, refunds, nil, ""), http.StatusNotFound, "not your service")
			expectProblem(t, "withdrawing a service a policy in force names", taxAPI.do(http.MethodDelete, "/api/v1/exchange/services/tax-income", nil, ""), http.StatusConflict,
				"retires them first")
			expect(t, "withdraw", taxAPI.do(http.MethodDelete, refunds, nil, ""), http.StatusNoContent)
			expectProblem(t, "withdraw twice", taxAPI.do(http.MethodDelete, refunds, nil, ""), http.StatusConflict, "already withdrawn")
			if body := policeAPI.get("/api/v1/exchange/services").body; strings.Contains(body, "tax-refunds") || !strings.Contains(body, "tax-income") {
				t.Fatalf("the services after a withdrawal: %s", body)
			}
			expectProblem(t, "values for a withdrawn service", taxAPI.putJSON(refunds+"/values/"+amira, map[string]string{"refund": "2026-01-01"}), http.StatusConflict, "publish it again first")

			// A release: the values, and until when the agency may keep them.
			r, rel := askAPI(taxAPI, map[string]any{"citizen": amira, "service": "tax-income", "fields": []string{"declared_income"}, "purpose": "TAX-AUDIT", "legal_basis": "Tax Code §93"})
			expect(t, "release", r, http.StatusOK)
			if rel.State != exchange.Released || rel.Values["declared_income"] != "41250" || rel.Officer != "system: case system" || len(rel.Values) != 1 {
				t.Fatalf("release: %+v", rel)
			}
			within("release", rel.RetainUntil, 365)
			// Read back: the state and the retention, never the values again.
			r = taxAPI.get("/api/v1/exchange/requests/" + rel.ID)
			expect(t, "read back", r, http.StatusOK)
			var back request
			r.json(t, &back)
			if back.State != exchange.Released || back.Values != nil || !back.RetainUntil.Equal(rel.RetainUntil) {
				t.Fatalf("read back: %+v, released %+v", back, rel)
			}
			expectProblem(t, "another agency's request", policeAPI.get("/api/v1/exchange/requests/"+rel.ID), http.StatusNotFound, "No such request")
			// An idempotency key: the retry answers with the first request,
			// replayed and without values; the key for another body is refused.
			keyed := map[string]any{"citizen": amira, "service": "tax-income", "fields": []string{"declared_income"}, "purpose": "TAX-AUDIT", "legal_basis": "Tax Code §93"}
			withKey := func(key string, body map[string]any) *response {
				taxAPI.header.Set("Idempotency-Key", key)
				defer taxAPI.header.Del("Idempotency-Key")
				return taxAPI.postJSON("/api/v1/exchange/requests", body)
			}
			r = withKey("audit-2026-0042", keyed)
			expect(t, "a keyed request", r, http.StatusOK, `"declared_income":"41250"`)
			var keyedRel request
			r.json(t, &keyedRel)
			entriesBefore := accessEntries(t, w.n.db)
			r = withKey("audit-2026-0042", keyed)
			expect(t, "its retry", r, http.StatusOK, `"id":"`+keyedRel.ID+`"`, `"replayed":true`, `"state":"released"`)
			if strings.Contains(r.body, "41250") || accessEntries(t, w.n.db) != entriesBefore {
				t.Fatalf("a retry released again (%d access entries, was %d): %s", accessEntries(t, w.n.db), entriesBefore, r.body)
			}
			other := maps.Clone(keyed)
			other["fields"] = []string{"declared_income", "employer"}
			expectProblem(t, "the key with another body", withKey("audit-2026-0042", other), http.StatusUnprocessableEntity, "first given with another request")
			expectProblem(t, "a key too long", withKey(strings.Repeat("k", 256), keyed), http.StatusUnprocessableEntity, "")

			// Denied: a problem naming the reason and the request, which is kept.
			r, _ = askAPI(taxAPI, map[string]any{"citizen": amira, "service": "tax-income", "fields": []string{"declared_income", "employer"}, "purpose": "TAX-AUDIT", "legal_basis": "Tax Code §93"})
			expectProblem(t, "a field outside the policy", r, http.StatusForbidden, "Employer is outside the policy")
			if strings.Contains(r.body, "41250") || strings.Contains(r.body, "Bologna Labs") {
				t.Fatal("a denied request released data")
			}
			var denied struct {
				Errors []struct {
					Message  string `json:"message"`
					Location string `json:"location"`
				} `json:"errors"`
			}
			r.json(t, &denied)
			if len(denied.Errors) != 1 || denied.Errors[0].Location != "request_id" {
				t.Fatalf("the denial does not name its request: %s", r.body)
			}
			r = taxAPI.get("/api/v1/exchange/requests/" + denied.Errors[0].Message)
			expect(t, "the denied request", r, http.StatusOK, `"state":"denied"`, "Employer is outside the policy")
			if strings.Contains(r.body, "retain_until") {
				t.Fatalf("a denied request has a retention: %s", r.body)
			}

			// Consent: waiting, nothing to collect until the citizen approves, then once.
			r, waiting := askAPI(policeAPI, map[string]any{"citizen": amira, "service": "population", "fields": []string{"address"}, "purpose": "WITNESS-CONTACT",
				"legal_basis": "Police Act §12", "officer": "Insp. Rossi"})
			expect(t, "consent needed", r, http.StatusOK)
			if waiting.State != exchange.AwaitConsent || waiting.Values != nil || !waiting.RetainUntil.IsZero() {
				t.Fatalf("consent needed: %+v", waiting)
			}
			expectProblem(t, "collect before consent", policeAPI.postJSON("/api/v1/exchange/requests/"+waiting.ID+"/collect", nil), http.StatusBadRequest, "has not answered")
			expectProblem(t, "another agency collects", taxAPI.postJSON("/api/v1/exchange/requests/"+waiting.ID+"/collect", nil), http.StatusNotFound, "No such request")
			expect(t, "approve", w.as(t, "Amira Haddad").postForm("/wallet/access/requests/"+waiting.ID, url.Values{"decision": {"approve"}}), http.StatusOK, "Approved")
			r = policeAPI.postJSON("/api/v1/exchange/requests/"+waiting.ID+"/collect", nil)
			expect(t, "collect", r, http.StatusOK)
			var got request
			r.json(t, &got)
			if got.State != exchange.Released || got.Values["address"] != "Via Zamboni 33" || got.Officer != "Insp. Rossi" {
				t.Fatalf("collect: %+v", got)
			}
			within("collect", got.RetainUntil, 30)
			expectProblem(t, "collect twice", policeAPI.postJSON("/api/v1/exchange/requests/"+waiting.ID+"/collect", nil), http.StatusConflict, "collected already")
			r = policeAPI.get("/api/v1/exchange/requests/" + waiting.ID)
			var collected request
			r.json(t, &collected)
			if collected.State != exchange.Released || collected.Values != nil || !collected.RetainUntil.Equal(got.RetainUntil) {
				t.Fatalf("the collected request read back: %+v", collected)
			}
			if body := w.as(t, "Eva Lind").get("/exchange/" + police).body; !strings.Contains(body, "Police Act §12") {
				t.Fatal("the collected request is not in the police's list")
			}

			// Who may not: another kind of token, a citizen's session, no one,
			// and a request that does not parse.
			expectProblem(t, "a merchant token", w.token(t, "Li's Dumpling Cart").postJSON("/api/v1/exchange/requests", map[string]any{}), http.StatusForbidden, "")
			expect(t, "a citizen's session", w.as(t, "Amira Haddad").get("/api/v1/exchange/services"), http.StatusUnauthorized)
			expect(t, "no credentials", newClient(t, w.n.URL).get("/api/v1/exchange/requests/"+rel.ID), http.StatusUnauthorized)
			r, _ = askAPI(taxAPI, map[string]any{"citizen": amira, "service": "tax-income", "purpose": "TAX-AUDIT", "legal_basis": "Tax Code §93"})
			expectProblem(t, "no fields", r, http.StatusUnprocessableEntity, "")
			r, _ = askAPI(taxAPI, map[string]any{"citizen": "no-such-person", "service": "tax-income", "fields": []string{"declared_income"}, "purpose": "TAX-AUDIT", "legal_basis": "Tax Code §93"})
			expectProblem(t, "nobody", r, http.StatusNotFound, "no citizen")
			before := countRows(t, w.n.db, `SELECT COUNT(*) FROM ex_requests`)
			r, _ = askAPI(taxAPI, map[string]any{"citizen": amira, "service": "tax-income", "fields": []string{strings.Repeat("x", 50000)}, "purpose": "TAX-AUDIT", "legal_basis": "Tax Code §93"})
			expectProblem(t, "a field's name no service could have", r, http.StatusBadRequest, `"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…" is not a field's name`)
			if after := countRows(t, w.n.db, `SELECT COUNT(*) FROM ex_requests`); after != before {
				t.Fatalf("a malformed request was recorded as a denial (%d requests, then %d)", before, after)
			}
			if n := accessEntries(t, w.n.db); n != 3 {
				t.Fatalf("%d access entries in the log, want 3 (the release, the keyed one and the collection)", n)
			}
			// The operator's metrics count the outcomes, and name no one.
			deniedN := countRows(t, w.n.db, `SELECT COUNT(*) FROM ex_requests WHERE state = $1`, exchange.Denied)
			asked := countRows(t, w.n.db, `SELECT COUNT(*) FROM ex_requests r JOIN ex_policies p ON p.id = r.policy_id WHERE p.consent = 1`)
			metrics := newClient(t, w.n.URL).get("/metrics")
			expect(t, "metrics", metrics, http.StatusOK, "\ncivstack_exchange_releases_total 3\n", fmt.Sprintf("\ncivstack_exchange_denied_total %d\n", deniedN),
				fmt.Sprintf("\ncivstack_exchange_consent_requests_total %d\n", asked), `civstack_exchange_consent_answers_total{answer="given"} 1`+"\n",
				`civstack_exchange_consent_answers_total{answer="refused"} 0`+"\n")
			if deniedN == 0 || asked == 0 {
				t.Fatalf("the flow denied %d and asked %d: the metrics' test needs both", deniedN, asked)
			}
			for _, private := range []string{amira, tax, police, "TAX-AUDIT", "City Tax Office"} {
				if strings.Contains(metrics.body, private) {
					t.Fatalf("the metrics name %q", private)
				}
			}
		})
	}
}

// TestExchangeCitizenLookupFails: when the registry cannot answer, the agency
// is told the service failed, not that the citizen does not exist (which
// its system might take as final and act on).
func TestExchangeCitizenLookupFails(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			tax, _ := exWorld(t, w)
			amira := w.people["Amira Haddad"]
			taxAPI := w.apiClient(t, tax, registry.Agency, "case system")
			ask := map[string]any{"citizen": amira, "service": "tax-income", "fields": []string{"declared_income"}, "purpose": "TAX-AUDIT", "legal_basis": "Tax Code §93"}
			expect(t, "an answering registry", taxAPI.postJSON("/api/v1/exchange/requests", ask), http.StatusOK, `"state":"released"`)
			execSQL(t, w.n.db, `ALTER TABLE people RENAME TO people_away`)
			before := countRows(t, w.n.db, `SELECT COUNT(*) FROM ex_requests`)
			for what, r := range map[string]*response{
				"a request":  taxAPI.postJSON("/api/v1/exchange/requests", ask),
				"set values": taxAPI.putJSON("/api/v1/exchange/services/tax-income/values/"+amira, map[string]string{"declared_income": "1"}),
			} {
				expectProblem(t, what+" while the registry fails", r, http.StatusInternalServerError, "went wrong on our side")
				if strings.Contains(r.body, "no citizen") {
					t.Fatalf("%s: a failing registry reported as an unknown citizen: %s", what, r.body)
				}
			}
			if n := countRows(t, w.n.db, `SELECT COUNT(*) FROM ex_requests`); n != before {
				t.Fatalf("a request recorded while the registry failed: %d, before %d", n, before)
			}
		})
	}
}
