package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/tlog"
)

const benchExchangeSynopsis = `bench exchange [--db URL] [--writers N] [--citizens N]
                               [--duration D] [--rounds N] [--rate R]
                               [--integrator=false]

End-to-end data-exchange requests per second (policy check, values read,
the log entry with its access record committed together, and the access
index written at integration), against bare log appends through the same
group-commit appender in the same run. As in a node and in bench log, the
log's integrator runs meanwhile (it hashes the entries into the tree,
signs checkpoints and writes the access index); after each workload the
bench waits until the integrator has caught up, outside the timed window,
and then indexes the records the index has not taken yet, inside it.
--integrator=false measures the appender alone (and so no index). Rounds
alternate the order. Each workload also reports the process's CPU time per
operation (the integrator's share included), which drifts less than rates
on a shared machine, the cores it kept busy on average (CPU per operation
bounds the ratio only where both workloads keep every core busy; on
SQLite its one write lock usually binds first), and each operation's
latency (p50, p99, max): the pauses while the access index takes a batch
show there. By default every writer goes as fast as it can (the rates and
their ratio); --rate offers a fixed load instead, spread over the
writers, and then the latencies are the result (counted from each
operation's scheduled time). Target: at least 80% of the append rate.`

func runBenchExchange(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, benchExchangeSynopsis, "")
	dbURL := f.DB("PostgreSQL URL to measure instead of a temporary SQLite database (it must hold no other data)")
	writers := f.Int("writers", 64, "concurrent requesters")
	citizens := f.Int("citizens", 100000, "citizens the requests are about (round robin); each has a record in the service (a few hundred keep the index's pages unrealistically hot)")
	duration := f.Duration("duration", 3*time.Second, "how long each workload runs per round")
	rounds := f.Int("rounds", 2, "rounds of both workloads; the order alternates")
	integrate := f.Bool("integrator", true, "run the log's integrator meanwhile, as a node does")
	rate := f.Float64("rate", 0, "operations per second to offer, spread over the writers (0: as fast as they go); shows latency at a given load")
	cpuProfile := f.String("cpuprofile", "", "write a CPU profile of the measured workloads to this file")
	memProfile := f.String("memprofile", "", "write an allocation profile (sampled, since the process started: set-up included) to this file at the end")
	if err := f.parse(args[1:], false); err != nil {
		return err
	}
	if *writers < 1 || *citizens < 1 || *duration <= 0 || *rounds < 1 || *rate < 0 {
		return fmt.Errorf("%w: --writers, --citizens, --duration and --rounds must be positive, --rate not negative", errUsage)
	}
	db, name, cleanup, err := openBenchStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer cleanup()
	defer db.Close()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := tlog.NewEd25519Signer("bench.civstack/log", priv)
	if err != nil {
		return err
	}
	l, err := tlog.New(db, signer.Name(), signer, time.Now)
	if err != nil {
		return err
	}
	in := tlog.NewIntegrator(l, db, 50*time.Millisecond, slog.New(slog.DiscardHandler))
	runCtx, stop := context.WithCancel(ctx)
	var commits atomic.Int64
	app := tlog.NewAppender(db, time.Now, func() {
		commits.Add(1)
		if *integrate {
			in.Wake()
		}
	})
	var running sync.WaitGroup
	running.Add(1)
	go func() { defer running.Done(); app.Run(runCtx) }()
	if *integrate {
		running.Add(1)
		go func() { defer running.Done(); in.Run(runCtx) }()
	}
	defer func() { stop(); running.Wait() }()
	// caughtUp waits, untimed, until the integrator covers every entry.
	caughtUp := func() error {
		if !*integrate {
			return nil
		}
		var size int64
		if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM tlog_entries`).Scan(&size); err != nil {
			return err
		}
		for {
			if _, cp, err := l.Latest(ctx); err == nil && cp.Size >= size {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	ex, err := exchange.New(exchange.Deps{DB: db, Appender: app, Log: l, Secret: secret, Now: time.Now})
	if err != nil {
		return err
	}
	if _, err := ex.PublishService(ctx, "bench-holder", exchange.Service{ID: "bench-income", Name: "Income", Fields: []exchange.Field{{Name: "income", Label: "Income", Type: "number"}}}); err != nil {
		return err
	}
	if _, err := ex.CreatePolicy(ctx, exchange.Policy{Requester: "bench-agency", Service: "bench-income", Fields: []string{"income"}, Purpose: "BENCH", LegalBasis: "bench", Retention: exchange.Day}, "bench"); err != nil {
		return err
	}
	// The service's values, in bulk (what SetValues would write).
	for start := 0; start < *citizens; start += 10000 {
		var rows [][]any
		for i := start; i < min(start+10000, *citizens); i++ {
			rows = append(rows, []any{"bench-income", fmt.Sprintf("citizen-%d", i), "income", "1000", int64(0)})
		}
		if err := db.Tx(ctx, func(tx *store.Tx) error {
			return tx.InsertRows(ctx, "ex_values", []string{"service_id", "person_id", "field", "value", "updated_at"}, rows)
		}); err != nil {
			return err
		}
	}
	integration := "integrator running"
	if !*integrate {
		integration = "appender alone (no integrator)"
	}
	fmt.Fprintf(e.stdout, "%s, %d writers, %d citizens, %s per workload, %d rounds, %s\n", name, *writers, *citizens, *duration, *rounds, integration)
	// work runs op from every writer for the duration: ops per second,
	// entries per group commit and the process's CPU time per op (from
	// the start until the integrator has caught up, so that the work the
	// ops cause there counts too).
	// flush, if set, runs after the integrator has caught up and its time
	// counts: the exchange's index defers work (docs/exchange.md), which is
	// measured this way.
	work := func(op func(i int64) error, flush func(context.Context) error) (benchRate, error) {
		var n atomic.Int64
		c0 := commits.Load()
		cpu0, _ := processCPU()
		wall0 := time.Now()
		heap0 := heapAllocated()
		var firstErr atomic.Value
		var wg sync.WaitGroup
		lats := make([][]time.Duration, *writers)
		start := time.Now()
		deadline := start.Add(*duration)
		for w := range *writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// With --rate, each writer keeps a schedule (its share of
				// the rate, staggered) and latency counts from the scheduled
				// time, so that a stall also counts for the operations it
				// delayed.
				var every time.Duration
				if *rate > 0 {
					every = time.Duration(float64(*writers) / *rate * float64(time.Second))
				}
				t0 := start.Add(every * time.Duration(w) / time.Duration(*writers))
				for t0.Before(deadline) {
					if wait := time.Until(t0); wait > 0 {
						time.Sleep(wait)
					}
					i := n.Add(1)
					if err := op(i); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					t1 := time.Now()
					lats[w] = append(lats[w], t1.Sub(t0))
					if t0 = t0.Add(every); every == 0 {
						t0 = t1
					}
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start).Seconds()
		if err, ok := firstErr.Load().(error); ok {
			return benchRate{}, err
		}
		lat := slices.Concat(lats...)
		slices.Sort(lat)
		r := benchRate{perCommit: n.Load() / max(1, commits.Load()-c0), p50: percentile(lat, 50), p99: percentile(lat, 99), max: percentile(lat, 100)}
		if err := caughtUp(); err != nil {
			return benchRate{}, err
		}
		if flush != nil && *integrate {
			t0 := time.Now()
			if err := flush(ctx); err != nil {
				return benchRate{}, err
			}
			elapsed += time.Since(t0).Seconds()
		}
		if cpu1, ok := processCPU(); ok {
			r.cpuPerOp = (cpu1 - cpu0) / time.Duration(max(1, n.Load()))
			r.cores = (cpu1 - cpu0).Seconds() / time.Since(wall0).Seconds()
		}
		r.allocPerOp = float64(heapAllocated()-heap0) / float64(max(1, n.Load()))
		r.perSec = float64(n.Load()) / elapsed
		return r, nil
	}
	appends := func(i int64) error {
		_, err := app.Append(ctx, receiptFor(i))
		return err
	}
	requests := func(i int64) error {
		r, err := ex.Submit(ctx, exchange.Ask{Requester: "bench-agency", Officer: "bench", Citizen: fmt.Sprintf("citizen-%d", i%int64(*citizens)), Service: "bench-income",
			Fields: []string{"income"}, Purpose: "BENCH", LegalBasis: "bench"})
		if err == nil && r.State != exchange.Released {
			err = fmt.Errorf("bench request %s: %s", r.State, r.Reason)
		}
		return err
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	if *memProfile != "" {
		defer func() {
			if err := writeAllocProfile(*memProfile); err != nil {
				fmt.Fprintln(e.stderr, "civstack:", err)
			}
		}()
	}
	var sumA, sumX benchRate
	for round := range *rounds {
		order := []bool{false, true}
		if round%2 == 1 {
			order = []bool{true, false}
		}
		for _, isEx := range order {
			op, flush, what, sum := appends, (func(context.Context) error)(nil), "bare log appends ", &sumA
			if isEx {
				op, flush, what, sum = requests, ex.FlushIndex, "exchange requests", &sumX
			}
			r, err := work(op, flush)
			if err != nil {
				return err
			}
			sum.add(r)
			fmt.Fprintf(e.stdout, "round %d: %s %6.0f/s (%d per commit, %s CPU and %.1f kB allocated each; latency p50 %.1f ms, p99 %.1f ms, max %.1f ms)\n",
				round+1, what, r.perSec, r.perCommit, r.cpu(), r.allocPerOp/1000, r.p50, r.p99, r.max)
		}
	}
	if *rate > 0 {
		fmt.Fprintf(e.stdout, "at %.0f offered per second: exchange requests %.0f/s, bare log appends %.0f/s\n", *rate, sumX.perSec/float64(*rounds), sumA.perSec/float64(*rounds))
	} else {
		fmt.Fprintf(e.stdout, "exchange requests: %.0f/s; bare log appends: %.0f/s; ratio %.0f%% (target ≥80%%)\n", sumX.perSec/float64(*rounds), sumA.perSec/float64(*rounds), 100*sumX.perSec/sumA.perSec)
	}
	fmt.Fprintf(e.stdout, "latency, worst round: exchange request p99 %.1f ms, max %.1f ms; bare log append p99 %.1f ms, max %.1f ms\n", sumX.p99, sumX.max, sumA.p99, sumA.max)
	if sumX.cpuPerOp > 0 {
		n := time.Duration(*rounds)
		if *dbURL != "" {
			fmt.Fprintln(e.stdout, "(CPU of this process only: the PostgreSQL server's is not counted)")
		}
		fmt.Fprintf(e.stdout, "CPU per operation: exchange request %s, bare log append %s; a request costs %.2f appends\n",
			benchRate{cpuPerOp: sumX.cpuPerOp / n}.cpu(), benchRate{cpuPerOp: sumA.cpuPerOp / n}.cpu(), float64(sumX.cpuPerOp)/float64(sumA.cpuPerOp))
		fmt.Fprintln(e.stdout, coresBusy(sumX.cores/float64(*rounds), sumA.cores/float64(*rounds), runtime.GOMAXPROCS(0), float64(sumA.cpuPerOp)/float64(sumX.cpuPerOp)))
	}
	fmt.Fprintf(e.stdout, "allocated per operation (the garbage collector's work grows with it): exchange request %.1f kB, bare log append %.1f kB\n",
		sumX.allocPerOp/float64(*rounds)/1000, sumA.allocPerOp/float64(*rounds)/1000)
	return nil
}

// benchRate is one workload's figures in bench exchange.
type benchRate struct {
	perSec    float64
	perCommit int64
	cpuPerOp  time.Duration // 0: not reported on this platform
	// cores is the process's CPU time over the wall time, from the
	// workload's start until the integrator caught up: how many cores it
	// kept busy on average (0: not reported).
	cores float64
	// allocPerOp is the bytes the process allocated per operation (the
	// integrator's and the index's included).
	allocPerOp float64
	// p50, p99 and max are one operation's latency in ms, from its call
	// (with --rate, from when it was due) to its answer (for a request,
	// the values released).
	p50, p99, max float64
}

// add sums rates and CPU time and keeps the worst latencies.
func (r *benchRate) add(o benchRate) {
	r.perSec += o.perSec
	r.cpuPerOp += o.cpuPerOp
	r.cores += o.cores
	r.allocPerOp += o.allocPerOp
	r.p50, r.p99, r.max = max(r.p50, o.p50), max(r.p99, o.p99), max(r.max, o.max)
}

func (r benchRate) cpu() string {
	if r.cpuPerOp == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f µs", float64(r.cpuPerOp)/float64(time.Microsecond))
}

// coresBusy says how many of the process's cores each workload kept busy
// and what that means for reading the CPU figures: only when both
// workloads use every core does CPU per operation bound the rate ratio
// (at ceiling, the append's CPU over the request's). When they do not,
// something else holds them back (on SQLite, its one write lock), and the
// ceiling is what the ratio would be on a machine where they did.
func coresBusy(request, appendCores float64, procs int, ceiling float64) string {
	s := fmt.Sprintf("cores busy on average (of %d): exchange requests %.1f, bare log appends %.1f; ", procs, request, appendCores)
	if full := 0.9 * float64(procs); request >= full && appendCores >= full {
		return s + fmt.Sprintf("both kept every core busy, so CPU per operation bounds the rate ratio here at about %.0f%%", 100*ceiling)
	}
	return s + fmt.Sprintf("not every core was busy, so the bound here is elsewhere (a lock, the disk, the database server); where both kept every core busy, CPU would bound the ratio at about %.0f%%", 100*ceiling)
}

// receiptFor is a distinct receipt-hash entry for append baselines.
func receiptFor(i int64) []byte {
	e := &tlog.Entry{Kind: tlog.KindReceipt, Time: time.Now()}
	for k := range 8 {
		e.Hash[k] = byte(i >> (8 * k))
	}
	b, _ := e.Marshal()
	return b
}

// heapAllocated is the bytes the process has allocated on the heap since
// it started (cumulative; read without stopping the world).
func heapAllocated() uint64 {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return sample[0].Value.Uint64()
}
