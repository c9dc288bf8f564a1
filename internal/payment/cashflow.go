package payment

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/text"
)

// A merchant's cash-flow report (docs/cashflow.md), built only from its own
// civstack sales and only when the merchant asks: on its report page, or
// for a lender it chose to share with. It is never computed about a person,
// nor for a merchant that did not ask. Shared reports are signed documents
// (ES256, the merchant's key, hash in the transparency log) that a lender
// checks offline with `civstack verify`.

// CashFlow is the report's figures, over the complete months (at most 12)
// since the merchant's first sale; the month under way is shown apart.
type CashFlow struct {
	TimeZone     string      `json:"time_zone,omitempty"` // whose calendar months (an IANA name; absent in reports before it: UTC)
	From         string      `json:"from"`                // first month, YYYY-MM ("" with no complete month yet)
	To           string      `json:"to"`                  // last complete month
	Months       []MonthFlow `json:"months"`
	Revenue      int64       `json:"revenue"`         // sales minus refunds, minor units
	Average      int64       `json:"monthly_average"` // revenue per month
	GrowthBP     *int64      `json:"growth_bp"`       // the last month against the one before, basis points
	VolatilityBP *int64      `json:"volatility_bp"`   // standard deviation of monthly revenue over its mean
	RefundRateBP int64       `json:"refund_rate_bp"`  // refunds over sales
	Customers    int64       `json:"customers"`       // distinct paying customers (a count, nobody named)
	MonthsActive int         `json:"months_active"`   // months with at least one sale
	MonthToDate  int64       `json:"month_to_date"`   // revenue of the month under way (not in the figures)
	Recipient    string      `json:"recipient,omitempty"`
}

// MonthFlow is one calendar month (of the report's time zone).
type MonthFlow struct {
	Month     string `json:"month"`
	Sales     int64  `json:"sales"`
	Refunds   int64  `json:"refunds"`
	Revenue   int64  `json:"revenue"`
	Payments  int64  `json:"payments"`
	Customers int64  `json:"customers"`
}

// Explanations say how each figure is made, for the page and the docs.
var Explanations = map[string]string{
	"revenue":         "What customers paid through civstack in the months shown, minus what was refunded, by the month each happened.",
	"monthly_average": "Revenue divided by the number of months shown (rounded).",
	"growth":          "Revenue of the last complete month against the month before: +10% means it was a tenth higher. Shown only when the month before had revenue.",
	"volatility":      "How much monthly revenue swings: its standard deviation divided by its average. 0% is perfectly steady; above 50% is very uneven. Needs two months.",
	"refund_rate":     "Refunds as a share of sales over the months shown.",
	"customers":       "How many different wallets paid at least once over the months shown. It is a count: no customer is named or profiled.",
	"months_active":   "Months shown with at least one sale.",
	"month_to_date":   "Revenue so far in the month under way; it enters the figures when the month ends.",
}

// TypeCashFlow is a signed cash-flow report's document type.
const TypeCashFlow = "cashflow"

const maxReportMonths = 12

// Report computes the merchant's cash-flow figures now (nothing is stored).
func (s *Service) Report(ctx context.Context, orgID string) (*CashFlow, error) {
	zone := cmp.Or(s.cfg.Zone, time.UTC)
	now := s.now().In(zone)
	cur := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, zone)
	start := cur.AddDate(0, -maxReportMonths, 0)
	rows, err := s.db.QueryRead(ctx, `SELECT kind, payer, amount, created_at FROM payments WHERE payee_org = $1 AND kind IN ($2, $3) AND created_at >= $4 ORDER BY created_at`,
		orgID, KindPurchase, KindRefund, start.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	defer rows.Close()
	months := make([]MonthFlow, maxReportMonths)
	perMonth := make([]map[string]bool, maxReportMonths)
	for i := range months {
		months[i].Month = start.AddDate(0, i, 0).Format("2006-01")
		perMonth[i] = map[string]bool{}
	}
	cf := &CashFlow{TimeZone: zone.String(), Months: []MonthFlow{}}
	all := map[string]bool{}
	first := -1
	for rows.Next() {
		var kind int
		var payer string
		var amount, at int64
		if err := rows.Scan(&kind, &payer, &amount, &at); err != nil {
			return nil, err
		}
		t := time.UnixMilli(at).In(zone)
		i := (t.Year()-start.Year())*12 + int(t.Month()) - int(start.Month())
		if i >= maxReportMonths { // the month under way
			if kind == KindPurchase {
				cf.MonthToDate += amount
			} else {
				cf.MonthToDate -= amount
			}
			continue
		}
		if i < 0 {
			continue
		}
		m := &months[i]
		if kind == KindPurchase {
			m.Sales += amount
			m.Payments++
			perMonth[i][payer] = true
			all[payer] = true
			if first < 0 || i < first {
				first = i
			}
		} else {
			m.Refunds += amount
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if first < 0 {
		return cf, nil
	}
	cf.Months = months[first:]
	var sales, refunds int64
	for i := range cf.Months {
		m := &cf.Months[i]
		m.Revenue = m.Sales - m.Refunds
		m.Customers = int64(len(perMonth[first+i]))
		sales, refunds, cf.Revenue = sales+m.Sales, refunds+m.Refunds, cf.Revenue+m.Revenue
		if m.Payments > 0 {
			cf.MonthsActive++
		}
	}
	n := len(cf.Months)
	cf.From, cf.To = cf.Months[0].Month, cf.Months[n-1].Month
	cf.Customers = int64(len(all))
	mean := float64(cf.Revenue) / float64(n)
	cf.Average = int64(math.Round(mean))
	if sales > 0 {
		cf.RefundRateBP = int64(math.Round(float64(refunds) * 10000 / float64(sales)))
	}
	if n >= 2 {
		last, prev := cf.Months[n-1].Revenue, cf.Months[n-2].Revenue
		if prev > 0 {
			g := int64(math.Round(float64(last-prev) * 10000 / float64(prev)))
			cf.GrowthBP = &g
		}
		if mean > 0 {
			var ss float64
			for _, m := range cf.Months {
				d := float64(m.Revenue) - mean
				ss += d * d
			}
			v := int64(math.Round(math.Sqrt(ss/float64(n)) / mean * 10000))
			cf.VolatilityBP = &v
		}
	}
	return cf, nil
}

// Share is a merchant's standing permission for one lender to fetch its
// report; stopping it ends further updates (what the lender already has,
// it keeps).
type Share struct {
	ID       string
	Lender   string
	Created  time.Time
	Stopped  time.Time // zero: active
	LastSent time.Time // zero: never fetched
	Sent     int
}

// ErrStopped is returned for a share the merchant stopped.
var ErrStopped = errors.New("the merchant stopped sharing this report")

// ErrSharedBefore: the share form's key made a share already (the form
// was sent twice). Its link was shown then, once; the share is returned
// without it.
var ErrSharedBefore = errors.New("this form made a share already")

// MaxShareKey bounds CreateShare's key.
const MaxShareKey = 64

// shareKeys is the UUID namespace of shares made with a form's key.
var shareKeys = uuid.MustParse("4e7b2c19-a0d3-4c58-9f16-b83e5d7a2c60")

// CreateShare lets a lender fetch the merchant's report: it returns the
// share and the secret of its link (shown once; stored hashed), and signs
// and logs the first report at once, so the lender's first copy carries
// its inclusion proof. key, if not empty, is the form's (fresh each time it
// is shown): the merchant and key name one share, so a second send makes
// none and returns the first with ErrSharedBefore.
func (s *Service) CreateShare(ctx context.Context, orgID, lender, key string) (*Share, string, error) {
	lender = strings.TrimSpace(lender)
	if lender == "" || utf8.RuneCountInString(lender) > 100 {
		return nil, "", invalidf("name the lender (up to 100 characters)")
	}
	if !text.Line(lender) {
		return nil, "", invalidf("the lender's name is one line of plain text (no line breaks, control characters or bidirectional overrides)")
	}
	if len(key) > MaxShareKey {
		return nil, "", invalidf("a form key is at most %d characters", MaxShareKey)
	}
	m, err := s.Merchant(ctx, orgID)
	if err != nil {
		return nil, "", err
	}
	raw := make([]byte, 32)
	if _, err := io.ReadFull(s.rand, raw); err != nil {
		return nil, "", err
	}
	secret := base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(secret))
	sh := &Share{ID: uuid.Must(uuid.NewV7()).String(), Lender: lender, Created: s.now().UTC()}
	if key != "" {
		sh.ID = uuid.NewSHA1(shareKeys, []byte(orgID+"\x00"+key)).String()
	}
	err = s.db.Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO payment_report_shares (id, org_id, lender, token_hash, created_at, stopped_at, last_sent_at, sent)
			VALUES ($1, $2, $3, $4, $5, 0, 0, 0) ON CONFLICT (id) DO NOTHING`, sh.ID, orgID, lender, sum[:], sh.Created.UnixMilli())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return ErrSharedBefore
		}
		return nil
	})
	if errors.Is(err, ErrSharedBefore) {
		shares, err := s.Shares(ctx, orgID)
		if err != nil {
			return nil, "", err
		}
		for _, first := range shares {
			if first.ID == sh.ID {
				return first, "", ErrSharedBefore
			}
		}
		return nil, "", fmt.Errorf("share: %w", ErrNotFound)
	}
	if err != nil {
		return nil, "", fmt.Errorf("share: %w", err)
	}
	if _, err := s.signReport(ctx, m, sh); err != nil {
		return nil, "", err
	}
	return sh, secret, nil
}

// Shares lists a merchant's shares, newest first.
func (s *Service) Shares(ctx context.Context, orgID string) ([]*Share, error) {
	rows, err := s.db.QueryRead(ctx, `SELECT id, lender, created_at, stopped_at, last_sent_at, sent FROM payment_report_shares WHERE org_id = $1 ORDER BY created_at DESC`, orgID)
	if err != nil {
		return nil, fmt.Errorf("shares: %w", err)
	}
	defer rows.Close()
	var out []*Share
	for rows.Next() {
		sh := &Share{}
		var created, stopped, sent int64
		if err := rows.Scan(&sh.ID, &sh.Lender, &created, &stopped, &sent, &sh.Sent); err != nil {
			return nil, err
		}
		sh.Created = time.UnixMilli(created).UTC()
		if stopped != 0 {
			sh.Stopped = time.UnixMilli(stopped).UTC()
		}
		if sent != 0 {
			sh.LastSent = time.UnixMilli(sent).UTC()
		}
		out = append(out, sh)
	}
	return out, rows.Err()
}

// StopShare ends a share: its link gives nothing more.
func (s *Service) StopShare(ctx context.Context, orgID, shareID string) error {
	return s.db.Tx(ctx, func(tx *store.Tx) error {
		r, err := tx.ExecContext(ctx, `UPDATE payment_report_shares SET stopped_at = $1 WHERE id = $2 AND org_id = $3 AND stopped_at = 0`, s.now().UnixMilli(), shareID, orgID)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n != 1 {
			return fmt.Errorf("share: %w", ErrNotFound)
		}
		return nil
	})
}

// reportFresh is how long a lender gets the same signed report before a
// fetch signs an up-to-date one.
const reportFresh = time.Hour

// SharedReport is a lender's fetch through a share link: the newest signed
// report for that share, signed again if older than an hour, as a bundle
// to verify offline.
func (s *Service) SharedReport(ctx context.Context, secret string) (*Bundle, error) {
	sum := sha256.Sum256([]byte(secret))
	var id, orgID, lender string
	var stopped int64
	err := s.db.QueryRowRead(ctx, `SELECT id, org_id, lender, stopped_at FROM payment_report_shares WHERE token_hash = $1`, sum[:]).Scan(&id, &orgID, &lender, &stopped)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("shared report: %w", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("shared report: %w", err)
	}
	if stopped != 0 {
		return nil, ErrStopped
	}
	var docID string
	var at int64
	err = s.db.QueryRowRead(ctx, `SELECT id, created_at FROM payment_documents WHERE payment_id = $1 AND kind = $2 ORDER BY created_at DESC LIMIT 1`, "share:"+id, TypeCashFlow).Scan(&docID, &at)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("shared report: %w", err)
	}
	if docID == "" || s.now().Sub(time.UnixMilli(at)) > reportFresh {
		m, err := s.Merchant(ctx, orgID)
		if err != nil {
			return nil, err
		}
		if docID, err = s.signReport(ctx, m, &Share{ID: id, Lender: lender}); err != nil {
			return nil, err
		}
	}
	err = s.db.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE payment_report_shares SET last_sent_at = $1, sent = sent + 1 WHERE id = $2`, s.now().UnixMilli(), id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("shared report: %w", err)
	}
	return s.Bundle(ctx, docID)
}

// signReport computes, signs and logs a report for a share.
func (s *Service) signReport(ctx context.Context, m *Profile, sh *Share) (string, error) {
	cf, err := s.Report(ctx, m.OrgID)
	if err != nil {
		return "", err
	}
	cf.Recipient = sh.Lender
	doc := &Document{Type: TypeCashFlow, ID: uuid.Must(uuid.NewV7()).String(), Payment: "share:" + sh.ID, IssuedAt: s.now().UTC().Format(time.RFC3339),
		Merchant: Merchant{ID: m.OrgID, Name: m.Name, TaxID: m.TaxID, City: m.City}, Currency: s.cfg.CurrencyCode, CashFlow: cf}
	key, err := s.signer(m)
	if err != nil {
		return "", err
	}
	jws, err := sign(doc, key, m.KeyID)
	if err != nil {
		return "", err
	}
	if err := s.db.Tx(ctx, func(tx *store.Tx) error { return s.storeDocument(ctx, tx, doc, jws) }); err != nil {
		return "", err
	}
	return doc.ID, nil
}
