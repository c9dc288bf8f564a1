package payment

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/text"
	"github.com/civstack/civstack/internal/tlog"
)

// DocumentInfo is a stored document as lists show it.
type DocumentInfo struct {
	ID          string
	Type        string
	Number      string
	Payment     string
	OrgID       string
	LogIndex    int64
	CreatedAt   time.Time
	CancelledBy string
	Document    Document
	JWS         string
}

// Invoice issues an e-invoice for a purchase to a business buyer: the
// receipt's lines and totals, the buyer's tax id and name, and the merchant's
// next invoice number, signed and logged. A purchase has at most one invoice
// in force: a second is refused until the first is cancelled.
func (s *Service) Invoice(ctx context.Context, paymentID string, buyer Buyer) (*DocumentInfo, error) {
	buyer.TaxID, buyer.Name = strings.TrimSpace(buyer.TaxID), strings.TrimSpace(buyer.Name)
	if buyer.TaxID == "" || utf8.RuneCountInString(buyer.TaxID) > 32 || buyer.Name == "" || utf8.RuneCountInString(buyer.Name) > 120 {
		return nil, invalidf("an e-invoice needs the buyer's tax id (at most 32 characters) and name (at most 120)")
	}
	if !text.Line(buyer.TaxID + buyer.Name) {
		return nil, invalidf("the buyer's tax id and name are one line of plain text each (no line breaks, control characters or bidirectional overrides)")
	}
	pay, err := s.Payment(ctx, paymentID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err != nil || pay.Kind != KindPurchase {
		return nil, fmt.Errorf("purchase %s: %w", paymentID, ErrNotFound)
	}
	rc, err := s.document(ctx, paymentID)
	if err != nil {
		return nil, err
	}
	m, err := s.Merchant(ctx, pay.PayeeOrg)
	if err != nil {
		return nil, err
	}
	key, err := s.signer(m)
	if err != nil {
		return nil, err
	}
	var out *DocumentInfo
	err = s.db.Tx(ctx, func(tx *store.Tx) error {
		var seq int64
		if err := tx.QueryRowContext(ctx, "UPDATE payment_merchants SET invoice_seq = invoice_seq + 1 WHERE org_id = $1 RETURNING invoice_seq", m.OrgID).Scan(&seq); err != nil {
			return err
		}
		now := s.now()
		doc := rc.Document
		doc.Type, doc.ID, doc.Number, doc.IssuedAt = TypeInvoice, "i"+randomHex(s, 12), fmt.Sprintf("INV-%06d", seq), now.UTC().Format(time.RFC3339)
		doc.Merchant = Merchant{ID: m.OrgID, Name: m.Name, TaxID: m.TaxID, City: m.City}
		doc.Buyer = &buyer
		jws, err := sign(&doc, key, m.KeyID)
		if err != nil {
			return err
		}
		if err := s.storeDocument(ctx, tx, &doc, jws); err != nil {
			return err
		}
		out = &DocumentInfo{ID: doc.ID, Type: doc.Type, Number: doc.Number, Payment: paymentID, OrgID: m.OrgID, CreatedAt: now, Document: doc, JWS: jws}
		return nil
	})
	if store.IsConflict(err) {
		return nil, refusal("already_invoiced", "This payment already has an e-invoice. Cancel it first to issue another.")
	}
	if err != nil {
		return nil, fmt.Errorf("invoice: %w", err)
	}
	return out, nil
}

// CancelInvoice cancels an invoice of orgID: a signed, logged cancellation
// that names it. The invoice itself is never changed or deleted.
func (s *Service) CancelInvoice(ctx context.Context, orgID, invoiceID, reason string) (*DocumentInfo, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" || utf8.RuneCountInString(reason) > 200 {
		return nil, invalidf("say why the invoice is cancelled (at most 200 characters)")
	}
	if !text.Line(reason) {
		return nil, invalidf("the reason is one line of plain text (no line breaks, control characters or bidirectional overrides)")
	}
	inv, err := s.Document(ctx, invoiceID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err != nil || inv.Type != TypeInvoice || inv.OrgID != orgID {
		return nil, fmt.Errorf("invoice %s: %w", invoiceID, ErrNotFound)
	}
	if inv.CancelledBy != "" {
		return nil, refusal("already_cancelled", "This invoice is already cancelled.")
	}
	m, err := s.Merchant(ctx, orgID)
	if err != nil {
		return nil, err
	}
	key, err := s.signer(m)
	if err != nil {
		return nil, err
	}
	now := s.now()
	doc := Document{Type: TypeCancellation, ID: "c" + randomHex(s, 12), Payment: inv.Payment, Cancels: inv.ID, Reason: reason, Number: inv.Number,
		IssuedAt: now.UTC().Format(time.RFC3339), Merchant: Merchant{ID: m.OrgID, Name: m.Name, TaxID: m.TaxID, City: m.City},
		Buyer: inv.Document.Buyer, Currency: inv.Document.Currency, Net: inv.Document.Net, VAT: inv.Document.VAT, Total: inv.Document.Total}
	jws, err := sign(&doc, key, m.KeyID)
	if err != nil {
		return nil, err
	}
	err = s.db.Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE payment_documents SET cancelled_by = $1 WHERE id = $2 AND cancelled_by = ''", doc.ID, inv.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return refusal("already_cancelled", "This invoice is already cancelled.")
		}
		return s.storeDocument(ctx, tx, &doc, jws)
	})
	if err != nil {
		var r *Refusal
		if errors.As(err, &r) {
			return nil, r
		}
		return nil, fmt.Errorf("cancel invoice: %w", err)
	}
	return s.Document(ctx, doc.ID)
}

const selectDocuments = "SELECT id, kind, number, payment_id, org_id, log_index, created_at, cancelled_by, jws FROM payment_documents"

func scanDocuments(rows *sql.Rows) ([]*DocumentInfo, error) {
	defer rows.Close()
	var out []*DocumentInfo
	for rows.Next() {
		d := &DocumentInfo{}
		var at int64
		if err := rows.Scan(&d.ID, &d.Type, &d.Number, &d.Payment, &d.OrgID, &d.LogIndex, &at, &d.CancelledBy, &d.JWS); err != nil {
			return nil, err
		}
		d.CreatedAt = time.UnixMilli(at)
		parts := strings.Split(d.JWS, ".")
		if len(parts) == 3 {
			if b, err := b64.DecodeString(parts[1]); err == nil {
				_ = json.Unmarshal(b, &d.Document)
			}
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// Document returns a stored document.
func (s *Service) Document(ctx context.Context, id string) (*DocumentInfo, error) {
	rows, err := s.db.Reader().QueryContext(ctx, selectDocuments+" WHERE id = $1", id)
	if err != nil {
		return nil, err
	}
	ds, err := scanDocuments(rows)
	if err != nil {
		return nil, err
	}
	if len(ds) == 0 {
		return nil, fmt.Errorf("document: %w", ErrNotFound)
	}
	return ds[0], nil
}

// document is a payment's receipt.
func (s *Service) document(ctx context.Context, paymentID string) (*DocumentInfo, error) {
	return s.Document(ctx, paymentID)
}

// Documents lists a payment's documents, oldest first.
func (s *Service) Documents(ctx context.Context, paymentID string) ([]*DocumentInfo, error) {
	rows, err := s.db.Reader().QueryContext(ctx, selectDocuments+" WHERE payment_id = $1 ORDER BY created_at, id", paymentID)
	if err != nil {
		return nil, err
	}
	return scanDocuments(rows)
}

// Invoices lists a merchant's invoices and cancellations, newest first
// (not its receipts, nor the cash-flow reports it shared).
func (s *Service) Invoices(ctx context.Context, orgID string, limit int) ([]*DocumentInfo, error) {
	rows, err := s.db.Reader().QueryContext(ctx, selectDocuments+" WHERE org_id = $1 AND kind IN ($2, $3) ORDER BY created_at DESC, id LIMIT $4",
		orgID, TypeInvoice, TypeCancellation, limit)
	if err != nil {
		return nil, err
	}
	return scanDocuments(rows)
}

// Bundle builds a document's download: the JWS, the merchant key, and the
// log inclusion proofs when the log has integrated the document.
func (s *Service) Bundle(ctx context.Context, id string) (*Bundle, error) {
	d, err := s.Document(ctx, id)
	if err != nil {
		return nil, err
	}
	m, err := s.Merchant(ctx, d.OrgID)
	if err != nil {
		return nil, err
	}
	key, err := jwkOf(m.public, m.KeyID)
	if err != nil {
		return nil, err
	}
	b := &Bundle{Document: d.Document, JWS: d.JWS, Key: key}
	if s.log == nil {
		return b, nil
	}
	signed, cp, err := s.log.Latest(ctx)
	if errors.Is(err, tlog.ErrNotFound) || (err == nil && cp.Size <= max(d.LogIndex, m.keyLogIdx)) {
		return b, nil // not integrated yet
	}
	if err != nil {
		return nil, err
	}
	lp := &LogProof{Checkpoint: string(signed), Index: d.LogIndex, KeyIndex: m.keyLogIdx}
	if _, lp.Proof, err = s.log.InclusionProof(ctx, d.LogIndex, cp.Size, cp.Size); err != nil {
		return nil, err
	}
	if _, lp.KeyProof, err = s.log.InclusionProof(ctx, m.keyLogIdx, cp.Size, cp.Size); err != nil {
		return nil, err
	}
	for _, e := range []struct {
		idx int64
		dst *[]byte
	}{{d.LogIndex, &lp.Entry}, {m.keyLogIdx, &lp.KeyEntry}} {
		if err := s.db.Reader().QueryRowContext(ctx, "SELECT data FROM tlog_entries WHERE idx = $1", e.idx).Scan(e.dst); err != nil {
			return nil, fmt.Errorf("log entry %d: %w", e.idx, err)
		}
	}
	b.Log = lp
	return b, nil
}
