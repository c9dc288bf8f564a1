package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/civstack/civstack/internal/store"
)

// Expire voids pending transfers whose timeout has passed, releasing their
// reserved amounts, and returns how many it expired. Run it periodically; a
// post or void of an expired transfer fails with PendingExpired even before
// Expire has run.
func (e *Engine) Expire(ctx context.Context) (int, error) {
	// A cheap read first, so that an idle ledger never takes the write lock.
	var one int
	err := e.db.Reader().QueryRowContext(ctx, "SELECT 1 FROM ledger_transfers WHERE state = 1 AND expires_at > 0 AND expires_at <= $1 LIMIT 1",
		e.now().UnixMilli()).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find expired: %w", err)
	}
	n := 0
	err = e.db.Tx(ctx, func(tx *store.Tx) error {
		now := e.now().UTC()
		b := &batchState{accounts: map[ID]*Account{}, existing: map[ID]*stored{}, daily: map[ID]int64{},
			changedAc: map[ID]bool{}, changedPd: map[ID]bool{}, day: now.Unix() / 86400, now: now, profiles: e.profiles}
		// "state = 1" is written out so that the partial index on pending
		// transfers applies (a parameter would not match its predicate).
		rows, err := tx.QueryContext(ctx, "SELECT id FROM ledger_transfers WHERE state = 1 AND expires_at > 0 AND expires_at <= $1 ORDER BY expires_at LIMIT 8189", now.UnixMilli())
		if err != nil {
			return fmt.Errorf("find expired: %w", err)
		}
		var ids [][]byte
		for rows.Next() {
			var id []byte
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if len(ids) == 0 {
			return nil
		}
		if err := b.loadTransfers(ctx, tx, ids); err != nil {
			return err
		}
		accounts := map[ID]bool{}
		for _, p := range b.existing {
			accounts[p.Debit], accounts[p.Credit] = true, true
		}
		if err := b.loadAccounts(ctx, tx, keys(accounts)); err != nil {
			return err
		}
		n = 0
		for _, p := range b.existing {
			dr, cr := b.accounts[p.Debit], b.accounts[p.Credit]
			dr.DebitsPending -= p.Amount
			cr.CreditsPending -= p.Amount
			p.state = stateExpired
			b.changedAc[dr.ID], b.changedAc[cr.ID], b.changedPd[p.ID] = true, true, true
			n++
		}
		return b.write(ctx, tx, now)
	})
	return n, err
}
