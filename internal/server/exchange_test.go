package server_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/exchange"
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

func countRows(t *testing.T, db *store.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Reader().QueryRowContext(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
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

			r := ask(officer, tax, amira, "tax-income", "TAX-AUDIT", "Tax Code §93", 0, "declared_income")
			expect(t, "audit", r, http.StatusOK, "Released", "41250")
			r = ask(officer, tax, amira, "tax-income", "TAX-AUDIT", "Tax Code §93", 0, "declared_income", "employer")
			expect(t, "field outside the policy", r, http.StatusForbidden, "Denied: Employer is outside the policy")
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
			expect(t, "consent request in the wallet", citizen.get("/wallet/access"), http.StatusOK, "City Police asks for your Population register", "WITNESS-CONTACT")
			expect(t, "another citizen cannot approve", w.as(t, "Jonas Weber").postForm("/wallet/access/requests/"+reqID, url.Values{"decision": {"approve"}}), http.StatusNotFound)
			expect(t, "approve", citizen.postForm("/wallet/access/requests/"+reqID, url.Values{"decision": {"approve"}}), http.StatusOK, "Approved")
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
			if strings.Contains(r.body, "CRIM-INVESTIGATION") {
				t.Fatal("a deferred access shows before its deferral ends")
			}
			expect(t, "others see nothing of hers", w.as(t, "Jonas Weber").get("/wallet/access"), http.StatusOK, "Nobody has read your data")
			w.n.clock.add(10 * exchange.Day)
			citizen = w.as(t, "Amira Haddad")
			expect(t, "after the deferral", citizen.get("/wallet/access"), http.StatusOK, "CRIM-INVESTIGATION", "hidden from you until")
			if n := countRows(t, w.n.db, `SELECT COUNT(*) FROM tlog_entries WHERE kind = $1`, int(tlog.KindDataAccess)); n != 3 {
				t.Fatalf("%d access entries in the log, want 3", n)
			}
			// Tampering with a record is seen by the citizen and by the audit.
			if err := w.n.db.Tx(ctx, func(tx *store.Tx) error {
				_, err := tx.ExecContext(ctx, `UPDATE ex_access SET record = REPLACE(record, 'TAX-AUDIT', 'TAX-REFUND') WHERE purpose = 'TAX-AUDIT'`)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			expect(t, "tampered", citizen.get("/wallet/access"), http.StatusOK, "NOT VERIFIED: the record does not match its log entry")
			entries := map[int64]*tlog.Entry{}
			rows, _ := w.n.db.Reader().QueryContext(ctx, `SELECT idx, data FROM tlog_entries WHERE kind = $1`, int(tlog.KindDataAccess))
			for rows.Next() {
				var idx int64
				var b []byte
				_ = rows.Scan(&idx, &b)
				entries[idx], _ = tlog.Parse(b)
			}
			rows.Close()
			if _, problems, err := exchange.Audit(ctx, w.n.db, entries, 1<<40); err != nil || len(problems) != 1 || !strings.Contains(problems[0], "WAS CHANGED") {
				t.Fatalf("audit: %v %v", problems, err)
			}
		})
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
		`SELECT COUNT(*) FROM ex_access`:                            0,
		`SELECT COUNT(*) FROM tlog_entries WHERE kind = 4`:          0,
		`SELECT COUNT(*) FROM ex_requests WHERE state = 'released'`: 0,
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
			other, err := exchange.New(exchange.Deps{DB: w.n.db, Secret: make([]byte, 32), Now: w.n.clock.now})
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
					if err := other.RetirePolicy(ctx, p.ID); err != nil {
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
