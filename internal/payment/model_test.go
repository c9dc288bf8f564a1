package payment_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/modeltest"
	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestPaymentsModel runs random sequences of top-ups (some over the
// wallet's cap, some retried), payments between people and to a shop's
// sales (over the step-up, over the limit per payment or per day, over
// the money there, retried with the same form, the same sale paid again
// or after it expired), refunds (partial, too large, retried) and time
// passing against a model of the basic tier's rules, on every engine.
// After every step the answer and every balance must be the model's: a
// payment is refused for the first rule it breaks (one's own code, the
// step-up, the limits, the payee's cap, the money), a refusal spends nothing and does
// not spend its form, sale or id, a retry pays or credits once, refunds
// never add up to more than the purchase. The ledger's check passes at
// the end of each sequence.
func TestPaymentsModel(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		w := setup(t, db)
		modeltest.Check(t, []string{"topped up", "top-up over the cap", "top-up replayed", "paid", "step-up", "over the limit per payment",
			"over the daily limit", "payee over the cap", "too little money", "paid after a refusal", "payment replayed", "sale paid",
			"sale already paid", "sale expired", "refunded", "refund too large", "refund replayed", "self", "statement"},
			func(rt *rapid.T, seen *modeltest.Outcomes) { newPayRun(w, rt, seen).run() })
	})
}

var basic = ledger.DefaultProfiles["basic"]

type mPurchase struct {
	id       string
	payer    string
	amount   int64
	refunded int64
}

type mSale struct {
	sale  *payment.Sale
	paid  string // the payment's id
	payer string
}

type payRun struct {
	w      *world
	rt     *rapid.T
	ctx    context.Context
	seen   *modeltest.Outcomes
	prefix string
	people []string

	balance   map[string]int64            // person → wallet balance
	debited   map[string]int64            // person and day → debited that day
	shop      int64                       // what the shop's account got in this run, less refunds
	topUps    map[ledger.ID]int64         // a top-up id that credited → its amount
	credited  []mTopUp                    // those top-ups, to retry
	refused   map[string]bool             // forms and sales refused once (to see them pay later)
	sent      []mForm                     // payments between people as sent, to send again
	forms     map[string]*payment.Payment // a form's nonce → the payment it made
	sales     []*mSale
	bought    []*mPurchase
	refunds   map[string]*payment.Payment // a refund id → the refund it made
	refundIDs []string                    // those ids, in the order made
	ids       int
}

type mForm struct {
	payer, payee, nonce string
	amount              int64
	steppedUp           bool
}

type mTopUp struct {
	id     ledger.ID
	person string
	amount int64
}

func newPayRun(w *world, rt *rapid.T, seen *modeltest.Outcomes) *payRun {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	p := hex.EncodeToString(b)
	return &payRun{w: w, rt: rt, ctx: context.Background(), seen: seen, prefix: p, people: []string{"a-" + p, "b-" + p, "c-" + p},
		balance: map[string]int64{}, debited: map[string]int64{}, topUps: map[ledger.ID]int64{}, refused: map[string]bool{},
		forms: map[string]*payment.Payment{}, refunds: map[string]*payment.Payment{}}
}

func (r *payRun) run() {
	// The shop is every run's: its statement from a second on, past the
	// instants the ledger gave earlier runs' transfers, is this run's.
	r.w.clock.add(time.Second)
	start := r.w.clock.now()
	for _, p := range r.people {
		r.topUp(p, 500_00, r.newID())
	}
	for range rapid.IntRange(10, 50).Draw(r.rt, "steps") {
		switch rapid.SampledFrom([]string{"pay", "sale", "top up", "pay", "refund", "wait", "sale", "pay"}).Draw(r.rt, "op") {
		case "top up":
			r.randomTopUp()
		case "pay":
			r.payPerson()
		case "sale":
			r.paySale()
		case "refund":
			r.refund()
		case "wait":
			r.w.clock.add(rapid.SampledFrom([]time.Duration{30 * time.Second, 2 * time.Minute, 5 * time.Hour, 24 * time.Hour}).Draw(r.rt, "wait"))
		}
		r.checkBalances()
	}
	if a, err := r.w.eng.Check(r.ctx); err != nil || len(a.Problems) > 0 {
		r.rt.Fatalf("ledger check: %v %v", a, err)
	}
	r.checkStatement(start)
}

// checkStatement: the shop's statement since start lists exactly this
// run's sales and refunds, each moving the balance by its amount from the
// one before, and adds up to what the shop got.
func (r *payRun) checkStatement(start time.Time) {
	ms, err := r.w.svc.Statement(r.ctx, shopOrg, start, r.w.clock.now().Add(time.Hour), nil, 100_000)
	if err != nil {
		r.rt.Fatal(err)
	}
	balance, err := r.w.svc.MerchantBalanceAt(r.ctx, shopOrg, start.Add(-time.Nanosecond))
	if err != nil {
		r.rt.Fatal(err)
	}
	want := map[string]string{}
	for _, b := range r.bought {
		want[b.id] = "sale"
	}
	for _, f := range r.refunds {
		want[f.ID] = "refund"
	}
	var got int64
	for _, m := range ms {
		if want[m.Payment] != m.Kind || m.Transfer != m.Payment || m.Balance != balance+m.Amount {
			r.rt.Fatalf("statement line %+v after a balance of %d: want a %q", m, balance, want[m.Payment])
		}
		delete(want, m.Payment)
		balance, got = m.Balance, got+m.Amount
	}
	if len(want) > 0 || got != r.shop {
		r.rt.Fatalf("the statement adds up to %d, want %d; missing %v", got, r.shop, want)
	}
	if len(ms) > 0 {
		r.seen.Saw("statement")
	}
}

func (r *payRun) newID() ledger.ID {
	r.ids++
	return ledger.DeriveID("model top-up", r.prefix, fmt.Sprint(r.ids))
}

func (r *payRun) checkBalances() {
	for _, p := range r.people {
		a, err := r.w.eng.Account(r.ctx, payment.WalletAccount(p))
		if err != nil || a.Balance() != r.balance[p] {
			r.rt.Fatalf("%s's wallet holds %v (%v), want %d", p, a, err, r.balance[p])
		}
	}
}

// amount draws an amount around the tier's figures (rapid draws the
// first ones more often: the limit per payment, for the daily limit).
func (r *payRun) amount(label string) int64 {
	return rapid.SampledFrom([]int64{2_000_00, 450_00, 5_00, 1_999_99, 100_00, 100_01, 99_99, 1, 2_000_01, 4_000_00}).Draw(r.rt, label)
}

func (r *payRun) topUp(p string, amount int64, id ledger.ID) {
	got, err := r.w.svc.TopUp(r.ctx, id, p, amount, "model")
	if first, ok := r.topUps[id]; ok {
		if err != nil || got.Amount != first {
			r.rt.Fatalf("top-up %s again: %+v %v", id, got, err)
		}
		r.seen.Saw("top-up replayed")
		return
	}
	if r.balance[p]+amount > basic.BalanceCap {
		var no *payment.Refusal
		if !errors.As(err, &no) || no.Code != "over_limit" {
			r.rt.Fatalf("top-up of %d onto %d: %+v %v, want over_limit", amount, r.balance[p], got, err)
		}
		r.seen.Saw("top-up over the cap")
		return
	}
	if err != nil || got.Amount != amount {
		r.rt.Fatalf("top-up of %d: %+v %v", amount, got, err)
	}
	r.balance[p] += amount
	r.topUps[id] = amount
	r.credited = append(r.credited, mTopUp{id, p, amount})
	r.seen.Saw("topped up")
}

func (r *payRun) randomTopUp() {
	p := rapid.SampledFrom(r.people).Draw(r.rt, "to")
	amount := rapid.SampledFrom([]int64{5_000_00, 9_000_00, 1_000_00, 10_00}).Draw(r.rt, "top-up")
	if len(r.credited) > 0 && rapid.IntRange(0, 3).Draw(r.rt, "top-up again") == 3 {
		t := rapid.SampledFrom(r.credited).Draw(r.rt, "retried top-up")
		r.topUp(t.person, t.amount, t.id)
		return
	}
	r.topUp(p, amount, r.newID())
}

// pay is one wallet payment and the model's expectation of it: the first
// rule it breaks, or the money moved (payee "" for the shop).
func (r *payRun) pay(payer, payee, payload string, amount int64, nonce string, steppedUp bool) (*payment.Payment, string) {
	got, err := r.w.svc.Pay(r.ctx, payment.PayRequest{Payer: payer, Payload: payload, Amount: amount, Nonce: nonce, SteppedUp: steppedUp})
	if first := r.forms[nonce]; first != nil {
		if err != nil || got.ID != first.ID {
			r.rt.Fatalf("the form %s sent again: %+v %v, want its payment %s", nonce, got, err, first.ID)
		}
		r.seen.Saw("payment replayed")
		return got, "replayed"
	}
	day := payer + " " + r.w.clock.now().UTC().Format(time.DateOnly)
	want := ""
	switch {
	case payer == payee:
		want = "self"
	case amount > 100_00 && !steppedUp:
		want = "step-up"
	case amount > basic.PerPayment:
		want = "over the limit per payment"
	case r.debited[day]+amount > basic.PerDay:
		want = "over the daily limit"
	case payee != "" && r.balance[payee]+amount > basic.BalanceCap:
		want = "payee over the cap"
	case r.balance[payer] < amount:
		want = "too little money"
	}
	var no *payment.Refusal
	switch want {
	case "":
		if err != nil || got.Amount != amount {
			r.rt.Fatalf("%s pays %d to %q: %+v %v", payer, amount, payee, got, err)
		}
		r.balance[payer] -= amount
		r.debited[day] += amount
		if payee != "" {
			r.balance[payee] += amount
		} else {
			r.shop += amount
		}
		r.forms[nonce] = got
		if r.refused[nonce] {
			r.seen.Saw("paid after a refusal")
		}
		r.seen.Saw("paid")
		return got, ""
	case "step-up":
		if !errors.Is(err, payment.ErrStepUp) {
			r.rt.Fatalf("%s pays %d without the passkey: %+v %v", payer, amount, got, err)
		}
	case "self":
		if !errors.As(err, &no) || no.Code != "self" {
			r.rt.Fatalf("%s pays their own code: %+v %v", payer, got, err)
		}
	default:
		code := map[string]string{"over the limit per payment": "over_limit", "over the daily limit": "over_limit", "payee over the cap": "over_limit",
			"too little money": "insufficient_funds"}[want]
		if !errors.As(err, &no) || no.Code != code {
			r.rt.Fatalf("%s pays %d to %q (balance %d, debited today %d): %+v %v, want %s (%s)", payer, amount, payee, r.balance[payer], r.debited[day], got, err, code, want)
		}
	}
	r.refused[nonce] = true
	r.seen.Saw(want)
	return nil, want
}

func (r *payRun) payPerson() {
	f := mForm{payer: rapid.SampledFrom(r.people).Draw(r.rt, "payer"), payee: rapid.SampledFrom(r.people).Draw(r.rt, "payee"), nonce: nonce(),
		amount: r.amount("amount"), steppedUp: rapid.IntRange(0, 3).Draw(r.rt, "passkey") < 3}
	if len(r.sent) > 0 && rapid.IntRange(0, 3).Draw(r.rt, "the same form") == 3 {
		f = rapid.SampledFrom(r.sent).Draw(r.rt, "form") // refused before, or paid: sent again as it was
	} else {
		r.sent = append(r.sent, f)
	}
	code, err := r.w.svc.ReceiveCode(r.ctx, f.payee, "Someone")
	if err != nil {
		r.rt.Fatal(err)
	}
	r.pay(f.payer, f.payee, code, f.amount, f.nonce, f.steppedUp)
}

func (r *payRun) paySale() {
	var s *mSale
	if len(r.sales) > 0 && rapid.IntRange(0, 2).Draw(r.rt, "an earlier sale") == 2 {
		s = rapid.SampledFrom(r.sales).Draw(r.rt, "sale")
	} else {
		sale, err := r.w.svc.NewSale(r.ctx, shopOrg, r.amount("sale amount"), "", nil, time.Minute)
		if err != nil {
			r.rt.Fatal(err)
		}
		s = &mSale{sale: sale}
		r.sales = append(r.sales, s)
	}
	payer := rapid.SampledFrom(r.people).Draw(r.rt, "buyer")
	switch {
	case !r.w.clock.now().Before(s.sale.ExpiresAt):
		_, err := r.w.svc.Pay(r.ctx, payment.PayRequest{Payer: payer, Payload: s.sale.Payload, Nonce: nonce(), SteppedUp: true})
		var no *payment.Refusal
		if !errors.As(err, &no) || no.Code != "expired" {
			r.rt.Fatalf("an expired sale: %v", err)
		}
		r.seen.Saw("sale expired")
	case s.paid != "":
		_, err := r.w.svc.Pay(r.ctx, payment.PayRequest{Payer: payer, Payload: s.sale.Payload, Nonce: nonce(), SteppedUp: true})
		var no *payment.Refusal
		switch {
		case payer == s.payer && err == nil:
			r.seen.Saw("payment replayed") // the sale's id is its payer's payment
		case !errors.As(err, &no) || no.Code != "sale_paid":
			r.rt.Fatalf("a paid sale paid again by %s (paid by %s): %v", payer, s.payer, err)
		default:
			r.seen.Saw("sale already paid")
		}
	default:
		got, _ := r.pay(payer, "", s.sale.Payload, s.sale.Amount, "sale "+s.sale.ID, true)
		if got != nil {
			s.paid, s.payer = got.ID, payer
			r.bought = append(r.bought, &mPurchase{id: got.ID, payer: payer, amount: s.sale.Amount})
			r.seen.Saw("sale paid")
		}
	}
}

func (r *payRun) refund() {
	if len(r.bought) == 0 {
		return
	}
	b := rapid.SampledFrom(r.bought).Draw(r.rt, "purchase")
	key := fmt.Sprintf("%s-r%d", r.prefix, len(r.refunds))
	if len(r.refundIDs) > 0 && rapid.IntRange(0, 3).Draw(r.rt, "refund again") == 3 {
		key = rapid.SampledFrom(r.refundIDs).Draw(r.rt, "refund id")
	}
	if first := r.refunds[key]; first != nil {
		got, err := r.w.svc.Refund(r.ctx, shopOrg, first.Original, first.Amount, key)
		if err != nil || got.ID != first.ID {
			r.rt.Fatalf("refund %s again: %+v %v", key, got, err)
		}
		r.seen.Saw("refund replayed")
		return
	}
	amount := rapid.SampledFrom([]int64{1, b.amount / 2, b.amount - b.refunded, b.amount + 1}).Draw(r.rt, "refund")
	if amount <= 0 {
		return
	}
	got, err := r.w.svc.Refund(r.ctx, shopOrg, b.id, amount, key)
	if amount > b.amount-b.refunded {
		var no *payment.Refusal
		if !errors.As(err, &no) || no.Code != "over_refund" {
			r.rt.Fatalf("refund of %d with %d left: %+v %v", amount, b.amount-b.refunded, got, err)
		}
		r.seen.Saw("refund too large")
		return
	}
	if r.balance[b.payer]+amount > basic.BalanceCap {
		var no *payment.Refusal
		if !errors.As(err, &no) || no.Code != "over_limit" {
			r.rt.Fatalf("refund of %d into a wallet of %d: %+v %v", amount, r.balance[b.payer], got, err)
		}
		return
	}
	if err != nil || got.Amount != amount {
		r.rt.Fatalf("refund of %d: %+v %v", amount, got, err)
	}
	b.refunded += amount
	r.balance[b.payer] += amount
	r.shop -= amount
	r.refunds[key] = got
	r.refundIDs = append(r.refundIDs, key)
	r.seen.Saw("refunded")
}
