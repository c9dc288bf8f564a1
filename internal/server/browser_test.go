package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/civstack/civstack/internal/demo"
	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// ChromiumEnv names the variable holding the Chromium binary for the browser
// suite. CI sets it; without it the suite skips and says so.
const ChromiumEnv = "CIVSTACK_TEST_CHROMIUM"

// newBrowser starts headless Chromium with the extra options (flags), or
// skips the test when none is given.
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	exe := os.Getenv(ChromiumEnv)
	if exe == "" {
		t.Skipf("browser suite skipped: set %s to a Chromium binary (e.g. /usr/bin/chromium) to run it", ChromiumEnv)
	}
	if _, err := os.Stat(exe); err != nil {
		t.Fatalf("%s=%s: %v", ChromiumEnv, exe, err)
	}
	// Chromium keeps its profile in one test directory and, through TMPDIR,
	// its singleton socket's directory in another: left to itself it makes
	// that one in /tmp and, stopped by the test, never removes it.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Env("TMPDIR="+t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
	)
	opts = append(opts, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // start the browser without a deadline
		t.Fatalf("start Chromium: %v", err)
	}
	// Record Content-Security-Policy violations, uncaught script errors and
	// elements whose file failed to load in sessionStorage, so they survive
	// navigations; step fails on any.
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: problemRecorder}); err != nil {
		t.Fatalf("install the problem recorder: %v", err)
	}
	// The page cannot see what the browser fetches on its own (the icon in
	// the tab, say) or what it writes to its console; the protocol can.
	heard := &browserProblems{}
	if err := chromedp.Listen(ctx, heard.hear); err != nil {
		t.Fatalf("listen to the browser: %v", err)
	}
	t.Cleanup(func() { // before the browser stops: what came after the last step
		if seen := heard.take(); len(seen) > 0 && !t.Failed() {
			t.Errorf("after the last step, the browser reported problems:\n%s", strings.Join(seen, "\n"))
		}
	})
	return context.WithValue(ctx, browserProblemsKey{}, heard)
}

// browserProblemsKey finds the browserProblems of a browser context made
// by newBrowser, for step.
type browserProblemsKey struct{}

// browserProblems collects what the browser reports outside the page: a
// file that did not load (a 4xx or 5xx answer, or no answer) and any
// warning or error in its console. A form's htmx request may be refused on
// purpose (a 422 the page then shows), so a 4xx answer to XHR or fetch, and
// htmx's console line about it, do not count; a 5xx answer always does.
type browserProblems struct {
	mu   sync.Mutex
	seen []string
	urls map[network.RequestID]string // what each request asked for, to name a failed one
}

// hear runs on the loop that reads the browser's messages: it must be quick
// and must not call the browser (see chromedp.Listen).
func (b *browserProblems) hear(ev any) {
	var problem string
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		b.mu.Lock()
		if b.urls == nil {
			b.urls = map[network.RequestID]string{}
		}
		b.urls[e.RequestID] = e.Request.URL
		b.mu.Unlock()
	case *network.EventResponseReceived:
		script := e.Type == network.ResourceTypeXHR || e.Type == network.ResourceTypeFetch
		if e.Response.Status >= 500 || e.Response.Status >= 400 && !script {
			problem = fmt.Sprintf("%s %s answered %d", e.Type, e.Response.URL, e.Response.Status)
		}
	case *network.EventLoadingFailed:
		if !e.Canceled && e.BlockedReason == "" {
			b.mu.Lock()
			url := b.urls[e.RequestID]
			b.mu.Unlock()
			problem = fmt.Sprintf("%s %s failed: %s", e.Type, url, e.ErrorText)
		}
	case *runtime.EventConsoleAPICalled:
		if e.Type != runtime.ConsoleAPICalledTypeError && e.Type != runtime.ConsoleAPICalledTypeWarning && e.Type != runtime.ConsoleAPICalledTypeAssert {
			break
		}
		var args []string
		for _, a := range e.Args {
			var text string
			if json.Unmarshal(a.Value, &text) != nil {
				text = string(a.Value)
			}
			args = append(args, text)
		}
		// htmx says so of every refused form; the answer itself counts above.
		if len(args) > 0 && strings.HasPrefix(args[0], "Response Status Error Code 4") {
			break
		}
		problem = fmt.Sprintf("console.%s(%s)", e.Type, strings.Join(args, ", "))
	case *cdplog.EventEntryAdded:
		// The console's network lines repeat the answers seen above.
		if e.Entry.Source != cdplog.EntrySourceNetwork && (e.Entry.Level == cdplog.EntryLevelWarning || e.Entry.Level == cdplog.EntryLevelError) {
			problem = fmt.Sprintf("console %s (%s): %s %s", e.Entry.Level, e.Entry.Source, e.Entry.Text, e.Entry.URL)
		}
	}
	if problem == "" {
		return
	}
	b.mu.Lock()
	b.seen = append(b.seen, problem)
	b.mu.Unlock()
}

// take returns what was heard since the last call and forgets it.
func (b *browserProblems) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	seen := b.seen
	b.seen = nil
	return seen
}

const problemRecorder = `(function () {
  function note(msg) {
    try {
      var all = JSON.parse(sessionStorage.getItem("civstack-problems") || "[]");
      all.push(location.pathname + ": " + msg);
      sessionStorage.setItem("civstack-problems", JSON.stringify(all));
    } catch (e) {}
  }
  document.addEventListener("securitypolicyviolation", function (e) { note("CSP blocked " + e.blockedURI + " (" + e.violatedDirective + ")"); });
  window.addEventListener("error", function (e) { note("script error: " + e.message); });
  // A script, style sheet or image that fails to load fires "error" on
  // its element, which does not bubble: catch it on the way down.
  window.addEventListener("error", function (e) {
    var el = e.target;
    if (el && el !== window && (el.src || el.href)) { note("failed to load " + (el.src || el.href)); }
  }, true);
})();`

// step runs actions with a time limit and fails the test with what went wrong.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("%s: %v\npage text:\n%s", what, err, body)
	}
	problems, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("civstack-problems") || ""`))
	if err != nil {
		t.Fatalf("%s: read problems: %v", what, err)
	}
	if problems != "" && problems != "[]" {
		t.Fatalf("%s: the page reported problems: %s", what, problems)
	}
	if heard, ok := ctx.Value(browserProblemsKey{}).(*browserProblems); ok {
		if seen := heard.take(); len(seen) > 0 {
			t.Fatalf("%s: the browser reported problems:\n%s", what, strings.Join(seen, "\n"))
		}
	}
}

// waitText waits until the page's text contains want and no htmx swap is
// under way. It survives the page navigating away meanwhile (a passkey
// ceremony ends with a redirect). The second condition matters for the
// click that usually follows: chromedp clicks at the element's place on
// screen, and a boosted page scrolls to the top when it settles, 20 ms
// after its text is in; a click measured before that lands elsewhere.
func waitText(want string) chromedp.Action[chromedp.Void] {
	return waitTrue(fmt.Sprintf("%q", want), fmt.Sprintf(`!!document.body && document.body.innerText.includes(%q) && !document.querySelector(".htmx-swapping, .htmx-settling")`, want))
}

// waitTrue waits until the JavaScript expression expr is true; what names
// it in the error when the step's time runs out.
func waitTrue(what, expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		for {
			ok, err := chromedp.Evaluate[bool](expr)(ctx, tg)
			if err == nil && ok {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s: %w (last error %v)", what, ctx.Err(), err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
}

func addAuthenticator(t *testing.T, ctx context.Context) webauthn.AuthenticatorID {
	t.Helper()
	res, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
		Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol:                    webauthn.AuthenticatorProtocolCtap2,
			Ctap2version:                webauthn.Ctap2versionCtap21,
			Transport:                   webauthn.AuthenticatorTransportInternal,
			HasResidentKey:              true,
			HasUserVerification:         true,
			IsUserVerified:              true,
			AutomaticPresenceSimulation: true,
		},
	})
	if err != nil {
		t.Fatalf("add virtual authenticator: %v", err)
	}
	return res.AuthenticatorID
}

// screenshot keeps a phone-width picture of the page when CIVSTACK_SCREENSHOTS
// names a directory, so people can look at what the test saw.
func screenshot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("CIVSTACK_SCREENSHOTS")
	if dir == "" {
		return
	}
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		t.Logf("screenshot %s: %v", name, err)
	}
}

// TestBrowserPasskeys registers with a passkey in real Chromium (a virtual
// authenticator stands in for the phone), signs out, signs in again, adds a
// second passkey on another authenticator and signs in with that one.
func TestBrowserPasskeys(t *testing.T) {
	ctx := newBrowser(t)
	n := startNode(t, nodeOptions{})

	step(t, ctx, "open the start page",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(n.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("signin")))
	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatalf("enable WebAuthn domain: %v", err)
	}
	first := addAuthenticator(t, ctx)
	screenshot(t, ctx, "01-landing")

	step(t, ctx, "register",
		chromedp.Navigate(n.URL+"/register"),
		chromedp.SendKeys(chromedp.ID("display_name"), "Amira Test"),
		chromedp.Click(chromedp.CSS("#register-form button[type=submit]")),
		waitText("Hello, Amira Test"))
	screenshot(t, ctx, "02-home")

	step(t, ctx, "sign out",
		chromedp.Click(chromedp.CSS("form.signout button")),
		waitText("You have signed out"),
		chromedp.WaitVisible(chromedp.ID("signin")))

	step(t, ctx, "sign in again, from a page that needs it",
		chromedp.Navigate(n.URL+"/account"),
		chromedp.WaitVisible(chromedp.ID("signin")),
		chromedp.Click(chromedp.ID("signin")),
		waitText("Account number"))
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if loc != n.URL+"/account" {
		t.Errorf("after sign-in the browser is at %s, want the page it asked for", loc)
	}
	step(t, ctx, "home page", chromedp.Navigate(n.URL+"/"), waitText("Hello, Amira Test"))

	// A second passkey, on another device.
	if _, err := chromedp.Call(ctx, webauthn.RemoveVirtualAuthenticator, webauthn.RemoveVirtualAuthenticatorParams{AuthenticatorID: first}); err != nil {
		t.Fatal(err)
	}
	addAuthenticator(t, ctx)
	step(t, ctx, "add a second passkey",
		chromedp.Navigate(n.URL+"/account"),
		chromedp.SendKeys(chromedp.ID("label"), "Work laptop"),
		chromedp.Click(chromedp.CSS("#add-passkey-form button[type=submit]")),
		waitText("Your new passkey is ready"),
		waitText("Work laptop"))
	screenshot(t, ctx, "03-account")
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("tr.passkey-row").length`))
	if err != nil || rows != 2 {
		t.Fatalf("passkey rows = %d, %v; want 2", rows, err)
	}

	step(t, ctx, "sign out and in with the second passkey",
		chromedp.Click(chromedp.CSS("form.signout button")),
		waitText("You have signed out"),
		chromedp.Click(chromedp.ID("signin")),
		waitText("Hello, Amira Test"))
	if !strings.Contains(n.logs.String(), "person registered") {
		t.Error("no registration in the server log")
	}
	if strings.Contains(n.logs.String(), "Amira") {
		t.Error("the server log contains the person's name")
	}
}

// TestBrowserDemo walks the persona switcher: each persona's home shows what
// that persona came for (TestBrowserPhoneWidth checks every page's width).
func TestBrowserDemo(t *testing.T) {
	ctx := newBrowser(t)
	n := startNode(t, nodeOptions{demo: true})
	step(t, ctx, "open the start page",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(n.URL+"/"),
		waitText("Demo personas"))
	pages := []struct{ persona, path, want string }{
		{"Jonas Weber", "/log", "Audit it yourself"},
		{"Amira Haddad", "/", "Hello, Amira Haddad"},
		{"Li Wei", "/merchant", "Li's Dumpling Cart"},
		{"Tomas Novak", "/agency", "City Tax Office"},
		{"Ana Costa", "/dpa", "Data Protection Authority"},
		{"Olu Adeyemi", "/operator", "New organisation"},
	}
	for i, p := range pages {
		step(t, ctx, "switch to "+p.persona,
			chromedp.Navigate(n.URL+"/"),
			chromedp.Click(chromedp.CSS(fmt.Sprintf(`button[data-persona=%q]`, p.persona))),
			waitText("Hello, "+p.persona),
			chromedp.Navigate(n.URL+p.path),
			waitText(p.want))
		screenshot(t, ctx, fmt.Sprintf("1%d-%s", i, strings.Trim(strings.ReplaceAll(p.path, "/", "-"), "-")+"-"+strings.Fields(p.persona)[0]))
	}
}

// TestBrowserPhoneWidth signs in as every demo persona and opens, at phone
// width, each page the start page links to and each page those link to. Every
// page must answer without an error, be no wider than the screen, and hold no
// table that scrolls sideways: a data table (class "stack") shows one labelled
// card per row there instead, so no column hides off to the right.
func TestBrowserPhoneWidth(t *testing.T) {
	ctx := newBrowser(t)
	n := startNode(t, nodeOptions{demo: true})
	appendReceipts(t, n, 300) // the log page then lists a full tile of entries
	step(t, ctx, "open the start page",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(n.URL+"/"),
		waitText("Demo personas"))
	type look struct {
		Status int      // the page's HTTP status
		Wide   bool     // the page is wider than the screen
		Tables []string // tables that scroll sideways: id, content width/box width
		Links  []string // pages this one links to (not downloads, feeds or proofs)
	}
	const inspect = `(() => ({
		Status: performance.getEntriesByType("navigation")[0].responseStatus,
		Wide: document.documentElement.scrollWidth > window.innerWidth + 1,
		Tables: Array.from(document.querySelectorAll("table"))
			.filter(t => t.scrollWidth > t.clientWidth + 1 || t.getBoundingClientRect().right > window.innerWidth + 1)
			.map(t => (t.id || "(no id)") + " " + t.scrollWidth + "/" + t.clientWidth + "px"),
		Links: Array.from(document.querySelectorAll("a[href^='/']")).map(a => a.getAttribute("href"))
			.filter(h => !/\.(json|csv|png|svg)$|\/json$|^\/(\.well-known|static|metrics|healthz|readyz|log\/)/.test(h)),
	}))()`
	opened := 0
	for _, p := range demo.Personas {
		switchTo(t, ctx, n, p.Name)
		seen := map[string]bool{}
		queue := []string{"/"}
		for depth := 0; depth < 3; depth++ {
			var next []string
			for _, path := range queue {
				if seen[path] {
					continue
				}
				seen[path] = true
				var got look
				step(t, ctx, p.Name+" opens "+path, chromedp.Navigate(n.URL+path), chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
					var err error
					got, err = chromedp.Evaluate[look](inspect)(ctx, tg)
					return err
				}))
				opened++
				if got.Status >= 400 {
					t.Errorf("%s: %s answers %d", p.Name, path, got.Status)
				}
				if got.Wide {
					t.Errorf("%s: %s is wider than a phone's screen", p.Name, path)
				}
				if len(got.Tables) > 0 {
					t.Errorf("%s: on %s these tables scroll sideways at phone width: %s", p.Name, path, strings.Join(got.Tables, ", "))
				}
				next = append(next, got.Links...)
			}
			queue = next
		}
	}
	// Every persona has a start page, a wallet and a role's pages; fewer
	// pages than that means the walk itself went wrong.
	if min := 3 * len(demo.Personas); opened < min {
		t.Fatalf("opened %d pages, expected at least %d", opened, min)
	}
	t.Logf("%d personas, %d pages opened at phone width", len(demo.Personas), opened)
}

// switchTo signs the browser in as a demo persona.
func switchTo(t *testing.T, ctx context.Context, n *node, persona string) {
	t.Helper()
	step(t, ctx, "switch to "+persona,
		chromedp.Navigate(n.URL+"/"),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`button[data-persona=%q]`, persona))),
		waitText("Hello, "+persona))
}

// TestBrowserPayments pays in real Chromium at phone width: a citizen pays
// the street vendor's printed QR code (pasted as text, as a phone without a
// camera would), both see the payment and the receipt, the vendor refunds
// it, and both see the refund; then a shop charges the payment code the
// citizen's browser computes; then a person with a passkey confirms a large
// payment with it. Mistakes show the sentences people read.
func TestBrowserPayments(t *testing.T) {
	ctx := newBrowser(t)
	w := startDemo(t, storetest.Engine{Name: "sqlite", Open: func(t testing.TB) store.Options { return store.Options{DataDir: t.TempDir()} }})
	n := w.n
	li, rossi := w.orgs["Li's Dumpling Cart"], w.orgs["Rossi Groceries"]
	step(t, ctx, "phone-sized screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(n.URL+"/"), waitText("Demo personas"))

	// The vendor's printed code.
	switchTo(t, ctx, n, "Li Wei")
	step(t, ctx, "the vendor opens the point of sale from the menu",
		chromedp.Click(chromedp.CSS(`a[href="/pos/`+li+`"]`)), waitText("Take a payment"))
	step(t, ctx, "print my QR code", chromedp.Navigate(n.URL+"/pos/"+li+"/qr"), waitText("Pay Li's Dumpling Cart with civstack"))
	screenshot(t, ctx, "20-pos-qr")
	payload, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("qr-payload").value`))
	if err != nil || !strings.HasPrefix(payload, "000201") {
		t.Fatalf("the printable page's code text: %q %v", payload, err)
	}
	// The PNG opened on its own: the browser's image viewer styles itself
	// inline, and no policy of ours blocks it (step fails on a violation).
	step(t, ctx, "the code's PNG opened on its own", chromedp.Navigate(n.URL+"/pos/"+li+"/qr.png"), chromedp.WaitReady(chromedp.CSS("img")))
	if w, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelector("img").naturalWidth`)); err != nil || w < 200 {
		t.Fatalf("the PNG on its own: an image %d pixels wide (%v)", w, err)
	}

	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "a damaged code is refused readably",
		chromedp.Navigate(n.URL+"/wallet/pay"),
		chromedp.SendKeys(chromedp.ID("payload"), payload[:len(payload)-2]+"00"),
		chromedp.Click(chromedp.CSS("#pay-form button[type=submit]")),
		waitText("This QR code cannot be read"))
	step(t, ctx, "paste the vendor's code",
		chromedp.Navigate(n.URL+"/wallet/pay"),
		chromedp.SetValue(chromedp.ID("payload"), payload),
		chromedp.Click(chromedp.CSS("#pay-form button[type=submit]")),
		waitText("You pay Li's Dumpling Cart"))
	screenshot(t, ctx, "21-pay-confirm")
	step(t, ctx, "pay 4.50",
		chromedp.SendKeys(chromedp.ID("amount"), "4.50"),
		chromedp.Click(chromedp.CSS("#confirm-form button[type=submit]")),
		waitText("Paid. Here is your receipt."), waitText("Total 4.50 EUR"))
	screenshot(t, ctx, "22-receipt")
	step(t, ctx, "the wallet shows it", chromedp.Navigate(n.URL+"/wallet"), waitText("195.50"), waitText("Li's Dumpling Cart"))

	switchTo(t, ctx, n, "Li Wei")
	step(t, ctx, "the vendor sees the sale", chromedp.Navigate(n.URL+"/pos/"+li), waitText("taken 4.50"))
	screenshot(t, ctx, "23-pos-sales")
	onScreen(t, ctx, `#sales .refund-form button`, "the sale's refund button")
	onScreen(t, ctx, `#sales td[data-label=Amount]`, "the sale's amount")
	if wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)); err != nil || wide {
		t.Errorf("the point of sale at phone width is wider than the screen (%v)", err)
	}
	step(t, ctx, "the vendor opens the receipt",
		chromedp.Click(chromedp.CSS("#sales a[href^='/receipts/']")), waitText("Total 4.50 EUR"))
	// A partial refund typed slowly: the sales list refreshes itself every
	// 2 s, and must not put the full amount back while the vendor types.
	step(t, ctx, "type a partial refund slowly",
		chromedp.Navigate(n.URL+"/pos/"+li),
		chromedp.WaitVisible(chromedp.CSS(".refund-form input[name=amount]")),
		chromedp.Evaluate[chromedp.Void](`document.querySelector(".refund-form input[name=amount]").value = ""`),
		chromedp.SendKeys(chromedp.CSS(".refund-form input[name=amount]"), "1."),
		chromedp.Sleep(2500*time.Millisecond), // past a refresh
		chromedp.SendKeys(chromedp.CSS(".refund-form input[name=amount]"), "50"),
		chromedp.Sleep(2500*time.Millisecond))
	typed, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector(".refund-form input[name=amount]").value`))
	if err != nil || typed != "1.50" {
		t.Fatalf("the refund amount being typed reads %q (%v), want 1.50: the refresh replaced it", typed, err)
	}
	step(t, ctx, "refund 1.50",
		chromedp.Click(chromedp.CSS(".refund-form button")),
		waitText("Refund sent."), waitText("refunded 1.50"))
	step(t, ctx, "refund the rest, which the form now offers",
		chromedp.WaitVisible(chromedp.CSS(".refund-form button")),
		chromedp.Click(chromedp.CSS(".refund-form button")),
		waitText("Refund sent."), waitText("refunded 4.50"))
	step(t, ctx, "the vendor opens the account statement from the balance",
		chromedp.Click(chromedp.ID("statement-link")), waitText("account statement"), waitText("-3.00"))
	screenshot(t, ctx, "23b-pos-statement")
	onScreen(t, ctx, `#movements tr.refund td[data-label=Balance]`, "a refund's balance on the statement")

	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "the citizen sees the refund", chromedp.Navigate(n.URL+"/wallet"), waitText("Refund from Li's Dumpling Cart"), waitText("200.00"))

	// The customer-presented code, computed in the browser.
	step(t, ctx, "show the payment code", chromedp.Navigate(n.URL+"/wallet/code"), waitText("New code in"))
	screenshot(t, ctx, "24-paycode")
	code, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("paycode-digits").dataset.code || ""`))
	if err != nil || len(code) != 18 || !strings.HasPrefix(code, "88") {
		t.Fatalf("payment code %q %v", code, err)
	}
	// The images load after the text shows; a busy machine takes a while.
	step(t, ctx, "the code's QR and barcode images load", waitTrue("the QR and barcode images", `(function () {
		var q = document.getElementById("paycode-qr"), b = document.getElementById("paycode-bar");
		return !!q && !!b && q.complete && q.naturalWidth > 0 && b.complete && b.naturalWidth > 0; })()`))

	switchTo(t, ctx, n, "Sofia Rossi")
	step(t, ctx, "a code is not for large amounts",
		chromedp.Navigate(n.URL+"/pos/"+rossi),
		chromedp.SendKeys(chromedp.ID("amount"), "150.00"),
		chromedp.SendKeys(chromedp.ID("code"), code),
		chromedp.Click(chromedp.CSS("#charge-form button[type=submit]")),
		waitText("Payment codes are for amounts up to 100.00"))
	step(t, ctx, "the shop charges the code",
		chromedp.Navigate(n.URL+"/pos/"+rossi),
		chromedp.SendKeys(chromedp.ID("amount"), "12.30"),
		chromedp.SendKeys(chromedp.ID("code"), code),
		chromedp.Click(chromedp.CSS("#charge-form button[type=submit]")),
		waitText("Payment received: 12.30"), waitText("taken 12.30"))
	// Another customer pays while the shop's screen is open: it arrives
	// without a reload (the sales list polls).
	rossiProfile, err := n.pay.Merchant(context.Background(), rossi)
	if err != nil {
		t.Fatal(err)
	}
	rossiCode, _ := n.pay.StaticCode(rossiProfile)
	if _, err := n.pay.Pay(context.Background(), payment.PayRequest{Payer: w.people["Jonas Weber"], Payload: rossiCode, Amount: 5_00, Nonce: "browser-live-update-0001"}); err != nil {
		t.Fatal(err)
	}
	step(t, ctx, "the sale appears on the open screen", waitText("taken 17.30"))
	step(t, ctx, "the same code twice",
		chromedp.Navigate(n.URL+"/pos/"+rossi),
		chromedp.SendKeys(chromedp.ID("amount"), "1.00"),
		chromedp.SendKeys(chromedp.ID("code"), code),
		chromedp.Click(chromedp.CSS("#charge-form button[type=submit]")),
		waitText("This payment code was already used"))
	step(t, ctx, "a sale QR for the customer to scan",
		chromedp.Navigate(n.URL+"/pos/"+rossi),
		chromedp.SendKeys(chromedp.ID("amount"), "3.20"),
		chromedp.Click(chromedp.CSS(`#charge-form button[formaction$="/sale"]`)),
		waitText("Waiting for the customer"))
	screenshot(t, ctx, "25-pos-sale")
	salePayload, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("sale-payload").value`))
	if err != nil || !strings.Contains(salePayload, "5404"+"3.20") {
		t.Fatalf("the sale's code text: %q %v", salePayload, err)
	}

	switchTo(t, ctx, n, "Amira Haddad")
	step(t, ctx, "pay the sale's code: the amount is fixed",
		chromedp.Navigate(n.URL+"/wallet/pay"),
		chromedp.SetValue(chromedp.ID("payload"), salePayload),
		chromedp.Click(chromedp.CSS("#pay-form button[type=submit]")),
		waitText("Amount: 3.20 EUR"),
		chromedp.Click(chromedp.CSS("#confirm-form button[type=submit]")),
		waitText("Paid. Here is your receipt."))
	step(t, ctx, "the citizen sees both charges", chromedp.Navigate(n.URL+"/wallet"), waitText("Rossi Groceries"), waitText("184.50"))
	screenshot(t, ctx, "26-wallet")
	wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
	if err != nil || wide {
		t.Errorf("the wallet at phone width is wider than the screen (%v)", err)
	}

	// Step-up: a registered person confirms a large payment with the passkey.
	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatalf("enable WebAuthn domain: %v", err)
	}
	addAuthenticator(t, ctx)
	step(t, ctx, "sign out", chromedp.Navigate(n.URL+"/"), chromedp.Click(chromedp.CSS("form.signout button")), waitText("You have signed out"))
	step(t, ctx, "register",
		chromedp.Navigate(n.URL+"/register"),
		chromedp.SendKeys(chromedp.ID("display_name"), "Marta Bianchi"),
		chromedp.Click(chromedp.CSS("#register-form button[type=submit]")),
		waitText("Hello, Marta Bianchi"))
	var marta string
	if err := n.db.Reader().QueryRow("SELECT id FROM people WHERE display_name = $1", "Marta Bianchi").Scan(&marta); err != nil {
		t.Fatal(err)
	}
	var topUp ledger.ID
	topUp[0] = 42
	if _, err := n.pay.TopUp(context.Background(), topUp, marta, 500_00, "test top-up"); err != nil {
		t.Fatal(err)
	}
	step(t, ctx, "pay 150.00, above the step-up limit",
		chromedp.Navigate(n.URL+"/wallet/pay"),
		chromedp.SetValue(chromedp.ID("payload"), payload),
		chromedp.Click(chromedp.CSS("#pay-form button[type=submit]")),
		waitText("You pay Li's Dumpling Cart"),
		chromedp.SendKeys(chromedp.ID("amount"), "150.00"),
		chromedp.Click(chromedp.CSS("#confirm-form button[type=submit]")),
		waitText("Payments above 100.00 need your passkey"))
	screenshot(t, ctx, "27-stepup")
	step(t, ctx, "confirm with the passkey",
		chromedp.Click(chromedp.CSS("#stepup-form button[type=submit]")),
		waitText("Paid. Here is your receipt."), waitText("Total 150.00 EUR"))
}

// onScreen checks that the first element sel matches lies within a
// phone-sized screen's width and, if it is a labelled cell, says which
// column it is: a data table (class "stack") shows each row as a card there
// instead of a row that scrolls off to the right.
func onScreen(t *testing.T, ctx context.Context, sel, what string) {
	t.Helper()
	ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		const c = document.querySelector(`+strconv.Quote(sel)+`);
		if (!c) return false;
		const r = c.getBoundingClientRect();
		return r.width > 0 && r.left >= 0 && r.right <= window.innerWidth + 1 &&
			(!c.dataset.label || getComputedStyle(c, "::before").content.includes(c.dataset.label));
	})()`))
	if err != nil || !ok {
		t.Errorf("%s is off-screen at phone width, or its column is not named (%v)", what, err)
	}
}

// besideItsLabel checks that the first control sel matches (a radio
// button or a checkbox) sits at the start of its label's first line, not
// on a line of its own.
func besideItsLabel(t *testing.T, ctx context.Context, sel, what string) {
	t.Helper()
	ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		const c = document.querySelector(`+strconv.Quote(sel)+`);
		const l = c && c.closest("label");
		if (!l) return false;
		const r = c.getBoundingClientRect(), lr = l.getBoundingClientRect();
		return r.width > 0 && r.width < 40 && r.left - lr.left < 8 && r.top - lr.top < 16;
	})()`))
	if err != nil || !ok {
		t.Errorf("%s does not sit at the start of its label's line (%v)", what, err)
	}
}
