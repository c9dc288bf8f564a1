package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/civstack/civstack/internal/store"
)

// Engine validates and writes transfers. Submit, Close, SetProfile and
// Expire may be called concurrently: every change to balances goes through
// one goroutine (Run) that takes the requests that arrived together, applies
// them in arrival order and writes them in one transaction (group commit).
//
// The engine keeps the accounts it has written in memory and trusts them
// only while the database's ledger generation (ledger_clock) is the one its
// own last transaction left: another process's write, on the same database,
// makes it reload them.
type Engine struct {
	db       *store.DB
	now      func() time.Time
	zone     *time.Location // whose calendar days the daily limits count
	profiles map[string]Limits
	reqs     chan *request
	stopped  chan struct{}

	stats struct{ groups, requests, applied, refused, redone atomic.Int64 }

	reserve    atomic.Pointer[reservation] // SetReserved
	reserveGen atomic.Uint32

	// Owned by Run's goroutine.
	cache  map[ID]*Account // committed accounts as of generation gen
	gen    int64           // ledger_clock.generation after our last commit; -1 unknown
	recent *recentIDs
}

// opKind is what a request asks the engine to do.
type opKind uint8

const (
	opTransfers opKind = iota
	opClose
	opProfile
	opExpire
)

type request struct {
	op        opKind
	transfers []Transfer
	after     After  // opTransfers: runs in the group's transaction
	except    bool   // opTransfers: it may not move the reserved accounts (SubmitExcept)
	account   ID     // opClose, opProfile
	profile   string // opProfile
	results   []Result
	expired   int // opExpire: how many it released
	err       error
	done      chan struct{}
}

// size is how much of a group the request takes.
func (r *request) size() int {
	if r.op == opTransfers {
		return len(r.transfers)
	}
	if r.op == opExpire {
		return MaxBatch
	}
	return 1
}

// maxCached bounds the account cache; past it the cache starts again.
const maxCached = 1 << 20

// New returns an engine over db. Call Run to start its batcher. profiles are
// the limit profiles accounts may name; nil means DefaultProfiles.
func New(db *store.DB, now func() time.Time, profiles map[string]Limits) *Engine {
	if profiles == nil {
		profiles = DefaultProfiles
	}
	return &Engine{db: db, now: now, zone: time.UTC, profiles: profiles, reqs: make(chan *request, 4096), stopped: make(chan struct{}),
		cache: map[ID]*Account{}, gen: -1, recent: newRecentIDs()}
}

// SetZone makes the daily limits count the calendar days of loc (the city's)
// instead of UTC days. Call it before Run. A day already under way when the
// zone changes keeps what it counted if its number is the same in the new
// zone, and starts from zero otherwise.
func (e *Engine) SetZone(loc *time.Location) {
	if loc != nil {
		e.zone = loc
	}
}

// Foresee is how the balance rules and wallet limits would answer t, an
// amount from dr to cr, on accounts as the caller just read them (Account):
// OK, or the refusal. It writes nothing, and the ledger's own answer may
// still differ (the accounts may move before t is applied). The ledger
// keeps every transfer it refuses for the accounts' state, so a refusal
// spends t's id for good: a service that derives the id from something
// its user retries (a sale's code, a confirmation form) asks Foresee
// first, so that the same id can succeed once the money is there.
func (e *Engine) Foresee(t Transfer, dr, cr *Account) Result {
	return balanceRules(&t, dr, cr, dayOf(e.now().In(e.zone)), e.profiles)
}

// Stats are counters of what the engine has written since it started.
type Stats struct {
	Groups   int64 // transactions written
	Requests int64 // requests they carried
	Applied  int64 // transfers applied
	Refused  int64 // transfers refused and remembered
	Redone   int64 // groups run again because an id assumed new was taken
}

// Stats returns the engine's counters. Safe for concurrent use.
func (e *Engine) Stats() Stats {
	return Stats{Groups: e.stats.groups.Load(), Requests: e.stats.requests.Load(), Applied: e.stats.applied.Load(),
		Refused: e.stats.refused.Load(), Redone: e.stats.redone.Load()}
}

// Profiles returns the limit profiles the engine enforces.
func (e *Engine) Profiles() map[string]Limits { return e.profiles }

// Run applies requests until ctx ends.
func (e *Engine) Run(ctx context.Context) {
	defer close(e.stopped)
	var group []*request
	var carry *request
	lastGroup, lastRequests := 0, 0
	for {
		if carry != nil {
			group, carry = append(group[:0], carry), nil
		} else {
			select {
			case <-ctx.Done():
				e.drain()
				return
			case r := <-e.reqs:
				group = append(group[:0], r)
			}
		}
		n := group[0].size()
		// Under a load of full requests from several clients, wait a moment
		// for more of them: a bigger group writes each account it touches
		// once for more transfers. Small requests, and a lone client, never
		// wait.
		var linger <-chan time.Time
		if lastGroup >= MaxBatch && lastRequests > 1 {
			linger = time.After(lingerFor)
		}
		// take adds r to the group, or keeps it for the next one when it
		// does not fit; it reports whether to look for more.
		take := func(r *request) bool {
			if n+r.size() > maxGroup {
				carry = r
				return false
			}
			group = append(group, r)
			n += r.size()
			return true
		}
	more:
		for n < maxGroup {
			select {
			case r := <-e.reqs:
				if !take(r) {
					break more
				}
				continue
			default:
			}
			if linger == nil {
				break
			}
			select {
			case r := <-e.reqs:
				if !take(r) {
					break more
				}
			case <-linger:
				break more
			}
		}
		lastGroup, lastRequests = n, len(group)
		e.apply(ctx, group)
	}
}

// lingerFor is how long a group under a load of full requests waits for more.
const lingerFor = 2 * time.Millisecond

// drain fails the requests left when the engine stops.
func (e *Engine) drain() {
	for {
		select {
		case r := <-e.reqs:
			r.err = errors.New("ledger stopped")
			close(r.done)
		default:
			return
		}
	}
}

// apply writes one group. It first assumes that ids the recent filter has
// not seen are new; if the unique index says otherwise it runs the group
// again, looking every id up.
func (e *Engine) apply(ctx context.Context, group []*request) {
	var g *groupState
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		full := attempt > 0
		err = e.db.Tx(ctx, func(tx *store.Tx) error {
			var err error
			g, err = e.applyTx(ctx, tx, group, full)
			return err
		})
		if !errors.Is(err, errIDTaken) {
			break
		}
		e.stats.redone.Add(1)
	}
	if err != nil {
		// Whatever happened, the cached accounts may be wrong now.
		clear(e.cache)
		e.gen = -1
		for _, r := range group {
			r.err = fmt.Errorf("ledger: %w", err)
			close(r.done)
		}
		return
	}
	e.committed(g)
	e.stats.groups.Add(1)
	e.stats.requests.Add(int64(len(group)))
	e.stats.applied.Add(int64(len(g.newOnes)))
	e.stats.refused.Add(int64(len(g.failed)))
	for i, r := range group {
		r.results, r.expired, r.err = g.results[i], g.expired[i], g.errs[i]
		close(r.done)
	}
}

// committed takes a group's accounts and ids into the caches once its
// transaction has committed.
func (e *Engine) committed(g *groupState) {
	if len(e.cache)+len(g.accounts) > maxCached {
		clear(e.cache)
	}
	for id, a := range g.accounts {
		e.cache[id] = a // the group's copy becomes the committed one
	}
	e.gen = g.gen
	for _, r := range g.newOnes {
		e.recent.add(r.ID)
	}
	for _, r := range g.failed {
		e.recent.add(r.ID)
	}
}

func (e *Engine) send(ctx context.Context, r *request) error {
	r.done = make(chan struct{})
	select {
	case e.reqs <- r:
	case <-e.stopped:
		return errors.New("ledger stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Submit applies transfers (at most MaxBatch) and returns one result per
// transfer, once they are durably written.
func (e *Engine) Submit(ctx context.Context, transfers []Transfer) ([]Result, error) {
	return e.submit(ctx, &request{op: opTransfers, transfers: transfers})
}

// submit sends a request of transfers and waits for its results.
func (e *Engine) submit(ctx context.Context, r *request) ([]Result, error) {
	if len(r.transfers) == 0 {
		return nil, nil
	}
	if len(r.transfers) > MaxBatch {
		return nil, fmt.Errorf("%w: %d, the most is %d", ErrTooMany, len(r.transfers), MaxBatch)
	}
	if err := e.send(ctx, r); err != nil {
		return nil, err
	}
	return r.results, nil
}

// After is work that must commit with a request's transfers or not at all
// (a payment's receipt and its log entry). It runs inside the group's
// transaction, after the group's transfers are written, with this request's
// results (Exists for a retry of a transfer that committed before). It must
// not call the engine. An error rolls the whole group back and fails every
// request in it, so it should fail only when the database does.
type After func(ctx context.Context, tx *store.Tx, results []Result) error

// SubmitThen is Submit with work that commits in the same transaction.
func (e *Engine) SubmitThen(ctx context.Context, transfers []Transfer, after After) ([]Result, error) {
	return e.submit(ctx, &request{op: opTransfers, transfers: transfers, after: after})
}

// SetReserved names the accounts that SubmitExcept's callers may not move:
// those reserved reports. It may be called at any time; groups that begin
// afterwards use it. reserved runs in the engine's goroutine, once per
// account it holds (the answer is kept with the account, whose id, kind and
// owner never change): it must be quick, must not keep the pointer and must
// not call the engine.
func (e *Engine) SetReserved(reserved func(*Account) bool) {
	if reserved == nil {
		e.reserve.Store(nil)
		return
	}
	e.reserve.Store(&reservation{fn: reserved, gen: e.reserveGen.Add(1)})
}

// reservation is a SetReserved predicate, numbered so that an account's
// kept answer is known to be this one's.
type reservation struct {
	fn  func(*Account) bool
	gen uint32
}

// SubmitExcept is Submit for a caller that may not move the reserved
// accounts (SetReserved): a transfer whose debit or credit account is one
// (or, for a post or void, whose pending transfer's is) is refused with
// AccountReserved, which is not remembered. The back office's API uses it to
// leave people's wallets to the services that list their movements where
// the people see them. Without SetReserved it refuses to run.
func (e *Engine) SubmitExcept(ctx context.Context, transfers []Transfer) ([]Result, error) {
	if e.reserve.Load() == nil {
		return nil, errors.New("ledger: SubmitExcept before SetReserved")
	}
	return e.submit(ctx, &request{op: opTransfers, transfers: transfers, except: true})
}

// Close closes an account: it takes no more transfers, except voids of its
// pending ones. Closing twice is not an error.
func (e *Engine) Close(ctx context.Context, id ID) error {
	return e.send(ctx, &request{op: opClose, account: id})
}

// SetProfile moves an account to another limit profile (a citizen who
// proves their identity moves up a tier); "" removes its limits.
func (e *Engine) SetProfile(ctx context.Context, id ID, profile string) error {
	if _, ok := e.profiles[profile]; profile != "" && !ok {
		return fmt.Errorf("%w: unknown limit profile %q", ErrInvalid, profile)
	}
	return e.send(ctx, &request{op: opProfile, account: id, profile: profile})
}

// Expire voids pending transfers whose timeout has passed (up to MaxBatch at
// a time), releasing their reserved amounts, and returns how many it
// expired. Run it periodically; a post or void of an expired transfer fails
// with PendingExpired even before Expire has run.
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
	r := &request{op: opExpire}
	if err := e.send(ctx, r); err != nil {
		return 0, err
	}
	return r.expired, nil
}

// CreateAccount opens an account with zero balances.
func (e *Engine) CreateAccount(ctx context.Context, a Account) error {
	if a.ID == (ID{}) {
		return fmt.Errorf("%w: the zero id is reserved", ErrInvalid)
	}
	if _, ok := Assets[a.Ledger]; !ok {
		return fmt.Errorf("%w: unknown ledger %d", ErrInvalid, a.Ledger)
	}
	if a.Kind < KindIssuer || a.Kind > KindSuspense {
		return fmt.Errorf("%w: unknown account kind %d", ErrInvalid, a.Kind)
	}
	if a.Flags&^(DebitsMustNotExceedCredits|CreditsMustNotExceedDebits|Closed) != 0 {
		return fmt.Errorf("%w: unknown account flags %d", ErrInvalid, a.Flags)
	}
	if a.Flags&DebitsMustNotExceedCredits != 0 && a.Flags&CreditsMustNotExceedDebits != 0 {
		return fmt.Errorf("%w: an account cannot limit both debits and credits", ErrInvalid)
	}
	if _, ok := e.profiles[a.Profile]; a.Profile != "" && !ok {
		return fmt.Errorf("%w: unknown limit profile %q", ErrInvalid, a.Profile)
	}
	fresh := Account{}
	err := e.db.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO ledger_accounts (id, ledger, kind, owner, flags, profile, created_at, state)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			a.ID[:], int64(a.Ledger), int(a.Kind), a.Owner, int(a.Flags), a.Profile, e.now().UnixMilli(), fresh.marshalState(nil))
		return err
	})
	if store.IsConflict(err) {
		return fmt.Errorf("account %s: %w", a.ID, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create account: %w", err)
	}
	return nil
}

const accountColumns = "id, ledger, kind, owner, flags, profile, created_at, state"

func scanAccount(scan func(...any) error) (*Account, error) {
	var a Account
	var id, state []byte
	var ledger int64
	var kind, flags int
	var created int64
	if err := scan(&id, &ledger, &kind, &a.Owner, &flags, &a.Profile, &created, &state); err != nil {
		return nil, err
	}
	if len(id) != len(a.ID) {
		return nil, fmt.Errorf("ledger: account id of %d bytes", len(id))
	}
	copy(a.ID[:], id)
	if err := a.unmarshalState(state); err != nil {
		return nil, fmt.Errorf("account %s: %w", a.ID, err)
	}
	a.Ledger, a.Kind, a.Flags, a.CreatedAt = uint32(ledger), Kind(kind), AccountFlags(flags), time.UnixMilli(created).UTC()
	return &a, nil
}

// Account returns one account as last committed.
func (e *Engine) Account(ctx context.Context, id ID) (*Account, error) {
	a, err := scanAccount(e.db.Reader().QueryRowContext(ctx, "SELECT "+accountColumns+" FROM ledger_accounts WHERE id = $1", id[:]).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("account %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("account: %w", err)
	}
	return a, nil
}

// Accounts returns every account of a ledger.
func (e *Engine) Accounts(ctx context.Context, ledger uint32) ([]*Account, error) {
	rows, err := e.db.Reader().QueryContext(ctx, "SELECT "+accountColumns+" FROM ledger_accounts WHERE ledger = $1 ORDER BY id", int64(ledger))
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	defer rows.Close()
	var out []*Account
	for rows.Next() {
		a, err := scanAccount(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
