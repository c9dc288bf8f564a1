package server_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestBrowserHealth: a citizen answers the questionnaire, gets yellow with
// the reason, checks in, and a verifier page reads the pass and shows
// yellow; then a health officer decides an appeal.
func TestBrowserHealth(t *testing.T) {
	ctx := newBrowser(t)
	w := startDemo(t, storetest.Engine{Name: "sqlite", Open: func(t testing.TB) store.Options { return store.Options{DataDir: t.TempDir()} }})
	n := w.n
	step(t, ctx, "phone-sized screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(n.URL+"/"), waitText("Demo personas"))
	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "open Health from the menu", chromedp.Click(chromedp.CSS(`a[href="/health"]`)), waitText("Get your health code"))
	step(t, ctx, "answer the questionnaire",
		chromedp.SetValue(chromedp.ID("dob"), "1990-04-01"),
		chromedp.Click(chromedp.CSS(`input[name=symptoms][value=yes]`)),
		chromedp.Click(chromedp.CSS(`input[name=contact][value=no]`)),
		chromedp.Click(chromedp.CSS(`input[name=travel][value=no]`)),
		chromedp.Click(chromedp.CSS(`input[name=test][value=none]`)),
		chromedp.Click(chromedp.CSS("#questionnaire button[type=submit]")),
		waitText("Your health code is yellow."), waitText("You reported symptoms"), waitText("After 7 consecutive days of normal check-ins"))
	screenshot(t, ctx, "30-health-yellow")
	besideItsLabel(t, ctx, `input[name=symptoms][value=yes]`, "the questionnaire's answer")
	besideItsLabel(t, ctx, `input[name=feeling][value=normal]`, "the check-in's answer")
	if wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)); err != nil || wide {
		t.Errorf("the health page at phone width is wider than the screen (%v)", err)
	}
	step(t, ctx, "check in",
		chromedp.Click(chromedp.CSS(`input[name=feeling][value=normal]`)),
		chromedp.Click(chromedp.CSS(`form[action="/health/checkin"] button`)),
		waitText("Checked in for today. 6 more days of normal check-ins to green."), waitText("You have checked in today"))
	pass, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("pass-payload").value`))
	if err != nil || !strings.HasPrefix(pass, "HC1:") {
		t.Fatalf("the pass text: %q %v", pass, err)
	}
	step(t, ctx, "file an appeal",
		chromedp.SendKeys(chromedp.ID("appeal-message"), "Only hay fever."),
		chromedp.Click(chromedp.CSS(`form[action="/health/appeal"] button`)),
		waitText("Your appeal is with a health officer"))

	// A verifier (here Jonas at a gate) reads the pass: pasted here; the
	// camera's reading is TestBrowserScanQR's.
	switchTo(t, ctx, n, "Jonas Weber")
	step(t, ctx, "the verifier reads the pass",
		chromedp.Navigate(n.URL+"/verify"), waitText("Nothing about the scan is stored"),
		chromedp.SetValue(chromedp.ID("payload"), pass),
		chromedp.Click(chromedp.CSS("#verify-form button[type=submit]")),
		waitText("Health code: yellow"), waitText("Amira Haddad, born 1990-04-01"))
	screenshot(t, ctx, "31-verify-yellow")
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("verdict").innerText`))
	if strings.Contains(body, "symptoms") {
		t.Errorf("the verifier learns the reason: %q", body)
	}

	switchTo(t, ctx, n, "Kofi Mensah")
	step(t, ctx, "the officer refuses the appeal",
		chromedp.Click(chromedp.CSS(`a[href="/health/authority"]`)), waitText("Only hay fever."),
		chromedp.SendKeys(chromedp.CSS(`.appeal textarea`), "Symptoms need the 7 days."),
		chromedp.Click(chromedp.CSS(`.appeal button[value=refuse]`)),
		waitText("Decision recorded (upheld)"), waitText("No appeals are waiting"))
	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "the citizen reads the decision", chromedp.Navigate(n.URL+"/health"), waitText("upheld"), waitText("Symptoms need the 7 days."))
}
