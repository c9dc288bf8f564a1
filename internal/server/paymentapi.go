package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/registry"
)

// The payments API for merchants' point-of-sale systems (merchant tokens):
// charge a customer's payment code, open a dynamic sale, list sales, refund,
// fetch signed documents, issue and cancel e-invoices.

func (s *Server) paymentRoutes(api huma.API) {
	op := func(id, method, path, summary string, status int) huma.Operation {
		return huma.Operation{OperationID: id, Method: method, Path: path, Summary: summary, DefaultStatus: status,
			MaxBodyBytes: maxAPIBody, Tags: []string{"payments"}, Metadata: map[string]any{metaRole: registry.Merchant}}
	}
	huma.Register(api, op("charge-code", http.MethodPost, "/payments/charges", "Charge a customer's one-time payment code", http.StatusCreated), s.apiCharge)
	huma.Register(api, op("create-sale", http.MethodPost, "/payments/sales", "Open a sale: a dynamic QR code for one payment", http.StatusCreated), s.apiSale)
	huma.Register(api, op("list-payments", http.MethodGet, "/payments", "The merchant's payments and refunds since a time", 0), s.apiPayments)
	huma.Register(api, op("account-statement", http.MethodGet, "/payments/statement", "Every movement of the merchant's account, with the balance after each", 0), s.apiStatement)
	huma.Register(api, op("refund-payment", http.MethodPost, "/payments/{id}/refunds", "Refund (part of) a payment; refund_id makes it idempotent", http.StatusCreated), s.apiRefund)
	huma.Register(api, op("issue-invoice", http.MethodPost, "/payments/{id}/invoices", "Issue an e-invoice for a payment to a business buyer", http.StatusCreated), s.apiInvoice)
	huma.Register(api, op("get-document", http.MethodGet, "/documents/{id}", "A signed receipt, invoice or cancellation, with its log proofs", 0), s.apiDocument)
	huma.Register(api, op("cancel-invoice", http.MethodPost, "/documents/{id}/cancel", "Cancel an e-invoice (a logged cancellation; the invoice is never edited)", http.StatusCreated), s.apiCancel)
}

// paymentErr maps payment errors to problem details; a refusal names its
// reason code in errors[0].location.
func (s *Server) paymentErr(err error) error {
	var ref *payment.Refusal
	switch {
	case errors.As(err, &ref):
		return huma.NewError(http.StatusUnprocessableEntity, ref.Message, &huma.ErrorDetail{Message: ref.Code, Location: "result"})
	case errors.Is(err, payment.ErrInvalid):
		return huma.Error400BadRequest(payment.Explain(err))
	case errors.Is(err, payment.ErrNotFound):
		return huma.Error404NotFound("There is no such payment, document or merchant profile.")
	case errors.Is(err, ledger.ErrExists): // an account under a derived id that is not the service's (ledger.Account.Same)
		s.log.Warn("an account under a wallet's or merchant's derived id was opened through the back office") // which one is personal
		return huma.Error409Conflict("An account this needs was opened by other means under its id, so nothing was done.")
	}
	return s.apiError(err)
}

// PaymentBody is a payment as the API shows it.
type PaymentBody struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind" enum:"purchase,p2p,refund"`
	Method    string    `json:"method"`
	Amount    int64     `json:"amount" doc:"minor units (cents)"`
	Refunded  int64     `json:"refunded"`
	Original  string    `json:"original,omitempty" doc:"refunds: the payment refunded"`
	Reference string    `json:"reference,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Receipt   string    `json:"receipt" doc:"the receipt's document id (GET /documents/{id})"`
}

func paymentBody(p *payment.Payment) PaymentBody {
	kind := map[int]string{payment.KindPurchase: "purchase", payment.KindP2P: "p2p", payment.KindRefund: "refund"}[p.Kind]
	return PaymentBody{ID: p.ID, Kind: kind, Method: p.Method, Amount: p.Amount, Refunded: p.Refunded, Original: p.Original,
		Reference: p.Reference, CreatedAt: p.CreatedAt.UTC(), Receipt: p.ID}
}

type chargeIn struct {
	Body struct {
		Code      string           `json:"code" minLength:"1" maxLength:"40" doc:"the 18-digit code the customer shows"`
		Amount    int64            `json:"amount" minimum:"1" doc:"minor units (cents)"`
		Reference string           `json:"reference,omitempty" maxLength:"64"`
		Lines     []payment.LineIn `json:"lines,omitempty" maxItems:"200" doc:"line items; prices include VAT; they must add up to amount"`
		RequestID string           `json:"request_id,omitempty" maxLength:"64" doc:"your id for this charge: repeating it returns the first payment"`
	}
}

type paymentOut struct{ Body PaymentBody }

func (s *Server) apiCharge(ctx context.Context, in *chargeIn) (*paymentOut, error) {
	p, err := s.pay.Charge(ctx, payment.ChargeRequest{OrgID: principalFrom(ctx).org.ID, Code: in.Body.Code, Amount: in.Body.Amount,
		Reference: in.Body.Reference, Lines: in.Body.Lines, Request: in.Body.RequestID})
	if err != nil {
		return nil, s.paymentErr(err)
	}
	return &paymentOut{Body: paymentBody(p)}, nil
}

type saleIn struct {
	Body struct {
		Amount     int64            `json:"amount" minimum:"1"`
		Reference  string           `json:"reference,omitempty" maxLength:"25"`
		Lines      []payment.LineIn `json:"lines,omitempty" maxItems:"200"`
		TTLSeconds int              `json:"ttl_seconds,omitempty" minimum:"0" maximum:"86400" doc:"how long the code may be paid; default 600"`
	}
}

type saleOut struct {
	Body struct {
		ID        string    `json:"id"`
		Payload   string    `json:"payload" doc:"the EMV QR payload to show"`
		ExpiresAt time.Time `json:"expires_at"`
	}
}

func (s *Server) apiSale(ctx context.Context, in *saleIn) (*saleOut, error) {
	sale, err := s.pay.NewSale(ctx, principalFrom(ctx).org.ID, in.Body.Amount, in.Body.Reference, in.Body.Lines, time.Duration(in.Body.TTLSeconds)*time.Second)
	if err != nil {
		return nil, s.paymentErr(err)
	}
	out := &saleOut{}
	out.Body.ID, out.Body.Payload, out.Body.ExpiresAt = sale.ID, sale.Payload, sale.ExpiresAt.UTC()
	return out, nil
}

type paymentsIn struct {
	Since  time.Time `query:"since" doc:"RFC 3339; default: midnight UTC today"`
	Before string    `query:"before" maxLength:"64" doc:"the next field of the previous answer: the page of older payments"`
	Limit  int       `query:"limit" minimum:"1" maximum:"1000" default:"100"`
}

type paymentsOut struct {
	Body struct {
		Payments []PaymentBody `json:"payments"`
		Next     string        `json:"next,omitempty" doc:"when there may be older payments since the time: pass it as before for the next page"`
	}
}

func (s *Server) apiPayments(ctx context.Context, in *paymentsIn) (*paymentsOut, error) {
	since := in.Since
	if since.IsZero() {
		since = s.startOfDay()
	}
	before, err := payment.ParseCursor(in.Before)
	if err != nil {
		return nil, huma.Error400BadRequest("The before parameter is not a next field this API gave.")
	}
	ps, err := s.pay.Sales(ctx, principalFrom(ctx).org.ID, since, before, in.Limit)
	if err != nil {
		return nil, s.paymentErr(err)
	}
	out := &paymentsOut{}
	out.Body.Payments = []PaymentBody{}
	for _, p := range ps {
		out.Body.Payments = append(out.Body.Payments, paymentBody(p))
	}
	if len(ps) == in.Limit {
		out.Body.Next = payment.Of(ps[len(ps)-1]).String()
	}
	return out, nil
}

type statementIn struct {
	From  time.Time `query:"from" doc:"RFC 3339; default: 30 days before midnight today (the node's time zone)"`
	To    time.Time `query:"to" doc:"RFC 3339, not included; default: now"`
	After string    `query:"after" maxLength:"24" doc:"the next field of the previous answer: the page of later movements"`
	Limit int       `query:"limit" minimum:"1" maximum:"1000" default:"100"`
}

// MovementBody is one movement of a merchant's account.
type MovementBody struct {
	Time     time.Time `json:"time"`
	Transfer string    `json:"transfer" doc:"the ledger transfer"`
	Kind     string    `json:"kind" enum:"sale,refund,other" doc:"other: moved by the operator's back office (a payout, a correction), not at the point of sale"`
	Payment  string    `json:"payment,omitempty" doc:"the sale or refund (its receipt: /receipts/{payment})"`
	RefundOf string    `json:"refund_of,omitempty"`
	What     string    `json:"what,omitempty" doc:"a sale's reference; for other movements, the ledger code's name and the back office's reference"`
	Amount   int64     `json:"amount" doc:"what it did to the balance, minor units: negative out"`
	Balance  int64     `json:"balance" doc:"the balance after it"`
}

type statementOut struct {
	Body struct {
		Opening   int64          `json:"opening_balance" doc:"the balance just before from"`
		Movements []MovementBody `json:"movements" doc:"oldest first"`
		Next      string         `json:"next,omitempty" doc:"when there may be later movements before to: pass it as after for the next page"`
	}
}

func (s *Server) apiStatement(ctx context.Context, in *statementIn) (*statementOut, error) {
	org := principalFrom(ctx).org.ID
	from, to := in.From, in.To
	if from.IsZero() {
		from = s.startOfDay().AddDate(0, 0, -statementDays)
	}
	if to.IsZero() {
		to = s.now().Add(time.Nanosecond)
	}
	if !from.Before(to) {
		return nil, huma.Error400BadRequest("from must be before to.")
	}
	after, ok := statementAfter(in.After, from, to)
	if !ok {
		return nil, huma.Error400BadRequest("The after parameter is not a next field this API gave for these times.")
	}
	ms, err := s.pay.Statement(ctx, org, from, to, after, in.Limit)
	if err != nil {
		return nil, s.paymentErr(err)
	}
	out := &statementOut{}
	if out.Body.Opening, err = s.pay.MerchantBalanceAt(ctx, org, from.Add(-time.Nanosecond)); err != nil {
		return nil, s.paymentErr(err)
	}
	out.Body.Movements = []MovementBody{}
	for _, m := range ms {
		out.Body.Movements = append(out.Body.Movements, MovementBody{Time: m.Time, Transfer: m.Transfer, Kind: m.Kind, Payment: m.Payment, RefundOf: m.Original,
			What: m.What, Amount: m.Amount, Balance: m.Balance})
	}
	if len(ms) == in.Limit {
		out.Body.Next = strconv.FormatInt(ms[len(ms)-1].Time.UnixNano(), 10)
	}
	return out, nil
}

type refundIn struct {
	ID   string `path:"id" maxLength:"64"`
	Body struct {
		Amount   int64  `json:"amount" minimum:"1"`
		RefundID string `json:"refund_id" minLength:"1" maxLength:"64" doc:"your id for this refund: repeating it returns the first refund"`
	}
}

func (s *Server) apiRefund(ctx context.Context, in *refundIn) (*paymentOut, error) {
	p, err := s.pay.Refund(ctx, principalFrom(ctx).org.ID, in.ID, in.Body.Amount, in.Body.RefundID)
	if err != nil {
		return nil, s.paymentErr(err)
	}
	return &paymentOut{Body: paymentBody(p)}, nil
}

type invoiceIn struct {
	ID   string `path:"id" maxLength:"64"`
	Body struct {
		BuyerTaxID string `json:"buyer_tax_id" minLength:"1" maxLength:"32"`
		BuyerName  string `json:"buyer_name" minLength:"1" maxLength:"120"`
	}
}

type documentOut struct{ Body *payment.Bundle }

func (s *Server) apiInvoice(ctx context.Context, in *invoiceIn) (*documentOut, error) {
	p, err := s.pay.Payment(ctx, in.ID)
	if err != nil && !errors.Is(err, payment.ErrNotFound) {
		return nil, s.apiError(err)
	}
	if err != nil || p.PayeeOrg != principalFrom(ctx).org.ID {
		return nil, huma.Error404NotFound("There is no such payment.")
	}
	d, err := s.pay.Invoice(ctx, in.ID, payment.Buyer{TaxID: in.Body.BuyerTaxID, Name: in.Body.BuyerName})
	if err != nil {
		return nil, s.paymentErr(err)
	}
	return s.bundleOut(ctx, d.ID)
}

type documentPath struct {
	ID string `path:"id" maxLength:"64"`
}

func (s *Server) bundleOut(ctx context.Context, id string) (*documentOut, error) {
	b, err := s.pay.Bundle(ctx, id)
	if err != nil {
		return nil, s.paymentErr(err)
	}
	return &documentOut{Body: b}, nil
}

func (s *Server) apiDocument(ctx context.Context, in *documentPath) (*documentOut, error) {
	d, err := s.pay.Document(ctx, in.ID)
	if err != nil && !errors.Is(err, payment.ErrNotFound) {
		return nil, s.apiError(err)
	}
	if err != nil || d.OrgID != principalFrom(ctx).org.ID {
		return nil, huma.Error404NotFound("There is no such document.")
	}
	return s.bundleOut(ctx, d.ID)
}

type cancelIn struct {
	ID   string `path:"id" maxLength:"64"`
	Body struct {
		Reason string `json:"reason" minLength:"1" maxLength:"200"`
	}
}

func (s *Server) apiCancel(ctx context.Context, in *cancelIn) (*documentOut, error) {
	d, err := s.pay.CancelInvoice(ctx, principalFrom(ctx).org.ID, in.ID, in.Body.Reason)
	if err != nil {
		return nil, s.paymentErr(err)
	}
	return s.bundleOut(ctx, d.ID)
}
