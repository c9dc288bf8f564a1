package keyring_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/keyring"
)

func TestKeyring(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	now := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	r, err := keyring.Open(dir, clock, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	logKey, docKey := r.Active(keyring.Log), r.Active(keyring.Document)
	if logKey == nil || logKey.Algorithm != "EdDSA" || docKey == nil || docKey.Algorithm != "ES256" {
		t.Fatalf("keys = %+v %+v", logKey, docKey)
	}
	// The keys sign, and their signatures verify.
	msg := []byte("checkpoint")
	sig, err := logKey.Signer.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil || !ed25519.Verify(logKey.Public().(ed25519.PublicKey), msg, sig) {
		t.Fatalf("Ed25519 signature: %v", err)
	}
	digest := sha256.Sum256(msg)
	sig, err = docKey.Signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(docKey.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatalf("ES256 signature: %v", err)
	}
	if !strings.Contains(docKey.PublicPEM(), "BEGIN PUBLIC KEY") {
		t.Fatal("no public PEM")
	}
	// Reopening finds the same keys.
	r2, err := keyring.Open(dir, clock, rand.Reader)
	if err != nil || r2.Active(keyring.Log).ID != logKey.ID || len(r2.All()) != 2 {
		t.Fatalf("reopen: %v %v", err, r2.All())
	}
	// Rotation adds a newer active key and keeps the old one.
	now = now.Add(time.Second)
	nk, err := r2.Rotate(keyring.Document)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Active(keyring.Document) != nk || r2.ByID(docKey.ID) == nil || len(r2.All()) != 3 {
		t.Fatalf("after rotation: %v", r2.All())
	}
	if _, err := r2.Rotate("banana"); err == nil {
		t.Fatal("rotated an unknown purpose")
	}
	// Keys readable by others are refused.
	files, _ := filepath.Glob(filepath.Join(dir, "*.pem"))
	for _, f := range files {
		fi, _ := os.Stat(f)
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v", f, fi.Mode().Perm())
		}
	}
	os.Chmod(files[0], 0o644)
	if _, err := keyring.Open(dir, clock, rand.Reader); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("open with a world-readable key: %v", err)
	}
	os.Chmod(files[0], 0o600)
	os.WriteFile(filepath.Join(dir, "log-1.pem"), []byte("not a key"), 0o600)
	if _, err := keyring.Open(dir, clock, rand.Reader); err == nil || !strings.Contains(err.Error(), "no PRIVATE KEY block") {
		t.Fatalf("open with a broken key: %v", err)
	}
}

func TestSecret(t *testing.T) {
	dir := t.TempDir()
	r, err := keyring.Open(dir, time.Now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a, err := r.Secret("payment")
	if err != nil || len(a) != keyring.SecretLen {
		t.Fatalf("first: %x %v", a, err)
	}
	b, err := r.Secret("payment")
	if err != nil || string(a) != string(b) {
		t.Fatalf("second read differs: %v", err)
	}
	if c, _ := r.Secret("other"); string(c) == string(a) {
		t.Fatal("two names share a secret")
	}
	path := filepath.Join(dir, "payment.secret")
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	if _, err := r.Secret("../x"); err == nil {
		t.Fatal("accepted a path as a name")
	}
	os.Chmod(path, 0o644)
	if _, err := r.Secret("payment"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("readable secret: %v", err)
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("short"), 0o600)
	if _, err := r.Secret("payment"); err == nil {
		t.Fatal("accepted a short secret")
	}
}

// TestOpenAtOnce: processes started at once on an empty key directory
// (replicas sharing a volume) all end up with the first one's keys and
// secrets, not each with its own; two opens of the directory's lock
// exclude each other within one process as across processes.
func TestOpenAtOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	const n = 8
	rings := make([]*keyring.Ring, n)
	secrets := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Each its own clock a millisecond apart, as processes' keys
			// would be named apart.
			at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
			if rings[i], errs[i] = keyring.Open(dir, func() time.Time { return at }, rand.Reader); errs[i] == nil {
				secrets[i], errs[i] = rings[i].Secret("payment")
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("open %d: %v", i, errs[i])
		}
		for _, p := range keyring.Purposes {
			if a, b := rings[i].Active(p).ID, rings[0].Active(p).ID; a != b {
				t.Fatalf("open %d's %s key is %s, open 0's %s", i, p, a, b)
			}
		}
		if !bytes.Equal(secrets[i], secrets[0]) {
			t.Fatalf("open %d has another payment secret", i)
		}
	}
	pems, _ := filepath.Glob(filepath.Join(dir, "*.pem"))
	if len(pems) != len(keyring.Purposes) {
		t.Fatalf("the directory holds %d keys, want one per purpose: %v", len(pems), pems)
	}
}
