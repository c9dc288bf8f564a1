package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

// receiptFile pays a merchant and writes the receipt's bundle as a citizen
// downloads it, and the merchant's cash-flow report as a lender downloads
// it; it returns the two files and the log's verifier key.
func receiptFile(t *testing.T) (string, string, string) {
	t.Helper()
	ctx := context.Background()
	db := storetest.OpenMigrated(t, store.Options{DataDir: t.TempDir()})
	eng := ledger.New(db, time.Now, nil)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { eng.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := tlog.NewEd25519Signer("verify.test/log", priv)
	tl, err := tlog.New(db, signer.Name(), signer, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	seal := make([]byte, 32)
	rand.Read(seal)
	svc, err := payment.New(payment.DefaultConfig, payment.Deps{DB: db, Ledger: eng, Log: tl, SealKey: seal, Now: time.Now, Rand: rand.Reader})
	if err != nil {
		t.Fatal(err)
	}
	m, err := svc.SetupMerchant(ctx, payment.Profile{OrgID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Name: "Rossi Groceries", City: "Bologna", MCC: "5411", TaxID: "IT09876543210", VATRate: 400})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.TopUp(ctx, ledger.ID{7}, "amira", 50_00, "test"); err != nil {
		t.Fatal(err)
	}
	code, _ := svc.StaticCode(m)
	p, err := svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: code, Amount: 12_34, Nonce: "verify-test-nonce-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tl.Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := svc.Bundle(ctx, p.ID)
	if err != nil || b.Log == nil {
		t.Fatalf("bundle: %v %+v", err, b)
	}
	raw, _ := json.MarshalIndent(b, "", "  ")
	path := filepath.Join(t.TempDir(), "receipt.json")
	os.WriteFile(path, raw, 0o644)
	_, secret, err := svc.CreateShare(ctx, m.OrgID, "Emilia Credit Union", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tl.Integrate(ctx); err != nil {
		t.Fatal(err)
	}
	rb, err := svc.SharedReport(ctx, secret)
	if err != nil || rb.Log == nil {
		t.Fatalf("report bundle: %v %+v", err, rb)
	}
	raw, _ = json.MarshalIndent(rb, "", "  ")
	report := filepath.Join(t.TempDir(), "report.json")
	os.WriteFile(report, raw, 0o644)
	return path, report, signer.VerifierKey()
}

func TestVerify(t *testing.T) {
	path, report, vkey := receiptFile(t)
	e := func(in string) (*env, *bytes.Buffer, *bytes.Buffer) {
		var out, errOut bytes.Buffer
		return &env{stdout: &out, stderr: &errOut, in: strings.NewReader(in), getenv: func(string) string { return "" }, now: time.Now}, &out, &errOut
	}
	ctx := context.Background()

	env, out, errOut := e("")
	if rc := env.main(ctx, []string{"verify", path, "--log-key", vkey}); rc != 0 {
		t.Fatalf("a good receipt: rc %d\n%s%s", rc, out, errOut)
	}
	for _, want := range []string{"ok   signature:", "ok   document:", "ok   checkpoint:", "ok   inclusion:", "ok   merchant key in log:", "verified: receipt", "Rossi Groceries", "12.34 EUR"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	env, out, errOut = e("")
	if rc := env.main(ctx, []string{"verify", report, "--log-key", vkey}); rc != 0 {
		t.Fatalf("a lender's cash-flow report: rc %d\n%s%s", rc, out, errOut)
	}
	for _, want := range []string{"ok   signature:", "ok   inclusion:", "ok   merchant key in log:", "verified: cash-flow report of Rossi Groceries", "for Emilia Credit Union", "month to date   12.34 EUR"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report output lacks %q:\n%s", want, out)
		}
	}
	rraw, _ := os.ReadFile(report)
	env, out, _ = e(strings.Replace(string(rraw), `"month_to_date": 1234`, `"month_to_date": 99999`, 1))
	if rc := env.main(ctx, []string{"verify", "-", "--log-key", vkey}); rc == 0 || !strings.Contains(out.String()+errOut.String(), "document") {
		t.Fatalf("a changed report verified: rc %d %s", rc, out)
	}

	raw, _ := os.ReadFile(path)
	env, out, _ = e(string(raw))
	if rc := env.main(ctx, []string{"verify", "--json", "--log-key", vkey, "-"}); rc != 0 {
		t.Fatalf("stdin, JSON: rc %d", rc)
	}
	var rep payment.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || !rep.OK() || rep.Type != "receipt" {
		t.Fatalf("JSON report: %v %+v", err, rep)
	}

	fails := []struct {
		what string
		in   string
		args []string
		want string
	}{
		{"no log key", string(raw), []string{"verify", "-"}, "not verified: log: not checked"},
		{"another log's key", string(raw), []string{"verify", "-", "--log-key", otherKey(t)}, "not verified: checkpoint:"},
		{"a changed total", strings.Replace(string(raw), `"total": 1234`, `"total": 1334`, 1), []string{"verify", "-", "--log-key", vkey}, "not verified: document:"},
		{"not a bundle", "hello", []string{"verify", "-"}, "the input is none of the files verify checks (a receipt, invoice or cash-flow report, a data-access export"},
		{"JSON of something else", `{"x": 1}`, []string{"verify", "-"}, "none of the files verify checks"},
		{"a missing file", "", []string{"verify", filepath.Join(t.TempDir(), "nope.json")}, "no such file"},
	}
	for _, f := range fails {
		env, _, errOut := e(f.in)
		rc := env.main(ctx, f.args)
		if rc != 1 || !strings.Contains(errOut.String(), f.want) || strings.Count(errOut.String(), "\n") != 1 {
			t.Errorf("%s: rc %d, stderr %q; want 1 and one line with %q", f.what, rc, errOut.String(), f.want)
		}
	}
	if !strings.Contains(string(raw), `"total": 1234`) {
		t.Fatal("the tampering case did not change anything")
	}
	env, _, errOut = e("")
	if rc := env.main(ctx, []string{"verify"}); rc != 2 || !strings.Contains(errOut.String(), "verify FILE") {
		t.Errorf("no file: rc %d %q", rc, errOut.String())
	}
}

func otherKey(t *testing.T) string {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := tlog.NewEd25519Signer("verify.test/log", priv)
	if err != nil {
		t.Fatal(err)
	}
	return s.VerifierKey()
}

// accessExportFile releases a citizen's declared income to the tax office
// and writes the citizen's export of "Who looked at my data" as the page
// downloads it; then it releases it again and writes a later export. It
// returns both files and the log's verifier key.
func accessExportFile(t *testing.T) (first, later, vkey string) {
	t.Helper()
	ctx := context.Background()
	db := storetest.OpenMigrated(t, store.Options{DataDir: t.TempDir()})
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := tlog.NewEd25519Signer("verify.test/log", priv)
	tl, err := tlog.New(db, signer.Name(), signer, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	app := tlog.NewAppender(db, time.Now, nil)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { app.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	secret := make([]byte, 32)
	rand.Read(secret)
	ex, err := exchange.New(exchange.Deps{DB: db, Appender: app, Log: tl, LogKey: signer.VerifierKey(), Secret: secret, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ex.PublishService(ctx, "tax", exchange.Service{ID: "income", Name: "Declared income", Fields: []exchange.Field{{Name: "income", Label: "Income", Type: "number"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ex.CreatePolicy(ctx, exchange.Policy{Requester: "tax", Service: "income", Fields: []string{"income"}, Purpose: "TAX-AUDIT", LegalBasis: "Tax Code §93", Retention: exchange.Day}, "t"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	export := func(name string, n int, at time.Time) string {
		t.Helper()
		if r, err := ex.Submit(ctx, exchange.Ask{Requester: "tax", Officer: "o", Citizen: "amira", Service: "income", Fields: []string{"income"}, Purpose: "TAX-AUDIT", LegalBasis: "Tax Code §93"}); err != nil || r.State != exchange.Released {
			t.Fatalf("release: %+v %v", r, err)
		}
		if _, _, err := tl.Integrate(ctx); err != nil {
			t.Fatal(err)
		}
		recs, err := ex.ForCitizen(ctx, "amira")
		if err != nil || len(recs) != n {
			t.Fatalf("her accesses: %+v %v", recs, err)
		}
		raw, _ := json.Marshal(exchange.NewExport("amira", at, signer.VerifierKey(), recs, nil))
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	first = export("civstack-data-accesses.json", 1, time.Now())
	return first, export("civstack-data-accesses-later.json", 2, time.Now().Add(time.Hour)), signer.VerifierKey()
}

func TestVerifyAccessExport(t *testing.T) {
	path, later, vkey := accessExportFile(t)
	ctx := context.Background()
	run := func(in string, args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		e := &env{stdout: &out, stderr: &errOut, in: strings.NewReader(in), getenv: func(string) string { return "" }, now: time.Now}
		return e.main(ctx, args), out.String(), errOut.String()
	}
	rc, out, errOut := run("", "verify", path, "--log-key", vkey)
	if rc != 0 {
		t.Fatalf("a good export: rc %d\n%s%s", rc, out, errOut)
	}
	for _, want := range []string{"ok   export: 1 access to the data of amira", "ok   access 1 (tax, TAX-AUDIT, ", "opens log entry 0's commitment, which is in verify.test/log's signed checkpoint of size 1",
		"verified: 1 access to the data of amira, each in a checkpoint signed by verify.test/log"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Against the earlier export: nothing gone, one access since.
	rc, out, errOut = run("", "verify", later, "--log-key", vkey, "--earlier", path)
	if rc != 0 {
		t.Fatalf("a later export against the earlier: rc %d\n%s%s", rc, out, errOut)
	}
	for _, want := range []string{"ok   earlier export: 1 access to the data of amira", "ok   log: the log grew from 1 to 2 entries",
		"ok   earlier accesses: the 1 access the earlier file proves in the log is in this one, at the same log entry, unchanged",
		"ok   since the earlier export: 1 access made since; 0 accesses hidden",
		"verified: 2 accesses to the data of amira, each in a checkpoint signed by verify.test/log; nothing of " + path + " has gone or changed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	laterRaw, _ := os.ReadFile(later)
	raw, _ := os.ReadFile(path)
	if rc, out, _ := run(string(laterRaw), "verify", "--json", "--log-key", vkey, "--earlier", path, "-"); rc != 0 || !strings.Contains(out, `"check": "since the earlier export"`) {
		t.Fatalf("JSON against the earlier: rc %d %s", rc, out)
	}
	if rc, out, _ := run(string(raw), "verify", "--json", "--log-key", vkey, "-"); rc != 0 || !strings.Contains(out, `"accesses": 1`) {
		t.Fatalf("JSON: rc %d %s", rc, out)
	}
	for _, f := range []struct {
		what, in string
		args     []string
		want     string
	}{
		{"no log key", string(raw), []string{"verify", "-"}, "not verified: log: not checked"},
		{"another log's key", string(raw), []string{"verify", "-", "--log-key", otherKey(t)}, "not signed by the key"},
		{"a changed purpose", strings.ReplaceAll(string(raw), "TAX-AUDIT", "TAX-AUDIT-2"), []string{"verify", "-", "--log-key", vkey}, "does not open log entry 0's commitment"},
		{"a changed readable copy", strings.Replace(string(raw), `"purpose":"TAX-AUDIT"`, `"purpose":"NOTHING"`, 1), []string{"verify", "-", "--log-key", vkey}, "readable copy in the file differs"},
		{"a broken export", `{"accesses": [{"proof": 7}]}`, []string{"verify", "-", "--log-key", vkey}, "not a civstack export of data accesses"},
		{"files swapped", string(raw), []string{"verify", "-", "--log-key", vkey, "--earlier", later}, "not verified: order: the earlier file was exported"},
		{"an access without a proof", strings.Replace(string(laterRaw), `"accesses":[{`, `"accesses":[{"agency":"x"},{`, 1), []string{"verify", "-", "--log-key", vkey, "--earlier", path}, "had not verified it"},
		{"--earlier not there", string(laterRaw), []string{"verify", "-", "--log-key", vkey, "--earlier", path + ".gone"}, "open " + path + ".gone: no such file"},
		{"--earlier not an export", string(laterRaw), []string{"verify", "-", "--log-key", vkey, "--earlier", "verify_test.go"}, "the earlier file: not a civstack export"},
	} {
		rc, _, errOut := run(f.in, f.args...)
		if rc != 1 || !strings.Contains(errOut, f.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%s: rc %d, stderr %q; want 1 and one line with %q", f.what, rc, errOut, f.want)
		}
	}
	// Usage errors.
	for _, f := range []struct {
		what, in string
		args     []string
		want     string
	}{
		{"--earlier without the key", string(laterRaw), []string{"verify", "-", "--earlier", path}, "--earlier needs --log-key"},
		{"--earlier with a receipt", `{"document": {}}`, []string{"verify", "-", "--earlier", path}, `--earlier compares two exports of "Who looked at my data", and the input is not one`},
		{"a mistyped log key", string(raw), []string{"verify", "-", "--log-key", vkey[:len(vkey)-3]}, "--log-key: \"" + vkey[:64] + "…\" is not a log verifier key"},
		{"a log key that is no key", string(raw), []string{"verify", "-", "--log-key", "x"}, `--log-key: "x" is not a log verifier key`},
	} {
		rc, _, errOut := run(f.in, f.args...)
		if rc != 2 || !strings.Contains(errOut, f.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%s: rc %d, stderr %q; want 2 and one line with %q", f.what, rc, errOut, f.want)
		}
	}
}
