package server_test

import (
	"context"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestBrowserRewards in Chromium at phone width: a citizen joins the
// rewards programme, the transit operator's staff give points for rides by
// her member card, she buys a museum voucher, the museum scans it (its code
// pasted, as a desk without a camera would), and a second scan is refused.
func TestBrowserRewards(t *testing.T) {
	ctx := newBrowser(t)
	w := startDemo(t, storetest.Engine{Name: "sqlite", Open: func(t testing.TB) store.Options { return store.Options{DataDir: t.TempDir()} }})
	n := w.n
	org := func(name string) string {
		o, err := n.reg.OrganisationByName(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		return o.ID
	}
	transit, museum := org("Metro Transit"), org("City Museum")
	step(t, ctx, "phone-sized screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(n.URL+"/"), waitText("Demo personas"))

	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "the citizen joins",
		chromedp.Click(chromedp.CSS(`a[href="/wallet/rewards"]`)), waitText("Join the city's rewards programme"), waitText("no penalties"),
		chromedp.Click(chromedp.CSS(`#join`)), waitText("Your member card"))
	card, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#card-code`)))
	if err != nil || len(card) < 10 {
		t.Fatalf("member card %q: %v", card, err)
	}
	screenshot(t, ctx, "60-rewards-card")

	switchTo(t, ctx, n, "Ben Carter")
	for range 3 {
		step(t, ctx, "the transit staff give points for a ride",
			chromedp.Navigate(n.URL+"/rewards/"+transit), waitText("Give points"),
			chromedp.SendKeys(chromedp.CSS(`#event-form input[name=card]`), card),
			chromedp.Click(chromedp.CSS(`#event-form button[type=submit]`)), waitText("Ride on public transport: 10 points given."))
	}

	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "the citizen sees her points and buys a museum entry",
		chromedp.Navigate(n.URL+"/wallet/rewards"), waitText("30 points"), waitText("Ride on public transport at Metro Transit, +10"),
		chromedp.Click(chromedp.CSS(`button[data-item="museum-entry"]`)), waitText("Show this code at City Museum"))
	screenshot(t, ctx, "61-rewards-voucher")
	if wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)); err != nil || wide {
		t.Errorf("the voucher page at phone width is wider than the screen (%v)", err)
	}
	code, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("voucher-code").value`))
	if err != nil || len(code) < 100 {
		t.Fatalf("voucher code %q: %v", code, err)
	}
	if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!document.querySelector(".qr svg")`)); err != nil || !ok {
		t.Fatalf("no QR code on the voucher page (%v)", err)
	}

	switchTo(t, ctx, n, "Lena Fischer")
	scan := func(what, want string) {
		step(t, ctx, what,
			chromedp.Navigate(n.URL+"/rewards/"+museum), waitText("Scan a voucher"),
			chromedp.SetValue(chromedp.CSS(`#code`), code),
			chromedp.Click(chromedp.CSS(`#voucher-form button[type=submit]`)), waitText(want))
	}
	scan("the museum scans the voucher", "Accepted: Museum entry. The voucher is now used.")
	scan("a second scan is refused", "Refused: This voucher was used")
	screenshot(t, ctx, "62-rewards-second-scan")

	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "the citizen sees the voucher used",
		chromedp.Navigate(n.URL+"/wallet/rewards"), waitText("Museum entry at City Museum: used"))
}
