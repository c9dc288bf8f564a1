package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/civstack/civstack/internal/store"
)

// Engine validates and writes transfers. Submit may be called concurrently;
// requests that arrive together are applied in arrival order and written in
// one transaction (group commit).
type Engine struct {
	db       *store.DB
	now      func() time.Time
	profiles map[string]Limits
	reqs     chan *request
	stopped  chan struct{}
}

type request struct {
	transfers []Transfer
	results   []Result
	err       error
	done      chan struct{}
}

// New returns an engine over db. Call Run to start its batcher.
func New(db *store.DB, now func() time.Time, profiles map[string]Limits) *Engine {
	if profiles == nil {
		profiles = DefaultProfiles
	}
	return &Engine{db: db, now: now, profiles: profiles, reqs: make(chan *request, 1024), stopped: make(chan struct{})}
}

// Run applies requests until ctx ends.
func (e *Engine) Run(ctx context.Context) {
	defer close(e.stopped)
	var batch []*request
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case r := <-e.reqs:
					r.err = errors.New("ledger stopped")
					close(r.done)
				default:
					return
				}
			}
		case r := <-e.reqs:
			batch = append(batch[:0], r)
		}
		n := len(batch[0].transfers)
	more:
		for n < MaxBatch {
			select {
			case r := <-e.reqs:
				if n+len(r.transfers) > MaxBatch {
					e.apply(ctx, batch)
					batch, n = append(batch[:0], r), 0
				} else {
					batch = append(batch, r)
				}
				n += len(r.transfers)
			default:
				break more
			}
		}
		e.apply(ctx, batch)
	}
}

func (e *Engine) apply(ctx context.Context, batch []*request) {
	var results [][]Result
	err := e.db.Tx(ctx, func(tx *store.Tx) error {
		var err error
		results, err = e.applyTx(ctx, tx, batch)
		return err
	})
	for i, r := range batch {
		if err != nil {
			r.err = fmt.Errorf("ledger: %w", err)
		} else {
			r.results = results[i]
		}
		close(r.done)
	}
}

// Submit applies transfers (at most MaxBatch) and returns one result per
// transfer, once they are durably written.
func (e *Engine) Submit(ctx context.Context, transfers []Transfer) ([]Result, error) {
	if len(transfers) == 0 {
		return nil, nil
	}
	if len(transfers) > MaxBatch {
		return nil, fmt.Errorf("%w: %d, the most is %d", ErrTooMany, len(transfers), MaxBatch)
	}
	r := &request{transfers: transfers, done: make(chan struct{})}
	select {
	case e.reqs <- r:
	case <-e.stopped:
		return nil, errors.New("ledger stopped")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-r.done:
		return r.results, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// CreateAccount opens an account with zero balances.
func (e *Engine) CreateAccount(ctx context.Context, a Account) error {
	if a.ID == (ID{}) {
		return fmt.Errorf("%w: the zero id is reserved", ErrInvalid)
	}
	if _, ok := Assets[a.Ledger]; !ok {
		return fmt.Errorf("%w: unknown ledger %d", ErrInvalid, a.Ledger)
	}
	if a.Flags&DebitsMustNotExceedCredits != 0 && a.Flags&CreditsMustNotExceedDebits != 0 {
		return fmt.Errorf("%w: an account cannot limit both debits and credits", ErrInvalid)
	}
	if _, ok := e.profiles[a.Profile]; a.Profile != "" && !ok {
		return fmt.Errorf("%w: unknown limit profile %q", ErrInvalid, a.Profile)
	}
	return e.db.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO ledger_accounts (id, ledger, kind, owner, flags, profile,
			debits_pending, debits_posted, credits_pending, credits_posted, created_at) VALUES ($1, $2, $3, $4, $5, $6, 0, 0, 0, 0, $7)`,
			a.ID[:], int64(a.Ledger), int(a.Kind), a.Owner, int(a.Flags), a.Profile, e.now().UnixMilli())
		if err != nil {
			return fmt.Errorf("create account: %w", err)
		}
		return nil
	})
}

const accountColumns = "id, ledger, kind, owner, flags, profile, debits_pending, debits_posted, credits_pending, credits_posted, created_at"

func scanAccount(row interface{ Scan(...any) error }) (*Account, error) {
	var a Account
	var id []byte
	var ledger int64
	var kind, flags int
	var created int64
	if err := row.Scan(&id, &ledger, &kind, &a.Owner, &flags, &a.Profile, &a.DebitsPending, &a.DebitsPosted, &a.CreditsPending, &a.CreditsPosted, &created); err != nil {
		return nil, err
	}
	copy(a.ID[:], id)
	a.Ledger, a.Kind, a.Flags, a.CreatedAt = uint32(ledger), Kind(kind), AccountFlags(flags), time.UnixMilli(created).UTC()
	return &a, nil
}

// Account returns one account.
func (e *Engine) Account(ctx context.Context, id ID) (*Account, error) {
	a, err := scanAccount(e.db.Reader().QueryRowContext(ctx, "SELECT "+accountColumns+" FROM ledger_accounts WHERE id = $1", id[:]))
	if err != nil {
		if strings.Contains(err.Error(), "no rows") {
			return nil, fmt.Errorf("account %s: %w", id, ErrNotFound)
		}
		return nil, err
	}
	return a, nil
}

// Accounts returns every account of a ledger.
func (e *Engine) Accounts(ctx context.Context, ledger uint32) ([]*Account, error) {
	rows, err := e.db.Reader().QueryContext(ctx, "SELECT "+accountColumns+" FROM ledger_accounts WHERE ledger = $1 ORDER BY id", int64(ledger))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
