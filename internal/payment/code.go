package payment

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
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
