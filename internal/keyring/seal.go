package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
)

// Sealer encrypts secrets at rest (payment device secrets, merchants' and
// credential issuers' private keys, wallet holder keys) with AES-256-GCM
// under one of the ring's secrets. The purpose string is bound as
// additional data, so a blob sealed for one row cannot be swapped into
// another.
type Sealer struct {
	aead cipher.AEAD
	rand io.Reader
	name string
}

// NewSealer returns a Sealer for a 32-byte key; name (the secret's name)
// appears in the error when a blob does not open.
func NewSealer(key []byte, name string, rand io.Reader) (*Sealer, error) {
	if len(key) != SecretLen {
		return nil, fmt.Errorf("keyring: the sealing key %q is %d bytes, want %d", name, len(key), SecretLen)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead, rand: rand, name: name}, nil
}

// Seal encrypts plain for purpose.
func (s *Sealer) Seal(plain []byte, purpose string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return s.aead.Seal(nonce, nonce, plain, []byte(purpose)), nil
}

// ErrUnseal is a blob that does not open with this key for this purpose.
var ErrUnseal = errors.New("a sealed secret does not open with this node's key")

// Open decrypts a blob sealed for purpose.
func (s *Sealer) Open(blob []byte, purpose string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(blob) < n {
		return nil, s.unsealErr()
	}
	out, err := s.aead.Open(nil, blob[:n], blob[n:], []byte(purpose))
	if err != nil {
		return nil, s.unsealErr()
	}
	return out, nil
}

func (s *Sealer) unsealErr() error {
	return fmt.Errorf("%w (was DATA/keys/%s.secret replaced?)", ErrUnseal, s.name)
}
