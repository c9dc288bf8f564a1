package payment

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/civstack/civstack/internal/store"
)

// Device is a wallet device that shows payment codes. Secret is returned
// once, when the device is provisioned; the node keeps it sealed.
type Device struct {
	ID     string
	Handle string
	Secret []byte
}

// ProvisionDevice gives a person's device a new handle and secret and
// retires the person's older devices (a wallet re-provisions daily, so
// handles do not follow a person for long).
func (s *Service) ProvisionDevice(ctx context.Context, personID string) (*Device, error) {
	if _, err := s.Wallet(ctx, personID); err != nil {
		return nil, err
	}
	d := &Device{ID: randomHex(s, 16), Secret: make([]byte, 32)}
	if _, err := s.rand.Read(d.Secret); err != nil {
		return nil, err
	}
	sealed, err := s.seal.Seal(d.Secret, "device:"+d.ID)
	if err != nil {
		return nil, err
	}
	now := s.now().UnixMilli()
	for attempt := 0; ; attempt++ {
		d.Handle = randomDigits(s, 8)
		err = s.db.Tx(ctx, func(tx *store.Tx) error {
			if _, err := tx.ExecContext(ctx, "UPDATE payment_devices SET revoked_at = $1 WHERE person_id = $2 AND revoked_at = 0", now, personID); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, "INSERT INTO payment_devices (id, person_id, handle, sealed_secret, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, 0)",
				d.ID, personID, d.Handle, sealed, now)
			return err
		})
		if !store.IsConflict(err) || attempt > 5 {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("provision device: %w", err)
	}
	s.forgetDevices(personID)
	return d, nil
}

// device finds the live device behind a handle, from a cache of at most
// profileTTL: a device replaced by another process keeps working for that
// long at most (this process's own replacements take effect at once).
func (s *Service) device(ctx context.Context, handle string) (id, personID string, secret []byte, err error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.devices[handle]
	s.mu.Unlock()
	if ok && now.Sub(c.at) < profileTTL {
		return c.id, c.person, c.secret, nil
	}
	var sealed []byte
	err = s.db.QueryRowRead(ctx, "SELECT id, person_id, sealed_secret FROM payment_devices WHERE handle = $1 AND revoked_at = 0", handle).
		Scan(&id, &personID, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", nil, refusal("unknown_code", "This payment code is not valid: the wallet that made it is unknown or has been replaced.")
	}
	if err != nil {
		return "", "", nil, fmt.Errorf("device: %w", err)
	}
	if secret, err = s.seal.Open(sealed, "device:"+id); err != nil {
		return "", "", nil, err
	}
	s.mu.Lock()
	if len(s.devices) > 100_000 {
		clear(s.devices)
		clear(s.deviceOf)
	}
	s.devices[handle] = cachedDevice{id: id, person: personID, secret: secret, at: now}
	s.deviceOf[personID] = handle
	s.mu.Unlock()
	return id, personID, secret, nil
}

// cachedDevice is a live device as device found it.
type cachedDevice struct {
	id, person string
	secret     []byte
	at         time.Time
}

// forgetDevices drops a person's cached device (it was just replaced).
func (s *Service) forgetDevices(personID string) {
	s.mu.Lock()
	if h, ok := s.deviceOf[personID]; ok {
		delete(s.devices, h)
		delete(s.deviceOf, personID)
	}
	s.mu.Unlock()
}

// ReceiveHandle is the random handle that personID's receive code carries
// in place of her id (a "p" and 20 hex digits), made on first use and the
// same ever after, so that a printed receive code keeps working. The
// first use opens her wallet if it is not open yet; two first uses at once
// get the same handle.
func (s *Service) ReceiveHandle(ctx context.Context, personID string) (string, error) {
	var h string
	err := s.db.Reader().QueryRowContext(ctx, "SELECT handle FROM payment_receive WHERE person_id = $1", personID).Scan(&h)
	if err == nil {
		return h, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("receive handle: %w", err)
	}
	if _, err := s.Wallet(ctx, personID); err != nil {
		return "", err
	}
	h = "p" + randomHex(s, 10)
	err = s.db.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO payment_receive (person_id, handle, created_at) VALUES ($1, $2, $3)", personID, h, s.now().UnixMilli())
		return err
	})
	if store.IsConflict(err) {
		return s.ReceiveHandle(ctx, personID)
	}
	if err != nil {
		return "", fmt.Errorf("make a receive handle: %w", err)
	}
	return h, nil
}

func (s *Service) personByReceiveHandle(ctx context.Context, handle string) (string, error) {
	var p string
	err := s.db.Reader().QueryRowContext(ctx, "SELECT person_id FROM payment_receive WHERE handle = $1", handle).Scan(&p)
	if errors.Is(err, sql.ErrNoRows) {
		return "", refusal("unknown_payee", "This receive code names nobody known to this civstack node.")
	}
	return p, err
}

func randomHex(s *Service, n int) string {
	b := make([]byte, n)
	if _, err := s.rand.Read(b); err != nil {
		_, _ = rand.Read(b)
	}
	return hex.EncodeToString(b)
}

// randomBase32 is n characters (5 random bits each) of lowercase base32.
func randomBase32(s *Service, n int) string {
	b := make([]byte, (n*5+7)/8)
	if _, err := s.rand.Read(b); err != nil {
		_, _ = rand.Read(b)
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))[:n]
}

func randomDigits(s *Service, n int) string {
	max := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
	v, err := rand.Int(s.rand, max)
	if err != nil {
		v, _ = rand.Int(rand.Reader, max)
	}
	return fmt.Sprintf("%0*d", n, v)
}
