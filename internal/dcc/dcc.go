// Package dcc reads, verifies and writes EU Digital COVID Certificates
// (HCERT): the "HC1:" prefix, base45 (RFC 9285), zlib, COSE_Sign1 (ES256
// and PS256), CWT claims and the DCC 1.3 payload. Each step is its own
// function with its own error, because verifiers report each check
// separately (see Check); Verify runs them all and records every result.
//
// Decoding never trusts content before the signature is checked: callers
// that need a verdict use Verify, which only reports the payload's fields
// after the signature check has passed.
package dcc

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Prefix is the context identifier of HCERT version 1.
const Prefix = "HC1:"

// MaxInflated bounds decompression: a DCC is a few hundred bytes, so
// anything that inflates past this is refused rather than read (no zip
// bombs).
const MaxInflated = 64 << 10

// MaxPayload bounds the text Verify reads: more than the largest QR code
// holds (4,296 alphanumeric characters) is not a pass.
const MaxPayload = 8 << 10

// Unprefix strips "HC1:" and refuses anything else (other versions such as
// "HC2:", the Swiss "LT1:", or no prefix at all).
func Unprefix(s string) (string, error) {
	if len(s) > MaxPayload {
		return "", fmt.Errorf("%d characters, more than a QR code holds", len(s))
	}
	if strings.HasPrefix(s, Prefix) {
		return s[len(Prefix):], nil
	}
	if len(s) >= 4 && s[0] == 'H' && s[1] == 'C' && s[3] == ':' {
		return "", fmt.Errorf("prefix %q: HCERT version %c is not supported (want %s)", s[:4], s[2], Prefix)
	}
	if i := strings.IndexByte(s, ':'); i > 0 && i <= 4 {
		return "", fmt.Errorf("prefix %q is not %s", s[:i+1], Prefix)
	}
	return "", fmt.Errorf("no %s prefix", Prefix)
}

// Inflate decompresses zlib data, refusing data that is not zlib and output
// larger than MaxInflated.
func Inflate(b []byte) ([]byte, error) {
	// Readers are pooled: a new one allocates a 32 KiB window, which costs
	// more than inflating a pass.
	var zr io.ReadCloser
	if pooled, ok := inflaters.Get().(io.ReadCloser); ok {
		if err := pooled.(zlib.Resetter).Reset(bytes.NewReader(b), nil); err != nil {
			inflaters.Put(pooled)
			return nil, err // "zlib: invalid header"
		}
		zr = pooled
	} else {
		var err error
		if zr, err = zlib.NewReader(bytes.NewReader(b)); err != nil {
			return nil, err
		}
	}
	defer inflaters.Put(zr)
	out, err := io.ReadAll(io.LimitReader(zr, MaxInflated+1))
	if err != nil {
		return nil, fmt.Errorf("zlib: %w", err)
	}
	if len(out) > MaxInflated {
		return nil, fmt.Errorf("zlib: inflates past %d bytes", MaxInflated)
	}
	return out, nil
}

var inflaters sync.Pool

// Deflate compresses b with zlib at the best level.
func Deflate(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// COSE algorithm identifiers DCCs use.
const (
	AlgES256 int64 = -7
	AlgPS256 int64 = -37
)

// Sign1 is a parsed COSE_Sign1 structure.
type Sign1 struct {
	Protected []byte // the protected header bytes exactly as received
	Alg       int64  // from the protected header, else the unprotected one; 0 when absent
	KID       []byte // likewise
	Payload   []byte
	Signature []byte
}

var decMode, _ = cbor.DecOptions{
	MaxNestedLevels:  16,
	MaxArrayElements: 4096,
	MaxMapPairs:      4096,
	DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	IndefLength:      cbor.IndefLengthAllowed,
	DefaultMapType:   reflect.TypeOf(map[any]any(nil)),
}.DecMode()

// ParseSign1 reads a COSE_Sign1: tag 18, tag 61 wrapping tag 18, or
// untagged.
func ParseSign1(b []byte) (*Sign1, error) {
	raw := cbor.RawMessage(b)
	for range 3 {
		if len(raw) == 0 || raw[0]>>5 != 6 {
			break
		}
		var tag cbor.RawTag
		if err := decMode.Unmarshal(raw, &tag); err != nil {
			return nil, fmt.Errorf("cose: %w", err)
		}
		if tag.Number != 18 && tag.Number != 61 {
			return nil, fmt.Errorf("cose: tag %d is not COSE_Sign1 (18) or CWT (61)", tag.Number)
		}
		raw = tag.Content
	}
	var parts []cbor.RawMessage
	if err := decMode.Unmarshal(raw, &parts); err != nil {
		return nil, fmt.Errorf("cose: not a COSE_Sign1 array: %w", err)
	}
	if len(parts) != 4 {
		return nil, fmt.Errorf("cose: COSE_Sign1 has %d elements, want 4", len(parts))
	}
	s := &Sign1{}
	if err := decMode.Unmarshal(parts[0], &s.Protected); err != nil {
		return nil, fmt.Errorf("cose: protected header is not a byte string: %w", err)
	}
	var prot, unprot map[any]any
	if len(s.Protected) > 0 {
		if err := decMode.Unmarshal(s.Protected, &prot); err != nil {
			return nil, fmt.Errorf("cose: protected header is not a map: %w", err)
		}
	}
	if err := decMode.Unmarshal(parts[1], &unprot); err != nil {
		return nil, fmt.Errorf("cose: unprotected header is not a map: %w", err)
	}
	if err := decMode.Unmarshal(parts[2], &s.Payload); err != nil || s.Payload == nil {
		return nil, fmt.Errorf("cose: payload is not a byte string")
	}
	if err := decMode.Unmarshal(parts[3], &s.Signature); err != nil {
		return nil, fmt.Errorf("cose: signature is not a byte string: %w", err)
	}
	var err error
	if s.Alg, err = headerAlg(prot, unprot); err != nil {
		return nil, err
	}
	if k, ok := header(prot, 4); ok {
		s.KID = asBytes(k)
	} else if k, ok := header(unprot, 4); ok {
		s.KID = asBytes(k)
	}
	return s, nil
}

func header(m map[any]any, label int64) (any, bool) {
	for k, v := range m {
		if n, ok := asInt(k); ok && n == label {
			return v, true
		}
	}
	return nil, false
}

func headerAlg(prot, unprot map[any]any) (int64, error) {
	v, ok := header(prot, 1)
	if !ok {
		if v, ok = header(unprot, 1); !ok {
			return 0, nil
		}
	}
	n, ok := asInt(v)
	if !ok {
		return 0, fmt.Errorf("cose: alg %v is not an integer", v)
	}
	return n, nil
}

func asBytes(v any) []byte {
	b, _ := v.([]byte)
	return b
}

func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case uint64:
		if n <= math.MaxInt64 {
			return int64(n), true
		}
	}
	return 0, false
}

// ToBeSigned is the Sig_structure the signature covers: ["Signature1",
// protected bytes as received, empty external AAD, payload].
func (s *Sign1) ToBeSigned() []byte {
	b, _ := cbor.Marshal([]any{"Signature1", s.Protected, []byte{}, s.Payload})
	return b
}

// Claims are the CWT claims of an HCERT.
type Claims struct {
	Issuer   string    // claim 1, optional
	IssuedAt time.Time // claim 6
	Expires  time.Time // claim 4
	// HCert is the raw CBOR of the eu_dcc_v1 object (claim -260 → 1), or
	// of civstack's health code (claim -260 → -1, see HealthCodeKey).
	HCert cbor.RawMessage
	// HealthCode reports that HCert is a civstack health code.
	HealthCode bool
}

// HealthCodeKey is the key, in the hcert claim, of civstack's health code:
// a private-use (negative) key beside eu_dcc_v1, so the pass travels in
// the same HC1 container and standard decoders skip it cleanly.
const HealthCodeKey = -1

// ParseClaims reads the CWT payload of a Sign1.
func ParseClaims(payload []byte) (*Claims, error) {
	var m map[any]cbor.RawMessage
	if err := decMode.Unmarshal(payload, &m); err != nil {
		return nil, fmt.Errorf("cwt: payload is not a claims map: %w", err)
	}
	c := &Claims{}
	get := func(label int64) (cbor.RawMessage, bool) {
		for k, v := range m {
			if n, ok := asInt(k); ok && n == label {
				return v, true
			}
		}
		return nil, false
	}
	if v, ok := get(1); ok {
		if err := decMode.Unmarshal(v, &c.Issuer); err != nil {
			return nil, fmt.Errorf("cwt: issuer is not text: %w", err)
		}
	}
	for _, t := range []struct {
		label int64
		name  string
		dst   *time.Time
	}{{6, "issued at", &c.IssuedAt}, {4, "expiry", &c.Expires}} {
		v, ok := get(t.label)
		if !ok {
			return nil, fmt.Errorf("cwt: no %s claim", t.name)
		}
		var f float64
		if err := decMode.Unmarshal(v, &f); err != nil {
			return nil, fmt.Errorf("cwt: %s is not a NumericDate: %w", t.name, err)
		}
		sec, frac := math.Modf(f)
		*t.dst = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	}
	hc, ok := get(-260)
	if !ok {
		return nil, errors.New("cwt: no health certificate claim (-260)")
	}
	var inner map[any]cbor.RawMessage
	if err := decMode.Unmarshal(hc, &inner); err != nil {
		return nil, fmt.Errorf("cwt: health certificate claim is not a map: %w", err)
	}
	for k, v := range inner {
		if n, ok := asInt(k); ok && n == 1 {
			c.HCert, c.HealthCode = v, false
			break
		} else if ok && n == HealthCodeKey {
			c.HCert, c.HealthCode = v, true
		}
	}
	if c.HCert == nil {
		return nil, errors.New("cwt: health certificate claim has no eu_dcc_v1 (1)")
	}
	return c, nil
}
