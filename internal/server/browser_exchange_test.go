package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestBrowserExchange: the tax office reads a citizen's declared income for
// an audit; the citizen sees the access, verified; the police make a
// deferred request; the DPA sees it at once and the citizen after the
// deferral (injected clock). Then the police ask for her address, which
// needs her consent: she approves (the police see it waiting for them),
// and withdraws it before they collect; her past requests say so.
func TestBrowserExchange(t *testing.T) {
	ctx := newBrowser(t)
	w := startDemo(t, storetest.Engine{Name: "sqlite", Open: func(t testing.TB) store.Options { return store.Options{DataDir: t.TempDir()} }})
	n := w.n
	tax, police := exWorld(t, w)
	amira := w.people["Amira Haddad"]
	step(t, ctx, "phone-sized screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(n.URL+"/"), waitText("Demo personas"))

	switchTo(t, ctx, n, "Tomas Novak")
	step(t, ctx, "the tax officer asks for the declared income",
		chromedp.Click(chromedp.CSS(`a[href="/exchange/`+tax+`"]`)), waitText("Ask for data about a citizen"),
		chromedp.SendKeys(chromedp.CSS(`#ask-form input[name=citizen]`), amira),
		chromedp.SetValue(chromedp.CSS(`#ask-form select[name=service]`), "tax-income"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#ask-form select[name=service]").dispatchEvent(new Event("change"))`),
		chromedp.Click(chromedp.CSS(`#ask-form .field-tax-income input[value=declared_income]`)),
		chromedp.SendKeys(chromedp.CSS(`#ask-form input[name=purpose]`), "TAX-AUDIT"),
		chromedp.SendKeys(chromedp.CSS(`#ask-form input[name=legal_basis]`), "Tax Code §93"),
		chromedp.Click(chromedp.CSS(`#ask-form button[type=submit]`)),
		waitText("Released. The access is recorded"), waitText("41250"))
	screenshot(t, ctx, "50-exchange-released")
	onScreen(t, ctx, `#requests tbody td[data-label=State]`, "the request's state on the agency's page")
	step(t, ctx, "the form shows only the chosen service's fields",
		chromedp.SetValue(chromedp.CSS(`#ask-form select[name=service]`), "population"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#ask-form select[name=service]").dispatchEvent(new Event("change"))`))
	if shown, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("#ask-form label[class^='field-']")].filter(l => l.offsetParent !== null).map(l => l.className).join(" ")`)); err != nil ||
		!strings.Contains(shown, "field-population") || strings.Contains(shown, "field-tax-income") {
		t.Errorf("fields shown for the population register: %q (%v)", shown, err)
	}
	// A legal basis cited by its address: one long word, which must wrap
	// on a phone rather than widen the citizen's page.
	longBasis := "https://eur-lex.europa.eu/legal-content/EN/TXT/?uri=CELEX:32016R0679#d1e1888-1-1_art6_par1_pte"
	if _, err := n.ex.CreatePolicy(context.Background(), exchange.Policy{Requester: tax, Service: "tax-income", Fields: []string{"employer"}, Purpose: "EMPLOYER-CHECK",
		LegalBasis: longBasis, Retention: 30 * exchange.Day}, "test"); err != nil {
		t.Fatal(err)
	}
	if r, err := n.ex.Submit(context.Background(), exchange.Ask{Requester: tax, Officer: "Tomas Novak", Citizen: amira, Service: "tax-income",
		Fields: []string{"employer"}, Purpose: "EMPLOYER-CHECK", LegalBasis: longBasis}); err != nil || r.State != exchange.Released {
		t.Fatalf("release under the long legal basis: %v %+v", err, r)
	}
	if _, _, err := n.tlog.Integrate(context.Background()); err != nil {
		t.Fatal(err)
	}

	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "the citizen sees the access, verified",
		chromedp.Click(chromedp.CSS(`a[href="/wallet/access"]`)), waitText("City Tax Office read your Declared income"),
		waitText("TAX-AUDIT"), waitText("Verified: entry"))
	screenshot(t, ctx, "51-exchange-citizen")
	if wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)); err != nil || wide {
		t.Errorf("the access page at phone width is wider than the screen (%v)", err)
	}
	// The basis is the law's address: a link to it, sending no referrer.
	if link, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("a.law")].map(a => a.href + " " + a.rel).join("|")`)); err != nil ||
		link != longBasis+" noreferrer" {
		t.Errorf("the legal basis's link on her page: %q (%v), want %q", link, err, longBasis+" noreferrer")
	}

	switchTo(t, ctx, n, "Eva Lind")
	step(t, ctx, "the police make a deferred request",
		chromedp.Click(chromedp.CSS(`a[href="/exchange/`+police+`"]`)), waitText("Ask for data about a citizen"),
		chromedp.SendKeys(chromedp.CSS(`#ask-form input[name=citizen]`), amira),
		chromedp.SetValue(chromedp.CSS(`#ask-form select[name=service]`), "tax-income"),
		chromedp.Click(chromedp.CSS(`#ask-form .field-tax-income input[value=employer]`)),
		chromedp.SendKeys(chromedp.CSS(`#ask-form input[name=purpose]`), "CRIM-INVESTIGATION"),
		chromedp.SendKeys(chromedp.CSS(`#ask-form input[name=legal_basis]`), "Criminal Procedure §100"),
		chromedp.SetValue(chromedp.CSS(`#ask-form input[name=defer_days]`), "20"),
		chromedp.Click(chromedp.CSS(`#ask-form button[type=submit]`)),
		waitText("sees it when the deferral ends"), waitText("Bologna Labs"))

	switchTo(t, ctx, n, "Ana Costa")
	step(t, ctx, "the DPA sees it at once",
		chromedp.Click(chromedp.CSS(`a[href="/dpa/exchange"]`)), waitText("Deferred: not yet visible to the citizen"),
		waitText("CRIM-INVESTIGATION"), waitText("Eva Lind"))
	screenshot(t, ctx, "52-exchange-dpa")
	onScreen(t, ctx, `#deferred tbody td[data-label="Visible to the citizen"]`, "the deferral's end on the DPA's page")
	step(t, ctx, "the DPA opens the police's covert accesses",
		chromedp.Click(chromedp.CSS(`#summary a[href*="purpose=CRIM-INVESTIGATION"]`)), waitText("Accesses by City Police for CRIM-INVESTIGATION"),
		waitText("Criminal Procedure §100"), waitText("Download all as CSV"))
	screenshot(t, ctx, "54-exchange-dpa-accesses")
	if wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)); err != nil || wide {
		t.Errorf("the DPA's list at phone width is wider than the screen (%v)", err)
	}
	step(t, ctx, "the DPA opens every denied request",
		chromedp.Navigate(n.URL+"/dpa/exchange"), waitText("Denied, refused, cancelled and lapsed requests"),
		chromedp.Click(chromedp.CSS(`#all-denied`)), waitText("Every request that released nothing"))
	if wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)); err != nil || wide {
		t.Errorf("the DPA's denied requests at phone width are wider than the screen (%v)", err)
	}

	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "the citizen does not see it yet", chromedp.Navigate(n.URL+"/wallet/access"), waitText("City Tax Office read your Declared income"))
	body, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main").innerText`))
	if err != nil || strings.Contains(body, "CRIM-INVESTIGATION") {
		t.Fatalf("the deferred access shows early (%v)", err)
	}
	n.clock.add(21 * exchange.Day)
	if _, _, err := n.tlog.Integrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "after the deferral the citizen sees it, verified",
		chromedp.Navigate(n.URL+"/wallet/access"), waitText("City Police read your Declared income"), waitText("CRIM-INVESTIGATION"), waitText("hidden from you until"),
		waitText("No longer hidden from you"))
	screenshot(t, ctx, "53-exchange-after-deferral")
	onScreen(t, ctx, `[id^="disc-"] .verified`, "the access no longer hidden, verified, on top")
	step(t, ctx, "she picks the police's accesses alone",
		chromedp.SetValue(chromedp.CSS(`#acc-agency`), police), chromedp.Click(chromedp.CSS(`#acc-filter button[type=submit]`)),
		waitText("Accesses by City Police"))
	if heads, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("article.access h3")).map(h => h.innerText)`)); err != nil ||
		len(heads) != 1 || heads[0] != "City Police read your Declared income" {
		t.Fatalf("the police's accesses alone: %q (%v)", heads, err)
	}
	// She asks the DPA about it; the DPA answers; she reads the answer.
	step(t, ctx, "she asks the DPA about the police's access",
		chromedp.Click(chromedp.CSS(`article.access p.complain a`)), waitText("Is something wrong with this access?"),
		chromedp.SendKeys(chromedp.CSS(`#complaint-message`), "Why did the police read my income?"),
		chromedp.Click(chromedp.CSS(`#complaint-form button[type=submit]`)),
		waitText("Sent. The data-protection authority will look into this access"), waitText("has not answered yet"))
	screenshot(t, ctx, "53b-exchange-complaint")
	switchTo(t, ctx, n, "Ana Costa")
	step(t, ctx, "the DPA answers the complaint",
		chromedp.Navigate(n.URL+"/dpa/exchange"), waitText("complaint waits for your answer"),
		chromedp.Click(chromedp.CSS(`#complaints-link`)), waitText("Why did the police read my income?"), waitText("Eva Lind"),
		chromedp.SendKeys(chromedp.CSS(`article.complaint textarea[name=answer]`), "The court authorised it; the case is closed."),
		chromedp.Click(chromedp.CSS(`article.complaint button[type=submit]`)),
		waitText("Answered. The citizen reads your answer"), waitText("No complaint waits for an answer."))
	if wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)); err != nil || wide {
		t.Errorf("the DPA's complaints at phone width are wider than the screen (%v)", err)
	}
	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "she reads the DPA's answer beside the access",
		chromedp.Navigate(n.URL+"/wallet/access?agency="+police), waitText("answered your complaint on"),
		chromedp.Click(chromedp.CSS(`article.access p.complaint-state a`)), waitText("The court authorised it; the case is closed."))
	onScreen(t, ctx, `#complaint-answer`, "the DPA's answer")

	// Consent: the police ask for her address; she approves, and then,
	// before they collect it, changes her mind.
	switchTo(t, ctx, n, "Eva Lind")
	step(t, ctx, "the police ask for an address, which needs consent",
		chromedp.Navigate(n.URL+"/exchange/"+police), waitText("Ask for data about a citizen"),
		chromedp.SendKeys(chromedp.CSS(`#ask-form input[name=citizen]`), amira),
		chromedp.SetValue(chromedp.CSS(`#ask-form select[name=service]`), "population"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#ask-form select[name=service]").dispatchEvent(new Event("change"))`),
		chromedp.Click(chromedp.CSS(`#ask-form .field-population input[value=address]`)),
		chromedp.SendKeys(chromedp.CSS(`#ask-form input[name=purpose]`), "WITNESS-CONTACT"),
		chromedp.SendKeys(chromedp.CSS(`#ask-form input[name=legal_basis]`), "Police Act §12"),
		chromedp.Click(chromedp.CSS(`#ask-form button[type=submit]`)),
		waitText("waiting in their wallet. It lapses if they do not answer by"))
	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "her home page says a request waits; she opens it and approves",
		waitText("A request asks for your consent"), chromedp.Click(chromedp.CSS(`.tile a[href="/wallet/access"]`)),
		waitText("City Police asks for your Population register"), waitText("Answer by"),
		chromedp.Click(chromedp.CSS(`.consent-request button[value=approve]`)), waitText("Approved. City Police may collect the data once"),
		waitText("You approved this on"))
	screenshot(t, ctx, "55-exchange-consent-given")
	switchTo(t, ctx, n, "Eva Lind")
	step(t, ctx, "the police see it waiting for them to collect",
		chromedp.Navigate(n.URL+"/exchange/"+police), waitText("Waiting requests"), waitText("consented: collect by"))
	onScreen(t, ctx, `#open-requests button[type=submit]`, "the button that collects a consented request")
	screenshot(t, ctx, "55b-exchange-waiting-requests")
	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "she opens her requests again", chromedp.Navigate(n.URL+"/wallet/access"), waitText("You approved this on"))
	onScreen(t, ctx, `.consent-request button[value=withdraw]`, "the button that withdraws consent")
	step(t, ctx, "the citizen withdraws her consent",
		chromedp.Click(chromedp.CSS(`.consent-request button[value=withdraw]`)), waitText("Consent withdrawn. City Police is told"))
	if left, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(".consent-request").length`)); err != nil || left != 0 {
		t.Errorf("%d consent requests still shown after withdrawing (%v)", left, err)
	}
	step(t, ctx, "her past requests say she withdrew it", waitText("You withdrew your consent on"), waitText("Nothing was released."))
	onScreen(t, ctx, `.past-request .outcome`, "how a past request ended")
	screenshot(t, ctx, "56-exchange-consent-withdrawn")
	switchTo(t, ctx, n, "Eva Lind")
	step(t, ctx, "the police see the withdrawal",
		chromedp.Navigate(n.URL+"/exchange/"+police), waitText("The citizen withdrew consent before the data was collected"))
	if buttons, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("form[action$='/collect']").length`)); err != nil || buttons != 0 {
		t.Errorf("%d collect buttons after the consent was withdrawn (%v)", buttons, err)
	}
	// Asked again and approved, the police collect with a double click.
	// The values leave once, to the first answer, so that answer must stay
	// on screen: htmx queues the second submission behind the first, and
	// drops it when the first answer has replaced the page and its form.
	step(t, ctx, "the police ask again",
		chromedp.SetValue(chromedp.CSS(`#ask-form select[name=service]`), "population"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#ask-form select[name=service]").dispatchEvent(new Event("change"))`),
		chromedp.Click(chromedp.CSS(`#ask-form .field-population input[value=address]`)),
		chromedp.SendKeys(chromedp.CSS(`#ask-form input[name=citizen]`), amira),
		chromedp.SendKeys(chromedp.CSS(`#ask-form input[name=purpose]`), "WITNESS-CONTACT"),
		chromedp.SendKeys(chromedp.CSS(`#ask-form input[name=legal_basis]`), "Police Act §12"),
		chromedp.Click(chromedp.CSS(`#ask-form button[type=submit]`)),
		waitText("waiting in their wallet. It lapses if they do not answer by"))
	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "she approves again", chromedp.Navigate(n.URL+"/wallet/access"),
		chromedp.Click(chromedp.CSS(`.consent-request button[value=approve]`)), waitText("Approved. City Police may collect the data once"))
	switchTo(t, ctx, n, "Eva Lind")
	step(t, ctx, "the police collect with a double click",
		chromedp.Navigate(n.URL+"/exchange/"+police), waitText("consented: collect by"),
		chromedp.Evaluate[chromedp.Void](`(() => { const b = document.querySelector("form[action$='/collect'] button"); b.click(); b.click(); })()`),
		waitText("Via Zamboni 33"))
	time.Sleep(500 * time.Millisecond) // time for a second answer to arrive, were one sent
	if body, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`)); err != nil || !strings.Contains(body, "Via Zamboni 33") || strings.Contains(body, "collected already") {
		t.Errorf("after a double click on Collect the page does not show the released address (%v): address %v, collected already %v", err, strings.Contains(body, "Via Zamboni 33"), strings.Contains(body, "collected already"))
	}
	// The answer stays at the agency page's address, so a reload opens
	// that page, not the form's action (which serves no GET).
	if loc, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname`)); err != nil || loc != "/exchange/"+police {
		t.Errorf("after collecting, the address is %q (%v), want the agency page's", loc, err)
	}
	step(t, ctx, "the police reload the page", chromedp.Reload(), waitText("Ask for data about a citizen"))
	step(t, ctx, "the police open every request they made",
		chromedp.Click(chromedp.CSS(`#all-requests`)), waitText("All requests · City Police"), waitText("The citizen withdrew consent"), waitText("CRIM-INVESTIGATION"))
	screenshot(t, ctx, "57-exchange-all-requests")

	// The operator puts a policy in force through the form and retires
	// it; the DPA reads when it held.
	switchTo(t, ctx, n, "Olu Adeyemi")
	step(t, ctx, "the operator puts a policy in force",
		chromedp.Click(chromedp.CSS(`nav a[href="/exchange/policies"]`)), waitText("New policy"),
		chromedp.SetValue(chromedp.CSS(`#policy-form select[name=requester]`), tax),
		chromedp.SetValue(chromedp.CSS(`#policy-form select[name=service]`), "population"),
		chromedp.Click(chromedp.CSS(`#policy-form input[name=field][value=address]`)),
		chromedp.SendKeys(chromedp.CSS(`#policy-form input[name=purpose]`), "TAX-RESIDENCE"),
		chromedp.SendKeys(chromedp.CSS(`#policy-form input[name=legal_basis]`), "Tax Code §12"),
		chromedp.Click(chromedp.CSS(`#policy-form button[type=submit]`)),
		waitText("Policy in force."), waitText("TAX-RESIDENCE"))
	screenshot(t, ctx, "58-exchange-policies")
	if wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)); err != nil || wide {
		t.Errorf("the policies at phone width are wider than the screen (%v)", err)
	}
	step(t, ctx, "the operator asks to retire it",
		chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll("#policies tr")].find(r => r.innerText.includes("TAX-RESIDENCE")).querySelector("a[href$='/retire']").click()`),
		waitText("Retire a policy?"), waitText("No request asked under it still waits"))
	screenshot(t, ctx, "59-exchange-retire-policy")
	if wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)); err != nil || wide {
		t.Errorf("the retirement's confirmation at phone width is wider than the screen (%v)", err)
	}
	step(t, ctx, "the operator keeps it in force, then retires it",
		chromedp.Click(chromedp.CSS(`#retire-form a`)), waitText("New policy"),
		chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll("#policies tr")].find(r => r.innerText.includes("TAX-RESIDENCE")).querySelector("a[href$='/retire']").click()`),
		waitText("Retire a policy?"), chromedp.Click(chromedp.CSS(`#retire-form button[type=submit]`)),
		waitText("Policy retired: requests under it are refused from now on."))
	switchTo(t, ctx, n, "Ana Costa")
	step(t, ctx, "the DPA reads when it was in force",
		chromedp.Navigate(n.URL+"/dpa/exchange"), chromedp.Click(chromedp.CSS(`a[href="/exchange/policies"]`)),
		waitText("Which agency may read which fields"), waitText("TAX-RESIDENCE"))
	row, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("#policies tr")].find(r => r.innerText.includes("TAX-RESIDENCE"))?.innerText ?? ""`))
	if err != nil || !strings.Contains(row, "until") || !strings.Contains(row, "retired") {
		t.Errorf("the retired policy's row for the DPA: %q (%v)", row, err)
	}
}
