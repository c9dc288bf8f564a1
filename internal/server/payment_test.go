package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/conformance"
	"github.com/civstack/civstack/internal/emv"
	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// demoWorld is a demo node with its personas' ids and the shops' org ids.
type demoWorld struct {
	n      *node
	people map[string]string // display name → person id
	orgs   map[string]string // organisation name → id
}

func startDemo(t *testing.T, e storetest.Engine) *demoWorld {
	t.Helper()
	return startDemoWith(t, e, nodeOptions{})
}

// startDemoWith is startDemo with more of the node's options.
func startDemoWith(t *testing.T, e storetest.Engine, o nodeOptions) *demoWorld {
	t.Helper()
	opts := e.Open(t)
	o.demo, o.store = true, &opts
	n := startNode(t, o)
	ctx := context.Background()
	w := &demoWorld{n: n, people: map[string]string{}, orgs: map[string]string{}}
	people, err := n.reg.DemoPeople(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range people {
		w.people[p.DisplayName] = p.ID
	}
	for _, name := range []string{"Li's Dumpling Cart", "Rossi Groceries"} {
		org, err := n.reg.OrganisationByName(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		w.orgs[name] = org.ID
	}
	return w
}

// as is a browser-like client signed in as a demo persona.
func (w *demoWorld) as(t *testing.T, name string) *client {
	t.Helper()
	c := newClient(t, w.n.URL)
	expect(t, "switch to "+name, c.postForm("/demo/persona/"+w.people[name], nil), http.StatusSeeOther)
	return c
}

// token is an API client with a merchant token of the org.
func (w *demoWorld) token(t *testing.T, org string) *client {
	t.Helper()
	return w.apiClient(t, w.orgs[org], registry.Merchant, "till")
}

// apiClient is an API client with a token of the organisation orgID in
// role, labelled label.
func (w *demoWorld) apiClient(t *testing.T, orgID string, role registry.Role, label string) *client {
	t.Helper()
	secret, _, err := w.n.reg.CreateToken(context.Background(), orgID, role, label, "")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, w.n.URL)
	c.header.Set("Authorization", "Bearer "+secret)
	return c
}

var nonceRE = regexp.MustCompile(`name="nonce" value="([0-9a-f]+)"`)

// payByPayload goes through review and confirm as a wallet page would.
func payByPayload(t *testing.T, c *client, payload, amount string) *response {
	t.Helper()
	r := c.postForm("/wallet/pay/review", url.Values{"payload": {payload}})
	if r.status != http.StatusOK {
		return r
	}
	m := nonceRE.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("no nonce on the confirm page: %s", clip(r.body))
	}
	return c.postForm("/wallet/pay/confirm", url.Values{"payload": {payload}, "nonce": {m[1]}, "amount": {amount}})
}

// device provisions a payment-code device for a signed-in citizen.
func device(t *testing.T, c *client) (string, []byte) {
	t.Helper()
	r := c.postJSON("/wallet/devices", map[string]any{})
	expect(t, "provision device", r, 200, `"handle"`)
	var d struct{ Handle, Secret string }
	r.json(t, &d)
	secret, err := base64.RawURLEncoding.DecodeString(d.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return d.Handle, secret
}

func integrate(t *testing.T, n *node) {
	t.Helper()
	for {
		cp, _, err := n.tlog.Integrate(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var next int64
		n.db.Reader().QueryRow("SELECT value FROM tlog_counters WHERE name = 'next'").Scan(&next)
		if cp.Size == next {
			return
		}
	}
}

func TestPaymentsOverHTTP(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) { testPaymentsOverHTTP(t, e) })
	}
}

func testPaymentsOverHTTP(t *testing.T, e storetest.Engine) {
	{
		w := startDemo(t, e)
		n := w.n
		ctx := context.Background()
		li, rossi := w.orgs["Li's Dumpling Cart"], w.orgs["Rossi Groceries"]
		amira, jonas, liWei := w.as(t, "Amira Haddad"), w.as(t, "Jonas Weber"), w.as(t, "Li Wei")

		expect(t, "wallet balance from the demo top-up", amira.get("/wallet"), 200, `<strong id="balance">200.00</strong>`, "Show payment code")
		expect(t, "the merchant console links the point of sale", liWei.get("/merchant"), 200, `href="/pos/`+li+`"`)
		expect(t, "home links the wallet", amira.get("/"), 200, `<a href="/wallet">Payments</a>`)
		expect(t, "the vendor's point of sale", liWei.get("/pos/"+li), 200, "Take a payment", "No payments yet today")
		expect(t, "another shop's point of sale", liWei.get("/pos/"+rossi), 404, "You take no payments")
		expect(t, "a citizen at a point of sale", amira.get("/pos/"+li), 403)
		qr := liWei.get("/pos/" + li + "/qr")
		expect(t, "printable QR page", qr, 200, "<svg", "Pay Li&#39;s Dumpling Cart with civstack")
		prof, err := n.pay.Merchant(ctx, li)
		if err != nil {
			t.Fatal(err)
		}
		static, err := n.pay.StaticCode(prof)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(qr.body, html.EscapeString(static)) {
			t.Fatal("the printable page does not carry the code's text")
		}
		png := liWei.get("/pos/" + li + "/qr.png")
		if png.status != 200 || png.header.Get("Content-Type") != "image/png" || !strings.HasPrefix(png.body, "\x89PNG") {
			t.Fatalf("qr.png: %d %s", png.status, png.header.Get("Content-Type"))
		}

		// The street vendor's static code: the citizen types the amount.
		review := amira.postForm("/wallet/pay/review", url.Values{"payload": {static}})
		expect(t, "review names the payee", review, 200, "Li&#39;s Dumpling Cart", `name="amount"`)
		r := payByPayload(t, amira, static, "4.50")
		expect(t, "pay the vendor", r, http.StatusSeeOther)
		receiptURL := strings.TrimSuffix(r.header.Get("Location"), "?paid=1")
		if !strings.HasPrefix(receiptURL, "/receipts/") {
			t.Fatalf("paid to %q", r.header.Get("Location"))
		}
		expect(t, "the payer's receipt", amira.get(receiptURL), 200, "Li&#39;s Dumpling Cart", `<span id="receipt-total">4.50</span>`, "VAT 0.41")
		expect(t, "the vendor sees the receipt", liWei.get(receiptURL), 200, "4.50")
		expect(t, "nobody else does", jonas.get(receiptURL), 404)
		expect(t, "the vendor's live sales", liWei.get("/pos/"+li+"/sales"), 200, `<strong id="sales-total">4.50</strong>`, "wallet scan (shop QR)")
		expect(t, "wallet after paying", amira.get("/wallet"), 200, "195.50", "Li&#39;s Dumpling Cart")

		// Mistakes a citizen can make, and what they read.
		broken := static[:len(static)-1] + string("0123456789ABCDEF"[(strings.IndexByte("0123456789ABCDEF", static[len(static)-1])+1)%16])
		expect(t, "a damaged code", amira.postForm("/wallet/pay/review", url.Values{"payload": {broken}}), 422, "cannot be read: wrong CRC")
		t.Run("foreign scheme", func(t *testing.T) {
			expect(t, "a foreign scheme's code", amira.postForm("/wallet/pay/review", url.Values{"payload": {foreignPix(t)}}), 422, "This is a Pix (Brazil) payment code, not a civstack merchant")
		})
		expect(t, "an empty form", amira.postForm("/wallet/pay/review", url.Values{"payload": {" "}}), 400, "Scan a code")
		expect(t, "an amount that is no amount", payByPayload(t, amira, static, "lots"), 400, "Enter the amount")
		expect(t, "above the step-up limit asks for the passkey", payByPayload(t, amira, static, "150.00"), 200, "Confirm with your passkey", "150.00")
		expect(t, "a demo persona has no passkey to step up with", amira.postJSON("/auth/confirm/begin", map[string]string{"payload": static, "amount": "150.00", "nonce": "x"}), 409, "need a passkey")
		expect(t, "first of two large payments", payByPayload(t, amira, static, "99.00"), http.StatusSeeOther)
		expect(t, "not enough money", payByPayload(t, amira, static, "99.00"), 422, "Not enough money in the wallet for 99.00. Nothing was charged.")

		unknown, err := emv.Code{Civstack: emv.Civstack{Party: emv.PartyMerchant, ID: "0190a1b2-c3d4-7e5f-8a9b-000000000000"}, MCC: "5411", Currency: "978",
			Country: "IT", Name: "Fake Shop", City: "Bologna"}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		expect(t, "an unknown merchant", amira.postForm("/wallet/pay/review", url.Values{"payload": {unknown}}), 422, "This code names a merchant that is not registered with this civstack node.")
		expect(t, "nothing charged by any of them", amira.get("/wallet"), 200, `<strong id="balance">96.50</strong>`)

		// Person to person: Jonas shows his receive code, Amira pays it.
		rc := jonas.get("/wallet/receive")
		expect(t, "receive page", rc, 200, "<svg", "Receive money")
		m := regexp.MustCompile(`(?s)<textarea id="receive-payload"[^>]*>([^<]+)</textarea>`).FindStringSubmatch(rc.body)
		if m == nil {
			t.Fatal("no receive code text")
		}
		receive := html.UnescapeString(m[1])
		expect(t, "review a person's code", amira.postForm("/wallet/pay/review", url.Values{"payload": {receive}}), 200, "Jonas Weber", "(a person)")
		r = payByPayload(t, amira, receive, "6.50")
		expect(t, "pay a person", r, http.StatusSeeOther)
		expect(t, "the payer's history", amira.get("/wallet"), 200, `<strong id="balance">90.00</strong>`, "Jonas Weber")
		expect(t, "the payee's history", jonas.get("/wallet"), 200, `<strong id="balance">206.50</strong>`, "From Amira Haddad")

		// A dynamic sale: the shop shows a QR for one amount; it can be paid once.
		sale, err := n.pay.NewSale(ctx, rossi, 12_30, "till 1", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		// The sale's page polls its status until the answer is final (286
		// stops htmx polling): paid, expired, or no such sale.
		sofia := w.as(t, "Sofia Rossi")
		saleStatus := func(id string) *response { return sofia.get("/pos/" + rossi + "/sale/" + id + "/status") }
		expect(t, "a sale waiting", saleStatus(sale.ID), http.StatusOK, "Waiting for the customer")
		expect(t, "review a dynamic code", jonas.postForm("/wallet/pay/review", url.Values{"payload": {sale.Payload}}), 200, "Rossi Groceries", "12.30", "till 1")
		expect(t, "pay the sale", payByPayload(t, jonas, sale.Payload, ""), http.StatusSeeOther)
		expect(t, "pay it again", payByPayload(t, amira, sale.Payload, ""), 422, "already paid")
		expect(t, "the sale paid", saleStatus(sale.ID), 286, `id="sale-paid"`, "12.30")
		expect(t, "no such sale", saleStatus("nope"), 286, `id="sale-unknown"`, "There is no such sale.")
		expect(t, "another shop's sale", liWei.get("/pos/"+li+"/sale/"+sale.ID+"/status"), 286, `id="sale-unknown"`)
		late, err := n.pay.NewSale(ctx, rossi, 1_00, "", nil, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		n.clock.add(time.Minute)
		expect(t, "an expired sale, still asked about in case a payment is in flight", saleStatus(late.ID), http.StatusOK, `id="sale-expired"`, "without a payment", "Make a new sale")
		n.clock.add(31 * time.Second) // past the 30 s a payment in flight is waited for
		expect(t, "an expired sale, no longer asked about", saleStatus(late.ID), 286, `id="sale-expired"`)

		// The customer-presented code: the till charges it over the API.
		till, liTill := w.token(t, "Rossi Groceries"), w.token(t, "Li's Dumpling Cart")
		handle, secret := device(t, jonas)
		code := payment.GenerateCode(handle, secret, n.clock.now())
		expect(t, "code page", jonas.get("/wallet/code"), 200, "wallet.js", `data-person="`+w.people["Jonas Weber"]+`"`)
		sym := jonas.get("/wallet/symbol.svg?code=" + code)
		if sym.status != 200 || !strings.Contains(sym.body, "<svg") || sym.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("symbol: %d %s", sym.status, clip(sym.body))
		}
		expect(t, "the symbol route draws only codes", jonas.get("/wallet/symbol.svg?code=hello"), 400)
		expectProblem(t, "above the code limit", till.postJSON("/api/v1/payments/charges", map[string]any{"code": code, "amount": 150_00}), 422, "Payment codes are for amounts up to 100.00")
		r = till.postJSON("/api/v1/payments/charges", map[string]any{"code": code, "amount": 7_80, "reference": "basket 7", "request_id": "till-1-0001",
			"lines": []map[string]any{{"description": "Bread", "quantity": 2, "unit_price": 2_40}, {"description": "Milk", "quantity": 1, "unit_price": 3_00}}})
		expect(t, "charge the code", r, 201, `"amount":780`, `"method":"code"`)
		var charged struct{ ID, Receipt string }
		r.json(t, &charged)
		expect(t, "a retry of the same request", till.postJSON("/api/v1/payments/charges", map[string]any{"code": code, "amount": 7_80, "reference": "basket 7", "request_id": "till-1-0001",
			"lines": []map[string]any{{"description": "Bread", "quantity": 2, "unit_price": 2_40}, {"description": "Milk", "quantity": 1, "unit_price": 3_00}}}), 201, charged.ID)
		expectProblem(t, "the same code again", till.postJSON("/api/v1/payments/charges", map[string]any{"code": code, "amount": 1_00}), 422, "This payment code was already used")
		expectProblem(t, "lines that do not add up", till.postJSON("/api/v1/payments/charges", map[string]any{"code": payment.GenerateCode(handle, secret, n.clock.now().Add(10*time.Second)), "amount": 5_00,
			"lines": []map[string]any{{"description": "Bread", "quantity": 1, "unit_price": 2_40}}}), 400, "add up")
		old := payment.GenerateCode(handle, secret, n.clock.now().Add(-3*time.Minute))
		expectProblem(t, "an expired code", till.postJSON("/api/v1/payments/charges", map[string]any{"code": old, "amount": 1_00}), 422, "expired")
		device(t, jonas) // the wallet re-provisions: the old device's codes stop at once
		expectProblem(t, "a replaced device's code", till.postJSON("/api/v1/payments/charges", map[string]any{"code": payment.GenerateCode(handle, secret, n.clock.now().Add(10*time.Second)), "amount": 1_00}), 422, "has been replaced")
		expectProblem(t, "a mistyped code", till.postJSON("/api/v1/payments/charges", map[string]any{"code": "881234", "amount": 1_00}), 422, "A payment code has 18 digits; this one has 6.")
		expectProblem(t, "a citizen session cannot charge", jonas.postJSON("/api/v1/payments/charges", map[string]any{"code": code, "amount": 1_00}), 401, "")
		expect(t, "the shop's payments", till.get("/api/v1/payments"), 200, charged.ID, `"method":"code"`)
		if strings.Contains(liTill.get("/api/v1/payments").body, charged.ID) {
			t.Fatal("one merchant sees another's payments")
		}

		// Refunds: only the merchant paid, never above what was paid.
		expectProblem(t, "refund another shop's payment", liTill.postJSON("/api/v1/payments/"+charged.ID+"/refunds", map[string]any{"amount": 1_00, "refund_id": "x"}), 404, "")
		expectProblem(t, "refund too much", till.postJSON("/api/v1/payments/"+charged.ID+"/refunds", map[string]any{"amount": 9_00, "refund_id": "r1"}), 422, "")
		r = till.postJSON("/api/v1/payments/"+charged.ID+"/refunds", map[string]any{"amount": 3_00, "refund_id": "r1"})
		expect(t, "refund the milk", r, 201, `"kind":"refund"`, `"amount":300`)
		expect(t, "the refund retried", till.postJSON("/api/v1/payments/"+charged.ID+"/refunds", map[string]any{"amount": 3_00, "refund_id": "r1"}), 201, `"amount":300`)
		expect(t, "the customer sees the refund", jonas.get("/wallet"), 200, "Refund from Rossi Groceries", "3.00")

		// An e-invoice for a business buyer, then its cancellation.
		expectProblem(t, "invoice another shop's payment", liTill.postJSON("/api/v1/payments/"+charged.ID+"/invoices", map[string]any{"buyer_tax_id": "IT1", "buyer_name": "B"}), 404, "")
		r = till.postJSON("/api/v1/payments/"+charged.ID+"/invoices", map[string]any{"buyer_tax_id": "IT05550001112", "buyer_name": "Weber Design srl"})
		expect(t, "issue an invoice", r, 201, `"jws"`, "INV-000001", "Weber Design srl")
		var inv struct {
			Document struct{ ID string } `json:"document"`
		}
		r.json(t, &inv)
		expectProblem(t, "a second active invoice", till.postJSON("/api/v1/payments/"+charged.ID+"/invoices", map[string]any{"buyer_tax_id": "IT05550001112", "buyer_name": "Weber Design srl"}), 422, "")
		expectProblem(t, "another shop reads the invoice", liTill.get("/api/v1/documents/"+inv.Document.ID), 404, "")
		expect(t, "cancel the invoice", till.postJSON("/api/v1/documents/"+inv.Document.ID+"/cancel", map[string]any{"reason": "wrong buyer"}), 201, "wrong buyer", "cancellation")
		expect(t, "the shop's console lists both", w.as(t, "Sofia Rossi").get("/pos/"+rossi+"/sales"), 200, "INV-000001", "Cancellation of")

		// The receipt a citizen downloads verifies offline once logged.
		integrate(t, n)
		dl := jonas.get("/receipts/" + charged.Receipt + "/json")
		expect(t, "download the receipt", dl, 200, `"jws"`, `"proof"`)
		if !strings.Contains(dl.header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("download headers: %v", dl.header)
		}
		rep, err := payment.Verify(strings.NewReader(dl.body), n.vkey)
		if err != nil || !rep.OK() {
			t.Fatalf("the downloaded receipt does not verify: %v %+v", err, rep)
		}
		var b map[string]json.RawMessage
		json.Unmarshal([]byte(dl.body), &b)
		if _, ok := b["merchant_key"]; !ok {
			t.Fatal("the bundle carries no merchant key")
		}
		expect(t, "another citizen cannot download it", amira.get("/receipts/"+charged.Receipt+"/json"), 404)
		if strings.Contains(n.logs.String(), secret64(secret)) || strings.Contains(n.logs.String(), code) {
			t.Fatal("a device secret or a payment code reached the logs")
		}

		// A store that cannot answer is a failure, not "no such document".
		execSQL(t, n.db, `ALTER TABLE payment_documents RENAME TO payment_documents_away`)
		expectProblem(t, "a document while the store fails", till.get("/api/v1/documents/"+inv.Document.ID), 500, "went wrong on our side")
		expect(t, "a receipt while the store fails", jonas.get("/receipts/"+charged.Receipt), 500, "went wrong on our side")
	}
}

func secret64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// foreignPix is a Brazilian Pix code from the shared EMV vectors (external
// data, read where it lives).
func foreignPix(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(conformance.File(t, "emvqr/vectors.txt"))
	if err != nil {
		t.Fatalf("shared EMV vectors: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Split(line, "\t"); len(f) == 3 && f[0] == "valid" && strings.Contains(f[1], "br.gov.bcb.pix") {
			return f[1]
		}
	}
	t.Fatal("no Pix code in the shared vectors")
	return ""
}

// TestStepUpConfirmation: a payment above the step-up limit is paid once
// the citizen's passkey confirms it, and not at all when the passkey's new
// signature counter cannot be kept.
func TestStepUpConfirmation(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
			opts := e.Open(t)
			n := startNode(t, nodeOptions{store: &opts})
			c := newClient(t, n.URL)
			c.register("Marta Bianchi")
			if _, err := n.pay.TopUp(ctx, ledger.ID{42}, firstPersonID(t, n), 500_00, "test top-up"); err != nil {
				t.Fatal(err)
			}
			shop, err := n.reg.CreateOrganisation(ctx, "Rossi Groceries", []registry.Role{registry.Merchant}, false)
			if err != nil {
				t.Fatal(err)
			}
			prof, err := n.pay.SetupMerchant(ctx, payment.Profile{OrgID: shop.ID, Name: "Rossi Groceries", City: "Bologna", MCC: "5411", TaxID: "IT09876543210", VATRate: 400})
			if err != nil {
				t.Fatal(err)
			}
			static, err := n.pay.StaticCode(prof)
			if err != nil {
				t.Fatal(err)
			}
			confirm := func(nonce string) *response {
				t.Helper()
				r := c.postJSON("/auth/confirm/begin", map[string]string{"payload": static, "amount": "150.00", "nonce": nonce})
				if r.status != 200 {
					t.Fatalf("confirm begin: %d %s", r.status, r.body)
				}
				var b beginOut
				r.json(t, &b)
				cred, err := c.auth.get(b.Options)
				if err != nil {
					t.Fatal(err)
				}
				return c.postJSON("/auth/confirm/finish?ceremony="+url.QueryEscape(b.Ceremony), cred)
			}
			expect(t, "confirmed with the passkey", confirm(strings.Repeat("a", 32)), 200, `"redirect":"/receipts/`)
			expect(t, "paid", c.get("/wallet"), 200, `<strong id="balance">350.00</strong>`)

			fail := map[store.Dialect][]string{
				store.SQLite: {`CREATE TRIGGER passkeys_fail BEFORE UPDATE ON passkeys BEGIN SELECT RAISE(ABORT, 'passkeys cannot be written'); END`},
				store.Postgres: {`CREATE FUNCTION passkeys_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'passkeys cannot be written'; END $$`,
					`CREATE TRIGGER passkeys_fail BEFORE UPDATE ON passkeys FOR EACH ROW EXECUTE FUNCTION passkeys_fail()`},
			}
			for _, q := range fail[n.db.Dialect()] {
				execSQL(t, n.db, q)
			}
			expectProblem(t, "the counter cannot be kept", confirm(strings.Repeat("b", 32)), http.StatusInternalServerError, "went wrong on our side")
			execSQL(t, n.db, `DROP TRIGGER passkeys_fail`+map[store.Dialect]string{store.Postgres: " ON passkeys"}[n.db.Dialect()])
			expect(t, "nothing paid", c.get("/wallet"), 200, `<strong id="balance">350.00</strong>`)
		})
	}
}
