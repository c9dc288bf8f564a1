package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/civstack/civstack/internal/identity"
	"github.com/civstack/civstack/internal/modeltest"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestPresentationModel runs random sequences of what a citizen, an
// issuer and a verifier do with credentials over HTTP (PIDs issued, over
// 18 or not; the bar's requests; the citizen opening, sharing and
// declining them, again and late; revocations; re-checks; time passing
// across a request's ten minutes, the day the node keeps a presentation
// and a PID's 90 days), on every engine, against a model: the wallet
// answers with its newest usable credential (copies left, not revoked,
// not expired), spends one copy per share, and a request is answered
// once, before it expires. After every step the wallet's credentials
// (copies left, revoked, expired, replaced by the one that answers, the
// warning counting every usable copy) and its log of presentations are the
// model's; each answer, and the verifier's page of the request acted on,
// say what the model says.
func TestPresentationModel(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := idWorld(t, e)
			run := 0
			modeltest.Check(t, []string{"consent page", "no usable credential", "shared", "declined", "answered before", "request expired",
				"revoked", "revoked before", "re-checked valid", "re-check rejects", "re-check erased", "re-check unanswered", "erased",
				"expired unanswered", "credential expired", "copies used up", "under 18 shared", "replaced", "an older one answers"},
				func(rt *rapid.T, seen *modeltest.Outcomes) {
					run++
					m := &presentationRun{t: t, w: w, rt: rt, seen: seen, reg: w.orgs["Civil Registry Office"], bar: w.orgs["Blue Door Bar"], officers: map[string]*client{}}
					m.citizen = m.newCitizen(fmt.Sprintf("Model citizen %d", run))
					m.run()
				})
		})
	}
}

type mHeld struct {
	batch   string // in the wallet
	issued  string // at the issuer
	over18  bool
	left    int
	revoked bool
	expires time.Time
}

type mAsk struct {
	page, same string
	expires    time.Time
	state      string // pending, verified, rejected
	declined   bool
	answered   time.Time
	held       *mHeld
}

type presentationRun struct {
	t        *testing.T
	w        *demoWorld
	rt       *rapid.T
	seen     *modeltest.Outcomes
	reg, bar string
	person   string
	citizen  *client
	officers map[string]*client // signed in, until time jumps
	held     []*mHeld
	asks     []*mAsk
	shared   int // presentations the citizen's log lists
	declined int
}

// newCitizen registers a person and signs a client in as them.
func (m *presentationRun) newCitizen(name string) *client {
	ctx := context.Background()
	p, err := m.w.n.reg.NewPerson(name)
	if err != nil {
		m.rt.Fatal(err)
	}
	if err := m.w.n.reg.CreatePerson(ctx, p, nil, ""); err != nil {
		m.rt.Fatal(err)
	}
	// Longer than any run: up to 15 steps of up to a PID's validity
	// (90 days) each.
	token, err := m.w.n.reg.NewSession(ctx, p.ID, 10*365*24*time.Hour)
	if err != nil {
		m.rt.Fatal(err)
	}
	m.person = p.ID
	c := newClient(m.t, m.w.n.URL)
	c.cookies["__Host-civstack_session"] = &http.Cookie{Name: "__Host-civstack_session", Value: token}
	return c
}

func (m *presentationRun) now() time.Time { return m.w.n.clock.now() }

// as is a client signed in as the demo persona (kept until time jumps).
func (m *presentationRun) as(name string) *client {
	if m.officers[name] == nil {
		m.officers[name] = m.w.as(m.t, name)
	}
	return m.officers[name]
}

// is fails the run unless r has the status and every text.
func (m *presentationRun) is(what string, r *response, status int, texts ...string) {
	if r.status != status {
		m.rt.Fatalf("%s: status %d, want %d\n%s", what, r.status, status, clip(r.body))
	}
	for _, s := range texts {
		if !strings.Contains(r.body, s) {
			m.rt.Fatalf("%s: the page lacks %q:\n%s", what, s, clip(r.body))
		}
	}
}

func (m *presentationRun) run() {
	if rapid.IntRange(0, 3).Draw(m.rt, "a credential first") > 0 {
		m.issue()
	}
	for range rapid.IntRange(3, 15).Draw(m.rt, "steps") {
		switch rapid.SampledFrom([]string{"ask", "share", "open", "recheck", "wait", "share", "decline", "ask", "revoke", "verifier", "recheck", "wait",
			"issue", "share", "use up", "revoke what was shown", "a day later", "months later", "open", "revoke"}).Draw(m.rt, "op") {
		case "issue":
			m.issue()
		case "ask":
			m.ask()
		case "open":
			if a := m.pick(); a != nil {
				m.open(a)
			}
		case "share", "decline":
			if a := m.pick(); a != nil {
				m.answer(a, rapid.IntRange(0, 3).Draw(m.rt, "decline") > 0)
			}
		case "revoke":
			m.revoke()
		case "verifier":
			if a := m.pick(); a != nil {
				m.checkVerifier(a)
			}
		case "recheck":
			if a := m.pick(); a != nil {
				m.recheck(a)
			}
		case "wait":
			d := rapid.SampledFrom([]time.Duration{6 * time.Minute, 25 * time.Hour, 30 * time.Second, 11 * time.Minute,
				identity.TypeByID("pid").Validity}).Draw(m.rt, "wait")
			m.w.n.clock.add(d)
			if d > time.Hour {
				clear(m.officers) // their sessions may have ended
			}
		case "use up":
			// The citizen shares until the newest usable credential has no copy left.
			for u := m.usable(); u != nil && u.left > 0; {
				m.ask()
				m.answer(m.asks[len(m.asks)-1], true)
			}
			m.ask() // and once more
			m.answer(m.asks[len(m.asks)-1], true)
		case "a day later":
			// The bar re-checks an answer of the day before: erased by then.
			m.w.n.clock.add(25 * time.Hour)
			clear(m.officers)
			for _, a := range m.asks {
				if a.state == "verified" {
					m.recheck(a)
					break
				}
			}
		case "months later":
			// The citizen shares again once the credential has expired.
			m.w.n.clock.add(identity.TypeByID("pid").Validity)
			clear(m.officers)
			m.ask()
			m.answer(m.asks[len(m.asks)-1], true)
		case "revoke what was shown":
			// The registrar revokes a credential a verified answer used; the bar re-checks.
			var shown []*mAsk
			for _, a := range m.asks {
				if a.state == "verified" && !a.held.revoked {
					shown = append(shown, a)
				}
			}
			if len(shown) > 0 {
				a := rapid.SampledFrom(shown).Draw(m.rt, "shown")
				m.revokeHeld(a.held)
				m.recheck(a)
			}
		}
		m.checkWallet()
	}
}

func (m *presentationRun) pick() *mAsk {
	if len(m.asks) == 0 {
		return nil
	}
	return rapid.SampledFrom(m.asks).Draw(m.rt, "request")
}

// usable is the credential the wallet answers with: its newest with a
// copy left, not revoked and not expired (nil: none).
func (m *presentationRun) usable() *mHeld {
	var u *mHeld
	for _, h := range m.held {
		if h.left > 0 && !h.revoked && m.now().Before(h.expires) {
			u = h
		}
	}
	return u
}

var issuedRE = regexp.MustCompile(`/issued/([^/"]+)/revoke`)

var heldRE = regexp.MustCompile(`(?s)<article class="card credential" id="cred-([^"]+)">(.*?)</article>`)

func (m *presentationRun) issue() {
	over18 := rapid.Bool().Draw(m.rt, "over 18")
	birth := "1990-05-01"
	if !over18 {
		birth = m.now().AddDate(-12, 0, 0).Format(time.DateOnly)
	}
	registrar := m.as("Marta Silva")
	r := registrar.postForm("/issue/"+m.reg+"/offers", url.Values{"type": {"pid"}, "person": {m.person},
		"pid.given_name": {"Model"}, "pid.family_name": {"Citizen"}, "pid.birthdate": {birth}, "pid.nationalities": {"it"}})
	m.is("offer", r, http.StatusOK, "Offer for a National identity")
	tx, link := txCodeRE.FindStringSubmatch(r.body), offerLinkRE.FindStringSubmatch(r.body)
	if tx == nil || link == nil {
		m.rt.Fatalf("no code or link on the offer page: %s", clip(r.body))
	}
	r = m.citizen.postForm("/wallet/credentials/accept", url.Values{"offer": {html.UnescapeString(link[1])}, "tx_code": {tx[1]}})
	m.is("accept", r, http.StatusOK, "10 of 10 single-use copies left")
	known := map[string]bool{}
	for _, h := range m.held {
		known[h.batch] = true
	}
	h := &mHeld{over18: over18, left: identity.WalletBatch, expires: m.now().Add(identity.TypeByID("pid").Validity)}
	for _, c := range heldRE.FindAllStringSubmatch(m.citizen.get("/wallet/credentials").body, -1) {
		if !known[c[1]] {
			h.batch = c[1]
		}
	}
	if h.batch == "" {
		m.rt.Fatal("the new credential is not in the wallet")
	}
	known = map[string]bool{}
	for _, h := range m.held {
		known[h.issued] = true
	}
	for _, b := range issuedRE.FindAllStringSubmatch(registrar.get("/issue/"+m.reg+"?person="+m.person).body, -1) {
		if !known[b[1]] {
			h.issued = b[1]
		}
	}
	if h.issued == "" {
		m.rt.Fatal("the registrar does not list the new issuance")
	}
	m.held = append(m.held, h)
	m.w.n.clock.add(time.Second) // the newest is the latest received, to the millisecond
}

func (m *presentationRun) ask() {
	bar := m.as("Sam Okafor")
	r := bar.postForm("/check/"+m.bar+"/requests", url.Values{"ask.pid:age_over_18": {"required"}})
	m.is("new request", r, http.StatusSeeOther)
	page := r.header.Get("Location")
	r = bar.get(page)
	m.is("request page", r, http.StatusOK, "Waiting for the wallet")
	same := sameRE.FindStringSubmatch(r.body)
	if same == nil {
		m.rt.Fatalf("no same-device link: %s", clip(r.body))
	}
	m.asks = append(m.asks, &mAsk{page: page, same: strings.TrimPrefix(html.UnescapeString(same[1]), m.w.n.URL),
		expires: m.now().Add(identity.RequestLifetime), state: "pending"})
}

func bool18(b bool) string { return fmt.Sprintf("Over 18: <strong>%t</strong>", b) }

func (m *presentationRun) open(a *mAsk) {
	r := m.citizen.get(a.same)
	switch u := m.usable(); {
	case a.state != "pending":
		m.is("open an answered request", r, http.StatusBadRequest, "The request has already been answered.")
		m.seen.Saw("answered before")
	case !m.now().Before(a.expires):
		m.is("open an expired request", r, http.StatusBadRequest, "The request has expired.")
		m.seen.Saw("request expired")
	case u == nil:
		m.is("open with nothing usable", r, http.StatusOK, "You have no usable National identity (PID) in your wallet")
		m.seen.Saw("no usable credential")
	default:
		m.is("open", r, http.StatusOK, "Blue Door Bar asks for your National identity (PID)", bool18(u.over18))
		m.seen.Saw("consent page")
	}
}

func (m *presentationRun) answer(a *mAsk, share bool) {
	decision := "decline"
	if share {
		decision = "share"
	}
	r := m.citizen.postForm("/wallet/present", consentForm(a.same, decision, "age_over_18"))
	u := m.usable()
	switch {
	case a.state != "pending":
		m.is(decision+" an answered request", r, http.StatusBadRequest, "The request has already been answered.")
		m.seen.Saw("answered before")
	case !m.now().Before(a.expires):
		m.is(decision+" an expired request", r, http.StatusBadRequest, "The request has expired.")
		m.seen.Saw("request expired")
	case !share:
		m.is("decline", r, http.StatusOK, "You declined; the verifier has been told.")
		a.state, a.declined, a.answered = "rejected", true, m.now()
		m.declined++
		m.seen.Saw("declined")
	case u == nil:
		m.is("share with nothing usable", r, http.StatusConflict, "No credential in the wallet answers the request.")
		if len(m.held) > 0 && m.held[len(m.held)-1].left == 0 {
			m.seen.Saw("copies used up")
		}
		if len(m.held) > 0 && !m.now().Before(m.held[len(m.held)-1].expires) {
			m.seen.Saw("credential expired")
		}
	default:
		m.is("share", r, http.StatusOK, "Shared with the verifier.")
		u.left--
		a.state, a.answered, a.held = "verified", m.now(), u
		m.shared++
		m.seen.Saw("shared")
		if !u.over18 {
			m.seen.Saw("under 18 shared") // the bar learns "false", and nothing else
		}
	}
	m.checkVerifier(a)
}

// checkVerifier reads the request's page as the bar.
func (m *presentationRun) checkVerifier(a *mAsk) {
	r := m.as("Sam Okafor").get(a.page)
	erased := !m.now().Before(a.answered.Add(identity.KeepPresentations))
	switch {
	case a.state == "pending" && m.now().Before(a.expires):
		m.is("the bar waits", r, http.StatusOK, "Waiting for the wallet")
	case a.state == "pending":
		m.is("the bar's expired request", r, http.StatusOK, "The request expired unanswered.")
		m.seen.Saw("expired unanswered")
	case a.state == "verified" && erased:
		m.is("an erased presentation", r, http.StatusOK, "<strong>Verified</strong>", `id="erased"`)
		m.seen.Saw("erased")
	case a.state == "verified":
		m.is("a verified presentation", r, http.StatusOK, "<strong>Verified</strong> · issued by Civil Registry Office",
			fmt.Sprintf("<dt>Over 18</dt><dd>%t</dd>", a.held.over18))
		if main := r.body[strings.Index(r.body, "<main"):strings.Index(r.body, "</main>")]; strings.Contains(main, "Model") || strings.Contains(main, m.person) {
			m.rt.Fatalf("the bar learnt who the citizen is: %s", clip(r.body))
		}
	case a.declined:
		m.is("a declined request", r, http.StatusOK, "Rejected: ", "declined")
	default:
		m.is("a rejected presentation", r, http.StatusOK, "Rejected: On re-check: The credential has been revoked by its issuer.")
	}
}

func (m *presentationRun) revoke() {
	if len(m.held) == 0 {
		return
	}
	m.revokeHeld(rapid.SampledFrom(m.held).Draw(m.rt, "credential"))
}

func (m *presentationRun) revokeHeld(h *mHeld) {
	r := m.as("Marta Silva").postForm("/issue/"+m.reg+"/issued/"+h.issued+"/revoke", nil)
	if h.revoked {
		m.is("revoke again", r, http.StatusBadRequest, "Already revoked")
		m.seen.Saw("revoked before")
		return
	}
	m.is("revoke", r, http.StatusOK, "Revoked")
	h.revoked = true
	m.seen.Saw("revoked")
	// Past the status lists' cache, so that wallet and verifier both see it.
	m.w.n.clock.add(identity.StatusTTL + time.Second)
}

func (m *presentationRun) recheck(a *mAsk) {
	r := m.as("Sam Okafor").postForm(a.page+"/recheck", nil)
	erased := !m.now().Before(a.answered.Add(identity.KeepPresentations))
	switch {
	case a.state == "pending":
		m.is("re-check an unanswered request", r, http.StatusConflict, "There is nothing to check again yet: the wallet has not answered.")
		m.seen.Saw("re-check unanswered")
	case a.state == "verified" && erased:
		m.is("re-check an erased presentation", r, http.StatusGone, "There is nothing left to check again")
		m.seen.Saw("re-check erased")
	case a.state == "verified" && a.held.revoked:
		m.is("re-check a revoked credential", r, http.StatusOK, "Rejected: On re-check: The credential has been revoked by its issuer.")
		a.state = "rejected"
		m.seen.Saw("re-check rejects")
	case a.state == "verified":
		m.is("re-check", r, http.StatusOK, "Checked again: still valid.")
		m.seen.Saw("re-checked valid")
	default:
		m.is("re-check a rejected request", r, http.StatusOK, "Rejected: ")
		if strings.Contains(r.body, "still valid") {
			m.rt.Fatalf("a rejected request re-checked as valid: %s", clip(r.body))
		}
	}
	m.checkVerifier(a)
}

// checkWallet compares the citizen's credentials and presentations with
// the model.
func (m *presentationRun) checkWallet() {
	cards := map[string]string{}
	for _, c := range heldRE.FindAllStringSubmatch(m.citizen.get("/wallet/credentials").body, -1) {
		cards[c[1]] = c[2]
	}
	if len(cards) != len(m.held) {
		m.rt.Fatalf("the wallet shows %d credentials, want %d", len(cards), len(m.held))
	}
	usable := func(h *mHeld) bool { return !h.revoked && m.now().Before(h.expires) && h.left > 0 }
	// Every one is a PID from the same registry: the newest usable one
	// counts, or the newest; the copies of all usable ones are counted.
	var current *mHeld
	kindLeft := 0
	for _, h := range m.held {
		if usable(h) {
			kindLeft += h.left
		}
		if current == nil || usable(h) || !usable(current) {
			current = h
		}
	}
	for i, h := range m.held {
		card := cards[h.batch]
		expired := !m.now().Before(h.expires)
		replaced := h != current
		if replaced {
			m.seen.Saw("replaced")
			if i > slices.Index(m.held, current) {
				m.seen.Saw("an older one answers")
			}
		}
		switch {
		case replaced != strings.Contains(card, `id="replaced-`):
			m.rt.Fatalf("credential %s: replaced %t: %s", h.batch, replaced, card)
		case !strings.Contains(card, fmt.Sprintf("%d of %d single-use copies left", h.left, identity.WalletBatch)):
			m.rt.Fatalf("credential %s: want %d copies left: %s", h.batch, h.left, card)
		case h.revoked != strings.Contains(card, `verdict-bad">revoked</span>`):
			m.rt.Fatalf("credential %s: revoked %t: %s", h.batch, h.revoked, card)
		case (expired && !h.revoked) != strings.Contains(card, `">expired</span>`):
			m.rt.Fatalf("credential %s: expired %t: %s", h.batch, expired, card)
		case !h.revoked && !expired && !replaced && (kindLeft <= 2) != strings.Contains(card, "copies-low-"):
			m.rt.Fatalf("credential %s with %d copies left of %d: the warning is wrong: %s", h.batch, h.left, kindLeft, card)
		case (replaced || h.revoked || expired || kindLeft > 2) && strings.Contains(card, "copies-low-"):
			m.rt.Fatalf("credential %s: a warning where none is due: %s", h.batch, card)
		case strings.Contains(card, "copies-low-") && kindLeft > 0 && !strings.Contains(card, fmt.Sprintf("Only %d %s left", kindLeft, map[bool]string{true: "copy", false: "copies"}[kindLeft == 1])):
			m.rt.Fatalf("credential %s: the warning does not count the %d usable copies: %s", h.batch, kindLeft, card)
		case strings.Contains(card, "copies-low-") && (kindLeft != h.left) != strings.Contains(card, "counting your older ones"):
			m.rt.Fatalf("credential %s with %d of %d usable copies: the older ones' mention is wrong: %s", h.batch, h.left, kindLeft, card)
		}
	}
	var log struct {
		Presentations []identity.Presentation `json:"presentations"`
	}
	r := m.citizen.get("/wallet/presentations.json")
	if err := json.Unmarshal([]byte(r.body), &log); err != nil {
		m.rt.Fatalf("presentations: %v: %s", err, r.body)
	}
	shared, declined := 0, 0
	for _, p := range log.Presentations {
		switch p.Outcome {
		case "shared":
			shared++
		case "declined":
			declined++
		}
	}
	if shared != m.shared || declined != m.declined {
		m.rt.Fatalf("the wallet's log lists %d shared and %d declined, want %d and %d", shared, declined, m.shared, m.declined)
	}
}
