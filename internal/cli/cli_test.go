package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// run runs the command line with the given environment variables.
func run(t *testing.T, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut syncBuf
	e := &env{stdout: &out, stderr: &errOut, getenv: func(k string) string { return vars[k] }, now: time.Now}
	code := e.main(context.Background(), args)
	return code, out.String(), errOut.String()
}

// oneLine checks a failure was reported as exactly one line naming want.
func oneLine(t *testing.T, what string, code, wantCode int, stderr, want string) {
	t.Helper()
	if code != wantCode {
		t.Fatalf("%s: exit %d, want %d (stderr %q)", what, code, wantCode, stderr)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
		t.Fatalf("%s: stderr %q, want one line containing %q", what, stderr, want)
	}
}

// TestHelpWidth: every command's help reads in an 80-column terminal (the
// flags' own lines, which the flag package indents, aside). The commands
// come from the top-level help, so a new one is checked too.
func TestHelpWidth(t *testing.T) {
	_, top, _ := run(t, nil, "--help")
	cmds := [][]string{{"--help"}, {"log", "reindex", "--help"}}
	listing := false
	for line := range strings.Lines(top) {
		switch {
		case strings.HasPrefix(line, "Commands:"):
			listing = true
		case listing && strings.HasPrefix(line, "            "): // a summary's second line
		case listing && strings.HasPrefix(line, "  "):
			cmds = append(cmds, []string{strings.Fields(line)[0], "--help"})
		case listing:
			listing = false
		}
	}
	for _, sub := range []string{"log", "ledger", "pay", "verify", "credential", "exchange"} {
		cmds = append(cmds, []string{"bench", sub, "--help"})
	}
	if len(cmds) < 15 {
		t.Fatalf("found only %d commands in the top-level help: %q", len(cmds), top)
	}
	for _, args := range cmds {
		code, out, errOut := run(t, nil, args...)
		if code != 0 || out == "" {
			t.Errorf("%v: exit %d, %q %q", args, code, out, errOut)
			continue
		}
		prose, _, _ := strings.Cut(out, "\nFlags:\n")
		for line := range strings.Lines(prose) {
			if n := utf8.RuneCountInString(strings.TrimRight(line, "\n")); n > 80 {
				t.Errorf("%v: a line of %d columns: %q", args, n, line)
			}
		}
	}
}

func TestHelp(t *testing.T) {
	code, out, _ := run(t, nil, "--help")
	if code != 0 || !strings.Contains(out, "Commands:") || !strings.Contains(out, "serve") || !strings.Contains(out, "serve --demo") {
		t.Fatalf("--help: %d %q", code, out)
	}
	code, out, _ = run(t, nil, "serve", "--help")
	for _, want := range []string{"-tls-cert", "CIVSTACK_ADDR", "CIVSTACK_DB", "-demo", "Passkeys are bound"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("serve --help lacks %q: %d %q", want, code, out)
		}
	}
	for _, cmd := range []string{"demo", "keys"} {
		if code, out, _ := run(t, nil, cmd, "-h"); code != 0 || !strings.Contains(out, "Usage: civstack "+cmd) {
			t.Fatalf("%s -h: %d %q", cmd, code, out)
		}
	}
	// A test binary records the Go release, never a commit.
	wantVersion := fmt.Sprintf("civstack %s (%s)\n", Version, runtime.Version())
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		if code, out, _ := run(t, nil, args...); code != 0 || out != wantVersion {
			t.Fatalf("%s: %d %q, want %q", args[0], code, out, wantVersion)
		}
	}
	if code, out, _ := run(t, nil, "version", "--help"); code != 0 || !strings.HasPrefix(out, "Usage: civstack version\n\nPrints civstack's version, and the commit") {
		t.Fatalf("version --help: %d %q", code, out)
	}
	if code, _, _ := run(t, nil); code != 2 {
		t.Fatalf("no arguments: exit %d", code)
	}
}

func TestDescribeBuild(t *testing.T) {
	const rev = "9373248e539810575e2e72137131234b7c261270"
	for _, c := range []struct {
		settings []debug.BuildSetting
		want     string
	}{
		{nil, " (go1.26.8)"},
		{[]debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: "2026-12-07T22:35:29Z"}, {Key: "vcs.modified", Value: "false"}},
			" (commit 9373248e5398 of 2026-12-07T22:35:29Z; go1.26.8)"},
		{[]debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.time", Value: "2026-12-07T22:35:29Z"}, {Key: "vcs.modified", Value: "true"}},
			" (commit 9373248e5398 of 2026-12-07T22:35:29Z with uncommitted changes; go1.26.8)"},
		{[]debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}}, " (commit abc; go1.26.8)"},
	} {
		if got := describeBuild(&debug.BuildInfo{GoVersion: "go1.26.8", Settings: c.settings}); got != c.want {
			t.Errorf("describeBuild(%v) = %q, want %q", c.settings, got, c.want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	data := t.TempDir()
	code, _, stderr := run(t, nil, "frobnicate")
	oneLine(t, "unknown command", code, 2, stderr, "unknown command")
	code, _, stderr = run(t, nil, "serve", "--nope")
	oneLine(t, "unknown flag", code, 2, stderr, "flag provided but not defined")
	code, _, stderr = run(t, nil, "serve", "--data", data, "extra")
	oneLine(t, "extra argument", code, 2, stderr, "unexpected argument")
	code, _, stderr = run(t, nil, "version", "--short")
	oneLine(t, "a flag version does not have", code, 2, stderr, "flag provided but not defined")
	code, _, stderr = run(t, nil, "version", "extra")
	oneLine(t, "an argument to version", code, 2, stderr, "unexpected argument")
	code, _, stderr = run(t, map[string]string{"CIVSTACK_LOG_LEVEL": "loud"}, "serve", "--data", data)
	oneLine(t, "bad env level", code, 2, stderr, "--log-level")
	code, _, stderr = run(t, map[string]string{"CIVSTACK_DEMO": "maybe"}, "serve", "--data", data)
	oneLine(t, "bad env bool", code, 2, stderr, "CIVSTACK_DEMO")
	code, _, stderr = run(t, nil, "serve", "--data", data, "--url", "http://127.0.0.1:8080")
	oneLine(t, "IP url", code, 2, stderr, "IP address")
	code, _, stderr = run(t, nil, "serve", "--data", data, "--url", "http://civstack.example.org")
	oneLine(t, "plain http on a real host", code, 2, stderr, "use https")
	code, _, stderr = run(t, nil, "serve", "--data", data, "--tls-cert", "x.pem")
	oneLine(t, "half TLS", code, 2, stderr, "go together")
	code, _, stderr = run(t, nil, "serve", "--data", data, "--tls-cert", "x.pem", "--tls-key", "y.pem")
	oneLine(t, "missing certificate", code, 1, stderr, "TLS certificate")
	code, _, stderr = run(t, nil, "keys", "--data", data, "burn")
	oneLine(t, "keys burn", code, 2, stderr, "unknown keys command")
	// A --db that is no PostgreSQL URL is the caller's slip, on every
	// command that takes one, and the password of one is never echoed.
	for _, args := range [][]string{{"serve", "--data", data}, {"demo", "--data", data}, {"migrate", "status", "--data", data}, {"keys", "list", "--data", data},
		{"bench", "log"}, {"log", "verify", "--url", "http://x", "--key", "k"}} {
		code, _, stderr = run(t, nil, append(args, "--db", "mysql://root:s3cret@db/civ")...)
		oneLine(t, strings.Join(args, " ")+" --db mysql://…", code, 2, stderr, "--db must be a PostgreSQL URL")
		if strings.Contains(stderr, "s3cret") {
			t.Fatalf("%s: the URL's password is in the error: %s", args, stderr)
		}
	}
	code, _, stderr = run(t, map[string]string{"CIVSTACK_DB": "%zz"}, "demo", "--data", data)
	oneLine(t, "CIVSTACK_DB that does not parse", code, 2, stderr, "--db must be a PostgreSQL URL")
	code, _, stderr = run(t, nil, "serve", "--data", data, "--addr", "127.0.0.1:0", "--ledger-profiles", filepath.Join(data, "none.json"))
	oneLine(t, "missing profiles file", code, 2, stderr, "--ledger-profiles")
	bad := filepath.Join(data, "profiles.json")
	os.WriteFile(bad, []byte(`{"basic": {"per_dya": 1}}`), 0o600)
	code, _, stderr = run(t, nil, "serve", "--data", data, "--addr", "127.0.0.1:0", "--ledger-profiles", bad)
	oneLine(t, "typo in profiles", code, 2, stderr, "per_dya")
	code, _, stderr = run(t, nil, "serve", "--data", data, "--trusted-proxies", "10.0.0.0/8, proxy.example")
	oneLine(t, "a proxy by name", code, 2, stderr, `"proxy.example" is neither an address nor a CIDR range`)
	code, _, stderr = run(t, nil, "serve", "--data", data, "--time-zone", "Europe/Bologna")
	oneLine(t, "a zone that does not exist", code, 2, stderr, "not an IANA time zone")
	code, _, stderr = run(t, map[string]string{"CIVSTACK_PASSKEY_LIMIT": "0"}, "serve", "--data", data)
	oneLine(t, "no passkey ceremonies at all", code, 2, stderr, "--passkey-limit must be at least 1")
	// Before, a sign-in of 0 or less silently lasted 12 hours, and one of a
	// second ended before the next page.
	for _, ttl := range []string{"-1h", "0s", "1s", "721h"} {
		code, _, stderr = run(t, nil, "serve", "--data", data, "--session-ttl", ttl)
		oneLine(t, "sign-ins of "+ttl, code, 2, stderr, "--session-ttl must be from 5m to 720h (30 days)")
	}
	for _, keep := range []string{"30s", "721h", "-1h", "0s"} {
		code, _, stderr = run(t, nil, "serve", "--data", data, "--keep-presentations", keep)
		oneLine(t, "presentations kept "+keep, code, 2, stderr, "--keep-presentations must be from 1m to 720h (30 days)")
	}
	for _, keep := range []string{"29", "3651", "0", "-5"} {
		code, _, stderr = run(t, nil, "serve", "--data", data, "--keep-complaints", keep)
		oneLine(t, "complaints kept "+keep+" days", code, 2, stderr, "--keep-complaints must be from 30 to 3650 days, not "+keep)
	}
}

// TestParseProxies: addresses become single-address ranges, ranges are
// masked, IPv4 written as IPv6 counts as IPv4.
func TestParseProxies(t *testing.T) {
	got, err := parseProxies(" 10.1.2.3/8, 192.0.2.7 ,::ffff:198.51.100.1,fd00::/8,")
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, p := range got {
		s = append(s, p.String())
	}
	if strings.Join(s, " ") != "10.0.0.0/8 192.0.2.7/32 198.51.100.1/32 fd00::/8" {
		t.Fatalf("parsed %v", s)
	}
	if got, err := parseProxies(""); err != nil || len(got) != 0 {
		t.Fatalf("no proxies: %v %v", got, err)
	}
}

func TestStorageErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o600)
	code, _, stderr := run(t, nil, "serve", "--data", filepath.Join(file, "data"), "--addr", "127.0.0.1:0")
	oneLine(t, "data dir under a file", code, 1, stderr, "cannot create data directory")
	code, _, stderr = run(t, nil, "serve", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--db", "postgres://nobody:secret@127.0.0.1:1/civstack?connect_timeout=2")
	oneLine(t, "unreachable database", code, 1, stderr, "cannot reach PostgreSQL")
	// The error says why: the driver's cause, not the wrapper's words again.
	if !strings.Contains(stderr, "connection refused") || strings.Count(stderr, "database unavailable") != 1 {
		t.Fatalf("the unreachable database's error does not say why: %q", stderr)
	}
	if strings.Contains(stderr, "secret") {
		t.Fatalf("the database password leaked into the error: %q", stderr)
	}
	code, _, stderr = run(t, nil, "serve", "--data", t.TempDir(), "--addr", "256.0.0.1:99999")
	oneLine(t, "bad address", code, 1, stderr, "cannot listen")
}

// server is a civstack serve running in the background of a test.
type serveProc struct {
	url    string
	out    *syncBuf
	errOut *syncBuf
	cancel context.CancelFunc
	done   chan int
}

var urlRE = regexp.MustCompile(`is running at (\S+)`)

func startServe(t *testing.T, vars map[string]string, args ...string) *serveProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &serveProc{out: &syncBuf{}, cancel: cancel, done: make(chan int, 1)}
	errOut := &syncBuf{}
	s.errOut = errOut
	e := &env{stdout: s.out, stderr: errOut, getenv: func(k string) string { return vars[k] }, now: time.Now}
	go func() { s.done <- e.main(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		// The banner ends with the Ctrl-C hint; wait for all of it.
		if out := s.out.String(); strings.Contains(out, "Press Ctrl-C to stop.") {
			m := urlRE.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("banner without a URL:\n%s", out)
			}
			s.url = m[1]
			t.Cleanup(func() { s.stop(t) })
			return s
		}
		select {
		case code := <-s.done:
			t.Fatalf("serve exited %d: %s%s", code, s.out.String(), errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not start: %s %s", s.out.String(), errOut.String())
	return nil
}

func (s *serveProc) stop(t *testing.T) int {
	if s.cancel == nil {
		return 0
	}
	s.cancel()
	s.cancel = nil
	select {
	case code := <-s.done:
		return code
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
	return -1
}

func get(t *testing.T, client *http.Client, url string) (int, string) {
	t.Helper()
	res, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestServeLifecycle(t *testing.T) {
	data := filepath.Join(t.TempDir(), "civstack-data")
	s := startServe(t, nil, "--data", data, "--demo")
	for _, want := range []string{"DEMO MODE", "Li Wei (", "Ana Costa (Data Protection Authority)", "Amira Haddad (Citizen)", "SQLite at", "Press Ctrl-C"} {
		if !strings.Contains(s.out.String(), want) {
			t.Fatalf("banner lacks %q:\n%s", want, s.out.String())
		}
	}
	if !strings.HasPrefix(s.url, "http://localhost:") {
		t.Fatalf("public URL %s", s.url)
	}
	if code, body := get(t, http.DefaultClient, s.url+"/readyz"); code != 200 || !strings.Contains(body, "sqlite") {
		t.Fatalf("readyz %d %s", code, body)
	}
	if code, body := get(t, http.DefaultClient, s.url+"/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "go_build_info{") {
		t.Fatalf("metrics on the public address: %d, with the Go runtime's and the build's", code)
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("serve exited %d after Ctrl-C", code)
	}
	if !strings.Contains(s.out.String(), "Stopped.") {
		t.Fatalf("no goodbye: %s", s.out.String())
	}
	for _, p := range []string{"civstack.db", "keys"} {
		if _, err := os.Stat(filepath.Join(data, p)); err != nil {
			t.Fatal(err)
		}
	}
	keys, _ := filepath.Glob(filepath.Join(data, "keys", "*.pem"))
	if len(keys) != 2 {
		t.Fatalf("keys: %v", keys)
	}
	for _, k := range keys {
		fi, _ := os.Stat(k)
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v", k, fi.Mode().Perm())
		}
	}
	// Demo data never mixes with real use.
	code, _, stderr := run(t, nil, "serve", "--data", data, "--addr", "127.0.0.1:0")
	oneLine(t, "real use of a demo database", code, 1, stderr, "holds demo data")

	// keys list and rotate.
	code, out, _ := run(t, nil, "keys", "--data", data, "list")
	if code != 0 || strings.Count(out, "yes") != 2 {
		t.Fatalf("keys list: %d\n%s", code, out)
	}
	if code, out, _ = run(t, nil, "keys", "--data", data, "rotate", "document"); code != 0 || !strings.Contains(out, "New document key") {
		t.Fatalf("rotate: %d %s", code, out)
	}
	code, out, _ = run(t, nil, "keys", "--data", data, "list")
	if code != 0 || strings.Count(out, "document") != 2 || strings.Count(out, "yes") != 2 {
		t.Fatalf("keys list after rotation: %d\n%s", code, out)
	}
	code, _, stderr = run(t, nil, "keys", "--data", data, "rotate", "banana")
	oneLine(t, "rotate an unknown purpose", code, 2, stderr, "unknown key purpose")
	// Flags after the command are read too (Go's flag package alone would
	// have listed ./civstack-data's keys, making them if missing).
	code, after, _ := run(t, nil, "keys", "list", "--data", data)
	if code != 0 || after != out || !strings.Contains(out, "exchange.secret") {
		t.Fatalf("keys list --data: %d\n%s\nwant\n%s", code, after, out)
	}
	code, _, stderr = run(t, nil, "keys", "list", "--data", data, "extra")
	oneLine(t, "keys list with an argument", code, 2, stderr, `unexpected argument "extra"`)
	code, _, stderr = run(t, nil, "keys", "rotate", "--data", data)
	oneLine(t, "rotate without a purpose", code, 2, stderr, "needs a purpose")
}

// TestServeMetricsElsewhere: with --metrics-addr, /metrics is served there
// and not on the public address.
func TestServeMetricsElsewhere(t *testing.T) {
	s := startServe(t, nil, "--data", filepath.Join(t.TempDir(), "d"), "--metrics-addr", "127.0.0.1:0")
	m := regexp.MustCompile(`metrics:  (http://\S+/metrics) \(not on the public address\)`).FindStringSubmatch(s.out.String())
	if m == nil {
		t.Fatalf("the banner does not say where the metrics are:\n%s", s.out.String())
	}
	get(t, http.DefaultClient, s.url+"/readyz")
	if code, body := get(t, http.DefaultClient, m[1]); code != 200 || !strings.Contains(body, `civstack_http_requests_total{code="200",route="GET /readyz"}`) {
		t.Fatalf("metrics at %s: %d\n%s", m[1], code, body)
	}
	if code, _ := get(t, http.DefaultClient, s.url+"/metrics"); code != http.StatusNotFound {
		t.Fatalf("metrics on the public address too: %d", code)
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
	code, _, stderr := run(t, nil, "serve", "--data", t.TempDir(), "--metrics-addr", "9100")
	oneLine(t, "a port without a host", code, 2, stderr, "--metrics-addr")
}

func TestServeProductionPrintsSetupLink(t *testing.T) {
	data := t.TempDir()
	s := startServe(t, nil, "--data", data)
	if !strings.Contains(s.out.String(), s.url+"/setup?code=setup_") || strings.Contains(s.out.String(), "DEMO") {
		t.Fatalf("banner:\n%s", s.out.String())
	}
	s.stop(t)
	code, _, stderr := run(t, nil, "demo", "--data", data)
	oneLine(t, "demo into a real database", code, 1, stderr, "holds real data")
	code, out, _ := run(t, nil, "demo", "--data", t.TempDir())
	if code != 0 || !strings.Contains(out, "17 personas") {
		t.Fatalf("demo: %d %s", code, out)
	}
}

func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	vars := map[string]string{"CIVSTACK_TLS_CERT": filepath.Join(dir, "cert.pem"), "CIVSTACK_TLS_KEY": filepath.Join(dir, "key.pem"),
		"CIVSTACK_DATA": filepath.Join(dir, "data"), "CIVSTACK_LOG_FORMAT": "json"}
	s := startServe(t, vars)
	if !strings.HasPrefix(s.url, "https://localhost:") {
		t.Fatalf("TLS public URL %s", s.url)
	}
	pool := x509.NewCertPool()
	cert, _ := x509.ParseCertificate(der)
	pool.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	code, _ := get(t, client, s.url+"/healthz")
	if code != 200 {
		t.Fatalf("healthz over TLS: %d", code)
	}
	res, _ := client.Get(s.url + "/")
	if res.Header.Get("Strict-Transport-Security") == "" {
		t.Fatal("no HSTS over TLS")
	}
	res.Body.Close()
}

// Two civstack processes serving one PostgreSQL database.
func TestServeTwoProcessesOnPostgres(t *testing.T) {
	base := os.Getenv(storetest.PostgresEnv)
	if base == "" {
		t.Skipf("PostgreSQL suite skipped: set %s to run it", storetest.PostgresEnv)
	}
	db := storetest.NewPostgresDatabase(t, base)
	// One keys directory, made by keys list and copied to each node.
	keys := t.TempDir()
	if code, _, stderr := run(t, nil, "keys", "list", "--data", keys); code != 0 {
		t.Fatalf("keys list: %d %q", code, stderr)
	}
	nodeData := func() string {
		data := t.TempDir()
		if _, err := copyTree(filepath.Join(keys, "keys"), filepath.Join(data, "keys")); err != nil {
			t.Fatal(err)
		}
		return data
	}
	var servers []*serveProc
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ { // start both at once: they race to migrate
		data := nodeData()
		wg.Go(func() {
			s := startServe(t, map[string]string{"CIVSTACK_DB": db}, "--data", data, "--demo")
			mu.Lock()
			servers = append(servers, s)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(servers) != 2 {
		t.Fatal("a server did not start")
	}
	for _, s := range servers {
		if code, body := get(t, http.DefaultClient, s.url+"/readyz"); code != 200 || !strings.Contains(body, "postgres") {
			t.Fatalf("readyz %d %s", code, body)
		}
		if !strings.Contains(s.out.String(), "Olu Adeyemi") || strings.Count(s.out.String(), "Olu Adeyemi") != 1 {
			t.Fatalf("banner:\n%s", s.out.String())
		}
	}
	// Exactly one integrates; when it stops, the other takes over.
	var holder, other *serveProc
	for i := 0; i < 100 && holder == nil; i++ {
		for j, s := range servers {
			if strings.Contains(s.errOut.String(), "this process integrates") {
				holder, other = s, servers[1-j]
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if holder == nil || strings.Contains(other.errOut.String(), "this process integrates") {
		t.Fatalf("want exactly one integrator:\n%s\n%s", servers[0].errOut.String(), servers[1].errOut.String())
	}
	pg, err := store.Open(context.Background(), store.Options{URL: db})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	// Both hold the nodes' lease shared, so migrate down sees the one that
	// does not integrate too.
	if present := sharedLeaseHolders(t, pg); len(present) != 2 {
		t.Fatalf("nodes holding the nodes' lease: %v", present)
	}
	code, _, stderr := run(t, map[string]string{"CIVSTACK_DB": db}, "migrate", "down", "--to", "11", "--data", t.TempDir())
	oneLine(t, "migrate down while two nodes run", code, 1, stderr, "stop every node first")
	holder.stop(t)
	if err := pg.Tx(context.Background(), func(tx *store.Tx) error {
		_, err := tlog.Sequence(context.Background(), tx, time.Now(), receiptEntry(1))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var next int64
	pg.Reader().QueryRow("SELECT value FROM tlog_counters WHERE name = 'next'").Scan(&next)
	t1 := time.Now()
	waitSize(t, pg, next)
	t.Logf("the second process took over and signed within %v", time.Since(t1))
	if !strings.Contains(other.errOut.String(), "this process integrates") {
		t.Fatal("the second process did not take over integration")
	}

	// Seeding twice at once must not duplicate anyone.
	code, out, stderr := run(t, map[string]string{"CIVSTACK_DB": db}, "demo", "--data", nodeData())
	if code != 0 || !strings.Contains(out, "17 personas") {
		t.Fatalf("demo after two starts: %d %s %s", code, out, stderr)
	}
	// A node with keys of its own is refused (docs/operations.md).
	code, _, stderr = run(t, map[string]string{"CIVSTACK_DB": db}, "demo", "--data", t.TempDir())
	oneLine(t, "a node with other keys", code, 1, stderr, "holds none of the log keys")
	if !strings.Contains(stderr, "since it holds only demo data, drop this database") {
		t.Errorf("a demo database's remedy is not given: %q", stderr)
	}
}

func TestQRDecode(t *testing.T) {
	pix := "00020126580014br.gov.bcb.pix0136123e4567-e12b-12d1-a456-4266554400005204000053039865802BR5913Fulano de Tal6008BRASILIA62070503***63041D3D"
	var out, errOut bytes.Buffer
	e := &env{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }, now: time.Now}
	if rc := e.main(context.Background(), []string{"qr", "decode", pix}); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errOut.String())
	}
	var got qrDecoded
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Valid || len(got.Fields) != 9 || got.Fields[1].Sub[0].Value != "br.gov.bcb.pix" || !strings.Contains(got.Foreign, "not a civstack merchant") {
		t.Errorf("decoded %+v", got)
	}
	out.Reset()
	bad := pix[:len(pix)-4] + "1D3E"
	if rc := e.main(context.Background(), []string{"qr", "decode", bad}); rc != 1 || !strings.Contains(errOut.String(), "wrong CRC") || strings.Count(errOut.String(), "\n") != 1 {
		t.Errorf("bad CRC: rc %d, stderr %q", rc, errOut.String())
	}
	errOut.Reset()
	e.in = strings.NewReader(pix + "\n")
	if rc := e.main(context.Background(), []string{"qr", "decode", "-"}); rc != 0 {
		t.Errorf("stdin: rc %d %s", rc, errOut.String())
	}
}
