// Package statuslist implements the Token Status List (IETF draft
// draft-ietf-oauth-status-list): a compressed bit array in which each
// issued credential has a random index, served as a signed JWT
// (typ statuslist+jwt) that verifiers cache, so that no verifier ever asks
// the issuer about a single credential.
package statuslist

import (
	"bytes"
	"compress/zlib"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Status values.
const (
	Valid     byte = 0x00
	Invalid   byte = 0x01
	Suspended byte = 0x02
)

// Errors.
var (
	ErrFormat     = errors.New("status list: malformed")
	ErrOutOfRange = errors.New("status list: index out of range")
	ErrSignature  = errors.New("status list: signature does not verify")
	ErrExpired    = errors.New("status list: expired")
	ErrSubject    = errors.New("status list: sub does not match the credential's status uri")
)

// MaxEntries bounds a decoded list (a bomb guard): 2^24 entries.
const MaxEntries = 1 << 24

// List is a status list of Size entries of Bits bits each.
type List struct {
	Bits int
	data []byte
}

// New returns a list of size entries, all VALID. bits is 1, 2, 4 or 8.
func New(bits, size int) (*List, error) {
	if bits != 1 && bits != 2 && bits != 4 && bits != 8 {
		return nil, fmt.Errorf("%w: bits %d is not 1, 2, 4 or 8", ErrFormat, bits)
	}
	if size < 1 || size > MaxEntries {
		return nil, fmt.Errorf("%w: size %d", ErrFormat, size)
	}
	return &List{Bits: bits, data: make([]byte, (size*bits+7)/8)}, nil
}

// Size is the number of entries.
func (l *List) Size() int { return len(l.data) * 8 / l.Bits }

// Get returns entry i's status.
func (l *List) Get(i int) (byte, error) {
	if i < 0 || i >= l.Size() {
		return 0, fmt.Errorf("%w: %d of %d", ErrOutOfRange, i, l.Size())
	}
	bit := i * l.Bits
	return (l.data[bit/8] >> (bit % 8)) & byte(1<<l.Bits-1), nil
}

// Set sets entry i to v.
func (l *List) Set(i int, v byte) error {
	if i < 0 || i >= l.Size() {
		return fmt.Errorf("%w: %d of %d", ErrOutOfRange, i, l.Size())
	}
	mask := byte(1<<l.Bits - 1)
	if v > mask {
		return fmt.Errorf("%w: status %d needs more than %d bits", ErrFormat, v, l.Bits)
	}
	bit := i * l.Bits
	l.data[bit/8] = l.data[bit/8]&^(mask<<(bit%8)) | v<<(bit%8)
	return nil
}

// Encode is the "lst" value: base64url(zlib(bytes)).
func (l *List) Encode() string {
	var buf bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	zw.Write(l.data)
	zw.Close()
	return base64.RawURLEncoding.EncodeToString(buf.Bytes())
}

// Decode reads an "lst" value of the given bits.
func Decode(bits int, lst string) (*List, error) {
	if bits != 1 && bits != 2 && bits != 4 && bits != 8 {
		return nil, fmt.Errorf("%w: bits %d is not 1, 2, 4 or 8", ErrFormat, bits)
	}
	raw, err := base64.RawURLEncoding.DecodeString(lst)
	if err != nil {
		return nil, fmt.Errorf("%w: lst is not base64url", ErrFormat)
	}
	zr, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: lst is not zlib", ErrFormat)
	}
	limit := int64(MaxEntries * bits / 8)
	data, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if int64(len(data)) > limit || len(data) == 0 {
		return nil, fmt.Errorf("%w: list of %d bytes", ErrFormat, len(data))
	}
	return &List{Bits: bits, data: data}, nil
}

type claims struct {
	Sub        string `json:"sub"`
	IAT        int64  `json:"iat"`
	EXP        int64  `json:"exp,omitempty"`
	TTL        int64  `json:"ttl,omitempty"`
	StatusList struct {
		Bits int    `json:"bits"`
		Lst  string `json:"lst"`
	} `json:"status_list"`
}

// Sign returns the Status List Token for the list published at uri.
func Sign(l *List, uri string, key crypto.Signer, alg jose.SignatureAlgorithm, kid string, now time.Time, ttl time.Duration) (string, error) {
	c := claims{Sub: uri, IAT: now.Unix(), EXP: now.Add(2 * ttl).Unix(), TTL: int64(ttl / time.Second)}
	c.StatusList.Bits, c.StatusList.Lst = l.Bits, l.Encode()
	return sign(c, key, alg, kid)
}

func sign(c claims, key crypto.Signer, alg jose.SignatureAlgorithm, kid string) (string, error) {
	payload, _ := json.Marshal(c)
	opts := (&jose.SignerOptions{}).WithType("statuslist+jwt")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return "", fmt.Errorf("status list: %w", err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("status list: %w", err)
	}
	return jws.CompactSerialize()
}

// Token is a verified Status List Token.
type Token struct {
	URI     string
	Issued  time.Time
	Expires time.Time // zero when the token has no exp
	TTL     time.Duration
	List    *List
}

// Parse verifies a Status List Token with the issuer's key and checks
// that it is the list at uri and not expired at now.
func Parse(token, uri string, key any, now time.Time) (*Token, error) {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.RS256, jose.PS256})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if typ, _ := jws.Signatures[0].Header.ExtraHeaders[jose.HeaderType].(string); typ != "statuslist+jwt" {
		return nil, fmt.Errorf("%w: typ %q is not statuslist+jwt", ErrFormat, typ)
	}
	raw, err := jws.Verify(key)
	if err != nil {
		return nil, ErrSignature
	}
	var c claims
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if c.Sub != uri {
		return nil, fmt.Errorf("%w (%q)", ErrSubject, c.Sub)
	}
	if c.TTL < 0 {
		return nil, fmt.Errorf("%w: ttl %d is negative", ErrFormat, c.TTL)
	}
	// More seconds than a Duration holds is the longest it does, never a
	// product wrapped around to a short or negative time.
	t := &Token{URI: c.Sub, Issued: time.Unix(c.IAT, 0), TTL: time.Duration(min(c.TTL, int64(math.MaxInt64/time.Second))) * time.Second}
	if c.EXP != 0 {
		t.Expires = time.Unix(c.EXP, 0)
		if !now.Before(t.Expires) {
			return nil, fmt.Errorf("%w at %s", ErrExpired, t.Expires.UTC().Format(time.RFC3339))
		}
	}
	if t.List, err = Decode(c.StatusList.Bits, c.StatusList.Lst); err != nil {
		return nil, err
	}
	return t, nil
}
