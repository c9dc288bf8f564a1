package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/civstack/civstack/internal/identity"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestBrowserIdentity: the registry office offers a national identity
// credential, the citizen adds it with the code, a bar asks only "over
// 18", the citizen sees who asks and why and approves, the bar sees
// "over 18: true" and nothing else; after revocation the same
// presentation is rejected.
func TestBrowserIdentity(t *testing.T) {
	ctx := newBrowser(t)
	w := idWorld(t, storetest.Engine{Name: "sqlite", Open: func(t testing.TB) store.Options { return store.Options{DataDir: t.TempDir()} }})
	n := w.n
	reg, bar := w.orgs["Civil Registry Office"], w.orgs["Blue Door Bar"]
	step(t, ctx, "phone-sized screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(n.URL+"/"), waitText("Demo personas"))

	switchTo(t, ctx, n, "Marta Silva")
	step(t, ctx, "the registrar makes an offer",
		chromedp.Click(chromedp.CSS(`a[href="/issue/`+reg+`"]`)), waitText("Offer a National identity (PID)"),
		chromedp.SendKeys(chromedp.CSS(`#offer-pid input[name=person]`), w.people["Amira Haddad"]),
		chromedp.SendKeys(chromedp.CSS(`#offer-pid input[name="pid.given_name"]`), "Amira"),
		chromedp.SendKeys(chromedp.CSS(`#offer-pid input[name="pid.family_name"]`), "Haddad"),
		chromedp.SetValue(chromedp.CSS(`#offer-pid input[name="pid.birthdate"]`), "1990-05-01"),
		chromedp.SendKeys(chromedp.CSS(`#offer-pid input[name="pid.nationalities"]`), "IT"),
		chromedp.SendKeys(chromedp.CSS(`#offer-pid input[name="pid.address.locality"]`), "Bologna"),
		chromedp.Click(chromedp.CSS(`#offer-pid button[type=submit]`)),
		waitText("Offer for a National identity (PID)"))
	screenshot(t, ctx, "40-identity-offer")
	code, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("tx-code").textContent`))
	if err != nil || len(code) != 6 {
		t.Fatalf("transaction code %q: %v", code, err)
	}

	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "the citizen adds the credential with the code",
		chromedp.Click(chromedp.CSS(`a[href="/wallet/credentials"]`)), waitText("Waiting for you"),
		chromedp.SendKeys(chromedp.CSS(`.offer input[name=tx_code]`), code),
		chromedp.Click(chromedp.CSS(`.offer button[type=submit]`)),
		waitText("10 single-use copies of the credential are now in your wallet"), waitText("Over 18"), waitText("Bologna"))
	screenshot(t, ctx, "41-identity-wallet")

	switchTo(t, ctx, n, "Sam Okafor")
	step(t, ctx, "the bar asks for over 18",
		chromedp.Click(chromedp.CSS(`a[href="/check/`+bar+`"]`)), waitText("New request"),
		chromedp.Click(chromedp.CSS(`#new-request button[type=submit]`)),
		waitText("Waiting for the wallet"), waitText("Asking for: Over 18."))
	screenshot(t, ctx, "42-identity-request")
	page, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`))
	if err != nil {
		t.Fatal(err)
	}
	link, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("same-device").href`))
	if err != nil || !strings.Contains(link, "/wallet/present?") {
		t.Fatalf("same-device link %q: %v", link, err)
	}

	cross, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("request-link").value`))
	if err != nil || !strings.HasPrefix(cross, "openid4vp://") {
		t.Fatalf("cross-device link %q: %v", cross, err)
	}

	// The citizen's phone has no camera here: she opens the wallet's page
	// for a request shown on another screen and pastes its link.
	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "the citizen pastes the request shown on the bar's screen",
		chromedp.Navigate(n.URL+"/wallet/credentials"),
		chromedp.Click(chromedp.CSS(`a[href="/wallet/present"]`)), waitText("Scan the QR code a verifier shows you"),
		chromedp.SetValue(chromedp.ID("request"), cross),
		chromedp.Click(chromedp.CSS(`#request-form button[type=submit]`)),
		waitText("Blue Door Bar asks for your National identity (PID)"))
	step(t, ctx, "the same request opened on the same device",
		chromedp.Navigate(link), waitText("Blue Door Bar asks for your National identity (PID)"), waitText("Check that a guest is over 18 before serving alcohol."))
	screenshot(t, ctx, "43-identity-consent")
	if wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)); err != nil || wide {
		t.Errorf("the consent page at phone width is wider than the screen (%v)", err)
	}
	items, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#consent-form fieldset").innerText`))
	if !strings.Contains(items, "Over 18: true") || strings.Contains(items, "1990") {
		t.Fatalf("consent items: %q", items)
	}
	step(t, ctx, "the citizen approves", chromedp.Click(chromedp.CSS(`button[value=share]`)), waitText("Shared with the verifier."), waitText("age_over_18"))

	switchTo(t, ctx, n, "Sam Okafor")
	step(t, ctx, "the bar sees the result", chromedp.Navigate(page), waitText("Verified"))
	screenshot(t, ctx, "44-identity-verified")
	result, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("result-claims").innerText`))
	if err != nil || strings.Join(strings.Fields(result), " ") != "Over 18 true" {
		t.Fatalf("the bar learns %q (%v), want only Over 18: true", result, err)
	}

	switchTo(t, ctx, n, "Marta Silva")
	step(t, ctx, "the registrar revokes",
		chromedp.Navigate(n.URL+"/issue/"+reg), waitText("Issued"),
		chromedp.Click(chromedp.CSS(`#issued button[type=submit]`)), waitText("Revoked. Verifiers refuse it"))
	n.clock.add(identity.StatusTTL + time.Second) // the bar's cached status list runs out
	switchTo(t, ctx, n, "Sam Okafor")
	step(t, ctx, "the same presentation is now rejected",
		chromedp.Navigate(page), waitText("Verified"),
		chromedp.Click(chromedp.CSS(`form[action$="/recheck"] button`)),
		waitText("Rejected: On re-check: The credential has been revoked by its issuer."))
	screenshot(t, ctx, "45-identity-revoked")
}
