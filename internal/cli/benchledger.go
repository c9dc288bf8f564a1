package cli

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/store"
)

const benchLedgerSynopsis = `bench ledger [flags]

Measures the ledger engine through its Go API: batches of 8,189 transfers
from 4 clients, spread over many accounts; the hot case where every transfer
credits one merchant; the spread case with random (UUIDv4-like) transfer ids
instead of time-ordered ones; one transfer per request from each --clients
count of concurrent clients; and, with the real /api/v1/ledger/transfers on
loopback, batches and single transfers over HTTP. Every acknowledgement
follows a disk sync. Baseline in the same run, on the same database: the
ledger a team would write first, one transaction per transfer that locks
both accounts (SELECT … FOR UPDATE on PostgreSQL), updates their balances
and inserts the transfer, from --baseline-clients clients. Latencies are per
acknowledgement (per batch when batched). Runs on a fresh SQLite database in
a temporary directory, or on --db, an empty throwaway PostgreSQL database.`

type ledgerFigure struct {
	name      string
	transfers int64
	seconds   float64
	p50, p99  float64 // ms per acknowledgement (per batch for batched runs)
}

func (f ledgerFigure) perSec() float64 { return float64(f.transfers) / f.seconds }

func runBenchLedger(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, benchLedgerSynopsis, "")
	db := f.DB("a throwaway PostgreSQL database; empty means a fresh SQLite database in a temporary directory")
	duration := f.Duration("duration", 5*time.Second, "how long each workload runs")
	accounts := f.Int("accounts", 10000, "wallets the spread workloads pay between")
	clientList := f.String("clients", "64,128,1024", "comma-separated counts of concurrent clients for one-transfer requests")
	baselineClients := f.Int("baseline-clients", 64, "concurrent clients for the baseline")
	cpuProfile := f.String("cpuprofile", "", "write a CPU profile of the civstack workloads to this file")
	workloads := f.String("workloads", "batched,single,http,baseline", "which workloads to run, comma-separated")
	if err := f.parse(args[1:], false); err != nil {
		return err
	}
	var clients []int
	for _, c := range strings.Split(*clientList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return fmt.Errorf("%w: --clients %q: give positive whole numbers separated by commas", errUsage, *clientList)
		}
		clients = append(clients, n)
	}
	if *duration <= 0 || *accounts < 2 || *baselineClients < 1 {
		return fmt.Errorf("%w: --duration, --accounts and --baseline-clients must be positive", errUsage)
	}
	want := map[string]bool{}
	for _, w := range strings.Split(*workloads, ",") {
		w = strings.TrimSpace(w)
		switch w {
		case "batched", "single", "http", "baseline":
			want[w] = true
		default:
			return fmt.Errorf("%w: unknown workload %q (batched, single, http, baseline)", errUsage, w)
		}
	}
	st, engineName, cleanup, err := openBenchStore(ctx, *db)
	if err != nil {
		return err
	}
	defer cleanup()
	defer st.Close()
	eng := ledger.New(st, time.Now, map[string]ledger.Limits{})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go eng.Run(runCtx)

	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	fmt.Fprintf(e.stderr, "%s: opening %d accounts…\n", engineName, *accounts)
	issuer := benchID(0, 0)
	merchant := benchID(0, 1)
	if err := eng.CreateAccount(ctx, ledger.Account{ID: issuer, Ledger: ledger.LedgerCash, Kind: ledger.KindIssuer, Owner: "bench"}); err != nil {
		return err
	}
	if err := eng.CreateAccount(ctx, ledger.Account{ID: merchant, Ledger: ledger.LedgerCash, Kind: ledger.KindMerchant, Owner: "bench", Flags: ledger.DebitsMustNotExceedCredits}); err != nil {
		return err
	}
	wallets := make([]ledger.ID, *accounts)
	var fund []ledger.Transfer
	for i := range wallets {
		wallets[i] = benchID(1, uint64(i))
		if err := eng.CreateAccount(ctx, ledger.Account{ID: wallets[i], Ledger: ledger.LedgerCash, Kind: ledger.KindWallet, Owner: "bench", Flags: ledger.DebitsMustNotExceedCredits}); err != nil {
			return err
		}
		fund = append(fund, ledger.Transfer{ID: benchID(2, uint64(i)), Debit: issuer, Credit: wallets[i], Amount: 1 << 40, Code: ledger.CodeIssuance})
		if len(fund) == ledger.MaxBatch || i == len(wallets)-1 {
			if _, err := eng.Submit(ctx, fund); err != nil {
				return err
			}
			fund = fund[:0]
		}
	}
	var seq atomic.Uint64
	next := func() ledger.ID { return benchID(3, seq.Add(1)) }
	pick := func(r *rand.Rand, hot bool) (ledger.ID, ledger.ID) {
		a := wallets[r.IntN(len(wallets))]
		if hot {
			return a, merchant
		}
		b := wallets[r.IntN(len(wallets))]
		for b == a {
			b = wallets[r.IntN(len(wallets))]
		}
		return a, b
	}
	// Transfer ids are time-ordered, as TigerBeetle advises and as civstack's
	// own services make them; randomID is the other kind (UUIDv4-like).
	randomID := func(r *rand.Rand) ledger.ID {
		var id ledger.ID
		binary.BigEndian.PutUint64(id[:8], r.Uint64())
		binary.BigEndian.PutUint64(id[8:], r.Uint64()|1)
		return id
	}
	batched := func(name string, hot, random bool) (ledgerFigure, error) {
		fmt.Fprintf(e.stderr, "%s: %s…\n", engineName, name)
		before := eng.Stats()
		defer func() {
			s := eng.Stats()
			if g := s.Groups - before.Groups; g > 0 {
				fmt.Fprintf(e.stderr, "  %d transactions, %.0f transfers each\n", g, float64(s.Applied-before.Applied)/float64(g))
			}
		}()
		return runLoad(ctx, name, *duration, 4, func(r *rand.Rand) []ledger.Transfer {
			ts := make([]ledger.Transfer, ledger.MaxBatch)
			for i := range ts {
				a, b := pick(r, hot)
				ts[i] = ledger.Transfer{ID: next(), Debit: a, Credit: b, Amount: 1 + r.Int64N(100), Code: ledger.CodePayment}
				if random {
					ts[i].ID = randomID(r)
				}
			}
			return ts
		}, eng)
	}
	figs := map[string]ledgerFigure{}
	var order []string
	add := func(key string, f ledgerFigure) { figs[key] = f; order = append(order, key) }
	if want["batched"] {
		for _, hot := range []bool{false, true} {
			name := "batches of 8,189, spread"
			if hot {
				name = "batches of 8,189, hot merchant"
			}
			f, err := batched(name, hot, false)
			if err != nil {
				return err
			}
			add(fmt.Sprintf("batched hot=%v", hot), f)
		}
		f, err := batched("batches of 8,189, spread, random ids", false, true)
		if err != nil {
			return err
		}
		add("batched random", f)
	}
	single := func(name string, hot bool, n int) (ledgerFigure, error) {
		fmt.Fprintf(e.stderr, "%s: %s…\n", engineName, name)
		return runLoad(ctx, name, *duration, n, func(r *rand.Rand) []ledger.Transfer {
			a, b := pick(r, hot)
			return []ledger.Transfer{{ID: next(), Debit: a, Credit: b, Amount: 1 + r.Int64N(100), Code: ledger.CodePayment}}
		}, eng)
	}
	if want["single"] {
		for _, n := range clients {
			for _, hot := range []bool{false, true} {
				where := "spread"
				if hot {
					where = "hot"
				}
				f, err := single(fmt.Sprintf("1 transfer/request, %d clients, %s", n, where), hot, n)
				if err != nil {
					return err
				}
				add(fmt.Sprintf("single %d hot=%v", n, hot), f)
			}
		}
	}
	if want["http"] {
		fmt.Fprintf(e.stderr, "%s: over HTTP…\n", engineName)
		httpFigs, err := benchLedgerHTTP(ctx, e, st, eng, *duration, *baselineClients, func(r *rand.Rand, n int) []map[string]any {
			out := make([]map[string]any, n)
			for i := range out {
				a, b := pick(r, false)
				out[i] = map[string]any{"id": next().String(), "debit": a.String(), "credit": b.String(), "amount": 1 + r.Int64N(100), "code": ledger.CodePayment}
			}
			return out
		})
		if err != nil {
			return err
		}
		for i, f := range httpFigs {
			add(fmt.Sprintf("http %d", i), f)
		}
	}
	stop()
	stopProfile() // the profile covers the engine's workloads, not the baseline

	if want["baseline"] {
		fmt.Fprintf(e.stderr, "%s: baseline, one transaction per transfer…\n", engineName)
		naive, err := newNaive(ctx, st, *db, *accounts)
		if err != nil {
			return err
		}
		for _, hot := range []bool{false, true} {
			where := "spread"
			if hot {
				where = "hot"
			}
			f, err := naive.run(ctx, fmt.Sprintf("baseline, %d clients, %s", *baselineClients, where), *duration, *baselineClients, hot)
			if err != nil {
				return err
			}
			add(fmt.Sprintf("baseline hot=%v", hot), f)
		}
	}

	w := e.stdout
	fmt.Fprintf(w, "civstack ledger on %s\n", engineName)
	fmt.Fprintf(w, "%-44s %14s %10s %10s\n", "", "transfers/s", "p50 ms", "p99 ms")
	for _, k := range order {
		r := figs[k]
		fmt.Fprintf(w, "%-44s %14.0f %10.1f %10.1f\n", r.name, r.perSec(), r.p50, r.p99)
	}
	ratio := func(label, a, b, unit string) {
		fa, okA := figs[a]
		fb, okB := figs[b]
		if okA && okB && fb.perSec() > 0 {
			fmt.Fprintf(w, "%-40s %6.2f%s\n", label+":", fa.perSec()/fb.perSec(), unit)
		}
	}
	ratio("hot / spread, batched", "batched hot=true", "batched hot=false", "")
	for _, n := range clients {
		ratio(fmt.Sprintf("hot / spread, 1 transfer/request, %d", n), fmt.Sprintf("single %d hot=true", n), fmt.Sprintf("single %d hot=false", n), "")
	}
	for _, n := range clients {
		ratio(fmt.Sprintf("hot, %d clients, civstack / baseline at %d", n, *baselineClients), fmt.Sprintf("single %d hot=true", n), "baseline hot=true", "x")
	}
	ratio("hot, batched civstack / baseline", "batched hot=true", "baseline hot=true", "x")
	return nil
}

func benchID(kind, n uint64) ledger.ID {
	var id ledger.ID
	binary.BigEndian.PutUint64(id[:8], kind+1)
	binary.BigEndian.PutUint64(id[8:], n+1)
	return id
}

// drive runs step in a loop from clients goroutines for d and times each
// call; step returns how many transfers it acknowledged.
func drive(name string, d time.Duration, clients int, step func(r *rand.Rand) (int, error)) (ledgerFigure, error) {
	fig := ledgerFigure{name: name}
	var mu sync.Mutex
	var lat []time.Duration
	var count atomic.Int64
	var firstErr atomic.Pointer[error]
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
			var mine []time.Duration
			for time.Now().Before(deadline) {
				t0 := time.Now()
				n, err := step(r)
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				mine = append(mine, time.Since(t0))
				count.Add(int64(n))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return fig, *p
	}
	fig.seconds, fig.transfers = time.Since(start).Seconds(), count.Load()
	slices.Sort(lat)
	fig.p50, fig.p99 = percentile(lat, 50), percentile(lat, 99)
	return fig, nil
}

// runLoad drives the engine with clients each submitting make()'s requests.
func runLoad(ctx context.Context, name string, d time.Duration, clients int, make func(*rand.Rand) []ledger.Transfer, eng *ledger.Engine) (ledgerFigure, error) {
	return drive(name, d, clients, func(r *rand.Rand) (int, error) {
		rs, err := eng.Submit(ctx, make(r))
		if err != nil {
			return 0, err
		}
		for _, res := range rs {
			if res != ledger.OK {
				return 0, fmt.Errorf("a benchmark transfer failed: %s", res)
			}
		}
		return len(rs), nil
	})
}

// naive is the baseline: one transaction per transfer, locking both accounts.
// On PostgreSQL it uses its own pool at the default isolation (READ
// COMMITTED), as a first ledger would; on SQLite, civstack's writer.
type naive struct {
	db       *store.DB
	pg       *sql.DB
	accounts int
	seq      atomic.Int64
}

func newNaive(ctx context.Context, db *store.DB, url string, accounts int) (*naive, error) {
	n := &naive{db: db, accounts: accounts}
	if url != "" {
		pg, err := sql.Open("pgx", url)
		if err != nil {
			return nil, err
		}
		pg.SetMaxOpenConns(100)
		n.pg = pg
	}
	err := db.Tx(ctx, func(tx *store.Tx) error {
		for _, q := range []string{
			"CREATE TABLE naive_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)",
			"CREATE TABLE naive_transfers (id BIGINT PRIMARY KEY, debit BIGINT NOT NULL, credit BIGINT NOT NULL, amount BIGINT NOT NULL)",
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		for i := 0; i <= accounts; i++ {
			if _, err := tx.ExecContext(ctx, "INSERT INTO naive_accounts (id, balance) VALUES ($1, $2)", int64(i), int64(1<<40)); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

type execer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (n *naive) transfer(ctx context.Context, debit, credit, amount int64) error {
	id := n.seq.Add(1)
	if n.pg != nil {
		tx, err := n.pg.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := n.body(ctx, tx, " FOR UPDATE", id, debit, credit, amount); err != nil {
			tx.Rollback()
			return err
		}
		return tx.Commit()
	}
	return n.db.Tx(ctx, func(tx *store.Tx) error { return n.body(ctx, tx, "", id, debit, credit, amount) })
}

func (n *naive) body(ctx context.Context, tx execer, lock string, id, debit, credit, amount int64) error {
	{
		rows, err := tx.QueryContext(ctx, "SELECT id, balance FROM naive_accounts WHERE id IN ($1, $2) ORDER BY id"+lock, debit, credit)
		if err != nil {
			return err
		}
		var balance int64
		for rows.Next() {
			var aid, b int64
			if err := rows.Scan(&aid, &b); err != nil {
				rows.Close()
				return err
			}
			if aid == debit {
				balance = b
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if balance < amount {
			return fmt.Errorf("baseline account %d overdrawn", debit)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE naive_accounts SET balance = balance - $1 WHERE id = $2", amount, debit); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE naive_accounts SET balance = balance + $1 WHERE id = $2", amount, credit); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO naive_transfers (id, debit, credit, amount) VALUES ($1, $2, $3, $4)", id, debit, credit, amount)
		return err
	}
}

func (n *naive) run(ctx context.Context, name string, d time.Duration, clients int, hot bool) (ledgerFigure, error) {
	return drive(name, d, clients, func(r *rand.Rand) (int, error) {
		a := 1 + r.Int64N(int64(n.accounts))
		b := int64(0)
		if !hot {
			for b = 1 + r.Int64N(int64(n.accounts)); b == a; b = 1 + r.Int64N(int64(n.accounts)) {
			}
		}
		return 1, n.transfer(ctx, a, b, 1+r.Int64N(100))
	})
}
