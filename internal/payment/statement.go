package payment

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/civstack/civstack/internal/ledger"
)

// Movement is one change to a merchant's account as its statement lists
// it: a sale, a refund, or a movement made outside the point of sale (the
// back office's payouts and corrections, through the ledger's API), which
// the sales pages do not show.
type Movement struct {
	Time     time.Time
	Transfer string // the ledger transfer's id, hex
	// Payment is the sale or refund the transfer made ("" for other
	// movements); its receipt is /receipts/{Payment}.
	Payment  string
	Original string // a refund's sale
	Kind     string // "sale", "refund" or "other"
	// What says what an other movement was: its ledger code's name and
	// the reference the back office gave it. A sale or refund has its own
	// reference here (the customer is never named).
	What    string
	Amount  int64 // what it did to the balance: positive in, negative out
	Balance int64 // the balance after it
}

// Statement lists the movements of the merchant's account from from until
// to, oldest first, at most limit, starting after after (nil: from the
// first). Reservations that did not move the balance are left out.
func (s *Service) Statement(ctx context.Context, orgID string, from, to time.Time, after *Movement, limit int) ([]*Movement, error) {
	if after != nil {
		from = after.Time.Add(time.Nanosecond) // the ledger gives each transfer its own instant
	}
	account := MerchantAccount(orgID)
	var out []*Movement
	for len(out) < limit && from.Before(to) {
		es, err := s.eng.History(ctx, account, from, to, limit-len(out))
		if errors.Is(err, ledger.ErrNotFound) {
			return nil, nil // no sale yet: no account yet
		}
		if err != nil {
			return nil, fmt.Errorf("statement: %w", err)
		}
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			if e.Delta == 0 {
				continue // a reservation, or its release: the balance did not move
			}
			out = append(out, &Movement{Time: e.Timestamp.UTC(), Transfer: e.ID.String(), Kind: "other", Amount: e.Delta, Balance: e.Balance,
				What: strings.TrimSpace(codeName(e.Code) + " " + e.Reference)})
		}
		from = es[len(es)-1].Timestamp.Add(time.Nanosecond)
	}
	if err := s.namePayments(ctx, orgID, out); err != nil {
		return nil, err
	}
	return out, nil
}

// namePayments marks the movements that are the merchant's sales and
// refunds (a payment's id is its transfer's).
func (s *Service) namePayments(ctx context.Context, orgID string, ms []*Movement) error {
	if len(ms) == 0 {
		return nil
	}
	byID := make(map[string]*Movement, len(ms))
	args := []any{orgID}
	var marks []string
	for _, m := range ms {
		byID[m.Transfer] = m
		args = append(args, m.Transfer)
		marks = append(marks, "$"+strconv.Itoa(len(args)))
	}
	rows, err := s.db.Reader().QueryContext(ctx, "SELECT id, kind, reference, original FROM payments WHERE payee_org = $1 AND id IN ("+strings.Join(marks, ", ")+")", args...)
	if err != nil {
		return fmt.Errorf("statement: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, ref, orig string
		var kind int
		if err := rows.Scan(&id, &kind, &ref, &orig); err != nil {
			return fmt.Errorf("statement: %w", err)
		}
		m := byID[id]
		switch kind {
		case KindPurchase:
			m.Kind, m.Payment, m.What = "sale", id, ref
		case KindRefund:
			m.Kind, m.Payment, m.What, m.Original = "refund", id, "", orig
		}
	}
	return rows.Err()
}

// codeName is a ledger code's name, as the statement shows it.
func codeName(c uint16) string {
	switch c {
	case ledger.CodePayment:
		return "payment"
	case ledger.CodeRefund:
		return "refund"
	case ledger.CodeIssuance:
		return "issuance"
	case ledger.CodeRedemption:
		return "redemption"
	case ledger.CodeReward:
		return "reward"
	case ledger.CodeTransfer:
		return "transfer"
	case ledger.CodeReversal:
		return "reversal"
	}
	return "code " + strconv.Itoa(int(c))
}

// MerchantBalanceAt is the merchant's balance once every transfer up to
// and including at is counted (0 before its first sale).
func (s *Service) MerchantBalanceAt(ctx context.Context, orgID string, at time.Time) (int64, error) {
	b, err := s.eng.BalanceAt(ctx, MerchantAccount(orgID), at)
	if errors.Is(err, ledger.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("balance: %w", err)
	}
	return b, nil
}
