package payment

import (
	"context"
	"errors"
	"fmt"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/store"
)

// Refund gives amount of a purchase back to the payer, from the merchant's
// account. key is the point of sale's id for this refund: repeating it
// returns the first refund. The amount is reserved on the purchase first (so
// refunds can never add up to more than it), then the transfer, its receipt
// and the release of the reservation commit together; a transfer refused,
// or found made already by another reservation, gives the reservation back
// in the same transaction.
func (s *Service) Refund(ctx context.Context, orgID, paymentID string, amount int64, key string) (*Payment, error) {
	if key == "" || len(key) > 64 {
		return nil, invalidf("a refund needs an id of 1 to 64 characters")
	}
	orig, err := s.Payment(ctx, paymentID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err != nil || orig.Kind != KindPurchase || orig.PayeeOrg != orgID {
		return nil, fmt.Errorf("purchase %s: %w", paymentID, ErrNotFound)
	}
	if amount <= 0 {
		return nil, invalidf("enter the amount to refund")
	}
	id := derive("refund", orgID, key)
	switch prior, err := s.Payment(ctx, id.String()); {
	case err == nil:
		if prior.Original == paymentID && prior.Amount == amount {
			return prior, nil
		}
		return nil, refusal("refund_id_taken", "This refund id was already used for another refund.")
	case !errors.Is(err, ErrNotFound):
		return nil, err // not known to be new: reserving again would count it twice
	}
	if err := s.refundForeseen(ctx, id, orig, amount); err != nil {
		return nil, err
	}
	err = s.db.Tx(ctx, func(tx *store.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM payment_refunds_pending WHERE id = $1", id.String()).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil // an earlier attempt reserved it: go on with that
		}
		res, err := tx.ExecContext(ctx, "UPDATE payments SET refunded = refunded + $1 WHERE id = $2 AND refunded + $1 <= amount", amount, paymentID)
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return refusal("over_refund", fmt.Sprintf("At most %s of this payment is left to refund.", Money(orig.Amount-orig.Refunded)))
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO payment_refunds_pending (id, original, org_id, amount, created_at) VALUES ($1, $2, $3, $4, $5)",
			id.String(), paymentID, orgID, amount, s.now().UnixMilli())
		return err
	})
	if err != nil {
		var r *Refusal
		if errors.As(err, &r) {
			return nil, r
		}
		return nil, fmt.Errorf("reserve refund: %w", err)
	}
	return s.finishRefund(ctx, id, orig, amount)
}

// refundForeseen refuses a new refund that the reservation or the ledger
// would refuse: more than is left of the purchase, too little in the
// merchant's account, a wallet at its cap. The ledger keeps every
// transfer it refuses, and the id is the point of sale's refund id, which
// it sends again once there is room. A refund an earlier try reserved
// goes on (its reservation counts in what is refunded).
func (s *Service) refundForeseen(ctx context.Context, id ledger.ID, orig *Payment, amount int64) error {
	var reserved int
	if err := s.db.Reader().QueryRowContext(ctx, "SELECT COUNT(*) FROM payment_refunds_pending WHERE id = $1", id.String()).Scan(&reserved); err != nil {
		return fmt.Errorf("refund: %w", err)
	}
	if reserved > 0 {
		return nil
	}
	if amount > orig.Amount-orig.Refunded { // and again when reserving, for refunds at the same moment
		return refusal("over_refund", fmt.Sprintf("At most %s of this payment is left to refund.", Money(orig.Amount-orig.Refunded)))
	}
	merchant, err := s.eng.Account(ctx, MerchantAccount(orig.PayeeOrg))
	if err != nil {
		return fmt.Errorf("refund: %w", err)
	}
	wallet, err := s.eng.Account(ctx, WalletAccount(orig.Payer))
	if err != nil {
		return fmt.Errorf("refund: %w", err)
	}
	t := ledger.Transfer{ID: id, Debit: merchant.ID, Credit: wallet.ID, Amount: amount, Ledger: ledger.LedgerCash, Code: ledger.CodeRefund}
	if res := s.eng.Foresee(t, merchant, wallet); res != ledger.OK {
		if _, err := s.eng.Transfer(ctx, id); errors.Is(err, ledger.ErrNotFound) {
			return refundRefusal(res, amount, "")
		} else if err != nil {
			return fmt.Errorf("refund: %w", err)
		}
	}
	return nil
}

func (s *Service) finishRefund(ctx context.Context, id ledger.ID, orig *Payment, amount int64) (*Payment, error) {
	m, err := s.Merchant(ctx, orig.PayeeOrg)
	if err != nil {
		return nil, err
	}
	ref := &Payment{ID: id.String(), Kind: KindRefund, Method: "refund", PayeeOrg: orig.PayeeOrg, PayeePerson: orig.Payer, Amount: amount,
		Original: orig.ID, CreatedAt: s.now()}
	doc, jws, err := s.receipt(m, ref, []LineIn{{Description: "Refund", Quantity: 1, UnitPrice: amount}}, orig.ID)
	if err != nil {
		return nil, err
	}
	t := ledger.Transfer{ID: id, Debit: MerchantAccount(orig.PayeeOrg), Credit: WalletAccount(orig.Payer), Amount: amount,
		Ledger: ledger.LedgerCash, Code: ledger.CodeRefund, Reference: "refund " + orig.ID[:16]}
	rs, err := s.eng.SubmitThen(ctx, []ledger.Transfer{t}, func(ctx context.Context, tx *store.Tx, rs []ledger.Result) error {
		// One pending row is one reservation, which concurrent tries of the
		// same refund share: the try that removes it settles it.
		res, err := tx.ExecContext(ctx, "DELETE FROM payment_refunds_pending WHERE id = $1", id.String())
		if err != nil {
			return err
		}
		settles, _ := res.RowsAffected()
		switch {
		case rs[0] == ledger.OK:
			return s.record(ctx, tx, ref, "", doc, jws)
		case settles == 1:
			// Refused, or made already by a try whose own reservation
			// it settled: this one is given back.
			_, err := tx.ExecContext(ctx, "UPDATE payments SET refunded = refunded - $1 WHERE id = $2", amount, orig.ID)
			return err
		}
		return nil // another try settled the reservation
	})
	if err != nil {
		return nil, fmt.Errorf("refund: %w", err)
	}
	switch rs[0] {
	case ledger.OK:
		return ref, nil
	case ledger.Exists:
		return s.Payment(ctx, id.String())
	}
	// The accounts changed meanwhile: the ledger keeps this refusal.
	return nil, refundRefusal(rs[0], amount, " This refund id was refused for good: refund again with a new one.")
}

// refundRefusal says why a refund was refused.
func refundRefusal(r ledger.Result, amount int64, more string) error {
	switch r {
	case ledger.ExceedsCredits:
		return refusal("merchant_funds", "The merchant account does not hold enough to refund "+Money(amount)+". Nothing was refunded."+more)
	case ledger.ExceedsBalanceCap:
		return refusal("over_limit", "The customer's wallet would go over its balance cap. Nothing was refunded."+more)
	}
	return refusal(r.String(), "The refund was refused ("+r.String()+"). Nothing was refunded."+more)
}

// ResumeRefunds finishes refunds that were reserved but whose transfer a
// crash interrupted. serve runs it at start.
func (s *Service) ResumeRefunds(ctx context.Context) (int, error) {
	rows, err := s.db.Reader().QueryContext(ctx, "SELECT id, original, amount FROM payment_refunds_pending")
	if err != nil {
		return 0, err
	}
	type pending struct {
		id, orig string
		amount   int64
	}
	var ps []pending
	for rows.Next() {
		var p pending
		if err := rows.Scan(&p.id, &p.orig, &p.amount); err != nil {
			rows.Close()
			return 0, err
		}
		ps = append(ps, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("pending refunds: %w", err) // resuming only some would look like all
	}
	n := 0
	for _, p := range ps {
		id, err := ledger.ParseID(p.id)
		if err != nil {
			return n, err
		}
		orig, err := s.Payment(ctx, p.orig)
		if err != nil {
			return n, err
		}
		if _, err := s.finishRefund(ctx, id, orig, p.amount); err != nil && !errors.Is(err, ErrRefused) {
			return n, err
		}
		n++
	}
	return n, nil
}
