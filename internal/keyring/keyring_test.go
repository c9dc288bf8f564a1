package keyring_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
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
