package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/store/storetest"
)

// The policies as data: operators write and retire them on their page,
// operators and the DPA read them (also as JSON, with when each was in
// force), nobody else does; a bad form changes nothing.
func TestPoliciesPage(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			tax, police := exWorld(t, w)
			amira := w.people["Amira Haddad"]
			op, dpa, officer := w.as(t, "Olu Adeyemi"), w.as(t, "Ana Costa"), w.as(t, "Tomas Novak")

			for who, c := range map[string]*client{"a citizen": w.as(t, "Amira Haddad"), "an agency's officer": officer} {
				expect(t, who+" on the policies", c.get("/exchange/policies"), http.StatusForbidden, "for operators and the data-protection authority")
				expect(t, who+" on the policies as JSON", c.get("/exchange/policies.json"), http.StatusForbidden)
			}
			r := dpa.get("/exchange/policies")
			expect(t, "the DPA reads the policies", r, http.StatusOK, "Tax Code §93", "Criminal Procedure §100", "up to 30 days", "since ",
				// services and fields by what they are, beside the names the policy uses
				"Declared income (<code>tax-income</code>)", "Declared income (<code>declared_income</code>), Employer (<code>employer</code>)", "Declared income (<code>declared_income</code>, number)")
			if strings.Contains(r.body, "policy-form") || strings.Contains(r.body, "/retire") {
				t.Fatal("the DPA is offered to write or retire policies")
			}
			expect(t, "the DPA writes a policy", dpa.postForm("/exchange/policies", url.Values{"requester": {tax}}), http.StatusForbidden)
			expect(t, "the operator's form", op.get("/exchange/policies"), http.StatusOK, `id="policy-form"`, `<option value="`+tax+`">City Tax Office</option>`)
			inForce := countRows(t, w.n.db, `SELECT COUNT(*) FROM ex_policies WHERE active = 1`)
			overview := func(n int) {
				t.Helper()
				expect(t, "the DPA's overview", dpa.get("/dpa/exchange"), http.StatusOK, fmt.Sprintf(`The policies in force</a> (%d)`, n))
			}
			overview(inForce)

			count := func() int { return countRows(t, w.n.db, `SELECT COUNT(*) FROM ex_policies`) }
			before := count()
			good := url.Values{"requester": {tax}, "service": {"population"}, "field": {"address"}, "purpose": {"TAX-RESIDENCE"},
				"legal_basis": {"Tax Code §12"}, "max_deferral_days": {"0"}, "retention_days": {"90"}}
			// with is the good form with some values changed (none: left out).
			with := func(changes url.Values) url.Values {
				v := url.Values{}
				for k, vs := range good {
					v[k] = vs
				}
				for k, vs := range changes {
					if len(vs) == 0 {
						v.Del(k)
					} else {
						v[k] = vs
					}
				}
				return v
			}
			const deferral, retention = "The deferral is a whole number of days from 0 to 1095.", "The retention is a whole number of days from 1 to 10950."
			for _, c := range []struct {
				what   string
				form   url.Values
				status int
				want   string
			}{
				{"a deferral that is no number", with(url.Values{"max_deferral_days": {"soon"}}), 400, deferral},
				{"a negative deferral", with(url.Values{"max_deferral_days": {"-1"}}), 400, deferral},
				{"a deferral past three years", with(url.Values{"max_deferral_days": {"1096"}}), 400, deferral},
				// 2^48+1 days is one day once multiplied into nanoseconds
				// and wrapped: refused before it could be.
				{"a deferral that wraps to one day", with(url.Values{"max_deferral_days": {strconv.FormatInt(1<<48+1, 10)}}), 400, deferral},
				{"a retention of 0 days", with(url.Values{"retention_days": {"0"}}), 400, "retention 1 day to 30 years"},
				{"a retention that wraps", with(url.Values{"retention_days": {strconv.FormatInt(1<<48+90, 10)}}), 400, retention},
				{"no retention", with(url.Values{"retention_days": nil}), 400, retention},
				{"no field", with(url.Values{"field": nil}), 400, "at least one field"},
				{"a field of another service", with(url.Values{"field": {"declared_income"}}), 400, `has no field &#34;declared_income&#34;`},
				{"a field twice", with(url.Values{"field": {"address", "address"}}), 400, "names the field"},
				{"a bad purpose code", with(url.Values{"purpose": {"tax residence"}}), 400, "purpose code is 2 to 40 capitals"},
				{"no legal basis", with(url.Values{"legal_basis": {" "}}), 400, "the legal basis (up to 200 characters)"},
				{"consent and a deferral", with(url.Values{"max_deferral_days": {"5"}, "consent": {"yes"}}), 400, "cannot be hidden from them"},
				{"no such service", with(url.Values{"service": {"nope"}}), 404, "No data service"},
				{"no such agency", with(url.Values{"requester": {"nope"}}), 400, "Choose an agency."},
				{"a citizen as the agency", with(url.Values{"requester": {amira}}), 400, "Choose an agency."},
			} {
				expect(t, c.what, op.postForm("/exchange/policies", c.form), c.status, c.want)
			}
			if n := count(); n != before {
				t.Fatalf("%d policies after refused forms, want %d", n, before)
			}

			r = op.postForm("/exchange/policies", good)
			expect(t, "put in force", r, http.StatusSeeOther)
			if loc := r.header.Get("Location"); loc != "/exchange/policies?done=created" {
				t.Fatalf("after a new policy, redirected to %q", loc)
			}
			expect(t, "the policy after its redirect", op.get("/exchange/policies?done=created"), http.StatusOK, "Policy in force.", "TAX-RESIDENCE", "Tax Code §12")
			// The form sent twice (a double click): one policy, and the
			// operator is told which is in force.
			expect(t, "the same policy again", op.postForm("/exchange/policies", good), http.StatusConflict, "says exactly this already; nothing was created")
			// A deferral left empty is none: the same policy again.
			expect(t, "the same policy, its deferral left empty", op.postForm("/exchange/policies", with(url.Values{"max_deferral_days": {" "}})), http.StatusConflict, "says exactly this already")
			if n := count(); n != before+1 {
				t.Fatalf("%d policies after one was put in force, want %d", n, before+1)
			}
			r = ask(officer, tax, amira, "population", "TAX-RESIDENCE", "Tax Code §12", 0, "address")
			expect(t, "the agency asks under it", r, http.StatusOK, "Released")
			overview(inForce + 1)
			expect(t, "an officer's deferral past the limit", ask(officer, tax, amira, "population", "TAX-RESIDENCE", "Tax Code §12", 1<<48+1, "address"),
				http.StatusBadRequest, "The deferral is a whole number of days from 0 to 1095")

			// The agency's system reads what it may ask for: its own
			// policies in force, the new one included, not the police's.
			taxAPI := w.apiClient(t, tax, registry.Agency, "tax system")
			purposes := func() []string {
				t.Helper()
				r := taxAPI.get("/api/v1/exchange/policies")
				expect(t, "the agency's policies by the API", r, http.StatusOK)
				var out struct {
					Policies []struct {
						Purpose         string   `json:"purpose"`
						Fields          []string `json:"fields"`
						RetentionDays   int      `json:"retention_days"`
						MaxDeferralDays int      `json:"max_deferral_days"`
					} `json:"policies"`
				}
				r.json(t, &out)
				var got []string
				for _, p := range out.Policies {
					got = append(got, fmt.Sprintf("%s %v %d/%d", p.Purpose, p.Fields, p.MaxDeferralDays, p.RetentionDays))
				}
				return got
			}
			if got := purposes(); !slices.Equal(got, []string{"TAX-AUDIT [declared_income] 0/365", "TAX-RESIDENCE [address] 0/90"}) {
				t.Fatalf("the tax office's policies by the API: %q", got)
			}
			expectProblem(t, "policies by the API without a token", newClient(t, w.n.URL).get("/api/v1/exchange/policies"), http.StatusUnauthorized, "")

			pols := readPolicies(t, dpa)
			var id string
			for _, p := range pols {
				if p.Purpose == "TAX-RESIDENCE" {
					id = p.ID
					if !p.Active || p.RetentionDays != 90 || p.MaxDeferralDays != 0 || !p.RetiredAt.IsZero() || p.CreatedAt.IsZero() {
						t.Fatalf("the new policy as JSON: %+v", p)
					}
				}
			}
			if id == "" {
				t.Fatal("the new policy is not in the JSON")
			}

			expect(t, "the DPA retires a policy", dpa.postForm("/exchange/policies/"+id+"/retire", nil), http.StatusForbidden)
			expect(t, "the DPA opens a retirement", dpa.get("/exchange/policies/"+id+"/retire"), http.StatusForbidden)
			// The list's Retire asks first: the policy, and what retiring
			// it does to the requests still open under it.
			expect(t, "the operator's list", op.get("/exchange/policies"), http.StatusOK, `href="/exchange/policies/`+id+`/retire"`)
			expect(t, "the confirmation", op.get("/exchange/policies/"+id+"/retire"), http.StatusOK,
				"Retire a policy?", "TAX-RESIDENCE", "Tax Code §12", "Population register", "Address (<code>address</code>)", "No request asked under it still waits",
				`action="/exchange/policies/`+id+`/retire"`)
			for _, p := range pols {
				if p.Purpose != "WITNESS-CONTACT" {
					continue
				}
				for range 2 {
					if r, err := w.n.ex.Submit(context.Background(), exchange.Ask{Requester: police, Officer: "Officer", Citizen: amira, Service: "population",
						Fields: []string{"address"}, Purpose: "WITNESS-CONTACT", LegalBasis: "Police Act §12"}); err != nil || r.State != exchange.AwaitConsent {
						t.Fatalf("asking for consent: %+v %v", r, err)
					}
				}
				expect(t, "the confirmation with requests open", op.get("/exchange/policies/"+p.ID+"/retire"), http.StatusOK,
					"2 requests asked under it still wait for the citizen's answer", "only if another policy in force allows them")
			}
			w.n.clock.add(10 * time.Minute)
			retired := w.n.clock.now().UTC()
			r = op.postForm("/exchange/policies/"+id+"/retire", nil)
			expect(t, "retire", r, http.StatusSeeOther)
			if loc := r.header.Get("Location"); loc != "/exchange/policies?done=retired" {
				t.Fatalf("after retiring, redirected to %q", loc)
			}
			overview(inForce)
			expect(t, "retire it again", op.postForm("/exchange/policies/"+id+"/retire", nil), http.StatusConflict, "The policy was already retired.")
			expect(t, "retire no policy", op.postForm("/exchange/policies/nope/retire", nil), http.StatusNotFound, "There is no policy")
			expect(t, "confirm retiring it again", op.get("/exchange/policies/"+id+"/retire"), http.StatusConflict, "The policy was already retired.")
			expect(t, "confirm retiring no policy", op.get("/exchange/policies/nope/retire"), http.StatusNotFound, "There is no policy")
			expect(t, "the agency asks under a retired policy", ask(officer, tax, amira, "population", "TAX-RESIDENCE", "Tax Code §12", 0, "address"),
				http.StatusForbidden, "No policy lets City Tax Office")
			if got := purposes(); !slices.Equal(got, []string{"TAX-AUDIT [declared_income] 0/365"}) {
				t.Fatalf("the tax office's policies by the API after one was retired: %q", got)
			}
			for _, p := range readPolicies(t, dpa) {
				if p.ID == id && (p.Active || p.RetiredAt.Sub(retired).Abs() > time.Second) {
					t.Fatalf("the retired policy as JSON: %+v (retired at %v)", p, retired)
				}
			}
			expect(t, "the DPA sees when it was in force", dpa.get("/exchange/policies"), http.StatusOK,
				"until "+retired.Format("2 Jan 2006 15:04 UTC"))
		})
	}
}

// policyJSON is a policy as /exchange/policies.json gives it.
type policyJSON struct {
	exchange.Policy
	MaxDeferralDays int `json:"max_deferral_days"`
	RetentionDays   int `json:"retention_days"`
}

// readPolicies is the policies as JSON.
func readPolicies(t *testing.T, c *client) []policyJSON {
	t.Helper()
	r := c.get("/exchange/policies.json")
	expect(t, "policies as JSON", r, http.StatusOK)
	var out struct {
		Policies []policyJSON `json:"policies"`
	}
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatal(err)
	}
	return out.Policies
}

// A citizen reads the policies in force in plain words ("Who may read my
// data"): each agency's, with the fields by their labels, and what each
// means for them (asked first or not, hidden for how long, kept for how
// long); a retired policy is not there, since nobody may ask under it.
func TestCitizenRules(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			exWorld(t, w)
			ctx := context.Background()
			amira, op := w.as(t, "Amira Haddad"), w.as(t, "Olu Adeyemi")
			expect(t, "her accesses link to the rules", amira.get("/wallet/access"), http.StatusOK, `<a href="/wallet/access/rules" id="rules-link">`)
			r := newClient(t, w.n.URL).get("/wallet/access/rules")
			expect(t, "the rules without signing in", r, http.StatusSeeOther)
			if loc := r.header.Get("Location"); loc != "/?next=%2Fwallet%2Faccess%2Frules" {
				t.Fatalf("redirected to %q", loc)
			}
			// check reads the page and compares every card with the
			// policies in force on published services.
			check := func(what string) (cards int) {
				t.Helper()
				r := amira.get("/wallet/access/rules")
				expect(t, what, r, http.StatusOK)
				pols, err := w.n.ex.Policies(ctx)
				if err != nil {
					t.Fatal(err)
				}
				svcs, err := w.n.ex.Services(ctx)
				if err != nil {
					t.Fatal(err)
				}
				published := map[string]*exchange.Service{}
				for _, s := range svcs {
					published[s.ID] = s
				}
				for _, p := range pols {
					at := strings.Index(r.body, `id="rule-`+p.ID+`"`)
					svc := published[p.Service]
					if !p.Active || svc == nil {
						if at >= 0 {
							t.Fatalf("%s: policy %s (%s, active %v, service published %v) is shown", what, p.ID, p.Purpose, p.Active, svc != nil)
						}
						continue
					}
					if at < 0 {
						t.Fatalf("%s: policy %s (%s) in force is not shown", what, p.ID, p.Purpose)
					}
					cards++
					card := r.body[at:]
					card = card[:strings.Index(card, "</article>")]
					consent, hidden := "<strong>Without asking you.</strong>", "You see each read at once."
					if p.Consent {
						consent = "<strong>Only with your consent:</strong>"
					}
					if p.MaxDeferral > 0 {
						hidden = fmt.Sprintf("<strong>May be hidden from you for up to %d days</strong>", p.MaxDeferral/exchange.Day)
					}
					for _, want := range []string{"<h3>" + strings.Join(svc.Labels(p.Fields), ", ") + "</h3>", "From " + svc.Name + ", held by " + svc.HolderName,
						"Purpose " + p.Purpose + " · legal basis " + p.LegalBasis, consent, hidden,
						fmt.Sprintf("%s may keep what it read for %d days.", p.RequesterName, p.Retention/exchange.Day)} {
						if !strings.Contains(card, want) {
							t.Fatalf("%s: the card of policy %s (%s) lacks %q:\n%s", what, p.ID, p.Purpose, want, card)
						}
					}
					// The card sits under its agency's heading.
					heading := strings.LastIndex(r.body[:at], "<h2>")
					if agency := r.body[heading+len("<h2>"):]; !strings.HasPrefix(agency, p.RequesterName+"</h2>") {
						t.Fatalf("%s: policy %s of %s is under %.40q", what, p.ID, p.RequesterName, agency)
					}
					// The heading links to what that agency read of hers.
					if link := `<a href="/wallet/access?agency=` + p.Requester + `#acc-h" class="read-by">What ` + p.RequesterName + ` has read of your data</a>`; !strings.Contains(r.body[heading:at], link) {
						t.Fatalf("%s: %s's heading does not link to its reads of her", what, p.RequesterName)
					}
				}
				if got := strings.Count(r.body, `class="card rule"`); got != cards {
					t.Fatalf("%s: %d cards, %d policies in force", what, got, cards)
				}
				return cards
			}
			// A request waiting for her consent names how long the
			// agency may keep what it reads, linking to its rule.
			police := w.orgs["City Police"]
			q, err := w.n.ex.Submit(ctx, exchange.Ask{Requester: police, Officer: "Officer", Citizen: w.people["Amira Haddad"], Service: "population",
				Fields: []string{"address"}, Purpose: "WITNESS-CONTACT", LegalBasis: "Police Act §12"})
			if err != nil || q.State != exchange.AwaitConsent {
				t.Fatalf("asking for consent: %+v %v", q, err)
			}
			retention := `<p class="retention">City Police may keep what it reads for 30 days (<a href="/wallet/access/rules#rule-` + q.PolicyID + `">the rule it asks under</a>).</p>`
			expect(t, "her request waiting", amira.get("/wallet/access"), http.StatusOK, retention)
			expect(t, "the rule it links to", amira.get("/wallet/access/rules"), http.StatusOK, `id="rule-`+q.PolicyID+`"`)
			expect(t, "what the police read of hers", amira.get("/wallet/access?agency="+police), http.StatusOK, "<h2 id=\"acc-h\">Accesses by City Police</h2>")
			all := check("the rules")
			if want := countRows(t, w.n.db, `SELECT COUNT(*) FROM ex_policies WHERE active = 1`); all != want || all < 3 {
				t.Fatalf("%d rules shown, %d policies in force (at least the 3 of this test)", all, want)
			}
			body := amira.get("/wallet/access/rules").body
			if p, tx := strings.Index(body, "<h2>City Police</h2>"), strings.Index(body, "<h2>City Tax Office</h2>"); p < 0 || tx < p {
				t.Fatalf("the agencies are not in order of name (police at %d, tax office at %d)", p, tx)
			}
			for _, p := range readPolicies(t, w.as(t, "Ana Costa")) {
				if p.Purpose == "TAX-AUDIT" && p.Active {
					expect(t, "retire the tax audit", op.postForm("/exchange/policies/"+p.ID+"/retire", nil), http.StatusSeeOther)
				}
			}
			if n := check("the rules with one retired"); n != all-1 {
				t.Fatalf("%d rules after one was retired, want %d", n, all-1)
			}
			for _, p := range readPolicies(t, w.as(t, "Ana Costa")) {
				if p.Active {
					expect(t, "retire "+p.Purpose, op.postForm("/exchange/policies/"+p.ID+"/retire", nil), http.StatusSeeOther)
				}
			}
			if n := check("the rules with none in force"); n != 0 {
				t.Fatalf("%d rules with no policy in force", n)
			}
			expect(t, "the rules with none in force", amira.get("/wallet/access/rules"), http.StatusOK, `id="no-rules"`, "No agency may read your data")
			// Its rule retired, the request says nothing of one.
			if r := amira.get("/wallet/access"); !strings.Contains(r.body, `id="req-`+q.ID+`"`) || strings.Contains(r.body, `class="retention"`) {
				t.Fatalf("the waiting request after its rule was retired (listed: %v):\n%s", strings.Contains(r.body, `id="req-`+q.ID+`"`), clip(r.body))
			}
		})
	}
}

// A legal basis that is the law's web address is a link wherever a
// policy's basis shows: the policies (the operator's list and its
// retirement page), the citizen's rules, her accesses, the DPA's accesses
// and its complaints about them, the agency's page. An agency's own words
// in a denied request stay text, and so does a basis that is not an
// http(s) address.
func TestLegalBasisLinks(t *testing.T) {
	e := storetest.Engines(t)[0]
	w := startDemo(t, e)
	tax, _ := exWorld(t, w)
	ctx := context.Background()
	amira := w.people["Amira Haddad"]
	law := "https://eur-lex.europa.eu/legal-content/EN/TXT/?uri=CELEX:32016R0679#d1e1888-1-1_art6_par1_pte"
	p, err := w.n.ex.CreatePolicy(ctx, exchange.Policy{Requester: tax, Service: "tax-income", Fields: []string{"employer"}, Purpose: "EMPLOYER-CHECK",
		LegalBasis: law, Retention: 30 * exchange.Day}, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, basis := range []string{law, "https://phish.example/law"} {
		if _, err := w.n.ex.Submit(ctx, exchange.Ask{Requester: tax, Officer: "Tomas Novak", Citizen: amira, Service: "tax-income",
			Fields: []string{"employer"}, Purpose: "EMPLOYER-CHECK", LegalBasis: basis}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := w.n.tlog.Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	// Her complaint about the access, for the DPA's list of complaints.
	recs, err := w.n.ex.ForCitizen(ctx, amira)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(recs, func(v *exchange.Verified) bool { return v.Purpose == "EMPLOYER-CHECK" })
	if i < 0 {
		t.Fatal("her access under the policy is not on her list")
	}
	expect(t, "her complaint", w.as(t, "Amira Haddad").postForm(fmt.Sprint("/wallet/access/complaints/", recs[i].LogIndex), url.Values{"message": {"Why?"}}), http.StatusOK, "Sent.")
	// html/template escapes the address in its attribute (& as &amp;).
	link := `<a href="https://eur-lex.europa.eu/legal-content/EN/TXT/?uri=CELEX:32016R0679#d1e1888-1-1_art6_par1_pte" rel="noreferrer" hx-boost="false" class="law">`
	for _, page := range []struct {
		who, path string
	}{
		{"Olu Adeyemi", "/exchange/policies"},
		{"Olu Adeyemi", "/exchange/policies/" + p.ID + "/retire"},
		{"Ana Costa", "/dpa/exchange"},
		{"Ana Costa", "/dpa/exchange/accesses"},
		{"Ana Costa", "/dpa/exchange/complaints"},
		{"Amira Haddad", "/wallet/access"},
		{"Amira Haddad", "/wallet/access/rules"},
		{"Tomas Novak", "/exchange/" + tax},
	} {
		r := w.as(t, page.who).get(page.path)
		expect(t, page.who+" on "+page.path, r, http.StatusOK, link)
		if strings.Contains(r.body, `href="Tax Code`) || strings.Contains(r.body, `href="https://phish.example`) {
			t.Errorf("%s on %s: a basis that is no law's address, or an agency's own words, made a link", page.who, page.path)
		}
	}
	r := w.as(t, "Ana Costa").get("/dpa/exchange/denied")
	expect(t, "the denied request, its basis as the agency wrote it", r, http.StatusOK, "https://phish.example/law")
	if strings.Contains(r.body, `href="https://phish.example`) {
		t.Error("an agency's own words in a denied request made a link")
	}
}
