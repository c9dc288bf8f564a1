package payment_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

// Organisation ids are UUIDs, as the registry makes them: codes must fit them.
const (
	vendorOrg = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
	shopOrg   = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type world struct {
	svc    *payment.Service
	eng    *ledger.Engine
	log    *tlog.Log
	vkey   string
	clock  *clock
	db     *store.DB
	vendor *payment.Profile
	shop   *payment.Profile
}

func setup(t *testing.T, db *store.DB) *world {
	t.Helper()
	return setupAt(t, db, time.Date(2026, 12, 2, 10, 0, 3, 0, time.UTC))
}

func setupAt(t *testing.T, db *store.DB, start time.Time) *world {
	t.Helper()
	return setupWith(t, db, start, payment.DefaultConfig)
}

func setupWith(t *testing.T, db *store.DB, start time.Time, cfg payment.Config) *world {
	t.Helper()
	ctx := context.Background()
	c := &clock{t: start}
	eng := ledger.New(db, c.now, nil)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { eng.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := tlog.NewEd25519Signer("pay.test/log", priv)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tlog.New(db, signer.Name(), signer, c.now)
	if err != nil {
		t.Fatal(err)
	}
	seal := make([]byte, 32)
	rand.Read(seal)
	svc, err := payment.New(cfg, payment.Deps{DB: db, Ledger: eng, Log: tl, SealKey: seal, Now: c.now, Rand: rand.Reader})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{svc: svc, eng: eng, log: tl, vkey: signer.VerifierKey(), clock: c, db: db}
	if w.vendor, err = svc.SetupMerchant(ctx, payment.Profile{OrgID: vendorOrg, Name: "Li's Dumpling Cart", City: "Bologna", MCC: "5814", TaxID: "IT01234567890", VATRate: 1000}); err != nil {
		t.Fatal(err)
	}
	if w.shop, err = svc.SetupMerchant(ctx, payment.Profile{OrgID: shopOrg, Name: "Rossi Groceries", City: "Bologna", MCC: "5411", TaxID: "IT09876543210", VATRate: 400}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"amira", "jonas"} {
		if _, err := svc.TopUp(ctx, ledger.ID{1, p[0]}, p, 150_00, "demo"); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// device provisions a payment device for person.
func (w *world) device(t *testing.T, person string) *payment.Device {
	t.Helper()
	dev, err := w.svc.ProvisionDevice(context.Background(), person)
	if err != nil {
		t.Fatal(err)
	}
	return dev
}

// chargeCode charges 1.00 to a payment code at shop org.
func (w *world) chargeCode(org, code string) error {
	_, err := w.svc.Charge(context.Background(), payment.ChargeRequest{OrgID: org, Code: code, Amount: 1_00})
	return err
}

// wrongCode is right with its one-time value replaced by i (or by i+1,
// where that would be right).
func wrongCode(right string, i int) string {
	g := right[:11] + fmt.Sprintf("%07d", i)
	if g == right {
		g = right[:11] + fmt.Sprintf("%07d", i+1)
	}
	return g
}

func (w *world) balance(t *testing.T, id ledger.ID) int64 {
	t.Helper()
	a, err := w.eng.Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance()
}

func refusedWith(t *testing.T, what string, err error, code string) {
	t.Helper()
	var r *payment.Refusal
	if !errors.As(err, &r) || r.Code != code {
		t.Fatalf("%s: err %v, want refusal %s", what, err, code)
	}
	if r.Message == "" || strings.Contains(r.Message, "amira") {
		t.Fatalf("%s: message %q", what, r.Message)
	}
}

func nonce() string {
	var b [16]byte
	rand.Read(b[:])
	return strings.ToLower(strings.TrimRight(ledger.ID(b).String(), "="))
}

func TestStaticAndDynamicQR(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db)
		static, err := w.svc.StaticCode(w.vendor)
		if err != nil {
			t.Fatal(err)
		}
		q, err := w.svc.Resolve(ctx, static)
		if err != nil || q.Merchant.OrgID != vendorOrg || q.Fixed {
			t.Fatalf("resolve static: %+v %v", q, err)
		}
		// Over the step-up threshold the passkey is needed.
		n := nonce()
		if _, err := w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: static, Amount: 120_00, Nonce: n}); !errors.Is(err, payment.ErrStepUp) {
			t.Fatalf("over step-up: %v", err)
		}
		p, err := w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: static, Amount: 4_50, Nonce: n})
		if err != nil {
			t.Fatal(err)
		}
		// The same confirmation again pays nothing more.
		if p2, err := w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: static, Amount: 4_50, Nonce: n}); err != nil || p2.ID != p.ID {
			t.Fatalf("retry: %v %v", p2, err)
		}
		if b := w.balance(t, payment.WalletAccount("amira")); b != 145_50 {
			t.Fatalf("balance %d", b)
		}
		// Dynamic: the sale fixes the amount, and is paid once.
		sale, err := w.svc.NewSale(ctx, shopOrg, 12_30, "order 7", []payment.LineIn{{Description: "Bread", Quantity: 2, UnitPrice: 2_15, VATRate: payment.Rate(400)}, {Description: "Wine", Quantity: 1, UnitPrice: 8_00, VATRate: payment.Rate(2200)}}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		jonasNonce := nonce()
		p, err = w.svc.Pay(ctx, payment.PayRequest{Payer: "jonas", Payload: sale.Payload, Amount: 1, Nonce: jonasNonce})
		if err != nil || p.Amount != 12_30 {
			t.Fatalf("pay sale: %+v %v", p, err)
		}
		if again, err := w.svc.Pay(ctx, payment.PayRequest{Payer: "jonas", Payload: sale.Payload, Nonce: jonasNonce}); err != nil || again.ID != p.ID {
			t.Fatalf("the payer's retry: %+v %v", again, err)
		}
		_, err = w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: sale.Payload, Nonce: nonce()})
		refusedWith(t, "sale twice", err, "sale_paid")
		// Another payer with the first's confirmation nonce is not the first's retry.
		_, err = w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: sale.Payload, Nonce: jonasNonce})
		refusedWith(t, "sale twice, with the first payer's nonce", err, "sale_paid")
		docs, err := w.svc.Documents(ctx, p.ID)
		if err != nil || len(docs) != 1 || docs[0].Document.Total != 12_30 || len(docs[0].Document.Lines) != 2 || docs[0].Document.VAT != 17+144 {
			t.Fatalf("receipt %+v %v", docs, err)
		}
		// A name or city the QR code cannot carry is refused when set.
		for _, name := range []string{"Rossi\nGroceries", "Rossi\u0085Groceries", "Rossi\x7f", "\u202eseirecorG"} {
			if _, err := w.svc.SetupMerchant(ctx, payment.Profile{OrgID: shopOrg, Name: name, City: "Bologna", MCC: "5411", TaxID: "IT09876543210", VATRate: 400}); !errors.Is(err, payment.ErrInvalid) {
				t.Fatalf("name %q: %v", name, err)
			}
		}
		// So is a tax id that is not one line of text; one of 32 letters
		// outside ASCII is not too long.
		for _, id := range []string{"IT0987\n6543210", "IT\x1b[2K09876543210"} {
			if _, err := w.svc.SetupMerchant(ctx, payment.Profile{OrgID: shopOrg, Name: "Rossi Groceries", City: "Bologna", MCC: "5411", TaxID: id, VATRate: 400}); !errors.Is(err, payment.ErrInvalid) || !strings.Contains(err.Error(), "plain text") {
				t.Fatalf("tax id %q: %v", id, err)
			}
		}
		if _, err := w.svc.SetupMerchant(ctx, payment.Profile{OrgID: shopOrg, Name: "Rossi Groceries", City: "Bologna", MCC: "5411", TaxID: strings.Repeat("Ü", 32), VATRate: 400}); err != nil {
			t.Fatalf("a tax id of 32 letters: %v", err)
		}
		if _, err := w.svc.SetupMerchant(ctx, payment.Profile{OrgID: shopOrg, Name: "Rossi Groceries", City: "Bologna", MCC: "5411", TaxID: "IT09876543210", VATRate: 400}); err != nil {
			t.Fatal(err)
		}
		// A reference the QR code cannot carry is the merchant's mistake.
		for _, ref := range []string{"order\n7", "order\t7", "order\u00857"} {
			if _, err := w.svc.NewSale(ctx, shopOrg, 5_00, ref, nil, time.Minute); !errors.Is(err, payment.ErrInvalid) || !strings.Contains(err.Error(), "control character") {
				t.Fatalf("reference %q: %v", ref, err)
			}
		}
		// Too much for a sale without lines, or for one unit of a line.
		for _, c := range []struct {
			amount int64
			lines  []payment.LineIn
			want   string
		}{
			{1_000_000_01, nil, "An amount above 1000000.00 needs its receipt's lines (each unit at most 1000000.00)."},
			{2_000_000_00, []payment.LineIn{{Description: "Tram", Quantity: 1, UnitPrice: 2_000_000_00}}, "Line 1: the unit price is 1 to 100000000 cents (0.01 to 1000000.00)."},
			{5_00, []payment.LineIn{{Description: "Tram\nTicket", Quantity: 1, UnitPrice: 5_00}}, "Line 1: the description is one line of text (no line breaks, control characters or bidirectional overrides)."},
			{5_00, []payment.LineIn{{Description: "Tram", Quantity: 1, UnitPrice: 4_00}, {Description: "Tip \u202e03.1", Quantity: 1, UnitPrice: 1_00}}, "Line 2: the description is one line of text (no line breaks, control characters or bidirectional overrides)."},
			{5_00, []payment.LineIn{{Description: "Tram \xff", Quantity: 1, UnitPrice: 5_00}}, "Line 1: the description is one line of text (no line breaks, control characters or bidirectional overrides)."},
			{5_00, []payment.LineIn{{Description: strings.Repeat("Ж", 121), Quantity: 1, UnitPrice: 5_00}}, "Line 1: a description of 1 to 120 characters is needed."},
		} {
			if _, err := w.svc.NewSale(ctx, shopOrg, c.amount, "", c.lines, time.Minute); !errors.Is(err, payment.ErrInvalid) || payment.Explain(err) != c.want {
				t.Fatalf("a sale of %d: %v, want %q", c.amount, err, c.want)
			}
		}
		if _, err := w.svc.NewSale(ctx, shopOrg, 2_000_000_00, "", []payment.LineIn{{Description: "Tram", Quantity: 2, UnitPrice: 1_000_000_00}}, time.Minute); err != nil {
			t.Fatalf("two units at the most a unit may cost: %v", err)
		}
		if _, err := w.svc.NewSale(ctx, shopOrg, 5_00, "", []payment.LineIn{{Description: strings.Repeat("Ж", 120), Quantity: 1, UnitPrice: 5_00}}, time.Minute); err != nil {
			t.Fatalf("a description of 120 characters in 240 bytes: %v", err)
		}
		if _, err := w.svc.NewSale(ctx, shopOrg, 5_00, "order \u202e7", nil, time.Minute); !errors.Is(err, payment.ErrInvalid) || !strings.Contains(err.Error(), "bidirectional override") {
			t.Fatalf("a reference with an override: %v", err)
		}
		if _, err := w.svc.NewSale(ctx, shopOrg, 5_00, "order \xff", nil, time.Minute); !errors.Is(err, payment.ErrInvalid) || !strings.Contains(err.Error(), "not valid UTF-8") {
			t.Fatalf("a reference that is not UTF-8: %v", err)
		}
		// Expired sale, tampered amount, wrong CRC, foreign and unknown codes.
		old, _ := w.svc.NewSale(ctx, shopOrg, 5_00, "", nil, time.Minute)
		w.clock.add(2 * time.Minute)
		_, err = w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: old.Payload, Nonce: nonce()})
		refusedWith(t, "expired sale", err, "expired")
		fresh, _ := w.svc.NewSale(ctx, shopOrg, 5_00, "", nil, time.Minute)
		tampered := retag(t, fresh.Payload, "54", "0.50")
		_, err = w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: tampered, Nonce: nonce()})
		refusedWith(t, "tampered amount", err, "tampered")
		_, err = w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: static[:len(static)-4] + "0000", Amount: 100, Nonce: nonce()})
		refusedWith(t, "wrong CRC", err, "bad_qr")
		_, err = w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: "https://example.com/pay", Amount: 100, Nonce: nonce()})
		refusedWith(t, "a link", err, "bad_qr")
		if msg := payment.Explain(err); msg != "This is not a payment code: payment QR codes (EMVCo) start with 000201." {
			t.Fatalf("a link: %q", msg)
		}
		_, err = w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: "00020126580014br.gov.bcb.pix0136123e4567-e12b-12d1-a456-4266554400005204000053039865802BR5913Fulano de Tal6008BRASILIA62070503***63041D3D", Amount: 100, Nonce: nonce()})
		refusedWith(t, "pix", err, "foreign_qr")
		unknown := retagSub(t, static, "26", "02", "org-nobody")
		_, err = w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: unknown, Amount: 100, Nonce: nonce()})
		refusedWith(t, "unknown merchant", err, "unknown_merchant")
		// Insufficient funds: nothing charged.
		before := w.balance(t, payment.WalletAccount("amira"))
		_, err = w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: static, Amount: 99_00, Nonce: nonce()})
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: static, Amount: 99_00, Nonce: nonce()})
		refusedWith(t, "insufficient", err, "insufficient_funds")
		if got := w.balance(t, payment.WalletAccount("amira")); got != before-99_00 {
			t.Fatalf("balance %d, want %d", got, before-99_00)
		}
		hist, _ := w.svc.History(ctx, "amira", 50)
		purchases := 0
		for _, p := range hist {
			if p.Kind == payment.KindPurchase {
				purchases++
			}
		}
		if len(hist) != 3 || purchases != 2 {
			t.Fatalf("amira's history has %d payments (%d purchases), want the top-up and 2 purchases", len(hist), purchases)
		}
	})
}

// retag rewrites one top-level field of a payload and recomputes the CRC, as
// a forger would.
func retag(t *testing.T, payload, id, value string) string {
	t.Helper()
	p, err := emvParse(payload)
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Fields {
		if p.Fields[i].ID == id {
			p.Fields[i].Value = value
		}
	}
	return p.String()
}

func retagSub(t *testing.T, payload, id, sub, value string) string {
	t.Helper()
	p, err := emvParse(payload)
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Fields {
		if p.Fields[i].ID == id {
			for j := range p.Fields[i].Sub {
				if p.Fields[i].Sub[j].ID == sub {
					p.Fields[i].Sub[j].Value = value
				}
			}
		}
	}
	return p.String()
}

func TestPaymentCodes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db)
		dev := w.device(t, "jonas")
		code := payment.GenerateCode(dev.Handle, dev.Secret, w.clock.now())
		if len(code) != 18 || code[:2] != "88" {
			t.Fatalf("code %q", code)
		}
		p, err := w.svc.Charge(ctx, payment.ChargeRequest{OrgID: shopOrg, Code: code, Amount: 7_20, Request: "pos-1"})
		if err != nil {
			t.Fatal(err)
		}
		// The point of sale's retry gets the same payment; anyone else's replay is refused.
		if again, err := w.svc.Charge(ctx, payment.ChargeRequest{OrgID: shopOrg, Code: code, Amount: 7_20, Request: "pos-1"}); err != nil || again.ID != p.ID {
			t.Fatalf("retry %v %v", again, err)
		}
		// A retry whose first payment cannot be read fails as the server's
		// failure: "code used" would have the merchant charge again.
		rename := func(from, to string) {
			if err := db.Tx(ctx, func(tx *store.Tx) error {
				_, err := tx.ExecContext(ctx, `ALTER TABLE `+from+` RENAME TO `+to)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		rename("payments", "payments_away")
		_, err = w.svc.Charge(ctx, payment.ChargeRequest{OrgID: shopOrg, Code: code, Amount: 7_20, Request: "pos-1"})
		var ref *payment.Refusal
		if err == nil || errors.As(err, &ref) {
			t.Fatalf("a retry whose first payment cannot be read: %v, want the store's error", err)
		}
		rename("payments_away", "payments")
		if again, err := w.svc.Charge(ctx, payment.ChargeRequest{OrgID: shopOrg, Code: code, Amount: 7_20, Request: "pos-1"}); err != nil || again.ID != p.ID {
			t.Fatalf("retry once it can be read %v %v", again, err)
		}
		_, err = w.svc.Charge(ctx, payment.ChargeRequest{OrgID: shopOrg, Code: code, Amount: 7_20, Request: "pos-2"})
		refusedWith(t, "replay", err, "code_used")
		_, err = w.svc.Charge(ctx, payment.ChargeRequest{OrgID: vendorOrg, Code: code, Amount: 1_00})
		refusedWith(t, "replay elsewhere", err, "code_used")
		// Tampered (one digit changed) and expired codes.
		fresh := payment.GenerateCode(dev.Handle, dev.Secret, w.clock.now().Add(10*time.Second))
		bad := fresh[:17] + string('0'+(fresh[17]-'0'+1)%10)
		_, err = w.svc.Charge(ctx, payment.ChargeRequest{OrgID: shopOrg, Code: bad, Amount: 1_00})
		refusedWith(t, "tampered", err, "expired_code")
		w.clock.add(75 * time.Second)
		_, err = w.svc.Charge(ctx, payment.ChargeRequest{OrgID: shopOrg, Code: fresh, Amount: 1_00})
		refusedWith(t, "expired", err, "expired_code")
		_, err = w.svc.Charge(ctx, payment.ChargeRequest{OrgID: shopOrg, Code: "12345", Amount: 1_00})
		refusedWith(t, "short", err, "bad_code")
		// Over the code limit, and a replaced device.
		code = payment.GenerateCode(dev.Handle, dev.Secret, w.clock.now())
		_, err = w.svc.Charge(ctx, payment.ChargeRequest{OrgID: shopOrg, Code: code, Amount: 100_01})
		refusedWith(t, "over code limit", err, "over_code_limit")
		if _, err := w.svc.ProvisionDevice(ctx, "jonas"); err != nil {
			t.Fatal(err)
		}
		_, err = w.svc.Charge(ctx, payment.ChargeRequest{OrgID: shopOrg, Code: code, Amount: 1_00})
		refusedWith(t, "old device", err, "unknown_code")
		if b := w.balance(t, payment.WalletAccount("jonas")); b != 150_00-7_20 {
			t.Fatalf("balance %d: only the first charge may have happened", b)
		}
		if b := w.balance(t, payment.MerchantAccount(shopOrg)); b != 7_20 {
			t.Fatalf("shop balance %d", b)
		}
		// A code refused for too little money is spent (the ledger keeps
		// the refusal under its id), and the till is told to ask for a
		// fresh one, which pays once the customer has topped up.
		if _, err := w.svc.TopUp(ctx, ledger.ID{7, 7}, "lena", 5_00, "some"); err != nil {
			t.Fatal(err)
		}
		lena := w.device(t, "lena")
		short := payment.GenerateCode(lena.Handle, lena.Secret, w.clock.now())
		_, err = w.svc.Charge(ctx, payment.ChargeRequest{OrgID: shopOrg, Code: short, Amount: 7_00, Request: "pos-9"})
		refusedWith(t, "a code without the money", err, "insufficient_funds")
		if !strings.Contains(err.Error(), "show a fresh one") {
			t.Fatalf("the till is not told to ask for a fresh code: %v", err)
		}
		if _, err := w.svc.TopUp(ctx, ledger.ID{7, 8}, "lena", 5_00, "more"); err != nil {
			t.Fatal(err)
		}
		_, err = w.svc.Charge(ctx, payment.ChargeRequest{OrgID: shopOrg, Code: short, Amount: 7_00, Request: "pos-9"})
		refusedWith(t, "the spent code once the money is there", err, "insufficient_funds")
		w.clock.add(31 * time.Second)
		if p, err := w.svc.Charge(ctx, payment.ChargeRequest{OrgID: shopOrg, Code: payment.GenerateCode(lena.Handle, lena.Secret, w.clock.now()), Amount: 7_00, Request: "pos-10"}); err != nil || p.Amount != 7_00 {
			t.Fatalf("a fresh code once the money is there: %+v %v", p, err)
		}
	})
}

// TestCodeGuesses: a shop that knows a device's handle (from a code it was
// shown) cannot try codes until one is right. After 5 wrong codes in 10
// minutes from one shop, that shop may charge none of the device's codes, a
// right one too, until the window has passed; other shops still may, until
// 20 wrong codes from all shops (a shop's past its own 5 not counted) lock
// the device everywhere. A few of a cashier's typos do not lock the
// customer out.
func TestCodeGuesses(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db)
		dev := w.device(t, "jonas")
		others := []string{"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a61", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a62", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a63"}
		for i, org := range others {
			if _, err := w.svc.SetupMerchant(ctx, payment.Profile{OrgID: org, Name: fmt.Sprintf("Kiosk %d", i+1), City: "Bologna", MCC: "5994", TaxID: "IT0000000000" + strconv.Itoa(i), VATRate: 400}); err != nil {
				t.Fatal(err)
			}
		}
		guess := func(i int) string { return wrongCode(payment.GenerateCode(dev.Handle, dev.Secret, w.clock.now()), i) }
		charge := w.chargeCode
		// right charges a fresh right code at org.
		right := func(org string) error {
			w.clock.add(10 * time.Second)
			return charge(org, payment.GenerateCode(dev.Handle, dev.Secret, w.clock.now()))
		}
		lockedWith := func(what string, err error, says string) {
			t.Helper()
			refusedWith(t, what, err, "code_locked")
			var r *payment.Refusal
			if errors.As(err, &r); !strings.Contains(r.Message, says) {
				t.Fatalf("%s: message %q, want it to say %q", what, r.Message, says)
			}
		}
		// Four typos, then the right code: paid.
		for i := range 4 {
			refusedWith(t, "a typo", charge(shopOrg, guess(i)), "expired_code")
		}
		if err := right(shopOrg); err != nil {
			t.Fatalf("the right code after 4 typos: %v", err)
		}
		// The fifth wrong code in the window from this shop: now even a
		// right one is refused there, and only there.
		refusedWith(t, "a fifth wrong code", charge(shopOrg, guess(4)), "expired_code")
		lockedWith("the right code, after 5 wrong ones", right(shopOrg), "at this shop")
		if err := right(vendorOrg); err != nil {
			t.Fatalf("the right code at another shop, after 5 wrong ones at the first: %v", err)
		}
		// The locked shop's further wrong codes do not count for the device.
		for i := range 20 {
			refusedWith(t, "a wrong code at a locked shop", charge(shopOrg, guess(100+i)), "expired_code")
		}
		if err := right(vendorOrg); err != nil {
			t.Fatalf("the right code at another shop, after 25 wrong ones at the first: %v", err)
		}
		// Three more shops, 5 wrong codes each: 20 in all, and every shop
		// is refused the right code, one that tried no wrong code too.
		for _, org := range others {
			for i := range 5 {
				refusedWith(t, "a wrong code from another shop", charge(org, guess(200+i)), "expired_code")
			}
		}
		lockedWith("the right code at a shop that tried none, after 20 wrong ones elsewhere", right(vendorOrg), "its codes are refused")
		lockedWith("the right code at the first shop", right(shopOrg), "at this shop")
		// Ten minutes after the first wrong code, the windows are over.
		w.clock.add(10 * time.Minute)
		for _, org := range []string{shopOrg, vendorOrg, others[0]} {
			if err := right(org); err != nil {
				t.Fatalf("the right code once the window has passed: %v", err)
			}
		}
		// A new window counts from one: four more typos do not lock it.
		for i := range 4 {
			refusedWith(t, "a typo in the next window", charge(shopOrg, guess(10+i)), "expired_code")
		}
		if err := right(shopOrg); err != nil {
			t.Fatalf("the right code after 4 typos in a new window: %v", err)
		}
		// Counts whose window has passed are not kept.
		var rows int
		if err := db.Reader().QueryRowContext(ctx, "SELECT COUNT(*) FROM payment_code_misses").Scan(&rows); err != nil || rows != 1 {
			t.Fatalf("per-shop counts kept: %d %v, want the one of this window", rows, err)
		}
	})
}

// TestCodeGuessesAtOnce: wrong codes sent at once are each counted before
// a code sent after them is checked, even while their counts wait to be
// written, so a burst of guesses gets no more tries than guesses sent one
// after another: 5 wrong codes in flight, then the right one, is refused.
func TestCodeGuessesAtOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db)
		dev := w.device(t, "jonas")
		var devID string
		if err := db.Reader().QueryRowContext(ctx, "SELECT id FROM payment_devices WHERE handle = $1", dev.Handle).Scan(&devID); err != nil {
			t.Fatal(err)
		}
		right := payment.GenerateCode(dev.Handle, dev.Secret, w.clock.now())
		charge := func(code string) error { return w.chargeCode(shopOrg, code) }
		// Hold the device's row (on SQLite, the database's write lock) so
		// that the wrong codes' counts wait to be written.
		held, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		holder := make(chan error, 1)
		go func() {
			holder <- db.Tx(ctx, func(tx *store.Tx) error {
				if _, err := tx.ExecContext(ctx, "UPDATE payment_devices SET misses = misses WHERE id = $1", devID); err != nil {
					return err
				}
				once.Do(func() { close(held) })
				<-release
				return nil
			})
		}()
		<-held
		wrong := make(chan error, 5)
		for i := range 5 {
			g := wrongCode(right, i)
			go func() { wrong <- charge(g) }()
			time.Sleep(50 * time.Millisecond) // so that they arrive in this order
		}
		paid := make(chan error, 1)
		go func() { paid <- charge(right) }()
		time.Sleep(200 * time.Millisecond)
		close(release)
		if err := <-holder; err != nil {
			t.Fatal(err)
		}
		for range 5 {
			refusedWith(t, "a wrong code sent at once with others", <-wrong, "expired_code")
		}
		refusedWith(t, "the right code sent after 5 wrong ones, while their counts waited", <-paid, "code_locked")
	})
}

func TestRefunds(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db)
		static, _ := w.svc.StaticCode(w.vendor)
		p, err := w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: static, Amount: 10_00, Nonce: nonce()})
		if err != nil {
			t.Fatal(err)
		}
		r1, err := w.svc.Refund(ctx, vendorOrg, p.ID, 3_00, "r1")
		if err != nil {
			t.Fatal(err)
		}
		if again, err := w.svc.Refund(ctx, vendorOrg, p.ID, 3_00, "r1"); err != nil || again.ID != r1.ID {
			t.Fatalf("idempotent refund: %v %v", again, err)
		}
		_, err = w.svc.Refund(ctx, vendorOrg, p.ID, 7_01, "r2")
		refusedWith(t, "over refund", err, "over_refund")
		if _, err := w.svc.Refund(ctx, shopOrg, p.ID, 1_00, "r3"); !errors.Is(err, payment.ErrNotFound) {
			t.Fatalf("another merchant's refund: %v", err)
		}
		// A store that cannot answer is not an unknown purchase.
		gone, stop := context.WithCancel(ctx)
		stop()
		if _, err := w.svc.Refund(gone, vendorOrg, p.ID, 1_00, "r3"); errors.Is(err, payment.ErrNotFound) || !errors.Is(err, context.Canceled) {
			t.Fatalf("a refund while the store fails: %v", err)
		}
		// A second reservation of a refund made already (what a retry did
		// when it could not read the first) is given back, not counted twice.
		if err := db.Tx(ctx, func(tx *store.Tx) error {
			if _, err := tx.ExecContext(ctx, `UPDATE payments SET refunded = refunded + 300 WHERE id = $1`, p.ID); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO payment_refunds_pending (id, original, org_id, amount, created_at) VALUES ($1, $2, $3, 300, 0)`, r1.ID, p.ID, vendorOrg)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if n, err := w.svc.ResumeRefunds(ctx); err != nil || n != 1 {
			t.Fatalf("resume: %d %v", n, err)
		}
		if got, _ := w.svc.Payment(ctx, p.ID); got.Refunded != 3_00 {
			t.Fatalf("refunded %d after a refund was reserved twice, want 3.00", got.Refunded)
		}
		if _, err := w.svc.Refund(ctx, vendorOrg, p.ID, 7_00, "r4"); err != nil {
			t.Fatal(err)
		}
		got, _ := w.svc.Payment(ctx, p.ID)
		if got.Refunded != 10_00 {
			t.Fatalf("refunded %d", got.Refunded)
		}
		if b := w.balance(t, payment.WalletAccount("amira")); b != 150_00 {
			t.Fatalf("balance after full refund %d", b)
		}
		docs, _ := w.svc.Documents(ctx, r1.ID)
		if len(docs) != 1 || docs[0].Document.RefundOf != p.ID {
			t.Fatalf("refund receipt %+v", docs)
		}
		// Concurrent refunds never add up to more than the payment.
		p, _ = w.svc.Pay(ctx, payment.PayRequest{Payer: "jonas", Payload: static, Amount: 10_00, Nonce: nonce()})
		var wg sync.WaitGroup
		var mu sync.Mutex
		okCount := 0
		for i := range 8 {
			wg.Go(func() {
				if _, err := w.svc.Refund(ctx, vendorOrg, p.ID, 3_00, "c"+string(rune('a'+i))); err == nil {
					mu.Lock()
					okCount++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if okCount != 3 {
			t.Fatalf("%d concurrent refunds of 3.00 on 10.00 succeeded, want 3", okCount)
		}
		// Concurrent tries of the same refund (a point of sale's retries
		// racing) share one reservation: each refund is made and counted once.
		p, _ = w.svc.Pay(ctx, payment.PayRequest{Payer: "jonas", Payload: static, Amount: 20_00, Nonce: nonce()})
		const keys, tries = 10, 4
		ids := make([][tries]string, keys)
		for k := range keys {
			for i := range tries {
				wg.Go(func() {
					r, err := w.svc.Refund(ctx, vendorOrg, p.ID, 1_00, fmt.Sprintf("same-%d", k))
					if err != nil {
						ids[k][i] = "error: " + err.Error()
						return
					}
					ids[k][i] = r.ID
				})
			}
		}
		wg.Wait()
		for k := range keys {
			for i := range tries {
				if ids[k][i] != ids[k][0] || strings.HasPrefix(ids[k][i], "error") {
					t.Fatalf("tries of refund same-%d answered %q", k, ids[k])
				}
			}
		}
		if got, _ := w.svc.Payment(ctx, p.ID); got.Refunded != keys*1_00 {
			t.Fatalf("refunded %d after %d refunds of 1.00 tried %d times each, want %d", got.Refunded, keys, tries, keys*1_00)
		}
		// A refund into a wallet at its cap is refused with nothing
		// reserved, and the same refund id refunds once there is room
		// (the ledger keeps a transfer it refused: the cap is told first).
		full := ledger.DefaultProfiles["basic"].BalanceCap - w.balance(t, payment.WalletAccount("jonas"))
		if _, err := w.svc.TopUp(ctx, ledger.ID{8, 8}, "jonas", full, "to the cap"); err != nil {
			t.Fatal(err)
		}
		_, err = w.svc.Refund(ctx, vendorOrg, p.ID, 1_00, "room")
		refusedWith(t, "a refund into a full wallet", err, "over_limit")
		if got, _ := w.svc.Payment(ctx, p.ID); got.Refunded != keys*1_00 {
			t.Fatalf("a refused refund reserved: refunded %d", got.Refunded)
		}
		code, err := w.svc.ReceiveCode(ctx, "amira", "Amira")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.svc.Pay(ctx, payment.PayRequest{Payer: "jonas", Payload: code, Amount: 5_00, Nonce: nonce()}); err != nil {
			t.Fatal(err)
		}
		if r, err := w.svc.Refund(ctx, vendorOrg, p.ID, 1_00, "room"); err != nil || r.Amount != 1_00 {
			t.Fatalf("the same refund id once the wallet has room: %+v %v", r, err)
		}
		audit, err := w.eng.Check(ctx)
		if err != nil || len(audit.Problems) > 0 {
			t.Fatalf("ledger check %v %v", err, audit.Problems)
		}
	})
}

func TestInvoicesAndVerification(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db)
		sale, _ := w.svc.NewSale(ctx, shopOrg, 20_00, "", nil, time.Minute)
		p, err := w.svc.Pay(ctx, payment.PayRequest{Payer: "jonas", Payload: sale.Payload, Nonce: nonce()})
		if err != nil {
			t.Fatal(err)
		}
		inv, err := w.svc.Invoice(ctx, p.ID, payment.Buyer{TaxID: "IT11111111111", Name: "Weber Consulting"})
		if err != nil || inv.Number != "INV-000001" {
			t.Fatalf("invoice %+v %v", inv, err)
		}
		_, err = w.svc.Invoice(ctx, p.ID, payment.Buyer{TaxID: "IT2", Name: "Other"})
		refusedWith(t, "second invoice", err, "already_invoiced")
		// A buyer's field or a reason of more than one line of text is
		// refused before anything else is looked at.
		for _, b := range []payment.Buyer{{TaxID: "IT\n1", Name: "x"}, {TaxID: "IT1", Name: "Weber\rOK"}, {TaxID: "IT1", Name: "\u202eWeber"}} {
			if _, err := w.svc.Invoice(ctx, p.ID, b); !errors.Is(err, payment.ErrInvalid) || !strings.Contains(err.Error(), "plain text") {
				t.Fatalf("buyer %q: %v", b, err)
			}
		}
		if _, err := w.svc.CancelInvoice(ctx, shopOrg, inv.ID, "wrong\x1b[2K buyer"); !errors.Is(err, payment.ErrInvalid) || !strings.Contains(err.Error(), "plain text") {
			t.Fatalf("a reason with an escape sequence: %v", err)
		}
		cancel, err := w.svc.CancelInvoice(ctx, shopOrg, inv.ID, "wrong buyer name")
		if err != nil || cancel.Document.Cancels != inv.ID {
			t.Fatalf("cancel %+v %v", cancel, err)
		}
		_, err = w.svc.CancelInvoice(ctx, shopOrg, inv.ID, "again")
		refusedWith(t, "cancel twice", err, "already_cancelled")
		gone, stop := context.WithCancel(ctx)
		stop()
		if _, err := w.svc.Invoice(gone, p.ID, payment.Buyer{TaxID: "IT1", Name: "B"}); errors.Is(err, payment.ErrNotFound) || !errors.Is(err, context.Canceled) {
			t.Fatalf("an invoice while the store fails: %v", err)
		}
		if _, err := w.svc.CancelInvoice(gone, shopOrg, inv.ID, "again"); errors.Is(err, payment.ErrNotFound) || !errors.Is(err, context.Canceled) {
			t.Fatalf("a cancellation while the store fails: %v", err)
		}
		inv2, err := w.svc.Invoice(ctx, p.ID, payment.Buyer{TaxID: "IT11111111111", Name: "Weber Consulting srl"})
		if err != nil || inv2.Number != "INV-000002" {
			t.Fatalf("reissue %+v %v", inv2, err)
		}
		// Before integration the bundle has no proof; verification says so.
		b, err := w.svc.Bundle(ctx, p.ID)
		if err != nil || b.Log != nil {
			t.Fatalf("bundle before integration: %+v %v", b, err)
		}
		rep := verify(t, b, w.vkey)
		if rep.OK() || !strings.Contains(rep.Failed(), "no inclusion proof yet") {
			t.Fatalf("unintegrated: %+v", rep.Checks)
		}
		if _, _, err := w.log.Integrate(ctx); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{p.ID, inv.ID, cancel.ID, inv2.ID} {
			b, err := w.svc.Bundle(ctx, id)
			if err != nil || b.Log == nil {
				t.Fatalf("bundle %s: %v", id, err)
			}
			if rep := verify(t, b, w.vkey); !rep.OK() {
				t.Fatalf("%s does not verify: %+v", id, rep.Checks)
			}
		}
		// Tampering is found: an edited total, another key, another log.
		b, _ = w.svc.Bundle(ctx, p.ID)
		edited := *b
		edited.Document.Total++
		if rep := verify(t, &edited, w.vkey); rep.OK() || !strings.Contains(rep.Failed(), "readable copy") {
			t.Errorf("edited copy: %v", rep.Failed())
		}
		vb, _ := w.svc.Bundle(ctx, p.ID)
		vendorSale, _ := w.svc.StaticCode(w.vendor)
		vp, _ := w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: vendorSale, Amount: 1_00, Nonce: nonce()})
		w.log.Integrate(ctx)
		vendorBundle, _ := w.svc.Bundle(ctx, vp.ID)
		swapped := *vb
		swapped.Key = vendorBundle.Key
		if rep := verify(t, &swapped, w.vkey); rep.OK() || !strings.Contains(rep.Failed(), "signature") {
			t.Errorf("swapped key: %v", rep.Failed())
		}
		_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
		os, _ := tlog.NewEd25519Signer("pay.test/log", otherPriv)
		if rep := verify(t, b, os.VerifierKey()); rep.OK() || !strings.Contains(rep.Failed(), "checkpoint") {
			t.Errorf("other log key: %v", rep.Failed())
		}
		if _, err := payment.Verify(strings.NewReader("{"), w.vkey); !errors.Is(err, payment.ErrBadBundle) {
			t.Errorf("garbage: %v", err)
		}
	})
}

func verify(t *testing.T, b *payment.Bundle, vkey string) *payment.Report {
	t.Helper()
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := payment.Verify(bytes.NewReader(raw), vkey)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestP2P(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db)
		code, err := w.svc.ReceiveCode(ctx, "jonas", "Jonas")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: code, Amount: 25_00, Nonce: nonce()}); err != nil {
			t.Fatal(err)
		}
		_, err = w.svc.Pay(ctx, payment.PayRequest{Payer: "jonas", Payload: code, Amount: 1_00, Nonce: nonce()})
		refusedWith(t, "self", err, "self")
		if b := w.balance(t, payment.WalletAccount("jonas")); b != 175_00 {
			t.Fatalf("jonas %d", b)
		}
		h, _ := w.svc.History(ctx, "jonas", 10)
		if len(h) != 2 || h[0].PayeePerson != "jonas" || h[1].PayeePerson != "jonas" || h[0].Kind+h[1].Kind != payment.KindP2P+payment.KindTopUp {
			t.Fatalf("history %+v %+v", h[0], h[len(h)-1])
		}
	})
}

// TestLimitRefusals: a payment over a limit is refused with the payer's own
// profile's figure, never another profile's.
func TestLimitRefusals(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db)
		if _, err := w.svc.TopUp(ctx, ledger.ID{2, 'a'}, "amira", 2_500_00, "demo"); err != nil {
			t.Fatal(err)
		}
		code, err := w.svc.ReceiveCode(ctx, "jonas", "Jonas")
		if err != nil {
			t.Fatal(err)
		}
		pay := func(amount int64) error {
			_, err := w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: code, Amount: amount, Nonce: nonce(), SteppedUp: true})
			return err
		}
		message := func(err error) string {
			var r *payment.Refusal
			if !errors.As(err, &r) || r.Code != "over_limit" {
				t.Fatalf("over the limit: %v", err)
			}
			return r.Message
		}
		basic, verified := ledger.DefaultProfiles["basic"], ledger.DefaultProfiles["verified"]
		if m := message(pay(basic.PerPayment + 1)); !strings.Contains(m, "at most "+payment.Money(basic.PerPayment)+" at a time") {
			t.Fatalf("basic: %q", m)
		}
		if err := w.eng.SetProfile(ctx, payment.WalletAccount("amira"), "verified"); err != nil {
			t.Fatal(err)
		}
		if err := pay(basic.PerPayment + 1); err != nil {
			t.Fatalf("within the verified limit: %v", err)
		}
		if _, err := w.svc.TopUp(ctx, ledger.ID{2, 'b'}, "amira", verified.PerPayment, "demo"); err != nil {
			t.Fatal(err)
		}
		if m := message(pay(verified.PerPayment + 1)); !strings.Contains(m, "at most "+payment.Money(verified.PerPayment)+" at a time") {
			t.Fatalf("verified: %q", m)
		}
	})
}

// TestTopUpInHistory: a top-up is in the wallet's history, once however
// often it is sent, and a refused one is not, so that the history always
// adds up to the balance.
func TestTopUpInHistory(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db)
		sum := func() (n int, total int64) {
			t.Helper()
			ps, err := w.svc.History(ctx, "amira", 100)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				switch {
				case p.Payer == "amira":
					total -= p.Amount
				case p.PayeePerson == "amira":
					total += p.Amount
				}
			}
			return len(ps), total
		}
		if n, total := sum(); n != 1 || total != 150_00 || total != w.balance(t, payment.WalletAccount("amira")) {
			t.Fatalf("after setup's top-up: %d payments adding up to %d", n, total)
		}
		ps, _ := w.svc.History(ctx, "amira", 1)
		if p := ps[0]; p.Kind != payment.KindTopUp || p.Method != "top-up" || p.Payer != "" || p.PayeeOrg != "" || p.Reference != "demo" {
			t.Fatalf("the top-up as listed: %+v", p)
		}
		var first *payment.Payment
		for i := range 2 { // a second send of the same top-up changes nothing, and answers with the first
			p, err := w.svc.TopUp(ctx, ledger.ID{3, 'a'}, "amira", 20_00, "back office")
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = p
			} else if p.ID != first.ID || !p.CreatedAt.Equal(first.CreatedAt) || p.Amount != 20_00 || p.Reference != "back office" {
				t.Fatalf("a top-up sent again answered %+v, the first was %+v", p, first)
			}
		}
		// The same id for another top-up, or input no top-up has: refused,
		// with what to tell the sender.
		for _, c := range []struct {
			person, ref, code string
			amount            int64
		}{
			{"amira", "back office", "id_reused", 21_00},
			{"jonas", "back office", "id_reused", 20_00},
			{"amira", "another", "id_reused", 20_00},
		} {
			_, err := w.svc.TopUp(ctx, ledger.ID{3, 'a'}, c.person, c.amount, c.ref)
			var ref *payment.Refusal
			if !errors.As(err, &ref) || ref.Code != c.code || !strings.Contains(ref.Message, "Nothing was credited") {
				t.Fatalf("the same id for %+v: %v", c, err)
			}
		}
		for _, c := range []struct {
			amount int64
			ref    string
		}{{0, "zero"}, {-5_00, "negative"}, {1_00, strings.Repeat("r", 65)}} {
			if _, err := w.svc.TopUp(ctx, ledger.ID{3, 'c'}, "amira", c.amount, c.ref); !errors.Is(err, payment.ErrInvalid) {
				t.Fatalf("a top-up of %d with a %d-byte reference: %v", c.amount, len(c.ref), err)
			}
		}
		code, err := w.svc.ReceiveCode(ctx, "jonas", "Jonas")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: code, Amount: 5_00, Nonce: nonce()}); err != nil {
			t.Fatal(err)
		}
		// Over the basic tier's balance cap: refused, and not listed.
		_, err = w.svc.TopUp(ctx, ledger.ID{3, 'b'}, "amira", ledger.DefaultProfiles["basic"].BalanceCap, "too much")
		if ref := (*payment.Refusal)(nil); !errors.As(err, &ref) || ref.Code != "over_limit" || !strings.Contains(ref.Message, "10000.00") {
			t.Fatalf("a top-up over the balance cap: %v", err)
		}
		if n, total := sum(); n != 3 || total != 165_00 || total != w.balance(t, payment.WalletAccount("amira")) {
			t.Fatalf("after a second top-up sent twice, a payment and a refused top-up: %d payments adding up to %d, balance %d",
				n, total, w.balance(t, payment.WalletAccount("amira")))
		}
		// That refusal does not spend the id (the ledger keeps a transfer
		// it refused, so the cap is told before asking it): once the
		// wallet has room, the same top-up credits.
		for _, amount := range []int64{100_00, 65_00} { // each at most the step-up's limit
			code, err := w.svc.ReceiveCode(ctx, "jonas", "Jonas")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: code, Amount: amount, Nonce: nonce()}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.svc.TopUp(ctx, ledger.ID{3, 'b'}, "amira", ledger.DefaultProfiles["basic"].BalanceCap, "too much"); err != nil {
			t.Fatalf("the refused top-up once the wallet has room: %v", err)
		}
		if n, total := sum(); n != 6 || total != ledger.DefaultProfiles["basic"].BalanceCap || total != w.balance(t, payment.WalletAccount("amira")) {
			t.Fatalf("after paying out and the top-up again: %d payments adding up to %d, balance %d", n, total, w.balance(t, payment.WalletAccount("amira")))
		}
	})
}

// TestPayAfterTopUp: a payment refused for too little money, or a limit,
// goes through when sent again once the money is there, by the same
// confirmation form and for the same sale (the ledger keeps a transfer it
// refuses, so the refusal is told before it is asked). A sale the ledger
// refused after all (the wallet changed meanwhile) says it cannot be paid
// any more, to its payer and to anyone else, and is not called paid.
func TestPayAfterTopUp(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db) // 150.00 each
		sale, err := w.svc.NewSale(ctx, shopOrg, 160_00, "", nil, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		pay := func(payer, payload string, amount int64, nonce string) (*payment.Payment, error) {
			return w.svc.Pay(ctx, payment.PayRequest{Payer: payer, Payload: payload, Amount: amount, Nonce: nonce, SteppedUp: true})
		}
		form := nonce()
		_, err = pay("jonas", sale.Payload, 0, form)
		refusedWith(t, "a sale over the balance", err, "insufficient_funds")
		code, err := w.svc.ReceiveCode(ctx, "amira", "Amira")
		if err != nil {
			t.Fatal(err)
		}
		p2p := nonce()
		_, err = pay("jonas", code, 2_100_00, p2p)
		refusedWith(t, "over the limit per payment", err, "over_limit")
		if _, err := w.svc.TopUp(ctx, ledger.ID{9, 9}, "jonas", 50_00, "more"); err != nil {
			t.Fatal(err)
		}
		p, err := pay("jonas", sale.Payload, 0, form)
		if err != nil || p.Amount != 160_00 {
			t.Fatalf("the same sale and form once the money is there: %+v %v", p, err)
		}
		if again, err := pay("jonas", sale.Payload, 0, form); err != nil || again.ID != p.ID {
			t.Fatalf("the same form sent again: %+v %v, want the first payment", again, err)
		}
		_, err = pay("amira", sale.Payload, 0, nonce())
		refusedWith(t, "another payer of the paid sale", err, "sale_paid")
		if q, err := pay("jonas", code, 40_00, p2p); err != nil || q.Amount != 40_00 {
			t.Fatalf("the form refused over the limit, with an amount within it: %+v %v", q, err)
		}
		if b := w.balance(t, payment.WalletAccount("jonas")); b != 0 {
			t.Fatalf("jonas's balance %d, want 150+50-160-40 = 0", b)
		}

		// The ledger refuses a sale after all: its id is spent.
		other, err := w.svc.NewSale(ctx, shopOrg, 10_00, "", nil, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := w.eng.Submit(ctx, []ledger.Transfer{{ID: ledger.DeriveID("sale", other.ID), Debit: payment.WalletAccount("jonas"),
			Credit: payment.MerchantAccount(shopOrg), Amount: 10_00, Ledger: ledger.LedgerCash, Code: ledger.CodePayment}})
		if err != nil || rs[0] != ledger.ExceedsCredits {
			t.Fatalf("a refusal under the sale's id: %v %v", rs, err)
		}
		if _, err := w.svc.TopUp(ctx, ledger.ID{9, 10}, "jonas", 20_00, "more"); err != nil {
			t.Fatal(err)
		}
		_, err = pay("jonas", other.Payload, 0, nonce())
		refusedWith(t, "the refused sale's payer", err, "insufficient_funds")
		if !strings.Contains(err.Error(), "ask the merchant for a new one") {
			t.Fatalf("the refused sale's payer is not told to ask for a new sale: %v", err)
		}
		_, err = pay("amira", other.Payload, 0, nonce())
		refusedWith(t, "another payer of the refused sale", err, "sale_refused")
		if _, err := w.svc.SalePayment(ctx, shopOrg, other.ID); !errors.Is(err, payment.ErrNotFound) {
			t.Fatalf("the refused sale reads as paid: %v", err)
		}
		if a, err := w.eng.Check(ctx); err != nil || len(a.Problems) > 0 {
			t.Fatalf("ledger check: %v %v", a, err)
		}
	})
}
