package payment

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/civstack/civstack/internal/store"
)

// Customer-presented payment codes: 18 digits that a wallet device derives
// from its own secret and the time, which a merchant scans (QR or Code 128)
// or types in.
//
//	88 HHHHHHHH S OOOOOOO
//	   │        │ └ 7-digit one-time value: HMAC-SHA256(secret, "civstack-pay-code" ‖ handle ‖ step), truncated as in RFC 4226
//	   │        └ the 10-second step's last digit
//	   └ the device's handle: random, replaced when the wallet re-provisions (daily), never the wallet's id
//
// A code is valid for CodeValidity after the start of its step (plus one
// step of clock skew) and can be used once: its transfer id is derived from
// it, so the ledger refuses a second charge.

// CodePrefix is the scheme prefix of civstack payment codes.
const CodePrefix = "88"

// CodeLen is the number of digits in a payment code.
const CodeLen = 18

const (
	codeStep = 10 * time.Second
	// CodeValidity is how long a payment code can be charged.
	CodeValidity = 60 * time.Second
	codeSteps    = int64(CodeValidity / codeStep)
)

func codeStepAt(t time.Time) int64 { return t.Unix() / int64(codeStep/time.Second) }

// otp is the 7-digit one-time value for a handle and step.
func otp(secret []byte, handle string, step int64) uint32 {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("civstack-pay-code"))
	m.Write([]byte(handle))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(step))
	m.Write(b[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return v % 10_000_000
}

// GenerateCode is what a wallet device shows at time t. (The wallet page does
// the same in JavaScript with WebCrypto; this one serves tests and
// benchmarks.)
func GenerateCode(handle string, secret []byte, t time.Time) string {
	step := codeStepAt(t)
	return fmt.Sprintf("%s%s%d%07d", CodePrefix, handle, step%10, otp(secret, handle, step))
}

// parsedCode is a code's parts.
type parsedCode struct {
	handle string
	digit  int64
	otp    uint32
}

func parseCode(code string) (parsedCode, error) {
	for _, c := range code {
		if c < '0' || c > '9' {
			return parsedCode{}, refusal("bad_code", "A payment code has digits only.")
		}
	}
	if len(code) != CodeLen {
		return parsedCode{}, refusal("bad_code", fmt.Sprintf("A payment code has %d digits; this one has %d.", CodeLen, len(code)))
	}
	if code[:2] != CodePrefix {
		return parsedCode{}, refusal("bad_code", "This is not a civstack payment code (they start with "+CodePrefix+").")
	}
	var p parsedCode
	p.handle = code[2:10]
	p.digit = int64(code[10] - '0')
	var v uint32
	for _, c := range code[11:] {
		v = v*10 + uint32(c-'0')
	}
	p.otp = v
	return p, nil
}

// matchStep finds the step within the validity window whose one-time value
// the code carries; ok is false for a wrong, tampered or expired code.
func matchStep(p parsedCode, secret []byte, now time.Time) (step int64, ok bool) {
	cur := codeStepAt(now)
	for s := cur + 1; s > cur-codeSteps; s-- { // one step of skew ahead, 60 s back
		if ((s%10)+10)%10 != p.digit {
			continue
		}
		if hmac.Equal(u32(otp(secret, p.handle, s)), u32(p.otp)) {
			return s, true
		}
	}
	return 0, false
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// A code has 10^7 values for its step: one guess in ten million is right.
// Whoever knows a device's handle (it is in every code the device shows,
// so every shop it paid knows it for the device's life) could try codes
// until one is. So the wrong codes tried against a device are counted, per
// shop and over all shops: after codeMissLimit from one shop in
// codeMissWindow, that shop may charge none of the device's codes, even a
// right one, until the window has passed; after codeMissLimitAll from all
// shops, no shop may. A guesser then gets about codeMissLimit tries per
// window (RFC 4226 §7.3's throttling), a few colluding shops together
// codeMissLimitAll; the customer, who may have been mistyped a few times,
// pays as before; and a shop that tries wrong codes on purpose stops the
// customer's codes at its own till, not at every other (a shop's wrong
// codes past its own limit do not count towards the device's).
const (
	codeMissLimit    = 5
	codeMissLimitAll = 4 * codeMissLimit
	codeMissWindow   = 10 * time.Minute
)

// lockCodes takes the device's stripe of codeMu and returns its unlock.
// Without it, guesses sent at once would all be checked before the first
// of them was counted: a burst would get as many tries as the node can
// check while one count is written. With it, one node checks a device's
// codes one at a time, each against the counts of all before it.
func (s *Service) lockCodes(deviceID string) func() {
	h := fnv.New32a()
	h.Write([]byte(deviceID))
	mu := &s.codeMu[h.Sum32()%uint32(len(s.codeMu))]
	mu.Lock()
	return mu.Unlock
}

// codeMissed counts a wrong code that shop orgID tried against the device:
// for the shop, and for the device while the shop is within its limit (a
// window past its time starts again at one). Counts whose window has
// passed are deleted.
func (s *Service) codeMissed(ctx context.Context, deviceID, orgID string) error {
	now := s.now()
	cutoff := now.Add(-codeMissWindow).UnixMilli()
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM payment_code_misses WHERE since <= $1", cutoff); err != nil {
			return err
		}
		var shop int64
		if err := tx.QueryRowContext(ctx, `INSERT INTO payment_code_misses (device_id, org_id, misses, since) VALUES ($1, $2, 1, $3)
			ON CONFLICT (device_id, org_id) DO UPDATE SET misses = payment_code_misses.misses + 1
			RETURNING misses`, deviceID, orgID, now.UnixMilli()).Scan(&shop); err != nil {
			return err
		}
		if shop > codeMissLimit {
			return nil
		}
		_, err := tx.ExecContext(ctx, `UPDATE payment_devices SET
			misses = CASE WHEN misses_since <= $1 THEN 1 ELSE misses + 1 END,
			misses_since = CASE WHEN misses_since <= $1 THEN $2 ELSE misses_since END
			WHERE id = $3`, cutoff, now.UnixMilli(), deviceID)
		return err
	})
	if err != nil {
		return fmt.Errorf("count a wrong code: %w", err)
	}
	return nil
}

// codeGuessed refuses a right code of a device against which too many
// wrong ones were tried lately, by shop orgID or by all shops
// (code_locked): it may be a lucky guess.
func (s *Service) codeGuessed(ctx context.Context, deviceID, orgID string) error {
	var all, allSince, shop, shopSince int64
	err := s.db.QueryRowRead(ctx, `SELECT d.misses, d.misses_since, COALESCE(m.misses, 0), COALESCE(m.since, 0)
		FROM payment_devices d LEFT JOIN payment_code_misses m ON m.device_id = d.id AND m.org_id = $2
		WHERE d.id = $1`, deviceID, orgID).Scan(&all, &allSince, &shop, &shopSince)
	if err != nil {
		return fmt.Errorf("wrong codes tried: %w", err)
	}
	cutoff := s.now().Add(-codeMissWindow).UnixMilli()
	minutes := int(codeMissWindow.Minutes())
	switch {
	case shop >= codeMissLimit && shopSince > cutoff:
		return refusal("code_locked", fmt.Sprintf("Too many wrong codes for this customer's wallet were tried at this shop in the last %d minutes, so this shop cannot charge its codes for now: "+
			"ask the customer to scan the shop's QR code and confirm in the wallet instead.", minutes))
	case all >= codeMissLimitAll && allSince > cutoff:
		return refusal("code_locked", fmt.Sprintf("Too many wrong codes were tried for this customer's wallet in the last %d minutes, so its codes are refused for now: "+
			"ask the customer to scan the shop's QR code and confirm in the wallet instead.", minutes))
	}
	return nil
}
