// Package keyring owns civstack's signing keys: an Ed25519 key that signs
// transparency-log checkpoints and an ECDSA P-256 (ES256) key that signs
// credentials, health passes and receipts. Keys live in the data directory as
// PKCS#8 PEM files with mode 0600, behind the crypto.Signer interface so that
// an HSM or KMS can replace them. Rotation adds a newer key; older keys stay
// for verification.
package keyring

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/civstack/civstack/internal/filelock"
)

// Purpose says what a key signs.
type Purpose string

// The key purposes.
const (
	// Log keys (Ed25519) sign transparency-log checkpoints.
	Log Purpose = "log"
	// Document keys (ECDSA P-256, ES256) sign credentials, passes and receipts.
	Document Purpose = "document"
)

// Purposes lists every purpose; Open makes sure each has a key.
var Purposes = []Purpose{Log, Document}

// Key is one signing key.
type Key struct {
	ID        string // base64url of the first 8 bytes of SHA-256 over the public key's SPKI
	Purpose   Purpose
	Algorithm string // "EdDSA" or "ES256"
	CreatedAt time.Time
	Signer    crypto.Signer
	path      string
}

// Public returns the public key.
func (k *Key) Public() crypto.PublicKey { return k.Signer.Public() }

// PublicPEM returns the public key as a PEM "PUBLIC KEY" block.
func (k *Key) PublicPEM() string {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return ""
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// Ring is the set of keys in one directory. Methods are not safe for
// concurrent use with Rotate; serve reads it only.
type Ring struct {
	dir  string
	now  func() time.Time
	rand io.Reader
	keys []*Key // oldest first
}

// Open loads the keys in dir, creating the directory (mode 0700) and a first
// key for every purpose that has none. Processes that share dir take turns
// (a lock on dir+".lock"), so that several started at once on an empty
// directory all find the first one's keys instead of each making its own.
func Open(dir string, now func() time.Time, rand io.Reader) (*Ring, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("key directory: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	r := &Ring{dir: dir, now: now, rand: rand}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("key directory: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".pem") {
			continue
		}
		k, err := load(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		r.keys = append(r.keys, k)
	}
	slices.SortStableFunc(r.keys, func(a, b *Key) int { return a.CreatedAt.Compare(b.CreatedAt) })
	for _, p := range Purposes {
		if r.Active(p) == nil {
			if _, err := r.rotate(p); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// Active returns the newest key for purpose, or nil.
func (r *Ring) Active(p Purpose) *Key {
	for i := len(r.keys) - 1; i >= 0; i-- {
		if r.keys[i].Purpose == p {
			return r.keys[i]
		}
	}
	return nil
}

// All returns every key, oldest first.
func (r *Ring) All() []*Key { return slices.Clone(r.keys) }

// ByID finds a key by id.
func (r *Ring) ByID(id string) *Key {
	for _, k := range r.keys {
		if k.ID == id {
			return k
		}
	}
	return nil
}

// Rotate creates a new active key for purpose; earlier keys stay.
func (r *Ring) Rotate(p Purpose) (*Key, error) {
	unlock, err := lockDir(r.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return r.rotate(p)
}

// lockDir takes the key directory's lock (dir+".lock", beside it), which
// every process that reads or writes keys in dir holds meanwhile.
func lockDir(dir string) (unlock func(), err error) {
	unlock, err = filelock.Lock(filepath.Clean(dir) + ".lock")
	if err != nil {
		return nil, fmt.Errorf("key directory lock: %w", err)
	}
	return unlock, nil
}

// rotate is Rotate, with the directory's lock held.
func (r *Ring) rotate(p Purpose) (*Key, error) {
	var signer crypto.Signer
	var err error
	switch p {
	case Log:
		_, signer, err = ed25519.GenerateKey(r.rand)
	case Document:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), r.rand)
	default:
		return nil, fmt.Errorf("unknown key purpose %q", p)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", p, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, fmt.Errorf("encode %s key: %w", p, err)
	}
	created := r.now().UTC()
	name := fmt.Sprintf("%s-%d.pem", p, created.UnixMilli())
	path := filepath.Join(r.dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write %s key: %w", p, err)
	}
	werr := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return nil, fmt.Errorf("write %s key: %w", p, werr)
	}
	k, err := load(path)
	if err != nil {
		return nil, err
	}
	r.keys = append(r.keys, k)
	return k, nil
}

func load(path string) (*Key, error) {
	name := filepath.Base(path)
	purpose, stamp, ok := strings.Cut(strings.TrimSuffix(name, ".pem"), "-")
	millis, err := strconv.ParseInt(stamp, 10, 64)
	if !ok || err != nil {
		return nil, fmt.Errorf("key file %s: name is not <purpose>-<millis>.pem", name)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s: mode %v lets others read it; chmod 600 it", name, fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", name, err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("key file %s: no PRIVATE KEY block", name)
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", name, err)
	}
	k := &Key{Purpose: Purpose(purpose), CreatedAt: time.UnixMilli(millis).UTC(), path: path}
	switch s := priv.(type) {
	case ed25519.PrivateKey:
		k.Signer, k.Algorithm = s, "EdDSA"
	case *ecdsa.PrivateKey:
		if s.Curve != elliptic.P256() {
			return nil, fmt.Errorf("key file %s: only P-256 ECDSA keys are used", name)
		}
		k.Signer, k.Algorithm = s, "ES256"
	default:
		return nil, fmt.Errorf("key file %s: unsupported key type %T", name, priv)
	}
	if (k.Purpose == Log) != (k.Algorithm == "EdDSA") {
		return nil, fmt.Errorf("key file %s: a %s key must not be %s", name, k.Purpose, k.Algorithm)
	}
	spki, err := x509.MarshalPKIXPublicKey(k.Signer.Public())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("key file %s", name), err)
	}
	sum := sha256.Sum256(spki)
	k.ID = base64.RawURLEncoding.EncodeToString(sum[:8])
	return k, nil
}

// SecretLen is the length of a secret from Secret.
const SecretLen = 32

// Secret returns the symmetric secret called name (for example "payment",
// which seals device secrets and merchant keys in the database), creating
// <dir>/<name>.secret with SecretLen random bytes (mode 0600) on first use.
// A secret is never rotated by civstack: data sealed with it would become
// unreadable.
func (r *Ring) Secret(name string) ([]byte, error) {
	if name == "" || strings.ContainsAny(name, `/\.`) {
		return nil, fmt.Errorf("secret name %q is not a plain word", name)
	}
	path := filepath.Join(r.dir, name+".secret")
	unlock, err := lockDir(r.dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if fi, err := os.Stat(path); err == nil {
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("secret file %s: mode %v lets others read it; chmod 600 it", filepath.Base(path), fi.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("secret file %s: %w", filepath.Base(path), err)
		}
		if len(b) != SecretLen {
			return nil, fmt.Errorf("secret file %s: %d bytes, want %d", filepath.Base(path), len(b), SecretLen)
		}
		return b, nil
	}
	b := make([]byte, SecretLen)
	if _, err := io.ReadFull(r.rand, b); err != nil {
		return nil, fmt.Errorf("generate secret %s: %w", name, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write secret %s: %w", name, err)
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return nil, fmt.Errorf("write secret %s: %w", name, werr)
	}
	return b, nil
}

// Fingerprint names the secret called name without revealing it (a
// keyed hash: nothing about the secret can be learnt from it), so that a
// database can record which secret its data was sealed or keyed with.
func Fingerprint(name string, secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("civstack secret fingerprint\n" + name))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// ECDSA returns the active document key as an ECDSA P-256 key, with its id.
func (r *Ring) ECDSA() (*ecdsa.PrivateKey, string, error) {
	k := r.Active(Document)
	if k == nil {
		return nil, "", errors.New("no document key")
	}
	ek, ok := k.Signer.(*ecdsa.PrivateKey)
	if !ok {
		return nil, "", errors.New("the document key is not ECDSA P-256")
	}
	return ek, k.ID, nil
}

// ECDSAPublic returns the public key of the document key kid (current or
// earlier), or nil.
func (r *Ring) ECDSAPublic(kid string) *ecdsa.PublicKey {
	if k := r.ByID(kid); k != nil {
		pub, _ := k.Public().(*ecdsa.PublicKey)
		return pub
	}
	return nil
}
