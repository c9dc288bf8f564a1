package payment

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/civstack/civstack/internal/emv"
	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/text"
	"github.com/civstack/civstack/internal/tlog"
)

// Payment kinds.
const (
	KindPurchase = 1 // a person pays a merchant
	KindP2P      = 2 // a person pays a person
	KindRefund   = 3 // a merchant gives (part of) a purchase back
	KindTopUp    = 4 // the node issues cash into a person's wallet
)

// Payment is one completed payment, transfer or refund.
type Payment struct {
	ID          string // the ledger transfer's id, hex
	Kind        int
	Method      string // qr, sale, code, p2p, refund, top-up
	Payer       string // person id ("" for refunds and top-ups)
	PayeeOrg    string
	PayeePerson string
	Amount      int64
	Refunded    int64
	Original    string // refunds: the purchase
	Sale        string
	Reference   string
	CreatedAt   time.Time
}

// Refundable is how much of a purchase is left to refund.
func (p *Payment) Refundable() int64 { return p.Amount - p.Refunded }

// Sale is a dynamic QR code for one sale.
type Sale struct {
	ID        string
	OrgID     string
	Amount    int64
	Reference string
	Lines     []LineIn
	ExpiresAt time.Time
	Payload   string // the EMV payload to show
}

// StaticCode is a merchant's printable, amount-free QR payload.
func (s *Service) StaticCode(p *Profile) (string, error) {
	return emv.Code{Civstack: emv.Civstack{Party: emv.PartyMerchant, ID: p.OrgID}, MCC: p.MCC, Currency: s.cfg.Currency,
		Country: s.cfg.Country, Name: p.Name, City: p.City}.Encode()
}

// ReceiveCode is a person's QR payload for receiving money.
func (s *Service) ReceiveCode(ctx context.Context, personID, firstName string) (string, error) {
	h, err := s.ReceiveHandle(ctx, personID)
	if err != nil {
		return "", err
	}
	if firstName == "" {
		firstName = "civstack wallet"
	}
	return emv.Code{Civstack: emv.Civstack{Party: emv.PartyPerson, ID: h}, MCC: "0000", Currency: s.cfg.Currency,
		Country: s.cfg.Country, Name: firstName, City: s.cfg.City}.Encode()
}

// NewSale makes a dynamic code for one sale, valid for ttl.
func (s *Service) NewSale(ctx context.Context, orgID string, amount int64, reference string, lines []LineIn, ttl time.Duration) (*Sale, error) {
	p, err := s.Merchant(ctx, orgID)
	if err != nil {
		return nil, err
	}
	if amount <= 0 {
		return nil, invalidf("a sale needs a positive amount")
	}
	if len([]rune(reference)) > 25 {
		return nil, invalidf("the reference is at most 25 characters")
	}
	switch text.LineFault(reference) {
	case text.NotUTF8:
		return nil, invalidf("the reference is not valid UTF-8 text")
	case text.HasControl:
		return nil, invalidf("the reference holds a control character (a line break, a tab…): it is printed in the sale's QR code, which cannot carry one")
	case text.HasReorder:
		return nil, invalidf("the reference holds a bidirectional override, which would reorder it on the payer's screen")
	}
	if ttl <= 0 || ttl > 24*time.Hour {
		ttl = 10 * time.Minute
	}
	if _, _, _, err := priceLines(lines, amount, p.VATRate); err != nil {
		return nil, err
	}
	now := s.now()
	// The id is short so that a sale code fits the 99 characters of its
	// template beside a 36-character organisation id: 60 random bits.
	sale := &Sale{ID: randomBase32(s, 12), OrgID: orgID, Amount: amount, Reference: reference, Lines: lines, ExpiresAt: now.Add(ttl).Truncate(time.Second)}
	// Encode first: a sale whose code cannot be made is never stored.
	sale.Payload, err = emv.Code{Civstack: emv.Civstack{Party: emv.PartyMerchant, ID: orgID, Sale: sale.ID, Expires: sale.ExpiresAt},
		MCC: p.MCC, Currency: s.cfg.Currency, Amount: amount, Country: s.cfg.Country, Name: p.Name, City: p.City, Reference: reference}.Encode()
	if err != nil {
		return nil, fmt.Errorf("encode sale code: %w", err)
	}
	linesJSON, _ := json.Marshal(lines)
	err = s.db.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO payment_sales (id, org_id, amount, reference, lines, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
			sale.ID, orgID, amount, reference, string(linesJSON), sale.ExpiresAt.UnixMilli(), now.UnixMilli())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("new sale: %w", err)
	}
	return sale, nil
}

func (s *Service) sale(ctx context.Context, id string) (*Sale, error) {
	sale := &Sale{ID: id}
	var lines string
	var exp int64
	err := s.db.Reader().QueryRowContext(ctx, "SELECT org_id, amount, reference, lines, expires_at FROM payment_sales WHERE id = $1", id).
		Scan(&sale.OrgID, &sale.Amount, &sale.Reference, &lines, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, refusal("unknown_sale", "The merchant has no such sale: ask for a new code.")
	}
	if err != nil {
		return nil, err
	}
	sale.ExpiresAt = time.UnixMilli(exp)
	_ = json.Unmarshal([]byte(lines), &sale.Lines)
	return sale, nil
}

// Quote is what a scanned code asks the payer to confirm.
type Quote struct {
	Party     emv.Party
	Merchant  *Profile // PartyMerchant
	Person    string   // PartyPerson: the payee's person id
	Amount    int64    // fixed by a dynamic sale; 0 when the payer chooses
	Fixed     bool
	Sale      *Sale
	Reference string
	// NameOnCode is the name printed in the code; the wallet shows the
	// registered name and warns when they differ.
	NameOnCode string
}

// Resolve reads a scanned or pasted code: which merchant or person it pays,
// and the amount when a dynamic sale fixes it.
func (s *Service) Resolve(ctx context.Context, payload string) (*Quote, error) {
	payload = strings.TrimSpace(payload)
	if payload != "" && !strings.HasPrefix(payload, "000201") {
		// Every EMVCo payment code opens with its format indicator.
		return nil, refusal("bad_qr", "This is not a payment code: payment QR codes (EMVCo) start with 000201.")
	}
	p, err := emv.Parse(payload)
	if err != nil {
		return nil, refusal("bad_qr", "This QR code cannot be read: "+strings.TrimPrefix(err.Error(), emv.ErrInvalid.Error()+": ")+".")
	}
	c, err := p.Civstack()
	if errors.Is(err, emv.ErrForeign) {
		what, _, _ := strings.Cut(err.Error(), ": "+emv.ErrForeign.Error())
		return nil, refusal("foreign_qr", capital(what)+", not a civstack merchant's: civstack cannot pay it. Use that scheme's app.")
	}
	if err != nil {
		return nil, refusal("bad_qr", "This QR code cannot be read: "+strings.TrimPrefix(err.Error(), emv.ErrInvalid.Error()+": ")+".")
	}
	if cur, _ := p.Get("53"); cur != s.cfg.Currency {
		return nil, refusal("currency", "This code asks for currency "+cur+"; this node pays in "+s.cfg.CurrencyCode+".")
	}
	q := &Quote{Party: c.Party}
	q.NameOnCode, _ = p.Get("59")
	q.Reference, _ = p.Sub("62", "05")
	if c.Party == emv.PartyPerson {
		if q.Person, err = s.personByReceiveHandle(ctx, c.ID); err != nil {
			return nil, err
		}
		return q, nil
	}
	q.Merchant, err = s.merchantCached(ctx, c.ID)
	if errors.Is(err, ErrNotFound) {
		return nil, refusal("unknown_merchant", "This code names a merchant that is not registered with this civstack node.")
	}
	if err != nil {
		return nil, err
	}
	if c.Sale != "" {
		sale, err := s.sale(ctx, c.Sale)
		if err != nil {
			return nil, err
		}
		if sale.OrgID != q.Merchant.OrgID {
			return nil, refusal("tampered", "This code's sale belongs to another merchant: do not pay it.")
		}
		amt, _ := p.Get("54")
		if n, _ := emv.ParseAmount(amt); n != sale.Amount {
			return nil, refusal("tampered", "The amount printed in this code is not the merchant's amount: do not pay it.")
		}
		if !s.now().Before(sale.ExpiresAt) {
			return nil, refusal("expired", "This sale's code expired at "+sale.ExpiresAt.UTC().Format("15:04:05")+" UTC: ask the merchant for a new one.")
		}
		q.Sale, q.Amount, q.Fixed, q.Reference = sale, sale.Amount, true, sale.Reference
	}
	return q, nil
}

func capital(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// PayRequest is a wallet payment the payer confirmed.
type PayRequest struct {
	Payer   string // person id
	Payload string // the scanned code
	Amount  int64  // for static codes and receive codes
	Nonce   string // from the confirmation form: a retry sends the same one
	// SteppedUp: the payer confirmed with their passkey just now.
	SteppedUp bool
}

// Pay performs a wallet payment: to a merchant (static or dynamic code) or
// to a person (receive code).
func (s *Service) Pay(ctx context.Context, r PayRequest) (*Payment, error) {
	q, err := s.Resolve(ctx, r.Payload)
	if err != nil {
		return nil, err
	}
	amount := r.Amount
	if q.Fixed {
		amount = q.Amount
	}
	if amount <= 0 {
		return nil, invalidf("enter the amount to pay")
	}
	if len(r.Nonce) < 16 || len(r.Nonce) > 64 {
		return nil, invalidf("the confirmation has expired: scan the code again")
	}
	if q.Party == emv.PartyPerson && q.Person == r.Payer { // before the passkey is asked for a payment that cannot be
		return nil, refusal("self", "This is your own receive code.")
	}
	if amount > s.cfg.StepUp && !r.SteppedUp {
		return nil, ErrStepUp
	}
	pay := &Payment{Payer: r.Payer, Amount: amount, Reference: q.Reference, CreatedAt: s.now()}
	var id ledger.ID
	credit := ledger.ID{}
	var payee *ledger.Account
	switch {
	case q.Party == emv.PartyPerson:
		if payee, err = s.Wallet(ctx, q.Person); err != nil {
			return nil, err
		}
		pay.Kind, pay.Method, pay.PayeePerson = KindP2P, "p2p", q.Person
		id, credit = derive("p2p", r.Payer, r.Nonce), WalletAccount(q.Person)
	case q.Sale != nil:
		pay.Kind, pay.Method, pay.PayeeOrg, pay.Sale = KindPurchase, "sale", q.Merchant.OrgID, q.Sale.ID
		id, credit = derive("sale", q.Sale.ID), MerchantAccount(q.Merchant.OrgID)
	default:
		pay.Kind, pay.Method, pay.PayeeOrg = KindPurchase, "qr", q.Merchant.OrgID
		id, credit = derive("qr", r.Payer, r.Nonce), MerchantAccount(q.Merchant.OrgID)
	}
	payer, err := s.Wallet(ctx, r.Payer)
	if err != nil {
		return nil, err
	}
	if payee == nil {
		if payee, err = s.eng.Account(ctx, credit); err != nil {
			return nil, fmt.Errorf("payment: the merchant's account: %w", err)
		}
	}
	pay.ID = id.String()
	var lines []LineIn
	if q.Sale != nil {
		lines = q.Sale.Lines
	}
	t := ledger.Transfer{ID: id, Debit: WalletAccount(r.Payer), Credit: credit, Amount: amount, Ledger: ledger.LedgerCash,
		Code: ledger.CodePayment, Reference: clipBytes(q.Reference, 64)}
	if q.Party == emv.PartyPerson {
		t.Code = ledger.CodeTransfer
	}
	// Too little money, or a limit, is told before the ledger is asked:
	// it keeps every transfer it refuses, and this id is the sale's or the
	// confirmation form's, which the payer sends again once they have
	// topped up. A retry of a payment made already is the ledger's to
	// answer (its id exists).
	if res := s.eng.Foresee(t, payer, payee); res != ledger.OK {
		if _, err := s.eng.Transfer(ctx, id); errors.Is(err, ledger.ErrNotFound) {
			return nil, s.explain(ctx, res, pay)
		} else if err != nil {
			return nil, fmt.Errorf("payment: %w", err)
		}
	}
	got, err := s.submit(ctx, t, pay, q.Merchant, lines, r.Nonce)
	var no *Refusal
	if q.Sale != nil && errors.As(err, &no) && no.Code != "sale_paid" && no.Code != "sale_refused" {
		// The ledger refused it after all (the wallet changed meanwhile)
		// and keeps that refusal under the sale's id.
		return nil, refusal(no.Code, no.Message+" This sale's code cannot be paid any more: ask the merchant for a new one.")
	}
	if err != nil {
		return nil, err
	}
	return got, nil
}

// ChargeRequest is a merchant charging a customer's payment code.
type ChargeRequest struct {
	OrgID     string
	Code      string
	Amount    int64
	Reference string
	Lines     []LineIn
	// Request is the point of sale's own id for this charge: repeating a
	// charge with the same Request returns the first payment.
	Request string
}

// Charge takes a payment with a customer's one-time code.
func (s *Service) Charge(ctx context.Context, r ChargeRequest) (*Payment, error) {
	m, err := s.merchantCached(ctx, r.OrgID)
	if err != nil {
		return nil, err
	}
	if r.Amount <= 0 {
		return nil, invalidf("enter the amount to charge")
	}
	if r.Amount > s.cfg.StepUp {
		return nil, refusal("over_code_limit", "Payment codes are for amounts up to "+Money(s.cfg.StepUp)+
			": above that, show the customer a QR code for this sale, which they confirm in their wallet.")
	}
	if len([]rune(r.Reference)) > 64 || len(r.Request) > 64 {
		return nil, invalidf("reference and request id are at most 64 characters")
	}
	code := strings.ReplaceAll(strings.TrimSpace(r.Code), " ", "")
	pc, err := parseCode(code)
	if err != nil {
		return nil, err
	}
	devID, payer, secret, err := s.device(ctx, pc.handle)
	if err != nil {
		return nil, err
	}
	unlock := s.lockCodes(devID)
	step, ok := matchStep(pc, secret, s.now())
	if !ok {
		err := s.codeMissed(ctx, devID, r.OrgID)
		unlock()
		if err != nil {
			return nil, err
		}
		return nil, refusal("expired_code", "This payment code is expired or mistyped: ask the customer to show a fresh one.")
	}
	err = s.codeGuessed(ctx, devID, r.OrgID)
	unlock()
	if err != nil {
		return nil, err
	}
	// The id is derived from the code, so a second charge of it is the same
	// transfer and the ledger refuses it; it starts with the code's step so
	// that ids rise with time and inserts stay at the right edge of indexes.
	id := derive("code", devID, strconv.FormatInt(step, 10), code)
	binary.BigEndian.PutUint64(id[:8], uint64(step))
	pay := &Payment{ID: id.String(), Kind: KindPurchase, Method: "code", Payer: payer, PayeeOrg: r.OrgID, Amount: r.Amount, Reference: r.Reference, CreatedAt: s.now()}
	t := ledger.Transfer{ID: id, Debit: WalletAccount(payer), Credit: MerchantAccount(r.OrgID), Amount: r.Amount, Ledger: ledger.LedgerCash,
		Code: ledger.CodePayment, Reference: clipBytes(r.Reference, 64)}
	got, err := s.submit(ctx, t, pay, m, r.Lines, r.Request)
	var no *Refusal
	if errors.As(err, &no) && no.Code != "code_used" {
		// The ledger keeps the refusal under the code's id: this code
		// cannot pay any more, even once the customer has topped up.
		return nil, refusal(no.Code, no.Message+" This code cannot be charged again: ask the customer to show a fresh one.")
	}
	return got, err
}

func clipBytes(s string, n int) string {
	for len(s) > n {
		_, size := lastRune(s)
		s = s[:len(s)-size]
	}
	return s
}

func lastRune(s string) (rune, int) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i]&0xC0 != 0x80 {
			return rune(s[i]), len(s) - i
		}
	}
	return 0, 1
}

// submit writes the transfer, and with it the payment row, its receipt and
// the receipt's log entry.
func (s *Service) submit(ctx context.Context, t ledger.Transfer, pay *Payment, m *Profile, lines []LineIn, request string) (*Payment, error) {
	var doc *Document
	var jws string
	if m != nil {
		var err error
		doc, jws, err = s.receipt(m, pay, lines, "")
		if err != nil {
			return nil, err
		}
	}
	rs, err := s.eng.SubmitThen(ctx, []ledger.Transfer{t}, func(ctx context.Context, tx *store.Tx, rs []ledger.Result) error {
		if rs[0] != ledger.OK {
			return nil
		}
		return s.record(ctx, tx, pay, request, doc, jws)
	})
	if err != nil {
		return nil, fmt.Errorf("payment: %w", err)
	}
	switch r := rs[0]; {
	case r == ledger.OK:
		return pay, nil
	case r == ledger.Exists || strings.HasPrefix(r.String(), "exists_with"):
		if r == ledger.Exists && request != "" {
			// The same charge again (same request id) returns the first. A
			// failure to read the first is not a refusal: "code used" would
			// send the merchant to charge the customer a second time.
			prior, err := s.Payment(ctx, pay.ID)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return nil, fmt.Errorf("payment: the first try: %w", err)
			}
			if err == nil && prior.PayeeOrg == pay.PayeeOrg && prior.PayeePerson == pay.PayeePerson {
				first, err := s.requestOf(ctx, pay.ID)
				if err != nil {
					return nil, err
				}
				if first == request {
					return prior, nil // idempotent
				}
			}
		}
		switch pay.Method {
		case "code":
			return nil, refusal("code_used", "This payment code was already used: ask the customer to show a fresh one.")
		case "sale":
			// Or a refusal the ledger keeps under the sale's id, which
			// another payer's try meets: the sale is not paid then.
			if _, err := s.SalePayment(ctx, pay.PayeeOrg, pay.Sale); errors.Is(err, ErrNotFound) {
				return nil, refusal("sale_refused", "This sale's code was refused before and cannot be paid any more: ask the merchant for a new one. Nothing was charged.")
			} else if err != nil {
				return nil, fmt.Errorf("payment: the sale: %w", err)
			}
			return nil, refusal("sale_paid", "This sale is already paid.")
		}
		return nil, refusal("duplicate", "This payment was already made.")
	default:
		return nil, s.explain(ctx, r, pay)
	}
}

// explain turns a ledger refusal into a sentence for the payer or merchant.
func (s *Service) explain(ctx context.Context, r ledger.Result, pay *Payment) error {
	// The payer's own limits, when their account can be read: a refusal
	// never quotes another profile's figure.
	overPayment, overDay := "This payment is over the wallet's limit per payment.", "This wallet has reached its daily limit."
	if a, err := s.eng.Account(ctx, WalletAccount(pay.Payer)); err == nil {
		if limits, ok := s.eng.Profiles()[a.Profile]; ok {
			overPayment = "This wallet can pay at most " + Money(limits.PerPayment) + " at a time."
			overDay = "This wallet has reached its daily limit of " + Money(limits.PerDay) + "."
		}
	}
	switch r {
	case ledger.ExceedsCredits:
		return refusal("insufficient_funds", "Not enough money in the wallet for "+Money(pay.Amount)+". Nothing was charged.")
	case ledger.ExceedsPerPaymentLimit:
		return refusal("over_limit", overPayment+" Nothing was charged.")
	case ledger.ExceedsDailyLimit:
		return refusal("over_limit", overDay+" Nothing was charged.")
	case ledger.ExceedsBalanceCap:
		return refusal("over_limit", "The receiving wallet would go over its balance cap. Nothing was charged.")
	case ledger.DebitAccountClosed:
		return refusal("closed", "This wallet is closed.")
	case ledger.CreditAccountClosed:
		return refusal("closed", "The receiving account is closed.")
	}
	return refusal(r.String(), "The payment was refused ("+r.String()+"). Nothing was charged.")
}

// record writes a committed payment's row, receipt and log entry (inside
// the ledger's transaction). The rows of all payments in one ledger group
// are collected and written together just before the group commits: one
// log sequencing and a few multi-row inserts, instead of four statements per
// payment in the ledger's serialised writer.
func (s *Service) record(ctx context.Context, tx *store.Tx, p *Payment, request string, doc *Document, jws string) error {
	b := tx.Batch(recordKey{}, func() store.Flusher { return &recordBatch{now: s.now()} }).(*recordBatch)
	b.payments = append(b.payments, []any{p.ID, p.Kind, p.Method, p.Payer, p.PayeeOrg, p.PayeePerson, p.Amount, 0, p.Original, p.Sale, p.Reference, request, p.CreatedAt.UnixMilli()})
	if doc != nil {
		entry, err := (&tlog.Entry{Kind: tlog.KindReceipt, Time: b.now, Hash: sha256.Sum256([]byte(jws))}).Marshal()
		if err != nil {
			return err
		}
		b.entries = append(b.entries, entry)
		b.docs = append(b.docs, []any{doc.ID, doc.Type, doc.Payment, doc.Merchant.ID, doc.Number, jws, b.now.UnixMilli(), ""})
	}
	return nil
}

type recordKey struct{}

// recordBatch is one transaction's payments, receipts and their log entries.
type recordBatch struct {
	now      time.Time
	payments [][]any
	docs     [][]any // each followed by its entry's log index when flushed
	entries  [][]byte
}

var (
	paymentCols  = []string{"id", "kind", "method", "payer", "payee_org", "payee_person", "amount", "refunded", "original", "sale_id", "reference", "request", "created_at"}
	documentCols = []string{"id", "kind", "payment_id", "org_id", "number", "jws", "created_at", "cancelled_by", "log_index"}
)

func (b *recordBatch) Flush(ctx context.Context, tx *store.Tx) error {
	if len(b.entries) > 0 {
		first, err := tlog.Sequence(ctx, tx, b.now, b.entries...)
		if err != nil {
			return fmt.Errorf("log receipts: %w", err)
		}
		for i := range b.docs {
			b.docs[i] = append(b.docs[i], first+int64(i))
		}
	}
	if err := tx.InsertRows(ctx, "payments", paymentCols, b.payments); err != nil {
		return fmt.Errorf("store payments: %w", err)
	}
	if err := tx.InsertRows(ctx, "payment_documents", documentCols, b.docs); err != nil {
		return fmt.Errorf("store receipts: %w", err)
	}
	return nil
}

// storeDocument logs a signed document's hash and stores it, with the
// other rows given (one round trip on PostgreSQL).
func (s *Service) storeDocument(ctx context.Context, tx *store.Tx, doc *Document, jws string, with ...tlog.Row) error {
	now := s.now()
	entry, err := (&tlog.Entry{Kind: tlog.KindReceipt, Time: now, Hash: sha256.Sum256([]byte(jws))}).Marshal()
	if err != nil {
		return err
	}
	rows := append(with, tlog.Row{Table: "payment_documents", IndexCol: "log_index",
		Cols: []string{"id", "kind", "payment_id", "org_id", "number", "jws", "created_at", "cancelled_by"},
		Vals: []any{doc.ID, doc.Type, doc.Payment, doc.Merchant.ID, doc.Number, jws, now.UnixMilli(), ""}})
	if _, err := tlog.SequenceWith(ctx, tx, now, entry, rows...); err != nil {
		return fmt.Errorf("store %s: %w", doc.Type, err)
	}
	return nil
}

// receipt signs the receipt for a payment (or refund).
func (s *Service) receipt(m *Profile, p *Payment, in []LineIn, refundOf string) (*Document, string, error) {
	lines, net, vat, err := priceLines(in, p.Amount, m.VATRate)
	if err != nil {
		return nil, "", err
	}
	doc := &Document{Type: TypeReceipt, ID: p.ID, Payment: p.ID, RefundOf: refundOf, IssuedAt: p.CreatedAt.UTC().Format(time.RFC3339),
		Merchant: Merchant{ID: m.OrgID, Name: m.Name, TaxID: m.TaxID, City: m.City}, Currency: s.cfg.CurrencyCode, Method: p.Method,
		Lines: lines, Net: net, VAT: vat, Total: p.Amount}
	key, err := s.signer(m)
	if err != nil {
		return nil, "", err
	}
	jws, err := sign(doc, key, m.KeyID)
	return doc, jws, err
}

// Payment returns a stored payment.
func (s *Service) Payment(ctx context.Context, id string) (*Payment, error) {
	return s.onePayment(ctx, "payment", " WHERE id = $1", id)
}

// onePayment is the first payment a query finds; ErrNotFound if none.
func (s *Service) onePayment(ctx context.Context, what, where string, args ...any) (*Payment, error) {
	rows, err := s.db.Reader().QueryContext(ctx, selectPayments+where, args...)
	if err != nil {
		return nil, err
	}
	ps, err := scanPayments(rows)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return ps[0], nil
}

// requestOf is the request id a payment was made with.
func (s *Service) requestOf(ctx context.Context, id string) (string, error) {
	var r string
	if err := s.db.Reader().QueryRowContext(ctx, "SELECT request FROM payments WHERE id = $1", id).Scan(&r); err != nil {
		return "", fmt.Errorf("payment %s: request: %w", id, err)
	}
	return r, nil
}

const selectPayments = "SELECT id, kind, method, payer, payee_org, payee_person, amount, refunded, original, sale_id, reference, created_at FROM payments"

func scanPayments(rows *sql.Rows) ([]*Payment, error) {
	defer rows.Close()
	var out []*Payment
	for rows.Next() {
		p := &Payment{}
		var at int64
		if err := rows.Scan(&p.ID, &p.Kind, &p.Method, &p.Payer, &p.PayeeOrg, &p.PayeePerson, &p.Amount, &p.Refunded, &p.Original, &p.Sale, &p.Reference, &at); err != nil {
			return nil, err
		}
		p.CreatedAt = time.UnixMilli(at)
		out = append(out, p)
	}
	return out, rows.Err()
}

// Sales lists a merchant's payments and refunds since a time, newest first,
// limit at a time from below the cursor (the zero Cursor: from the newest).
func (s *Service) Sales(ctx context.Context, orgID string, since time.Time, before Cursor, limit int) ([]*Payment, error) {
	where, args := " WHERE payee_org = $1 AND created_at >= $2", []any{orgID, since.UnixMilli()}
	if !before.IsZero() {
		where += " AND (created_at < $3 OR created_at = $3 AND id > $4)"
		args = append(args, before.At.UnixMilli(), before.ID)
	}
	args = append(args, limit)
	rows, err := s.db.Reader().QueryContext(ctx, selectPayments+where+fmt.Sprintf(" ORDER BY created_at DESC, id LIMIT $%d", len(args)), args...)
	if err != nil {
		return nil, err
	}
	return scanPayments(rows)
}

// History lists what a person paid, received and got back, newest first.
func (s *Service) History(ctx context.Context, personID string, limit int) ([]*Payment, error) {
	rows, err := s.db.Reader().QueryContext(ctx, selectPayments+" WHERE payer = $1 OR payee_person = $1 ORDER BY created_at DESC, id LIMIT $2", personID, limit)
	if err != nil {
		return nil, err
	}
	return scanPayments(rows)
}

// Cursor is a place in a list of payments ordered by time: the time and id
// of the last payment shown. The zero Cursor is the list's start.
type Cursor struct {
	At time.Time
	ID string
}

// IsZero reports whether c is the start of a list.
func (c Cursor) IsZero() bool { return c.ID == "" }

// Of is the cursor just past p; nil is the start of a list.
func Of(p *Payment) Cursor {
	if p == nil {
		return Cursor{}
	}
	return Cursor{At: p.CreatedAt, ID: p.ID}
}

// String is the cursor as a link carries it: Unix milliseconds, a dot, the
// payment id.
func (c Cursor) String() string {
	if c.IsZero() {
		return ""
	}
	return strconv.FormatInt(c.At.UnixMilli(), 10) + "." + c.ID
}

// ParseCursor reads a cursor from a link; "" is the zero Cursor.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	at, id, ok := strings.Cut(s, ".")
	ms, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || ms < 0 || ms > maxCursorMs {
		return Cursor{}, invalidf("%q is not a place in a list of payments", s)
	}
	pid, err := ledger.ParseID(id)
	if err != nil {
		return Cursor{}, invalidf("%q is not a place in a list of payments", s)
	}
	return Cursor{At: time.UnixMilli(ms), ID: pid.String()}, nil
}

// maxCursorMs bounds a cursor's time (year 9999), so that it converts to a
// time and back.
const maxCursorMs = 253402300799999

// SalesTotals are a merchant's payments and refunds over a time.
type SalesTotals struct {
	Payments int   // purchases and refunds
	Taken    int64 // purchases' amounts
	Refunded int64 // refunds' amounts
}

// SalesSummary totals a merchant's payments and refunds made from from
// until before to, all of them however many there are.
func (s *Service) SalesSummary(ctx context.Context, orgID string, from, to time.Time) (SalesTotals, error) {
	var t SalesTotals
	err := s.db.Reader().QueryRowContext(ctx, `SELECT COUNT(*),
		COALESCE(SUM(CASE WHEN kind = $4 THEN 0 ELSE amount END), 0), COALESCE(SUM(CASE WHEN kind = $4 THEN amount ELSE 0 END), 0)
		FROM payments WHERE payee_org = $1 AND created_at >= $2 AND created_at < $3`, orgID, from.UnixMilli(), to.UnixMilli(), KindRefund).Scan(&t.Payments, &t.Taken, &t.Refunded)
	if err != nil {
		return t, fmt.Errorf("sales summary: %w", err)
	}
	return t, nil
}

// SalesBetween lists a merchant's payments and refunds made from from
// until before to, oldest first, limit at a time after the cursor.
func (s *Service) SalesBetween(ctx context.Context, orgID string, from, to time.Time, after Cursor, limit int) ([]*Payment, error) {
	where, args := " WHERE payee_org = $1 AND created_at >= $2 AND created_at < $3", []any{orgID, from.UnixMilli(), to.UnixMilli()}
	if !after.IsZero() {
		where += " AND (created_at > $4 OR created_at = $4 AND id > $5)"
		args = append(args, after.At.UnixMilli(), after.ID)
	}
	args = append(args, limit)
	rows, err := s.db.Reader().QueryContext(ctx, selectPayments+where+fmt.Sprintf(" ORDER BY created_at, id LIMIT $%d", len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("sales: %w", err)
	}
	return scanPayments(rows)
}

// HistoryBefore lists what a person paid, received and got back, newest
// first, limit at a time from below the cursor (the zero Cursor: from the
// newest).
func (s *Service) HistoryBefore(ctx context.Context, personID string, before Cursor, limit int) ([]*Payment, error) {
	if before.IsZero() {
		return s.History(ctx, personID, limit)
	}
	rows, err := s.db.Reader().QueryContext(ctx, selectPayments+` WHERE (payer = $1 OR payee_person = $1)
		AND (created_at < $2 OR created_at = $2 AND id > $3) ORDER BY created_at DESC, id LIMIT $4`, personID, before.At.UnixMilli(), before.ID, limit)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return scanPayments(rows)
}

// Sale returns one of a merchant's dynamic sales (ErrNotFound if it has no
// such sale: another merchant's is not found either).
func (s *Service) Sale(ctx context.Context, orgID, saleID string) (*Sale, error) {
	sale, err := s.sale(ctx, saleID)
	var ref *Refusal
	if errors.As(err, &ref) || err == nil && sale.OrgID != orgID {
		return nil, fmt.Errorf("sale: %w", ErrNotFound)
	}
	return sale, err
}

// SalePayment returns the payment of a merchant's dynamic sale; ErrNotFound
// until it is paid.
func (s *Service) SalePayment(ctx context.Context, orgID, saleID string) (*Payment, error) {
	return s.onePayment(ctx, "sale payment", " WHERE sale_id = $1 AND payee_org = $2", saleID, orgID)
}
