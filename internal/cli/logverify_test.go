package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/bits"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	xtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/keyring"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

var vkeyRE = regexp.MustCompile(`verifier key (\S+)\)`)

// logKey is the log's verifier key from a serving node's banner.
func logKey(t *testing.T, s *serveProc) string {
	t.Helper()
	m := vkeyRE.FindStringSubmatch(s.out.String())
	if m == nil {
		t.Fatalf("no verifier key in the banner:\n%s", s.out.String())
	}
	return m[1]
}

func receiptEntry(i int) []byte {
	e := &tlog.Entry{Kind: tlog.KindReceipt, Time: time.UnixMilli(1_790_000_000_000)}
	copy(e.Hash[:], fmt.Sprint("receipt ", i))
	b, _ := e.Marshal()
	return b
}

// waitSize waits for the running server's integrator to sign size entries.
func waitSize(t *testing.T, db *store.DB, size int64) {
	t.Helper()
	for i := 0; i < 300; i++ {
		var n int64
		db.Reader().QueryRow("SELECT COALESCE(MAX(size), -1) FROM tlog_checkpoints").Scan(&n)
		if n == size {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no checkpoint of %d entries", size)
}

func TestLogVerify(t *testing.T) {
	ctx := context.Background()
	// Audit the access records in ranges of one bundle, so that the 604
	// entries below take three.
	defer func(r int64) { auditRange = r }(auditRange)
	auditRange = 256
	data := t.TempDir()
	s := startServe(t, nil, "--data", data)
	vkey, logURL := logKey(t, s), s.url+"/log"
	db, err := store.Open(ctx, store.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The node recorded its two keys at first start; add receipts.
	err = db.Tx(ctx, func(tx *store.Tx) error {
		var batch [][]byte
		for i := 0; i < 600; i++ {
			batch = append(batch, receiptEntry(i))
		}
		_, err := tlog.Sequence(ctx, tx, time.Now(), batch...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitSize(t, db, 602)
	state := filepath.Join(t.TempDir(), "state.json")
	code, out, stderr := run(t, nil, "log", "verify", "--url", logURL, "--key", vkey, "--state", state)
	if code != 0 || !strings.Contains(out, "OK:") || !strings.Contains(out, "602 entries") || !strings.Contains(out, "600 payment documents, 2 operator events") {
		t.Fatalf("verify: %d %q %q", code, out, stderr)
	}
	if !strings.Contains(stderr, "verified 602 of 602 entries") {
		t.Fatalf("no progress: %q", stderr)
	}

	// More entries: consistent with what the state file remembers.
	db.Tx(ctx, func(tx *store.Tx) error { _, err := tlog.Sequence(ctx, tx, time.Now(), receiptEntry(1000)); return err })
	waitSize(t, db, 603)
	code, out, stderr = run(t, nil, "log", "verify", "--url", logURL, "--key", vkey, "--state", state)
	if code != 0 || !strings.Contains(stderr, "consistent with the 602 entries") {
		t.Fatalf("second verify: %d %q %q", code, out, stderr)
	}

	// A wrong key is refused clearly.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, _ := note.NewEd25519VerifierKey(strings.SplitN(vkey, "+", 2)[0], priv.Public().(ed25519.PublicKey))
	code, _, stderr = run(t, nil, "log", "verify", "--url", logURL, "--key", otherKey, "--quiet")
	oneLine(t, "wrong key", code, 1, stderr, "not signed by the key")
	code, _, stderr = run(t, nil, "log", "verify", "--url", logURL, "--key", "garbage", "--quiet")
	oneLine(t, "malformed key", code, 2, stderr, `--key: "garbage" is not a log verifier key`)
	// Checked before anything is fetched: no server needed to say so.
	code, _, stderr = run(t, nil, "log", "verify", "--url", "http://127.0.0.1:1/log", "--key", vkey+"x", "--quiet")
	oneLine(t, "mistyped key", code, 2, stderr, "is not a log verifier key")

	// Tampering with the stored data is detected.
	tamper := func(what, query string, arg any, want string) {
		t.Helper()
		var id int64
		var saved []byte
		table, col, key := "tlog_entries", "data", "idx"
		if strings.Contains(query, "tlog_hashes") {
			table, col, key = "tlog_hashes", "hash", "id"
		}
		id = arg.(int64)
		db.Reader().QueryRow(fmt.Sprintf("SELECT %s FROM %s WHERE %s = $1", col, table, key), id).Scan(&saved)
		if err := db.Tx(ctx, func(tx *store.Tx) error { _, err := tx.Exec(query, id); return err }); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := run(t, nil, "log", "verify", "--url", logURL, "--key", vkey, "--quiet")
		oneLine(t, what, code, 1, stderr, want)
		db.Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.Exec(fmt.Sprintf("UPDATE %s SET %s = $1 WHERE %s = $2", table, col, key), saved, id)
			return err
		})
	}
	tamper("altered entry", "UPDATE tlog_entries SET data = (SELECT data FROM tlog_entries WHERE idx = 300) WHERE idx = $1", int64(5), "entry 5 does not match its hash in tile/0/000")
	tamper("altered leaf hash", "UPDATE tlog_hashes SET hash = (SELECT hash FROM tlog_hashes WHERE id = 0) WHERE id = $1", xtlog.StoredHashIndex(0, 7), "entry 7 does not match its hash")
	tamper("altered upper hash", "UPDATE tlog_hashes SET hash = (SELECT hash FROM tlog_hashes WHERE id = 0) WHERE id = $1", xtlog.StoredHashIndex(8, 0), "do not match the signed root")
	tamper("unparsable entry", "UPDATE tlog_entries SET data = X'00' WHERE idx = $1", int64(9), "entry 9: malformed log entry")

	// After the repairs the log verifies again.
	if code, out, _ := run(t, nil, "log", "verify", "--url", logURL, "--key", vkey, "--state", state, "--quiet"); code != 0 {
		t.Fatalf("verify after repair: %d %s", code, out)
	}
	// Access records: checked against their entries with --data.
	actx, stop := context.WithCancel(ctx)
	app := tlog.NewAppender(db, time.Now, nil)
	appDone := make(chan struct{})
	go func() { app.Run(actx); close(appDone) }()
	secret, err := os.ReadFile(filepath.Join(data, "keys", "exchange.secret")) // the node's, as log verify --data reads it
	if err != nil {
		t.Fatal(err)
	}
	exLog, err := tlog.New(db, "test.civstack/log", nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	ex, err := exchange.New(exchange.Deps{DB: db, Appender: app, Log: exLog, Secret: secret, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ex.PublishService(ctx, "org-a", exchange.Service{ID: "tax-income", Name: "Income", Fields: []exchange.Field{{Name: "income", Label: "Income", Type: "number"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ex.CreatePolicy(ctx, exchange.Policy{Requester: "org-b", Service: "tax-income", Fields: []string{"income"}, Purpose: "TAX-AUDIT", LegalBasis: "§1", Retention: exchange.Day}, "t"); err != nil {
		t.Fatal(err)
	}
	if r, err := ex.Submit(ctx, exchange.Ask{Requester: "org-b", Officer: "o", Citizen: "p1", Service: "tax-income", Fields: []string{"income"}, Purpose: "TAX-AUDIT", LegalBasis: "§1"}); err != nil || r.State != exchange.Released {
		t.Fatalf("release: %v %v", r, err)
	}
	stop()
	<-appDone
	waitSize(t, db, 604)
	if code, _, stderr := run(t, nil, "log", "verify", "--url", logURL, "--key", vkey, "--data", data); code != 0 || !strings.Contains(stderr, "access records: 1 checked against 1 access entries, all match (each record's citizen matches its entry's pseudonym)") {
		t.Fatalf("audit: %d %s", code, stderr)
	}
	exec := func(q string, args ...any) {
		if err := db.Tx(ctx, func(tx *store.Tx) error { _, err := tx.Exec(q, args...); return err }); err != nil {
			t.Fatal(err)
		}
	}
	// The record moved to citizen p2 (its opening's header says p2): only
	// the pseudonym, with the node's secret, shows it.
	var opening []byte
	if err := db.Reader().QueryRow(`SELECT opening FROM tlog_entries WHERE opening IS NOT NULL`).Scan(&opening); err != nil {
		t.Fatal(err)
	}
	moved := bytes.Replace(opening, []byte("\x02p1"), []byte("\x02p2"), 1)
	if bytes.Equal(moved, opening) {
		t.Fatal("the opening does not name p1")
	}
	exec(`UPDATE tlog_entries SET opening = $1 WHERE opening IS NOT NULL`, moved)
	code, out, stderr = run(t, nil, "log", "verify", "--url", logURL, "--key", vkey, "--data", data, "--quiet")
	if code != 1 || !strings.Contains(out, "ACCESS RECORD 603 IS HIDDEN FROM THE CITIZEN: it names another citizen") {
		t.Fatalf("moved record: %d %q %q", code, out, stderr)
	}
	exec(`UPDATE tlog_entries SET opening = $1 WHERE opening IS NOT NULL`, opening)
	// log reindex needs the node stopped.
	code, _, stderr = run(t, nil, "log", "reindex", "--data", data)
	oneLine(t, "reindex while serve runs", code, 1, stderr, "stop every node first")
	// --exchange-secret is the one used: another node's secret finds every
	// record's pseudonym wrong.
	other := filepath.Join(t.TempDir(), "other.secret")
	if err := os.WriteFile(other, make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = run(t, nil, "log", "verify", "--url", logURL, "--key", vkey, "--data", data, "--quiet", "--exchange-secret", other)
	if code != 1 || !strings.Contains(out, "it names another citizen") {
		t.Fatalf("another node's secret: %d %q %q", code, out, stderr)
	}
	if err := os.WriteFile(other, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = run(t, nil, "log", "verify", "--url", logURL, "--key", vkey, "--data", data, "--exchange-secret", other)
	oneLine(t, "short secret", code, 1, stderr, "5 bytes, want 32")
	code, _, stderr = run(t, nil, "log", "verify", "--url", logURL, "--key", vkey, "--exchange-secret", other)
	oneLine(t, "secret without a database", code, 2, stderr, "--exchange-secret")
	exec(`UPDATE tlog_entries SET opening = CAST(REPLACE(CAST(opening AS TEXT), '"legal_basis":"§1"', '"legal_basis":"§2"') AS BLOB) WHERE opening IS NOT NULL`)
	code, out, stderr = run(t, nil, "log", "verify", "--url", logURL, "--key", vkey, "--data", data, "--quiet")
	if code != 1 || !strings.Contains(out, "WAS CHANGED") {
		t.Fatalf("changed record: %d %q %q", code, out, stderr)
	}
	exec(`UPDATE tlog_entries SET opening = NULL`)
	code, out, stderr = run(t, nil, "log", "verify", "--url", logURL, "--key", vkey, "--data", data, "--quiet")
	if code != 1 || !strings.Contains(out, "AN ACCESS RECORD WAS DELETED: log entry 603") {
		t.Fatalf("deleted record: %d %q %q", code, out, stderr)
	}

	code, _, stderr = run(t, nil, "log", "verify", "--url", s.url+"/nolog", "--key", vkey)
	oneLine(t, "wrong URL", code, 1, stderr, "404")
	code, _, stderr = run(t, nil, "log", "verify", "--url", logURL)
	oneLine(t, "missing key", code, 2, stderr, "--key")
}

// log reindex on a stopped node's data directory.
func TestLogReindex(t *testing.T) {
	data := t.TempDir()
	if code, _, stderr := run(t, nil, "migrate", "up", "--data", data); code != 0 {
		t.Fatalf("migrate up: %d %q", code, stderr)
	}
	code, out, stderr := run(t, nil, "log", "reindex", "--data", data)
	if code != 0 || !strings.Contains(out, "holds 0 records again") {
		t.Fatalf("reindex: %d %q %q", code, out, stderr)
	}
	code, _, stderr = run(t, nil, "log", "reindex", "--data", data, "extra")
	oneLine(t, "reindex with an argument", code, 2, stderr, `unexpected argument "extra"`)
}

// The benchmark runs end to end (its figures are not judged here: see
// docs/benchmarks.md).
func TestBenchLogRuns(t *testing.T) {
	code, out, stderr := run(t, nil, "bench", "log", "--duration", "300ms", "--writers", "16", "--proofs", "50", "--baseline", "off")
	if code != 0 || !strings.Contains(out, "civstack (SQLite)") || !strings.Contains(out, "appends/s") {
		t.Fatalf("bench: %d %q %q", code, out, stderr)
	}
	code, _, stderr = run(t, nil, "bench", "log", "--baseline", "nope", "--duration", "10ms", "--proofs", "1", "--writers", "1")
	if code != 2 || !strings.Contains(stderr, "--baseline") {
		t.Fatalf("bad baseline: %d %q", code, stderr)
	}
	code, _, stderr = run(t, nil, "bench", "nonsense")
	oneLine(t, "unknown benchmark", code, 2, stderr, "say log, ledger, pay, verify, credential or exchange")
}

// tidyTemp points the process's temporary directory at an empty one of
// the test's; the returned check fails the test if a command left anything
// there (a database, keys, or the lock file beside them).
func tidyTemp(t *testing.T) (check func(what string)) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	return func(what string) {
		t.Helper()
		left, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range left {
			t.Errorf("%s left %s in the temporary directory", what, f.Name())
		}
	}
}

func TestBenchLedgerRuns(t *testing.T) {
	tidy := tidyTemp(t)
	defer tidy("bench ledger")
	code, out, stderr := run(t, nil, "bench", "ledger", "--duration", "200ms", "--accounts", "50", "--clients", "8,4", "--baseline-clients", "2")
	for _, line := range []string{"batches of 8,189, spread", "random ids", "1 transfer/request, 4 clients, hot", "HTTP, batches", "baseline, 2 clients, hot", "hot, 8 clients, civstack / baseline at 2"} {
		if code != 0 || !strings.Contains(out, line) {
			t.Fatalf("bench ledger: no %q in %d %q %q", line, code, out, stderr)
		}
	}
	code, _, stderr = run(t, nil, "bench", "ledger", "--clients", "8,x")
	oneLine(t, "bad client counts", code, 2, stderr, "--clients")
	code, _, stderr = run(t, nil, "bench", "ledger", "--workloads", "batched,fast")
	oneLine(t, "unknown workload", code, 2, stderr, "fast")
}

func TestBenchPayRuns(t *testing.T) {
	tidy := tidyTemp(t)
	defer tidy("bench pay")
	// A device has five codes per 10 s window; two rounds of 300 ms at up
	// to 4,000 charges/s need 2,400, so 1,200 wallets (6,000 codes) never
	// run out (300 did on a fast run).
	code, out, stderr := run(t, nil, "bench", "pay", "--duration", "300ms", "--wallets", "1200", "--merchants", "3", "--clients", "4")
	for _, line := range []string{"payment code charges, 4 clients", "ledger, 1 transfer/request, 4 clients", "signed receipts stored:", "payments / ledger single transfers:"} {
		if code != 0 || !strings.Contains(out, line) {
			t.Fatalf("bench pay: no %q in %d %q %q", line, code, out, stderr)
		}
	}
	code, _, stderr = run(t, nil, "bench", "pay", "--wallets", "0")
	oneLine(t, "no wallets", code, 2, stderr, "--wallets")
}

func TestBenchVerifyRuns(t *testing.T) {
	tidy := tidyTemp(t)
	defer tidy("bench verify")
	code, out, stderr := run(t, nil, "bench", "verify", "--duration", "100ms", "--rounds", "2", "--passes", "20")
	for _, line := range []string{"full decode, verify and rules per second", "bare ES256 signature verifications per second", "full / bare signature:", "targets:"} {
		if code != 0 || !strings.Contains(out, line) {
			t.Fatalf("bench verify: no %q in %d %q %q", line, code, out, stderr)
		}
	}
	code, _, stderr = run(t, nil, "bench", "verify", "--passes", "0")
	oneLine(t, "no passes", code, 2, stderr, "--passes")
}

func TestBenchCredentialRuns(t *testing.T) {
	code, out, stderr := run(t, nil, "bench", "credential", "--duration", "100ms", "--rounds", "2", "--presentations", "10")
	for _, line := range []string{"presentations verified per second", "pairs of bare ES256 verifications per second", "presentations / bare pairs:", "targets:"} {
		if code != 0 || !strings.Contains(out, line) {
			t.Fatalf("bench credential: no %q in %d %q %q", line, code, out, stderr)
		}
	}
	code, _, stderr = run(t, nil, "bench", "credential", "--rounds", "0")
	oneLine(t, "no rounds", code, 2, stderr, "--rounds")
}

// TestBenchRefusesUsedDatabase: a benchmark given a database (--db, on
// PostgreSQL) runs only on an empty one: not on a node's, nor after
// another run (whose made-up data it would trip over).
func TestBenchRefusesUsedDatabase(t *testing.T) {
	for _, eng := range storetest.Engines(t) {
		if eng.Name != "postgres" { // without --db a benchmark makes its own SQLite database
			continue
		}
		node := eng.Open(t).URL
		if code, _, stderr := run(t, nil, "demo", "--db", node, "--data", t.TempDir()); code != 0 {
			t.Fatalf("demo: %d %q", code, stderr)
		}
		for _, bench := range []string{"ledger", "pay", "exchange"} {
			code, _, stderr := run(t, nil, "bench", bench, "--db", node)
			oneLine(t, "bench "+bench+" on a node's database", code, 1, stderr, "people")
			if !strings.Contains(stderr, "benchmark on an empty, throwaway database") {
				t.Errorf("bench %s: %q", bench, stderr)
			}
		}
		used := eng.Open(t).URL
		args := []string{"bench", "exchange", "--db", used, "--duration", "50ms", "--rounds", "1", "--writers", "2", "--citizens", "50"}
		if code, _, stderr := run(t, nil, args...); code != 0 {
			t.Fatalf("bench exchange on an empty database: %d %q", code, stderr)
		}
		code, _, stderr := run(t, nil, args...)
		oneLine(t, "bench exchange again", code, 1, stderr, "log entries; benchmark on an empty, throwaway database")
	}
}

// The CPU figures' reading depends on whether the cores were busy: the
// ceiling from CPU per operation is the bound only when both workloads
// kept every core busy.
func TestBenchCoresBusy(t *testing.T) {
	for _, c := range []struct {
		request, appends float64
		want             string
	}{
		{1.95, 1.9, "both kept every core busy, so CPU per operation bounds the rate ratio here at about 34%"},
		{1.1, 0.9, "not every core was busy, so the bound here is elsewhere"},
		{1.95, 1.2, "not every core was busy"},
		{0.4, 1.95, "not every core was busy"},
	} {
		got := coresBusy(c.request, c.appends, 2, 0.34)
		if !strings.Contains(got, c.want) || !strings.Contains(got, "(of 2)") {
			t.Errorf("coresBusy(%.2f, %.2f): %q, want %q", c.request, c.appends, got, c.want)
		}
	}
	if got := coresBusy(1.1, 0.9, 2, 0.34); !strings.Contains(got, "requests 1.1, bare log appends 0.9") || !strings.Contains(got, "about 34%") {
		t.Errorf("coresBusy does not give the figures: %q", got)
	}
}

func TestBenchExchangeRuns(t *testing.T) {
	tidy := tidyTemp(t)
	defer tidy("bench exchange")
	profile := filepath.Join(t.TempDir(), "allocs.pprof")
	code, out, stderr := run(t, nil, "bench", "exchange", "--duration", "150ms", "--rounds", "1", "--writers", "8", "--citizens", "20000", "--memprofile", profile)
	lines := []string{"bare log appends", "exchange requests", "ratio", "target ≥80%", "latency p50", "latency, worst round: exchange request p99",
		"kB allocated each", "allocated per operation (the garbage collector's work grows with it): exchange request"}
	if _, ok := processCPU(); ok {
		lines = append(lines, "µs CPU and", "CPU per operation: exchange request", "cores busy on average (of ")
	}
	if b, err := os.ReadFile(profile); err != nil || len(b) < 100 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("--memprofile wrote no gzipped profile: %d bytes, %v", len(b), err)
	}
	for _, line := range lines {
		if code != 0 || !strings.Contains(out, line) {
			t.Fatalf("bench exchange: no %q in %d %q %q", line, code, out, stderr)
		}
	}
	if !strings.Contains(out, "integrator running") || !strings.Contains(out, "20000 citizens") {
		t.Errorf("bench exchange does not say the integrator runs: %q", out)
	}
	code, out, stderr = run(t, nil, "bench", "exchange", "--duration", "100ms", "--rounds", "1", "--writers", "4", "--integrator=false")
	if code != 0 || !strings.Contains(out, "appender alone") || !strings.Contains(out, "ratio") {
		t.Fatalf("bench exchange --integrator=false: %d %q %q", code, out, stderr)
	}
	// A fixed offered load: the writers keep to it (never faster).
	code, out, stderr = run(t, nil, "bench", "exchange", "--duration", "300ms", "--rounds", "1", "--writers", "4", "--rate", "200")
	if code != 0 || !strings.Contains(out, "at 200 offered per second") || strings.Contains(out, "target ≥80%") {
		t.Fatalf("bench exchange --rate: %d %q %q", code, out, stderr)
	}
	for _, m := range regexp.MustCompile(`(?m)^round 1: .* (\d+)/s `).FindAllStringSubmatch(out, -1) {
		if n, _ := strconv.Atoi(m[1]); n < 1 || n > 210 {
			t.Errorf("bench exchange --rate 200 ran at %d/s: %q", n, out)
		}
	}
	code, _, stderr = run(t, nil, "bench", "exchange", "--rate", "-5")
	oneLine(t, "negative rate", code, 2, stderr, "--rate")
	code, _, stderr = run(t, nil, "bench", "exchange", "--writers", "0")
	oneLine(t, "no writers", code, 2, stderr, "--writers")
	code, _, stderr = run(t, nil, "bench", "exchange", "--citizens", "0")
	oneLine(t, "no citizens", code, 2, stderr, "--citizens")
}

// A node restarted at another address serves its log under the origin it
// was first served with, so an auditor's key and saved state still hold;
// asking for another origin is refused.
func TestLogKeepsItsOrigin(t *testing.T) {
	data := t.TempDir()
	state := filepath.Join(t.TempDir(), "log.state")
	first := startServe(t, nil, "--data", data)
	vkey := logKey(t, first)
	if code, _, stderr := run(t, nil, "log", "verify", "--url", first.url+"/log", "--key", vkey, "--state", state, "--quiet"); code != 0 {
		t.Fatalf("verify the first node: %d %s", code, stderr)
	}
	first.stop(t)
	second := startServe(t, nil, "--data", data, "--addr", otherPort(t, first.url))
	if m := vkeyRE.FindStringSubmatch(second.out.String()); m == nil || m[1] != vkey {
		t.Fatalf("restarted at %s, the log's key is %v, want %s", second.url, m, vkey)
	}
	if !strings.Contains(second.errOut.String(), "the log keeps the origin it was first served with") {
		t.Errorf("the restart does not say the log kept its origin: %s", second.errOut.String())
	}
	if code, _, stderr := run(t, nil, "log", "verify", "--url", second.url+"/log", "--key", vkey, "--state", state, "--quiet"); code != 0 {
		t.Fatalf("verify the restarted node with the first key and state: %d %s", code, stderr)
	}
	second.stop(t)
	code, _, stderr := run(t, nil, "serve", "--data", data, "--addr", "127.0.0.1:0", "--log-origin", "elsewhere.example/log")
	oneLine(t, "renamed log", code, 2, stderr, "cannot be renamed")
}

// otherPort is a free loopback address whose port is not url's.
func otherPort(t *testing.T, url string) string {
	t.Helper()
	for range 10 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if _, port, _ := net.SplitHostPort(addr); !strings.HasSuffix(url, ":"+port) {
			return addr
		}
	}
	t.Fatal("no other free port")
	return ""
}

// TestFrontier: the tree log verify recomputes, keeping only the hashes a
// later entry can read, has every size's root, and keeps at most one hash
// per bit of the size.
func TestFrontier(t *testing.T) {
	all := map[int64]xtlog.Hash{}
	full := xtlog.HashReaderFunc(func(ids []int64) ([]xtlog.Hash, error) {
		out := make([]xtlog.Hash, len(ids))
		for i, id := range ids {
			out[i] = all[id]
		}
		return out, nil
	})
	f := &frontier{hashes: map[int64]xtlog.Hash{}}
	for n := int64(0); n < 3000; n++ {
		leaf := xtlog.RecordHash([]byte(fmt.Sprint("entry ", n)))
		hs, err := xtlog.StoredHashesForRecordHash(n, leaf, full)
		if err != nil {
			t.Fatal(err)
		}
		for k, h := range hs {
			all[xtlog.StoredHashIndex(0, n)+int64(k)] = h
		}
		if err := f.add(leaf); err != nil {
			t.Fatalf("entry %d: %v", n, err)
		}
		if n%7 != 0 && n != 2999 { // prune at uneven sizes, as a short last bundle does
			continue
		}
		f.prune()
		if len(f.hashes) > bits.OnesCount64(uint64(n+1)) {
			t.Fatalf("at %d entries it keeps %d hashes", n+1, len(f.hashes))
		}
		want, _ := xtlog.TreeHash(n+1, full)
		got, err := xtlog.TreeHash(n+1, f)
		if err != nil || got != want {
			t.Fatalf("root of %d entries: %v %v, want %v", n+1, got, err, want)
		}
	}
	if _, err := f.ReadHashes([]int64{0}); err == nil {
		t.Fatal("a pruned hash read as a zero")
	}
}

// TestLogVerifyUndeclared: an auditor's saved checkpoint, signed by the
// log's key, that the log served now does not extend (a larger one, as if
// the log had been rewound without a word; then one of the same size with
// another root, a fork) is reported, with the note that nothing in the log
// declares it; the state file is kept.
func TestLogVerifyUndeclared(t *testing.T) {
	data := t.TempDir()
	s := startServe(t, nil, "--data", data)
	vkey, logURL := logKey(t, s), s.url+"/log"
	state := filepath.Join(t.TempDir(), "state.json")
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _, _ := run(t, nil, "log", "verify", "--url", logURL, "--key", vkey, "--state", state, "--quiet")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the log never verified")
		}
		time.Sleep(100 * time.Millisecond)
	}
	saved, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	var st logState
	if err := json.Unmarshal(saved, &st); err != nil {
		t.Fatal(err)
	}
	// The same log's key signs a checkpoint of a history ten entries longer.
	ring, err := keyring.Open(filepath.Join(data, "keys"), time.Now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := tlog.NewEd25519Signer(st.Origin, ring.Active(keyring.Log).Signer)
	if err != nil {
		t.Fatal(err)
	}
	longer := tlog.Checkpoint{Origin: st.Origin, Size: st.Size + 10, Root: [32]byte{7}}
	signed, err := note.Sign(&note.Note{Text: longer.Body()}, signer)
	if err != nil {
		t.Fatal(err)
	}
	st.Size, st.Checkpoint = longer.Size, string(signed)
	forged, _ := json.Marshal(st)
	os.WriteFile(state, forged, 0o600)
	code, _, stderr := run(t, nil, "log", "verify", "--url", logURL, "--key", vkey, "--state", state, "--quiet")
	oneLine(t, "an undeclared rewind", code, 1, stderr, "THE LOG SHRANK")
	if !strings.Contains(stderr, "Nothing in the log declares a rewind of the history you checked") {
		t.Fatalf("no word that the log declares nothing: %s", stderr)
	}
	if kept, _ := os.ReadFile(state); !bytes.Equal(kept, forged) {
		t.Fatal("the state file was replaced after a failed check")
	}
	// The same size with another root: a fork.
	fork := tlog.Checkpoint{Origin: st.Origin, Size: longer.Size - 10, Root: [32]byte{8}}
	signed, err = note.Sign(&note.Note{Text: fork.Body()}, signer)
	if err != nil {
		t.Fatal(err)
	}
	st.Size, st.Checkpoint = fork.Size, string(signed)
	forged, _ = json.Marshal(st)
	os.WriteFile(state, forged, 0o600)
	code, _, stderr = run(t, nil, "log", "verify", "--url", logURL, "--key", vkey, "--state", state, "--quiet")
	oneLine(t, "a fork", code, 1, stderr, fmt.Sprintf("THE LOG FORKED: two different roots for %d entries", fork.Size))
	if !strings.Contains(stderr, "Nothing in the log declares a rewind of the history you checked") {
		t.Fatalf("no word that the log declares nothing: %s", stderr)
	}
}
