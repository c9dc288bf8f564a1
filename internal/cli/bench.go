package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	xtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/tlog"
)

const benchSynopsis = `bench log [flags]

Measures the transparency log: durable appends per second with many
concurrent writers, the time from append to inclusion in a signed checkpoint
(p50, p99), and inclusion proofs built and verified per second. It runs on a
fresh SQLite database (or --db, which must be a throwaway PostgreSQL
database), then, unless --baseline=off, runs the same load against Tessera
v1.0.4 (POSIX storage; the harness in bench/tessera, its own Go module, run
with "go run") and prints the ratios.`

// BenchResult is one side's figures; the Tessera harness prints the same
// fields as JSON.
type BenchResult struct {
	Name          string  `json:"name"`
	Appends       int64   `json:"appends"`
	Seconds       float64 `json:"seconds"`
	AppendsPerSec float64 `json:"appends_per_sec"`
	P50ms         float64 `json:"p50_ms"`
	P99ms         float64 `json:"p99_ms"`
	Proofs        int64   `json:"proofs"`
	ProofsPerSec  float64 `json:"proofs_per_sec"`
	Cores         int     `json:"cores"` // proofs/s/core divides by this

}

func runBench(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "log" {
		return runBenchLog(ctx, e, args)
	}
	if len(args) > 0 && args[0] == "ledger" {
		return runBenchLedger(ctx, e, args)
	}
	if len(args) > 0 && args[0] == "pay" {
		return runBenchPay(ctx, e, args)
	}
	if len(args) > 0 && args[0] == "verify" {
		return runBenchVerify(ctx, e, args)
	}
	if len(args) > 0 && args[0] == "credential" {
		return runBenchCredential(ctx, e, args)
	}
	if len(args) > 0 && args[0] == "exchange" {
		return runBenchExchange(ctx, e, args)
	}
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintf(e.stdout, "Usage: civstack %s\n\n       civstack %s\n\n       civstack %s\n\n       civstack %s\n\n       civstack %s\n\n       civstack %s\n", benchSynopsis, benchLedgerSynopsis, benchPaySynopsis, benchVerifySynopsis, benchCredentialSynopsis, benchExchangeSynopsis)
		return nil
	}
	return fmt.Errorf("%w: say log, ledger, pay, verify, credential or exchange (see civstack bench --help)", errUsage)
}

// openBenchStore opens and migrates the benchmark's database (see
// benchStore) and refuses one that already holds data: a benchmark writes
// made-up people, organisations, accounts and log entries, and one run
// after another on a database would fail on the first's (or pollute a
// real node's). The caller runs cleanup after closing the database.
func openBenchStore(ctx context.Context, dbURL string) (*store.DB, string, func(), error) {
	opts, engineName, cleanup, err := benchStore(dbURL)
	if err != nil {
		return nil, "", nil, err
	}
	st, err := store.Open(ctx, opts)
	if err != nil {
		cleanup()
		return nil, "", nil, err
	}
	if err = st.Migrate(ctx); err == nil {
		err = benchEmpty(ctx, st)
	}
	if err != nil {
		st.Close()
		cleanup()
		return nil, "", nil, err
	}
	return st, engineName, cleanup, nil
}

// benchEmpty says what a database a benchmark is to run on holds already,
// if anything.
func benchEmpty(ctx context.Context, st *store.DB) error {
	var held []string
	for _, t := range []struct{ table, what string }{
		{"people", "people"}, {"organisations", "organisations"}, {"ledger_accounts", "ledger accounts"}, {"tlog_entries", "log entries"},
	} {
		var n int64
		if err := st.Reader().QueryRowContext(ctx, "SELECT COUNT(*) FROM "+t.table).Scan(&n); err != nil {
			return fmt.Errorf("count the database's %s: %w", t.what, err)
		}
		if n > 0 {
			held = append(held, fmt.Sprintf("%d %s", n, t.what))
		}
	}
	if len(held) > 0 {
		return fmt.Errorf("the database already holds %s; benchmark on an empty, throwaway database", strings.Join(held, ", "))
	}
	return nil
}

// benchStore opens the database a benchmark runs on: --db, or a fresh
// SQLite database in a temporary directory.
func benchStore(dbURL string) (store.Options, string, func(), error) {
	if dbURL != "" {
		return store.Options{URL: dbURL}, "PostgreSQL", func() {}, nil
	}
	dir, err := os.MkdirTemp("", "civstack-bench-")
	if err != nil {
		return store.Options{}, "", nil, err
	}
	return store.Options{DataDir: dir}, "SQLite", func() { os.RemoveAll(dir) }, nil
}

func runBenchLog(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, benchSynopsis, "")
	db := f.DB("a throwaway PostgreSQL database; empty means a fresh SQLite database in a temporary directory")
	writers := f.Int("writers", 1024, "concurrent writers")
	duration := f.Duration("duration", 10*time.Second, "how long writers append")
	proofs := f.Int("proofs", 20000, "inclusion proofs to build and verify")
	baseline := f.String("baseline", "tessera", "baseline to run in the same run: tessera or off")
	if err := f.parse(args[1:], false); err != nil {
		return err
	}
	if *writers < 1 || *proofs < 1 || *duration <= 0 {
		return fmt.Errorf("%w: --writers, --proofs and --duration must be positive", errUsage)
	}
	if *baseline != "tessera" && *baseline != "off" {
		return fmt.Errorf("%w: --baseline must be tessera or off", errUsage)
	}
	opts, engine, cleanup, err := benchStore(*db)
	if err != nil {
		return err
	}
	defer cleanup()
	name := "civstack (" + engine + ")"
	fmt.Fprintf(e.stderr, "%s: %d writers for %s…\n", name, *writers, *duration)
	ours, err := benchCivstack(ctx, e, opts, name, *writers, *duration, *proofs)
	if err != nil {
		return err
	}
	results := []BenchResult{ours}
	if *baseline == "tessera" {
		fmt.Fprintf(e.stderr, "Tessera v1.0.4 (POSIX): %d writers for %s…\n", *writers, *duration)
		base, err := benchTessera(ctx, *writers, *duration, *proofs)
		if err != nil {
			return fmt.Errorf("baseline: %w (run from the civstack source tree with Go installed, or pass --baseline=off)", err)
		}
		results = append(results, base)
	}
	printBench(e, results)
	return nil
}

func printBench(e *env, rs []BenchResult) {
	fmt.Fprintf(e.stdout, "%-24s %12s %10s %10s %12s %14s\n", "", "appends/s", "p50 ms", "p99 ms", "proofs/s", "proofs/s/core")
	for _, r := range rs {
		fmt.Fprintf(e.stdout, "%-24s %12.0f %10.1f %10.1f %12.0f %14.0f\n", r.Name, r.AppendsPerSec, r.P50ms, r.P99ms, r.ProofsPerSec, r.ProofsPerSec/float64(max(r.Cores, 1)))
	}
	if len(rs) == 2 {
		a, b := rs[0], rs[1]
		fmt.Fprintf(e.stdout, "%-24s %11.1fx %9.2fx %9.2fx %11.1fx\n", "ratio (civstack/base)", a.AppendsPerSec/b.AppendsPerSec, a.P50ms/b.P50ms, a.P99ms/b.P99ms, a.ProofsPerSec/b.ProofsPerSec)
	}
}

// percentile returns the p-th percentile of sorted durations, in ms.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return float64(sorted[max(i, 0)]) / float64(time.Millisecond)
}

func benchEntry(i uint64) []byte {
	e := &tlog.Entry{Kind: tlog.KindReceipt, Time: time.UnixMilli(1_790_000_000_000)}
	binary.BigEndian.PutUint64(e.Hash[:], i)
	rand.Read(e.Hash[8:])
	b, _ := e.Marshal()
	return b
}

// appendRecorder notes when each append was asked for, and when each
// checkpoint was signed, to work out append-to-checkpoint latency.
type appendRecorder struct {
	mu      sync.Mutex
	started map[int64]time.Time // index -> when its Append began (sampled)
	cps     []cpTime
}

type cpTime struct {
	size int64
	at   time.Time
}

func (r *appendRecorder) latencies() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Duration
	for idx, t := range r.started {
		i, ok := slices.BinarySearchFunc(r.cps, idx+1, func(c cpTime, size int64) int {
			switch {
			case c.size < size:
				return -1
			case c.size > size:
				return 1
			}
			return 0
		})
		if i == len(r.cps) {
			continue // never checkpointed (should not happen)
		}
		_ = ok
		out = append(out, r.cps[i].at.Sub(t))
	}
	slices.Sort(out)
	return out
}

func benchCivstack(ctx context.Context, e *env, opts store.Options, name string, writers int, duration time.Duration, proofs int) (BenchResult, error) {
	res := BenchResult{Name: name}
	db, err := store.Open(ctx, opts)
	if err != nil {
		return res, err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return res, err
	}
	var existing int64
	if err := db.Reader().QueryRowContext(ctx, "SELECT COUNT(*) FROM tlog_entries").Scan(&existing); err != nil {
		return res, err
	}
	if existing > 0 {
		return res, fmt.Errorf("the database already holds %d log entries; benchmark on an empty, throwaway database", existing)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := tlog.NewEd25519Signer("bench.civstack/log", priv)
	if err != nil {
		return res, err
	}
	l, err := tlog.New(db, signer.Name(), signer, time.Now)
	if err != nil {
		return res, err
	}
	rec := &appendRecorder{started: map[int64]time.Time{}}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	in := tlog.NewIntegrator(l, db, 50*time.Millisecond, slog.New(slog.DiscardHandler))
	in.OnCheckpoint = func(cp tlog.Checkpoint) {
		rec.mu.Lock()
		rec.cps = append(rec.cps, cpTime{cp.Size, time.Now()})
		rec.mu.Unlock()
	}
	app := tlog.NewAppender(db, time.Now, in.Wake)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); in.Run(runCtx) }()
	go func() { defer wg.Done(); app.Run(runCtx) }()

	var count atomic.Int64
	var firstErr atomic.Pointer[error]
	deadline := time.Now().Add(duration)
	start := time.Now()
	var ww sync.WaitGroup
	for w := 0; w < writers; w++ {
		ww.Add(1)
		go func() {
			defer ww.Done()
			for i := uint64(0); time.Now().Before(deadline); i++ {
				t0 := time.Now()
				idx, err := app.Append(runCtx, benchEntry(uint64(w)<<32|i))
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				if count.Add(1)%16 == 0 { // sample one append in 16 for latency
					rec.mu.Lock()
					rec.started[idx] = t0
					rec.mu.Unlock()
				}
			}
		}()
	}
	ww.Wait()
	res.Seconds = time.Since(start).Seconds()
	if p := firstErr.Load(); p != nil {
		return res, fmt.Errorf("append: %w", *p)
	}
	res.Appends = count.Load()
	res.AppendsPerSec = float64(res.Appends) / res.Seconds
	// Wait for the integrator to cover everything.
	for {
		_, cp, err := l.Latest(ctx)
		if err == nil && cp.Size >= res.Appends {
			break
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
	lat := rec.latencies()
	res.P50ms, res.P99ms = percentile(lat, 50), percentile(lat, 99)
	stop()
	wg.Wait()

	// Inclusion proofs: built from the stored hashes and verified, by one
	// worker per core (more workers measured slower: they contend with the
	// database for the same cores).
	_, cp, err := l.Latest(ctx)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(e.stderr, "%s: %d inclusion proofs…\n", name, proofs)
	res.Cores = runtime.GOMAXPROCS(0)
	workers := res.Cores
	var done atomic.Int64
	pStart := time.Now()
	var pw sync.WaitGroup
	var proofErr atomic.Pointer[error]
	for w := 0; w < workers; w++ {
		pw.Add(1)
		go func() {
			defer pw.Done()
			for done.Add(1) <= int64(proofs) {
				idx := mrand.Int64N(cp.Size)
				leaf, p, err := l.InclusionProof(ctx, idx, cp.Size, cp.Size)
				if err == nil {
					err = xtlog.CheckRecord(p, cp.Size, cp.Root, idx, leaf)
				}
				if err != nil {
					proofErr.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	pw.Wait()
	if p := proofErr.Load(); p != nil {
		return res, fmt.Errorf("proof: %w", *p)
	}
	res.Proofs = int64(proofs)
	res.ProofsPerSec = float64(proofs) / time.Since(pStart).Seconds()
	return res, nil
}

// benchTessera runs the Tessera harness (bench/tessera, its own module) with
// the same load and reads its JSON result.
func benchTessera(ctx context.Context, writers int, duration time.Duration, proofs int) (BenchResult, error) {
	var res BenchResult
	dir, err := findBenchDir()
	if err != nil {
		return res, err
	}
	storage, err := os.MkdirTemp("", "tessera-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(storage)
	cmd := exec.CommandContext(ctx, "go", "run", ".", "-writers", fmt.Sprint(writers), "-duration", duration.String(),
		"-proofs", fmt.Sprint(proofs), "-dir", storage)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return res, fmt.Errorf("go run bench/tessera: %w", err)
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return res, fmt.Errorf("bench/tessera printed %q: %w", out, err)
	}
	return res, nil
}

// findBenchDir finds bench/tessera from the working directory upwards.
func findBenchDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "bench", "tessera")
		if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("bench/tessera not found above the working directory")
		}
		dir = parent
	}
}

// startCPUProfile writes a CPU profile to path until the returned stop is
// called, once or more (path empty: no profile, and stop does nothing).
// writeAllocProfile writes the process's allocation profile to path.
func writeAllocProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("allocation profile: %w", err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("allocation profile: %w", err)
	}
	return f.Close()
}

func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return sync.OnceFunc(func() { pprof.StopCPUProfile(); f.Close() }), nil
}
