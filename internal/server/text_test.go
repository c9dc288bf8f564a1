package server_test

import (
	"maps"
	"net/http"
	"net/url"
	"testing"

	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestNotText: a NUL byte, or bytes that are not UTF-8, in a path, a
// query, a form or a JSON body are refused with one 400 on both engines
// (PostgreSQL cannot store them and failed with a 500; SQLite kept them),
// and nothing is recorded. A control character in what the exchange
// records (a line break in a legal basis, an escape in a purpose) is
// refused by the exchange, with a 400 naming the part.
func TestNotText(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			tax, _ := exWorld(t, w)
			amira := w.people["Amira Haddad"]
			requests := func() int { return countRows(t, w.n.db, `SELECT COUNT(*) FROM ex_requests`) + accessEntries(t, w.n.db) }
			before := requests()

			tomas := w.as(t, "Tomas Novak")
			ask := url.Values{"citizen": {amira}, "service": {"tax-income"}, "field": {"declared_income"}, "purpose": {"TAX-AUDIT"}, "legal_basis": {"Tax Code §93"}}
			for _, bad := range []url.Values{{"purpose": {"TAX\x00AUDIT"}}, {"legal_basis": {"Tax Code \xff93"}}, {"field": {"declared\x00income"}}, {"n\x00te": {"x"}}} {
				f := maps.Clone(ask)
				maps.Copy(f, bad)
				expect(t, "the officer's form with "+bad.Encode(), tomas.postForm("/exchange/"+tax+"/requests", f), http.StatusBadRequest, "not text (a NUL byte, or bytes that are not UTF-8)")
			}
			expect(t, "a path", tomas.get("/orgs/"+tax+"%00"), http.StatusBadRequest, "not text")
			expect(t, "a query", w.as(t, "Amira Haddad").get("/wallet/access?past_before=%00x"), http.StatusBadRequest, "not text")
			expect(t, "a query's bytes", w.as(t, "Amira Haddad").get("/wallet/access?past_before=%ff"), http.StatusBadRequest, "not text")

			api := w.apiClient(t, tax, registry.Agency, "case system")
			body := map[string]any{"citizen": amira, "service": "tax-income", "fields": []string{"declared_income"}, "purpose": "TAX\x00AUDIT", "legal_basis": "Tax Code §93"}
			expectProblem(t, "the API", api.postJSON("/api/v1/exchange/requests", body), http.StatusBadRequest, "not text")
			expectProblem(t, "an API path", api.get("/api/v1/exchange/requests/x%00"), http.StatusBadRequest, "not text")
			expectProblem(t, "a passkey's name", newClient(t, w.n.URL).postJSON("/auth/register/begin", map[string]string{"display_name": "Amira\x00"}), http.StatusBadRequest, "not text")
			r := newClient(t, w.n.URL).postForm("/issuers/city-university/token", url.Values{"grant_type": {"x\x00"}})
			expect(t, "the token endpoint", r, http.StatusBadRequest, `"invalid_request"`, "not text")
			// Text, but not a line: the exchange refuses a control character
			// in what it records, at once and on either engine.
			body["purpose"], body["legal_basis"] = "TAX-AUDIT", "Tax Code\n§93"
			expectProblem(t, "a legal basis over two lines", api.postJSON("/api/v1/exchange/requests", body), http.StatusBadRequest, "legal basis holds a control character")
			body["legal_basis"] = "Tax Code §93"
			f := maps.Clone(ask)
			f["purpose"] = []string{"TAX-AUDIT\x1b[8m"}
			expect(t, "the officer's form with an escape", tomas.postForm("/exchange/"+tax+"/requests", f), http.StatusBadRequest, "purpose code holds a control character")
			if n := requests(); n != before {
				t.Fatalf("refused requests were recorded: %d, then %d", before, n)
			}

			// A backslash before "u0000" is text, and the same form with
			// text releases.
			body["purpose"] = `TAX\u0000AUDIT`
			expectProblem(t, "a backslash and u0000", api.postJSON("/api/v1/exchange/requests", body), http.StatusForbidden, `No policy lets City Tax Office read Declared income for purpose TAX\u0000AUDIT`)
			expect(t, "the officer's form", tomas.postForm("/exchange/"+tax+"/requests", ask), http.StatusOK, "Released")
		})
	}
}
