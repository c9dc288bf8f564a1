package payment

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
)

// sealer encrypts secrets at rest (device secrets, merchants' private keys)
// with AES-256-GCM; the additional data names what a blob is for, so one
// cannot be swapped for another.
type sealer struct {
	aead cipher.AEAD
	rand io.Reader
}

func newSealer(key []byte, rand io.Reader) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("payment: the sealing key is %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead, rand: rand}, nil
}

func (s *sealer) seal(plain []byte, purpose string) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return s.aead.Seal(nonce, nonce, plain, []byte(purpose)), nil
}

var errUnseal = errors.New("a sealed secret does not open with this node's payment key (was DATA/keys/payment.secret replaced?)")

func (s *sealer) open(blob []byte, purpose string) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(blob) < n {
		return nil, errUnseal
	}
	out, err := s.aead.Open(nil, blob[:n], blob[n:], []byte(purpose))
	if err != nil {
		return nil, errUnseal
	}
	return out, nil
}
