package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/healthpass"
	"github.com/civstack/civstack/internal/keyring"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestNodeKeysMatchDatabase: a node refuses a database that other keys
// made, before it records its own keys in the log: a log none of its log
// keys signed, or a secret other than the one the database was first
// served with. The right keys put back, it starts.
func TestNodeKeysMatchDatabase(t *testing.T) {
	for _, eng := range storetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			opts := eng.Open(t)
			data := t.TempDir()
			vars := map[string]string{"CIVSTACK_DB": opts.URL}
			opts.DataDir = data
			s := startServe(t, vars, "--data", data)
			waitCheckpoint(t, opts)
			s.stop(t)
			keys := filepath.Join(data, "keys")
			entries := logEntries(t, opts, data)
			reindex := func() (int, string) {
				code, _, stderr := run(t, vars, "log", "reindex", "--data", data)
				return code, stderr
			}

			// Another exchange secret: its pseudonyms would not find the
			// citizens' records.
			secret := filepath.Join(keys, "exchange.secret")
			kept, err := os.ReadFile(secret)
			if err != nil {
				t.Fatal(err)
			}
			other := make([]byte, len(kept))
			rand.Read(other)
			if err := os.WriteFile(secret, other, 0o600); err != nil {
				t.Fatal(err)
			}
			code, stderr := reindex()
			oneLine(t, "another exchange secret", code, 1, stderr, "exchange.secret is not the one this database was first served with")
			if strings.Contains(stderr, "demo data") {
				t.Errorf("a real node is told to drop its database: %q", stderr)
			}
			code, stderr = serveRefused(t, vars, "--data", data)
			oneLine(t, "serve with another exchange secret", code, 1, stderr, "copy that node's keys directory to "+keys)
			if err := os.WriteFile(secret, kept, 0o600); err != nil {
				t.Fatal(err)
			}

			// Another document signing certificate for the node's document
			// key: the passes it signed name the first one.
			ring, err := keyring.Open(keys, time.Now, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			doc := ring.Active(keyring.Document)
			dsc := filepath.Join(data, "health", "dsc-"+doc.ID+".pem")
			keptDSC, err := os.ReadFile(dsc)
			if err != nil {
				t.Fatal(err)
			}
			elsewhere := t.TempDir()
			if _, err := healthpass.DSC(elsewhere, doc.ID, doc.Signer, "IT", doc.CreatedAt.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(elsewhere, filepath.Base(dsc)), dsc); err != nil {
				t.Fatal(err)
			}
			code, stderr = serveRefused(t, vars, "--data", data)
			oneLine(t, "serve with another DSC", code, 1, stderr, "dsc-"+doc.ID+".pem is not the one this database's health passes were first signed under")
			if err := os.WriteFile(dsc, keptDSC, 0o644); err != nil {
				t.Fatal(err)
			}

			// No document key the log records (another node's keys, with
			// this node's log key): its passes and credentials would name
			// a key the log's readers were never told of.
			docKeys := setAside(t, keys, "document-*.pem")
			code, stderr = reindex()
			oneLine(t, "a new document key", code, 1, stderr, "lacks the document key "+doc.ID+" that this database's transparency log records")
			if n := logEntries(t, opts, data); n != entries {
				t.Fatalf("the refused node changed the log: %d entries, %d before", n, entries)
			}
			docKeys.putBack(t)

			// No log key that signed the log: keyring.Open makes a new one.
			logKeys := setAside(t, keys, "log-*.pem")
			code, stderr = reindex()
			oneLine(t, "a new log key", code, 1, stderr, "holds none of the log keys that signed this database's transparency log")
			if n := logEntries(t, opts, data); n != entries {
				t.Fatalf("the refused node changed the log: %d entries, %d before", n, entries)
			}

			// The right keys back (beside the new one, which is newer and
			// so would sign: it goes), the node opens.
			logKeys.putBack(t)
			if code, stderr := reindex(); code != 0 {
				t.Fatalf("with its own keys: %d %q", code, stderr)
			}

			// A rotation on one node: another node still holding the keys
			// from before it is refused, since it would not publish the
			// new key's certificate.
			before := filepath.Join(t.TempDir(), "keys")
			if _, err := copyTree(keys, before); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := run(t, vars, "keys", "rotate", "document", "--data", data)
			m := regexp.MustCompile(`New document key (\S+) `).FindStringSubmatch(stdout)
			if code != 0 || m == nil {
				t.Fatalf("keys rotate document: %d %q %q", code, stdout, stderr)
			}
			rotated := filepath.Join(t.TempDir(), "keys")
			if err := os.Rename(keys, rotated); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(before, keys); err != nil {
				t.Fatal(err)
			}
			entries = logEntries(t, opts, data)
			code, stderr = reindex()
			oneLine(t, "keys from before a rotation", code, 1, stderr, "lacks the document key "+m[1]+" that this database's transparency log records")
			if n := logEntries(t, opts, data); n != entries {
				t.Fatalf("the refused node changed the log: %d entries, %d before", n, entries)
			}
			if err := os.RemoveAll(keys); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(rotated, keys); err != nil {
				t.Fatal(err)
			}
			if code, stderr := reindex(); code != 0 {
				t.Fatalf("with the rotated keys: %d %q", code, stderr)
			}
			// A second node given only the first's keys makes the same
			// certificates, so it serves.
			second := t.TempDir()
			if _, err := copyTree(keys, filepath.Join(second, "keys")); err != nil {
				t.Fatal(err)
			}
			if eng.Name == "postgres" {
				startServe(t, vars, "--data", second).stop(t)
			}
		})
	}
}

// asideKeys are key files moved out of a keys directory.
type asideKeys struct {
	dir, pattern, aside string
	names               []string
}

// setAside moves the key files in dir that match pattern to a temporary
// directory; the next keyring.Open makes a new key in their place.
func setAside(t *testing.T, dir, pattern string) asideKeys {
	t.Helper()
	a := asideKeys{dir: dir, pattern: pattern, aside: t.TempDir()}
	paths, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(paths) == 0 {
		t.Fatalf("no %s in %s", pattern, dir)
	}
	for _, p := range paths {
		a.names = append(a.names, filepath.Base(p))
		if err := os.Rename(p, filepath.Join(a.aside, filepath.Base(p))); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// putBack removes the keys made meanwhile and puts the set-aside ones back.
func (a asideKeys) putBack(t *testing.T) {
	t.Helper()
	made, _ := filepath.Glob(filepath.Join(a.dir, a.pattern))
	for _, p := range made {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range a.names {
		if err := os.Rename(filepath.Join(a.aside, name), filepath.Join(a.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// serveRefused runs serve, which must refuse to start: a serve that
// starts is stopped after a while and fails the test.
func serveRefused(t *testing.T, vars map[string]string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut syncBuf
	e := &env{stdout: &out, stderr: &errOut, getenv: func(k string) string { return vars[k] }, now: time.Now}
	code := e.main(ctx, append([]string{"serve", "--addr", "127.0.0.1:0", "--log-level", "warn"}, args...))
	if ctx.Err() != nil {
		t.Fatalf("serve started: %s", out.String())
	}
	return code, errOut.String()
}

// waitCheckpoint waits until the node's log has a signed checkpoint.
func waitCheckpoint(t *testing.T, opts store.Options) {
	t.Helper()
	db, err := store.Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for range 300 {
		var n int
		if err := db.Reader().QueryRow("SELECT COUNT(*) FROM tlog_checkpoints").Scan(&n); err == nil && n > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no checkpoint signed")
}

// TestRulesChangeWarned: a node started with health rules other than the
// ones the database was last served with says so (every node must serve
// the same); started again with the same, it says nothing.
func TestRulesChangeWarned(t *testing.T) {
	for _, eng := range storetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			data := t.TempDir()
			vars := map[string]string{"CIVSTACK_DB": eng.Open(t).URL}
			const warning = "the health rules differ from those this database was last served with"
			s := startServe(t, vars, "--data", data)
			s.stop(t)
			if strings.Contains(s.errOut.String(), warning) {
				t.Fatalf("warned on the first start: %s", s.errOut.String())
			}
			path := filepath.Join(data, "health", "rules.json")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			edited := regexp.MustCompile(`"version": "([^"]*)"`).ReplaceAll(b, []byte(`"version": "${1}-edited"`))
			if bytes.Equal(edited, b) {
				t.Fatal("no version to edit in rules.json")
			}
			if err := os.WriteFile(path, edited, 0o644); err != nil {
				t.Fatal(err)
			}
			s = startServe(t, vars, "--data", data)
			s.stop(t)
			if out := s.errOut.String(); !strings.Contains(out, warning) || !strings.Contains(out, "-edited") {
				t.Fatalf("no warning after the rules changed: %s", out)
			}
			s = startServe(t, vars, "--data", data)
			s.stop(t)
			if strings.Contains(s.errOut.String(), warning) {
				t.Fatalf("warned again with the same rules: %s", s.errOut.String())
			}
		})
	}
}
