package server

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/civstack/civstack/internal/barcode"
	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/web"
)

// The citizen's wallet pages: balance and history, paying by scanned or
// pasted code, the one-time payment code, the personal receive code, and
// receipts.

func (s *Server) walletRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /wallet", s.signedIn(s.walletPage))
	mux.HandleFunc("GET /wallet/payments.csv", s.signedIn(s.walletCSV))
	mux.HandleFunc("GET /wallet/pay", s.signedIn(s.payPage))
	mux.HandleFunc("POST /wallet/pay/review", s.signedIn(s.payReview))
	mux.HandleFunc("POST /wallet/pay/confirm", s.signedIn(s.payConfirm))
	mux.HandleFunc("GET /wallet/code", s.signedIn(s.codePage))
	mux.HandleFunc("POST /wallet/devices", s.signedIn(s.provisionDevice))
	mux.HandleFunc("GET /wallet/receive", s.signedIn(s.receivePage))
	mux.HandleFunc("GET /wallet/symbol.svg", s.signedIn(s.symbolSVG))
	mux.HandleFunc("POST /auth/confirm/begin", s.limited(s.signedIn(s.confirmBegin)))
	mux.HandleFunc("POST /auth/confirm/finish", s.signedIn(s.confirmFinish))
	mux.HandleFunc("GET /receipts/{id}", s.signedIn(s.receiptPage))
	mux.HandleFunc("GET /receipts/{id}/json", s.signedIn(s.receiptJSON))
	mux.HandleFunc("POST /receipts/{id}/invoice", s.signedIn(s.receiptInvoice))
}

// historyRow is a payment as the wallet lists it.
type historyRow struct {
	*payment.Payment
	Direction string // "out" or "in"
	Other     string // who was paid or who paid
	Signed    int64  // negative when money left the wallet
	Note      string // shown after Other on the page: a top-up's reference
}

// names remembers the names a list has looked up, so that a long export
// asks once per organisation or person.
type names map[string]string

func (n names) of(id string, look func() string) string {
	if name, ok := n[id]; ok {
		return name
	}
	n[id] = look()
	return n[id]
}

// historyRows says, for each of the person's payments, which way the money
// went and who was on the other side.
func (s *Server) historyRows(r *http.Request, personID string, ps []*payment.Payment, known names) []historyRow {
	org := func(id string) string { return known.of("org "+id, func() string { return s.orgName(r, id) }) }
	person := func(id string) string { return known.of("person "+id, func() string { return s.personName(r, id) }) }
	rows := make([]historyRow, 0, len(ps))
	for _, x := range ps {
		row := historyRow{Payment: x}
		switch {
		case x.Kind == payment.KindRefund:
			row.Direction, row.Other, row.Signed = "in", "Refund from "+org(x.PayeeOrg), x.Amount
		case x.Kind == payment.KindTopUp:
			row.Direction, row.Other, row.Signed = "in", "Top-up", x.Amount
			row.Note = x.Reference // e.g. the bank transfer it came from (the CSV has its own column)
		case x.Payer == personID:
			row.Direction, row.Signed = "out", -x.Amount
			if x.PayeeOrg != "" {
				row.Other = org(x.PayeeOrg)
			} else {
				row.Other = person(x.PayeePerson)
			}
		default:
			row.Direction, row.Other, row.Signed = "in", "From "+person(x.Payer), x.Amount
		}
		rows = append(rows, row)
	}
	return rows
}

// walletCSV is the person's whole payment history as a spreadsheet,
// newest first.
func (s *Server) walletCSV(w http.ResponseWriter, r *http.Request, v *viewer) {
	known := names{}
	writeCSVPages(s, w, r, csvName("civstack-payments", s.now()),
		s.zoned("time", "with", "amount ("+s.pay.Config().CurrencyCode+")", "how", "reference", "payment", "receipt"),
		func(after *payment.Payment, limit int) ([]*payment.Payment, error) {
			return s.pay.HistoryBefore(r.Context(), v.person.ID, payment.Of(after), limit)
		},
		func(p *payment.Payment) []string {
			h := s.historyRows(r, v.person.ID, []*payment.Payment{p}, known)[0]
			receipt := ""
			if h.PayeeOrg != "" {
				receipt = s.cfg.PublicURL.String() + "/receipts/" + h.ID
			}
			return []string{s.csvTime(h.CreatedAt.UnixMilli()), h.Other, payment.Money(h.Signed), web.MethodName(h.Method), h.Reference, h.ID, receipt}
		})
}

func (s *Server) walletPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderWallet(w, r, v, http.StatusOK, web.Page{})
}

// walletShownDefault is how many payments the wallet page lists at a time;
// the CSV download has them all.
const walletShownDefault = 50

// shownWallet and shownPOS override the lists' sizes (0: the default), for
// tests.
var shownWallet, shownPOS atomic.Int64

func walletShown() int { return int(cmp.Or(shownWallet.Load(), walletShownDefault)) }

func (s *Server) renderWallet(w http.ResponseWriter, r *http.Request, v *viewer, status int, p web.Page) {
	ctx := r.Context()
	acct, err := s.pay.Wallet(ctx, v.person.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	before, err := payment.ParseCursor(r.URL.Query().Get("before"))
	if err != nil {
		status, p.Error = http.StatusBadRequest, "The place to list older payments from is not one this page made; here are the newest."
	}
	shown := walletShown()
	ps, err := s.pay.HistoryBefore(ctx, v.person.ID, before, shown+1)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	ps, older := pageOf(ps, shown)
	rows := s.historyRows(r, v.person.ID, ps, names{})
	if id := r.URL.Query().Get("paid"); id != "" && p.Notice == "" {
		p.Notice = "Payment sent."
	}
	p.Title = "Wallet"
	p.Data = map[string]any{"Balance": acct.Balance(), "History": rows, "Limits": s.limitsText(acct), "Profile": acct.Profile, "StepUp": s.pay.Config().StepUp,
		"Older": older, "Paged": !before.IsZero()}
	s.render(w, r, v, status, "wallet", p)
}

// limitsText says what the wallet's tier allows, with what is left of
// today's limit: the city's day (--time-zone), as the ledger counts it.
func (s *Server) limitsText(acct *ledger.Account) string {
	l := s.ledger.Profiles()[acct.Profile]
	var parts []string
	if l.PerPayment > 0 {
		parts = append(parts, "at most "+payment.Money(l.PerPayment)+" per payment")
	}
	if l.PerDay > 0 {
		left := max(0, l.PerDay-acct.Debited(s.now().In(s.cfg.Zone)))
		parts = append(parts, payment.Money(l.PerDay)+" a day ("+payment.Money(left)+" left today)")
	}
	if l.BalanceCap > 0 {
		parts = append(parts, "a balance of at most "+payment.Money(l.BalanceCap))
	}
	if len(parts) == 0 {
		return "no limits"
	}
	return strings.Join(parts, ", ")
}

func (s *Server) orgName(r *http.Request, id string) string {
	m, err := s.pay.Merchant(r.Context(), id)
	if err == nil {
		return m.Name
	}
	s.labelFailed(err)
	o, err := s.reg.Organisation(r.Context(), id)
	if err == nil {
		return o.Name
	}
	s.labelFailed(err)
	return "a merchant"
}

// labelFailed logs a failure to read a name shown only as a label (an
// unknown id is no failure).
func (s *Server) labelFailed(err error) {
	if !errors.Is(err, registry.ErrNotFound) && !errors.Is(err, payment.ErrNotFound) {
		s.log.Warn("name for a label could not be read", "err", err)
	}
}

func (s *Server) personName(r *http.Request, id string) string {
	p, err := s.reg.Person(r.Context(), id)
	if err == nil {
		return p.DisplayName
	}
	s.labelFailed(err)
	return "someone"
}

func (s *Server) payPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.render(w, r, v, http.StatusOK, "pay", web.Page{Title: "Pay", Data: map[string]any{"Payload": ""}})
}

// payError shows a refusal on the pay page: readable, nothing charged.
func (s *Server) payError(w http.ResponseWriter, r *http.Request, v *viewer, payload string, err error) {
	status, msg := paymentStatus(err)
	if status >= 500 {
		s.log.Error("payment failed", "err", err)
	}
	s.render(w, r, v, status, "pay", web.Page{Title: "Pay", Error: msg, Data: map[string]any{"Payload": payload}})
}

// paymentStatus maps payment errors to a status and a sentence.
func paymentStatus(err error) (int, string) {
	var ref *payment.Refusal
	switch {
	case errors.As(err, &ref):
		return http.StatusUnprocessableEntity, ref.Message
	case errors.Is(err, payment.ErrInvalid):
		return http.StatusBadRequest, payment.Explain(err)
	case errors.Is(err, payment.ErrNotFound):
		return http.StatusNotFound, "There is no such payment or merchant."
	case errors.Is(err, payment.ErrStepUp):
		return http.StatusForbidden, "This amount needs your passkey."
	}
	return classify(err)
}

func newNonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) payReview(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	payload := strings.TrimSpace(r.PostForm.Get("payload"))
	if payload == "" {
		s.render(w, r, v, http.StatusBadRequest, "pay", web.Page{Title: "Pay", Error: "Scan a code, or paste its text, first.", Data: map[string]any{"Payload": ""}})
		return
	}
	q, err := s.pay.Resolve(r.Context(), payload)
	if err != nil {
		s.payError(w, r, v, payload, err)
		return
	}
	s.renderConfirm(w, r, v, http.StatusOK, q, payload, r.PostForm.Get("amount"), newNonce(), "")
}

func (s *Server) renderConfirm(w http.ResponseWriter, r *http.Request, v *viewer, status int, q *payment.Quote, payload, amount, nonce, errMsg string) {
	payee, warn := "", ""
	if q.Merchant != nil {
		payee = q.Merchant.Name
	} else {
		payee = s.personName(r, q.Person)
	}
	if q.NameOnCode != "" && !strings.EqualFold(q.NameOnCode, payee) && !strings.HasPrefix(payee, q.NameOnCode) {
		warn = "The code calls itself “" + q.NameOnCode + "”, but it pays " + payee + ". Pay only if that is who you mean to pay."
	}
	s.render(w, r, v, status, "payconfirm", web.Page{Title: "Confirm payment", Error: errMsg, Data: map[string]any{
		"Payee": payee, "Warning": warn, "Fixed": q.Fixed, "Amount": q.Amount, "AmountText": amount, "Payload": payload,
		"Nonce": nonce, "Reference": q.Reference, "Person": q.Merchant == nil, "StepUp": s.pay.Config().StepUp}})
}

func (s *Server) payConfirm(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	payload, nonce, amountText := r.PostForm.Get("payload"), r.PostForm.Get("nonce"), r.PostForm.Get("amount")
	q, err := s.pay.Resolve(r.Context(), payload)
	if err != nil {
		s.payError(w, r, v, payload, err)
		return
	}
	var amount int64
	if !q.Fixed {
		if amount, err = payment.ParseMoney(amountText); err != nil || amount <= 0 {
			s.renderConfirm(w, r, v, http.StatusBadRequest, q, payload, amountText, nonce, "Enter the amount to pay, such as 4.50.")
			return
		}
	}
	p, err := s.pay.Pay(r.Context(), payment.PayRequest{Payer: v.person.ID, Payload: payload, Amount: amount, Nonce: nonce})
	if errors.Is(err, payment.ErrStepUp) {
		s.render(w, r, v, http.StatusOK, "stepup", web.Page{Title: "Confirm with your passkey", Data: map[string]any{
			"Payload": payload, "Amount": amountText, "Nonce": nonce, "Fixed": q.Fixed, "Value": max(amount, q.Amount), "StepUp": s.pay.Config().StepUp}})
		return
	}
	if err != nil {
		status, msg := paymentStatus(err)
		if status >= 500 {
			s.failErr(w, r, err)
			return
		}
		s.renderConfirm(w, r, v, status, q, payload, amountText, newNonce(), msg)
		return
	}
	http.Redirect(w, r, afterPay(p), http.StatusSeeOther)
}

func afterPay(p *payment.Payment) string {
	if p.PayeeOrg != "" {
		return "/receipts/" + p.ID + "?paid=1"
	}
	return "/wallet?paid=" + p.ID
}

// Step-up: a passkey assertion for this person, bound to one payment.

const kindConfirm = "confirm-payment"

type confirmRequest struct {
	Payload string `json:"payload"`
	Amount  string `json:"amount"`
	Nonce   string `json:"nonce"`
}

func (s *Server) confirmBegin(w http.ResponseWriter, r *http.Request, v *viewer) {
	var in confirmRequest
	if err := decodeJSON(w, r, &in); err != nil {
		writeProblem(w, http.StatusBadRequest, sentence(err))
		return
	}
	p, err := s.reg.PersonWithCredentials(r.Context(), v.person.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	if len(p.Credentials) == 0 {
		writeProblem(w, http.StatusConflict, "Payments above "+payment.Money(s.pay.Config().StepUp)+" need a passkey, and your account has none: add one on the Account page first.")
		return
	}
	opts, sess, err := s.wa.BeginLogin(p)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	blob, _ := json.Marshal(in)
	s.saveCeremony(w, r, kindConfirm, p.ID, ceremony{Session: *sess, Label: string(blob)}, opts)
}

func (s *Server) confirmFinish(w http.ResponseWriter, r *http.Request, v *viewer) {
	c, p, ok := s.takeOwnCeremony(w, r, v, kindConfirm)
	if !ok {
		return
	}
	cred, err := s.wa.FinishLogin(p, c.Session, r)
	if err != nil {
		writeProblem(w, http.StatusUnauthorized, "The passkey could not be verified: "+webauthnReason(err))
		return
	}
	// As at sign-in: the new signature counter is kept before anything is
	// paid, so that a cloned authenticator's replay stays detectable.
	if cred.Authenticator.CloneWarning {
		s.log.Warn("passkey signature counter went backwards; possible cloned authenticator")
	}
	if err := s.reg.TouchPasskey(r.Context(), cred); err != nil {
		s.failErr(w, r, err)
		return
	}
	var in confirmRequest
	if err := json.Unmarshal([]byte(c.Label), &in); err != nil {
		s.failErr(w, r, err)
		return
	}
	var amount int64
	if in.Amount != "" {
		amount, _ = payment.ParseMoney(in.Amount)
	}
	pay, err := s.pay.Pay(r.Context(), payment.PayRequest{Payer: v.person.ID, Payload: in.Payload, Amount: amount, Nonce: in.Nonce, SteppedUp: true})
	if err != nil {
		status, msg := paymentStatus(err)
		writeProblem(w, status, msg)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"redirect": afterPay(pay)})
}

// The one-time payment code: the page provisions a device secret once (kept
// in the browser's storage) and computes codes itself.

func (s *Server) codePage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.render(w, r, v, http.StatusOK, "paycode", web.Page{Title: "Payment code", Data: map[string]any{
		"Person": v.person.ID, "Limit": s.pay.Config().StepUp}})
}

func (s *Server) provisionDevice(w http.ResponseWriter, r *http.Request, v *viewer) {
	d, err := s.pay.ProvisionDevice(r.Context(), v.person.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"handle": d.Handle, "secret": base64.RawURLEncoding.EncodeToString(d.Secret)})
}

func (s *Server) receivePage(w http.ResponseWriter, r *http.Request, v *viewer) {
	first, _, _ := strings.Cut(v.person.DisplayName, " ")
	code, err := s.pay.ReceiveCode(r.Context(), v.person.ID, first)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	svg, err := qrSVG(code, "Your receive code")
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	s.render(w, r, v, http.StatusOK, "receive", web.Page{Title: "Receive money", Data: map[string]any{"Payload": code, "QR": svg}})
}

func qrSVG(text, title string) (template.HTML, error) {
	sym, err := barcode.QR(text)
	if err != nil {
		return "", err
	}
	return template.HTML(sym.SVG(title)), nil // built from the module grid; the title is escaped
}

// symbolSVG draws a payment code the wallet computed (QR or Code 128). Only
// codes are drawn: 18 digits starting with the civstack prefix.
func (s *Server) symbolSVG(w http.ResponseWriter, r *http.Request, v *viewer) {
	text := r.URL.Query().Get("code")
	if len(text) != payment.CodeLen || !strings.HasPrefix(text, payment.CodePrefix) || strings.Trim(text, "0123456789") != "" {
		s.fail(w, r, http.StatusBadRequest, "Only payment codes are drawn here.")
		return
	}
	var sym *barcode.Symbol
	var err error
	if r.URL.Query().Get("kind") == "code128" {
		sym, err = barcode.Code128(text)
	} else {
		sym, err = barcode.QR(text)
	}
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte(sym.SVG("Payment code " + text)))
}

// Receipts: the payer, the person paid, and the merchant's people may see one.

func (s *Server) mayReadPayment(v *viewer, p *payment.Payment) bool {
	return p.Payer == v.person.ID || p.PayeePerson == v.person.ID || (p.PayeeOrg != "" && v.memberOf(p.PayeeOrg))
}

func (s *Server) loadReceipt(w http.ResponseWriter, r *http.Request, v *viewer) (*payment.DocumentInfo, *payment.Payment, bool) {
	d, err := s.pay.Document(r.Context(), r.PathValue("id"))
	var p *payment.Payment
	if err == nil {
		p, err = s.pay.Payment(r.Context(), d.Payment)
	}
	if err == nil && !s.mayReadPayment(v, p) {
		err = payment.ErrNotFound
	}
	switch {
	case errors.Is(err, payment.ErrNotFound):
		s.fail(w, r, http.StatusNotFound, "There is no such receipt.")
	case err != nil:
		s.failErr(w, r, err)
	default:
		return d, p, true
	}
	return nil, nil, false
}

func (s *Server) receiptPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderReceipt(w, r, v, http.StatusOK, web.Page{})
}

func (s *Server) renderReceipt(w http.ResponseWriter, r *http.Request, v *viewer, status int, pg web.Page) {
	d, p, ok := s.loadReceipt(w, r, v)
	if !ok {
		return
	}
	docs, err := s.pay.Documents(r.Context(), d.Payment)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	b, err := s.pay.Bundle(r.Context(), d.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	switch {
	case pg.Notice != "" || pg.Error != "":
	case r.URL.Query().Get("paid") == "1":
		pg.Notice = "Paid. Here is your receipt."
	case r.URL.Query().Get("refunded") == "1":
		pg.Notice = "Refund sent. The customer's wallet has it, with a refund receipt."
	}
	merchant := p.PayeeOrg != "" && v.memberOf(p.PayeeOrg)
	pg.Title = strings.ToUpper(d.Type[:1]) + d.Type[1:]
	pg.Data = map[string]any{"Doc": d, "Payment": p, "Documents": docs, "Logged": b.Log != nil, "Payer": p.Payer == v.person.ID,
		"Merchant": merchant, "Purchase": p.Kind == payment.KindPurchase,
		// The merchant's people refund here a sale of any day (the point of
		// sale lists today's); the form's key makes a second send refund
		// nothing more.
		"Refund":    p.PayeeOrg != "" && v.hasMerchantRole(p.PayeeOrg) && p.Kind == payment.KindPurchase && p.Refundable() > 0,
		"RefundKey": "receipt-" + newNonce()}
	s.render(w, r, v, status, "receipt", pg)
}

func (s *Server) receiptJSON(w http.ResponseWriter, r *http.Request, v *viewer) {
	d, _, ok := s.loadReceipt(w, r, v)
	if !ok {
		return
	}
	b, err := s.pay.Bundle(r.Context(), d.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+d.Type+"-"+d.ID[:min(16, len(d.ID))]+`.json"`)
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	enc.Encode(b)
}

func (s *Server) receiptInvoice(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	_, p, ok := s.loadReceipt(w, r, v)
	if !ok {
		return
	}
	if p.Payer != v.person.ID && !v.memberOf(p.PayeeOrg) {
		s.fail(w, r, http.StatusForbidden, "Only the buyer or the merchant can ask for an e-invoice.")
		return
	}
	inv, err := s.pay.Invoice(r.Context(), p.ID, payment.Buyer{TaxID: r.PostForm.Get("buyer_tax_id"), Name: r.PostForm.Get("buyer_name")})
	if err != nil {
		status, msg := paymentStatus(err)
		if status >= 500 {
			s.failErr(w, r, err)
			return
		}
		s.renderReceipt(w, r, v, status, web.Page{Error: msg})
		return
	}
	http.Redirect(w, r, "/receipts/"+inv.ID, http.StatusSeeOther)
}

// formAmount reads an amount field.
func formAmount(r *http.Request, name string) (int64, error) {
	return payment.ParseMoney(r.PostForm.Get(name))
}
