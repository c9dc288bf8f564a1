package server_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

var passRE = regexp.MustCompile(`(?s)<textarea id="pass-payload"[^>]*>([^<]+)</textarea>`)
var certRE = regexp.MustCompile(`(?s)<textarea rows="3" readonly spellcheck="false" aria-label="Certificate as text">([^<]+)</textarea>`)

func extract(t *testing.T, re *regexp.Regexp, body string) string {
	t.Helper()
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in:\n%s", re, clip(body))
	}
	return html.UnescapeString(m[1])
}

// snapshot digests every row of every table, so a test can show that a
// request changed nothing at all.
func snapshot(t *testing.T, db *store.DB) string {
	t.Helper()
	ctx := context.Background()
	q := `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`
	if db.Dialect() == store.Postgres {
		q = `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename`
	}
	rows, err := db.Reader().QueryContext(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	h := sha256.New()
	for _, tb := range tables {
		rs, err := db.Reader().QueryContext(ctx, "SELECT * FROM "+tb)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rs.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		n := 0
		for rs.Next() {
			rs.Scan(ptrs...)
			fmt.Fprintf(h, "%s%v", tb, vals)
			n++
		}
		rs.Close()
		fmt.Fprintf(h, "%s:%d;", tb, n)
	}
	return fmt.Sprintf("%x (%d tables)", h.Sum(nil), len(tables))
}

func TestHealthOverHTTP(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) { testHealthOverHTTP(t, e) })
	}
}

func testHealthOverHTTP(t *testing.T, e storetest.Engine) {
	w := startDemo(t, e)
	amira := w.as(t, "Amira Haddad")
	anon := newClient(t, w.n.URL)

	expect(t, "signed out", anon.get("/health"), http.StatusSeeOther, "next=%2Fhealth")
	expect(t, "no code yet", amira.get("/health"), 200, "Get your health code", "No certificates yet",
		// The date picker offers no day the node would refuse.
		`min="1900-01-01" max="`+w.n.clock.now().Add(24*time.Hour).UTC().Format(time.DateOnly)+`"`)
	answers := func(symptoms, contact, travel, test, dob string) url.Values {
		return url.Values{"symptoms": {symptoms}, "contact": {contact}, "travel": {travel}, "test": {test}, "dob": {dob}}
	}
	expect(t, "a test result that is none", amira.postForm("/health/questionnaire", answers("no", "no", "no", "maybe", "1990-04-01")), 400, "is not none, negative or positive")
	expect(t, "a date of birth that is none", amira.postForm("/health/questionnaire", answers("no", "no", "no", "none", "1 April")), 400, "<p class=\"error\" role=\"alert\">Date of birth &#34;1 April&#34; is not YYYY-MM-DD.")
	expect(t, "no date of birth", amira.postForm("/health/questionnaire", answers("no", "no", "no", "none", "")), 400, ">Enter your date of birth.")
	expect(t, "a date of birth to come", amira.postForm("/health/questionnaire", answers("no", "no", "no", "none", "2990-04-01")), 400, "Date of birth 2990-04-01 is in the future.")
	expect(t, "a date of birth long ago", amira.postForm("/health/questionnaire", answers("no", "no", "no", "none", "1800-04-01")), 400, "Date of birth 1800-04-01 is before 1900.")
	// A question left out, or answered with neither yes nor no, is not a no.
	expect(t, "no answer about travel", amira.postForm("/health/questionnaire", answers("no", "no", "", "none", "1990-04-01")), 400, "Answer the question about travel with yes or no.")
	expect(t, "maybe symptoms", amira.postForm("/health/questionnaire", answers("maybe", "no", "no", "none", "1990-04-01")), 400, "Answer the question about symptoms with yes or no.")
	expect(t, "no answer about a test", amira.postForm("/health/questionnaire", answers("no", "no", "no", "", "1990-04-01")), 400, "Answer the question about your latest test.")
	expect(t, "still no code", amira.get("/health"), 200, "Get your health code")
	expect(t, "check in without a code", amira.postForm("/health/checkin", url.Values{"feeling": {"normal"}}), 409, "answer the questionnaire first")
	expect(t, "check in without saying how", amira.postForm("/health/checkin", url.Values{"feeling": {"fine"}}), 400, "Say how you are today: normal, or with symptoms.")

	r := amira.postForm("/health/questionnaire", answers("yes", "no", "no", "none", "1990-04-01"))
	expect(t, "symptoms make yellow", r, 200, `<strong id="health-color">yellow</strong>`, "You reported symptoms", "After 7 consecutive days of normal check-ins", "HC-YELLOW-SYMPTOMS", "civstack health code rules 1.0.0")
	pass := extract(t, passRE, r.body)

	// Verifying writes nothing anywhere: database and log unchanged.
	before := snapshot(t, w.n.db)
	expect(t, "verifier page", anon.postForm("/verify", url.Values{"payload": {pass}}), 200, `<strong id="verdict-color">yellow</strong>`, "Amira Haddad, born 1990-04-01", "rules 1.0.0",
		`<code id="rules-digest">`+w.n.hnode.Rules.Digest[:16]+`</code>`)
	var verdict struct {
		Valid  bool   `json:"valid"`
		Colour string `json:"color"`
		Given  string `json:"given_name"`
	}
	api := anon.postJSON("/api/v1/health/verify", map[string]string{"payload": pass})
	expect(t, "verifier API", api, 200)
	api.json(t, &verdict)
	if !verdict.Valid || verdict.Colour != "yellow" || verdict.Given != "Amira" {
		t.Fatalf("API verdict %+v", verdict)
	}
	if after := snapshot(t, w.n.db); after != before {
		t.Fatalf("verifying changed the database: %s → %s", before, after)
	}
	if b := w.n.logs.String(); regexp.MustCompile(`Amira|Haddad|1990-04-01`).MatchString(b) {
		t.Fatalf("personal data in the server log:\n%s", b)
	}
	expect(t, "a damaged pass", anon.postForm("/verify", url.Values{"payload": {pass[:len(pass)-3] + "AAA"}}), 422, "Not valid")
	expect(t, "no pass", anon.postForm("/verify", url.Values{"payload": {" "}}), 400, "Scan a pass")
	expect(t, "a body of a megabyte", anon.postForm("/verify", url.Values{"payload": {strings.Repeat("A", 1<<20)}}), 400, "could not be read")
	expectProblem(t, "API without a payload", anon.postJSON("/api/v1/health/verify", map[string]string{}), 400, `Send {"payload": "HC1:…"}.`)

	// Seven days of normal check-ins turn yellow into green.
	for d := 1; d <= 7; d++ {
		r := amira.postForm("/health/checkin", url.Values{"feeling": {"normal"}})
		if d < 7 {
			expect(t, fmt.Sprintf("check-in %d", d), r, 200, fmt.Sprintf("%d more days of normal check-ins to green", 7-d))
		} else {
			expect(t, "seventh check-in", r, 200, "Your code is green", "7 consecutive days of normal check-ins")
		}
		w.n.clock.add(24 * time.Hour)
		amira = w.as(t, "Amira Haddad") // sessions last an hour
	}
	// Signed in after the week above, since sessions last an hour.
	kofi, jonas := w.as(t, "Kofi Mensah"), w.as(t, "Jonas Weber")
	expect(t, "the old pass has expired", anon.postForm("/verify", url.Values{"payload": {pass}}), 422, "expired")
	expect(t, "bad check-in", amira.postForm("/health/checkin", url.Values{"feeling": {"great"}}), 400)

	// A positive test: red; an appeal; the officer decides; the log has it.
	expect(t, "positive is red", amira.postForm("/health/questionnaire", answers("no", "no", "no", "positive", "1990-04-01")), 200, `<strong id="health-color">red</strong>`, "14 days")
	expect(t, "empty appeal", amira.postForm("/health/appeal", url.Values{"message": {" "}}), 400)
	expect(t, "appeal", amira.postForm("/health/appeal", url.Values{"message": {"The test was someone else's; I was tested negative since."}}), 200, "with a health officer", "pending")
	if strings.Contains(amira.get("/").body, `id="appeal-decided"`) {
		t.Fatal("her home says a pending appeal was decided")
	}
	expect(t, "second appeal", amira.postForm("/health/appeal", url.Values{"message": {"again"}}), 409, "already with a health officer")
	expect(t, "a citizen is no officer", jonas.get("/health/authority"), 403)
	page := kofi.get("/health/authority")
	expect(t, "officer sees the appeal", page, 200, "Amira Haddad: red", "someone else")
	id := regexp.MustCompile(`action="/health/authority/appeals/([0-9a-f-]+)"`).FindStringSubmatch(page.body)[1]
	expect(t, "decide without explaining", kofi.postForm("/health/authority/appeals/"+id, url.Values{"outcome": {"grant"}}), 400, "Explain the decision to the citizen")
	expect(t, "a citizen cannot decide", jonas.postForm("/health/authority/appeals/"+id, url.Values{"outcome": {"grant"}, "explanation": {"x"}}), 403)
	expect(t, "grant", kofi.postForm("/health/authority/appeals/"+id, url.Values{"outcome": {"grant"}, "explanation": {"Negative PCR on file."}}), 200, "Decision recorded (overruled)", "No appeals are waiting")
	expect(t, "decided twice", kofi.postForm("/health/authority/appeals/"+id, url.Values{"outcome": {"refuse"}, "explanation": {"x"}}), 409, "already been decided")
	expect(t, "green after the appeal", amira.get("/health"), 200, `<strong id="health-color">green</strong>`, "Appeal granted by a health officer: Negative PCR on file.", "overruled")
	expect(t, "her home says so", amira.get("/"), 200, `id="appeal-decided"`)
	if strings.Contains(jonas.get("/").body, `id="appeal-decided"`) {
		t.Fatal("another citizen's home tells of her appeal")
	}
	// The home tells of the decision for a week, then no more.
	w.n.clock.add(6*24*time.Hour + 23*time.Hour)
	amira = w.as(t, "Amira Haddad") // sessions last an hour
	expect(t, "her home says so on the week's last day", amira.get("/"), 200, `id="appeal-decided"`)
	w.n.clock.add(2 * time.Hour)
	amira, kofi, jonas = w.as(t, "Amira Haddad"), w.as(t, "Kofi Mensah"), w.as(t, "Jonas Weber")
	if strings.Contains(amira.get("/").body, `id="appeal-decided"`) {
		t.Fatal("her home still tells of a decision more than a week old")
	}
	var decisions int
	if err := w.n.db.Reader().QueryRow(`SELECT COUNT(*) FROM tlog_entries WHERE kind = 6`).Scan(&decisions); err != nil || decisions != 1 {
		t.Fatalf("health decisions in the log: %d, %v", decisions, err)
	}

	// The authority issues a vaccination certificate; a verifier accepts it.
	issueKey := regexp.MustCompile(`name="key" value="([^"]+)"`)
	issue := func(kind, date string) *response {
		key := extract(t, issueKey, kofi.get("/health/authority").body)
		return kofi.postForm("/health/authority/certificates", url.Values{"person": {w.people["Amira Haddad"]}, "dob": {"1990-04-01"}, "kind": {kind},
			"date": {date}, "dose": {"2"}, "series": {"2"}, "result": {"negative"}, "key": {key}})
	}
	expect(t, "a citizen cannot issue", jonas.postForm("/health/authority/certificates", url.Values{"person": {w.people["Jonas Weber"]}}), 403)
	expect(t, "unknown citizen", kofi.postForm("/health/authority/certificates", url.Values{"person": {"nobody"}}), 404, "No citizen has that health id")
	expect(t, "bad date", issue("v", "yesterday"), 400, "is not YYYY-MM-DD")
	tomorrow := w.n.clock.now().UTC().AddDate(0, 0, 2)
	for _, c := range []struct{ kind, date, want string }{
		{"v", tomorrow.Format(time.DateOnly), "Vaccination date " + tomorrow.Format(time.DateOnly) + " is in the future."},
		{"r", "2990-01-01", "First positive test date 2990-01-01 is in the future."},
		{"t", tomorrow.Format(time.RFC3339), "Sample time " + tomorrow.Format(time.RFC3339) + " is in the future."},
		{"v", "1989-12-31", "Vaccination date 1989-12-31 is before the date of birth, 1990-04-01."},
	} {
		expect(t, c.want, issue(c.kind, c.date), 400, c.want)
	}
	issuances := func() (n int) {
		t.Helper()
		if err := w.n.db.Reader().QueryRow(`SELECT COUNT(*) FROM tlog_entries WHERE kind = 3`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	logged := issuances()
	key := extract(t, issueKey, kofi.get("/health/authority").body)
	form := url.Values{"person": {w.people["Amira Haddad"]}, "dob": {"1990-04-01"}, "kind": {"v"}, "date": {"2026-11-20"}, "dose": {"2"}, "series": {"2"}, "key": {key}}
	expect(t, "issue", kofi.postForm("/health/authority/certificates", form), 200, "Vaccination, dose 2 of 2, 2026-11-20 issued to Amira Haddad")
	expect(t, "the form sent twice", kofi.postForm("/health/authority/certificates", form), 200, "This form was sent already", "nothing was issued again")
	if n := issuances() - logged; n != 1 {
		t.Fatalf("%d issuances logged for one form sent twice", n)
	}
	page = amira.get("/health")
	expect(t, "in the wallet", page, 200, "Vaccination, dose 2 of 2")
	if n := strings.Count(page.body, "Vaccination, dose 2 of 2"); n != 1 {
		t.Fatalf("the certificate is in the wallet %d times", n)
	}
	cert := extract(t, certRE, page.body)
	expect(t, "verify the certificate", anon.postForm("/verify", url.Values{"payload": {cert}}), 200, `Valid <span id="verdict-kind">vaccination</span> certificate`, "Amira Haddad, born 1990-04-01")
	expect(t, "others do not see it", jonas.get("/health"), 200, "No certificates yet")
	expect(t, "public trust list", anon.get("/health/trust-list.json"), 200, `"signers"`, `"signature"`)
	expect(t, "public rules", anon.get("/health/rules.json"), 200, `"HC-RED-POSITIVE"`)

	// An appeal is about one code: new answers replace the code and close
	// the appeal, and the officer can no longer decide it.
	expect(t, "contact is yellow", amira.postForm("/health/questionnaire", answers("no", "yes", "no", "none", "1990-04-01")), 200, `<strong id="health-color">yellow</strong>`)
	expect(t, "appeal the yellow code", amira.postForm("/health/appeal", url.Values{"message": {"We met outdoors, two metres apart."}}), 200, "with a health officer")
	id = regexp.MustCompile(`action="/health/authority/appeals/([0-9a-f-]+)"`).FindStringSubmatch(kofi.get("/health/authority").body)[1]
	expect(t, "new answers", amira.postForm("/health/questionnaire", answers("yes", "no", "no", "positive", "1990-04-01")), 200, `<strong id="health-color">red</strong>`,
		"was closed on", "You answered the questionnaire again, which replaced the code this appeal was about.", "Send the appeal")
	expect(t, "closed appeals do not wait", kofi.get("/health/authority"), 200, "No appeals are waiting")
	if strings.Contains(amira.get("/").body, `id="appeal-decided"`) {
		t.Fatal("her home says an appeal no officer decided was decided")
	}
	expect(t, "a closed appeal cannot be granted", kofi.postForm("/health/authority/appeals/"+id, url.Values{"outcome": {"grant"}, "explanation": {"Outdoors."}}), 409, "closed before a decision")
	expect(t, "still red", amira.get("/health"), 200, `<strong id="health-color">red</strong>`)
}
