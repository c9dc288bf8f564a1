package tlog

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/store"
)

// Checkpoint is a C2SP tlog-checkpoint: origin, tree size and root hash.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

// Body is the checkpoint's note text.
func (c Checkpoint) Body() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// ParseCheckpoint reads a checkpoint body. Extension lines are refused:
// civstack never writes them, and they cannot be audited.
func ParseCheckpoint(text string) (Checkpoint, error) {
	var c Checkpoint
	lines := strings.Split(text, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return c, errors.New("checkpoint: want exactly three lines (origin, size, root hash)")
	}
	if err := CheckOrigin(lines[0]); err != nil {
		return c, fmt.Errorf("checkpoint: %w", err)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return c, fmt.Errorf("checkpoint: bad tree size %q", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize || base64.StdEncoding.EncodeToString(root) != lines[2] {
		return c, fmt.Errorf("checkpoint: bad root hash %q", lines[2])
	}
	c.Origin, c.Size = lines[0], size
	copy(c.Root[:], root)
	if size == 0 && c.Root != EmptyRoot {
		return c, errors.New("checkpoint: a size-0 checkpoint must carry the empty-tree hash")
	}
	return c, nil
}

// CheckVerifierKey reports whether vkey is a verifier key in the C2SP
// signed-note vkey form (name+hash+key, an Ed25519 key), as a node's /log
// page shows it: a tool that takes one checks it before it reads anything
// else, so that a mistyped key is reported as such.
func CheckVerifierKey(vkey string) error {
	_, err := verifier(vkey)
	return err
}

// verifier is the note verifier for vkey, or CheckVerifierKey's error.
func verifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("%q is not a log verifier key (name+hash+key, as the log's /log page shows it): %w", truncate(vkey), err)
	}
	return v, nil
}

// OpenCheckpoint verifies a signed checkpoint note against the verifier key
// vkey (C2SP signed-note vkey form) and parses it.
func OpenCheckpoint(signed []byte, vkey string) (Checkpoint, error) {
	v, err := verifier(vkey)
	if err != nil {
		return Checkpoint{}, err
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		var unknown *note.UnverifiedNoteError
		if errors.As(err, &unknown) {
			return Checkpoint{}, fmt.Errorf("the checkpoint is not signed by the key %s", v.Name())
		}
		return Checkpoint{}, fmt.Errorf("checkpoint signature: %w", err)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return c, err
	}
	if c.Origin != v.Name() {
		return c, fmt.Errorf("checkpoint origin %q is not the key's name %q", c.Origin, v.Name())
	}
	return c, nil
}

// Ed25519Signer adapts an Ed25519 crypto.Signer (a key file, an HSM) to a
// C2SP signed-note signer named name.
type Ed25519Signer struct {
	name string
	hash uint32
	key  crypto.Signer
}

// NewEd25519Signer wraps key, which must hold an Ed25519 public key.
func NewEd25519Signer(name string, key crypto.Signer) (*Ed25519Signer, error) {
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("log key is %T, not Ed25519", key.Public())
	}
	if err := CheckOrigin(name); err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', 0x01})
	h.Write(pub)
	return &Ed25519Signer{name: name, hash: binary.BigEndian.Uint32(h.Sum(nil)[:4]), key: key}, nil
}

// Name implements note.Signer.
func (s *Ed25519Signer) Name() string { return s.name }

// KeyHash implements note.Signer.
func (s *Ed25519Signer) KeyHash() uint32 { return s.hash }

// Sign implements note.Signer.
func (s *Ed25519Signer) Sign(msg []byte) ([]byte, error) {
	return s.key.Sign(rand.Reader, msg, crypto.Hash(0))
}

// VerifierKey is the C2SP vkey auditors give `civstack log verify --key`.
func (s *Ed25519Signer) VerifierKey() string {
	vkey, err := note.NewEd25519VerifierKey(s.name, s.key.Public().(ed25519.PublicKey))
	if err != nil {
		return ""
	}
	return vkey
}

// Latest returns the newest signed checkpoint note and what it says;
// ErrNotFound before the first integration.
func (l *Log) Latest(ctx context.Context) ([]byte, Checkpoint, error) {
	signed, c, err := latest(ctx, l.db)
	c.Origin = l.origin
	return signed, c, err
}

// latest reads the newest stored checkpoint: its signed note, size and
// root (not its origin); ErrNotFound when there is none.
func latest(ctx context.Context, db *store.DB) ([]byte, Checkpoint, error) {
	var signed, root []byte
	var c Checkpoint
	err := db.Reader().QueryRowContext(ctx, "SELECT note, size, root FROM tlog_checkpoints ORDER BY size DESC LIMIT 1").Scan(&signed, &c.Size, &root)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, Checkpoint{}, ErrNotFound
	}
	if err != nil {
		return nil, Checkpoint{}, fmt.Errorf("latest checkpoint: %w", err)
	}
	copy(c.Root[:], root)
	return signed, c, nil
}

// ErrOtherKey means the log's newest checkpoint is signed by none of the
// keys a node holds: its keys are not those of the node that signed the
// log, and what it signed would not verify under the log's published key.
var ErrOtherKey = errors.New("the log is signed by another key")

// CheckSigners checks that the newest checkpoint in db, if there is one,
// is signed by one of keys (Ed25519 keys, under the origin the checkpoint
// names). It returns that checkpoint's size, and ErrOtherKey when none of
// keys signed it.
func CheckSigners(ctx context.Context, db *store.DB, keys []crypto.Signer) (int64, error) {
	signed, cp, err := latest(ctx, db)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	size := cp.Size
	origin, _, _ := strings.Cut(string(signed), "\n")
	var vs []note.Verifier
	for _, k := range keys {
		s, err := NewEd25519Signer(origin, k)
		if err != nil {
			return size, fmt.Errorf("latest checkpoint: %w", err)
		}
		v, err := note.NewVerifier(s.VerifierKey())
		if err != nil {
			return size, fmt.Errorf("log key: %w", err)
		}
		vs = append(vs, v)
	}
	if _, err := note.Open(signed, note.VerifierList(vs...)); err != nil {
		var unknown *note.UnverifiedNoteError
		if errors.As(err, &unknown) {
			return size, ErrOtherKey
		}
		return size, fmt.Errorf("latest checkpoint: %w", err)
	}
	return size, nil
}
