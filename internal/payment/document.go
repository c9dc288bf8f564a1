package payment

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"unicode/utf8"

	"github.com/civstack/civstack/internal/text"
)

// Document is what a merchant signs: a receipt for every payment or refund,
// an e-invoice a business customer asked for, or an invoice's cancellation.
// Its JSON encoding (Go's, fields in this order, no HTML escaping) is the
// signed payload; a document is never changed after signing: corrections
// are new documents.
type Document struct {
	Type     string   `json:"type"` // receipt, invoice, cancellation
	ID       string   `json:"id"`
	Number   string   `json:"number,omitempty"` // invoices: the merchant's sequential number
	Payment  string   `json:"payment"`
	RefundOf string   `json:"refund_of,omitempty"`
	Cancels  string   `json:"cancels,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	IssuedAt string   `json:"issued_at"` // RFC 3339, UTC
	Merchant Merchant `json:"merchant"`
	Buyer    *Buyer   `json:"buyer,omitempty"`
	Currency string   `json:"currency"` // ISO 4217 alphabetic
	Method   string   `json:"method,omitempty"`
	Lines    []Line   `json:"lines,omitempty"`
	Net      int64    `json:"net"`
	VAT      int64    `json:"vat"`
	Total    int64    `json:"total"` // minor units; refunds are positive amounts returned
	// CashFlow is a cash-flow report's figures (Type "cashflow"; no lines,
	// totals zero).
	CashFlow *CashFlow `json:"cashflow,omitempty"`
}

// Merchant is the seller as documents name it.
type Merchant struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	TaxID string `json:"tax_id"`
	City  string `json:"city"`
}

// Buyer is a business customer on an e-invoice.
type Buyer struct {
	TaxID string `json:"tax_id"`
	Name  string `json:"name"`
}

// Line is one line item. Prices include VAT (as shops show them); VAT is
// worked out per line: total × rate / (10000 + rate), rounded half up.
type Line struct {
	Description string `json:"description"`
	Quantity    int64  `json:"quantity"`
	UnitPrice   int64  `json:"unit_price"`
	VATRate     int64  `json:"vat_rate"` // basis points: 2200 is 22%
	Net         int64  `json:"net"`
	VAT         int64  `json:"vat"`
	Total       int64  `json:"total"`
}

// Document types.
const (
	TypeReceipt      = "receipt"
	TypeInvoice      = "invoice"
	TypeCancellation = "cancellation"
)

// LineIn is a line item as a merchant sends it.
type LineIn struct {
	Description string `json:"description"`
	Quantity    int64  `json:"quantity"`
	UnitPrice   int64  `json:"unit_price"`
	// VATRate in basis points (2200 is 22%); nil: the merchant's usual rate.
	VATRate *int64 `json:"vat_rate,omitempty"`
}

// Rate is a VAT rate in basis points, for LineIn.VATRate.
func Rate(bp int64) *int64 { return &bp }

// maxUnitPrice bounds a receipt line's unit price, in cents.
const maxUnitPrice = 1_000_000_00

// priceLines computes each line's VAT and the totals; lines must add up to
// amount. No lines means one line for the whole amount at the merchant's
// default rate.
func priceLines(in []LineIn, amount int64, defaultRate int64) ([]Line, int64, int64, error) {
	if len(in) == 0 {
		if amount > maxUnitPrice {
			return nil, 0, 0, invalidf("an amount above %s needs its receipt's lines (each unit at most %s)", Money(maxUnitPrice), Money(maxUnitPrice))
		}
		in = []LineIn{{Description: "Sale", Quantity: 1, UnitPrice: amount}}
	}
	if len(in) > 200 {
		return nil, 0, 0, invalidf("a receipt has at most 200 lines")
	}
	var out []Line
	var sum, vat int64
	for i, l := range in {
		d := strings.TrimSpace(l.Description)
		rate := defaultRate
		if l.VATRate != nil {
			rate = *l.VATRate
		}
		switch {
		case d == "" || utf8.RuneCountInString(d) > 120:
			return nil, 0, 0, invalidf("line %d: a description of 1 to 120 characters is needed", i+1)
		case !text.Line(d):
			return nil, 0, 0, invalidf("line %d: the description is one line of text (no line breaks, control characters or bidirectional overrides)", i+1)
		case l.Quantity < 1 || l.Quantity > 1_000_000:
			return nil, 0, 0, invalidf("line %d: the quantity must be 1 to 1,000,000", i+1)
		case l.UnitPrice < 1 || l.UnitPrice > maxUnitPrice:
			return nil, 0, 0, invalidf("line %d: the unit price is 1 to %d cents (0.01 to %s)", i+1, int64(maxUnitPrice), Money(maxUnitPrice))
		case rate < 0 || rate > 10000:
			return nil, 0, 0, invalidf("line %d: the VAT rate is in basis points, 0 to 10000", i+1)
		}
		total := l.Quantity * l.UnitPrice
		v := (total*rate*2 + (10000 + rate)) / (2 * (10000 + rate))
		out = append(out, Line{Description: d, Quantity: l.Quantity, UnitPrice: l.UnitPrice, VATRate: rate, Net: total - v, VAT: v, Total: total})
		sum += total
		vat += v
	}
	if sum != amount {
		return nil, 0, 0, invalidf("the lines add up to %s but the amount is %s", Money(sum), Money(amount))
	}
	return out, sum - vat, vat, nil
}

// Money formats minor units as 12.34.
func Money(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s%d.%02d", sign, cents/100, cents%100)
}

// ParseMoney reads 12, 12.3 or 12.34 into minor units.
func ParseMoney(s string) (int64, error) {
	s = strings.TrimSpace(strings.ReplaceAll(s, ",", "."))
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(whole) > 9 || len(frac) > 2 || strings.Trim(whole+frac, "0123456789") != "" {
		return 0, invalidf("%q is not an amount such as 12.50", s)
	}
	for len(frac) < 2 {
		frac += "0"
	}
	var n int64
	for _, c := range whole + frac {
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// canonical is a document's signed payload.
func (d *Document) canonical() []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(d) // a Document always encodes
	return bytes.TrimRight(b.Bytes(), "\n")
}

var b64 = base64.RawURLEncoding

// jwsHeader is the protected header of a document's JWS.
type jwsHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

const jwsType = "civstack-document+json"

// sign makes the compact JWS (RFC 7515, ES256) of d.
func sign(d *Document, key *ecdsa.PrivateKey, kid string) (string, error) {
	h, _ := json.Marshal(jwsHeader{Alg: "ES256", Kid: kid, Typ: jwsType})
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(d.canonical())
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		return "", fmt.Errorf("sign document: %w", err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64.EncodeToString(sig), nil
}

// openJWS checks a compact JWS against key and returns its header and
// payload.
func openJWS(jws string, key *ecdsa.PublicKey) (jwsHeader, []byte, error) {
	var h jwsHeader
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return h, nil, errors.New("the JWS does not have three parts")
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &h) != nil {
		return h, nil, errors.New("the JWS header is not base64url JSON")
	}
	if h.Alg != "ES256" {
		return h, nil, fmt.Errorf("the JWS uses %q; documents are signed with ES256", h.Alg)
	}
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return h, nil, errors.New("the JWS payload is not base64url")
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return h, nil, errors.New("the JWS signature is not a 64-byte ES256 signature")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if key == nil || !ecdsa.Verify(key, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return h, payload, errors.New("the signature does not match the merchant's key")
	}
	return h, payload, nil
}

// JWK is a P-256 public key (RFC 7517).
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Kid string `json:"kid"`
}

func jwkOf(pub *ecdsa.PublicKey, kid string) (JWK, error) {
	raw, err := pub.Bytes() // 0x04 ‖ X ‖ Y, 32 bytes each on P-256
	if err != nil || len(raw) != 65 {
		return JWK{}, fmt.Errorf("merchant key %s is not a P-256 public key: %v", kid, err)
	}
	return JWK{Kty: "EC", Crv: "P-256", X: b64.EncodeToString(raw[1:33]), Y: b64.EncodeToString(raw[33:]), Kid: kid}, nil
}

func (j JWK) public() (*ecdsa.PublicKey, error) {
	if j.Kty != "EC" || j.Crv != "P-256" {
		return nil, errors.New("the merchant key is not an EC P-256 JWK")
	}
	x, err1 := b64.DecodeString(j.X)
	y, err2 := b64.DecodeString(j.Y)
	if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
		return nil, errors.New("the merchant key's coordinates are not 32-byte base64url")
	}
	raw := append(append([]byte{4}, x...), y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, errors.New("the merchant key is not a point on P-256")
	}
	return pub, nil
}

// keyID is base64url of the first 8 bytes of SHA-256 over the key's SPKI.
func keyID(pub *ecdsa.PublicKey) (string, []byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(spki)
	return b64.EncodeToString(sum[:8]), spki, nil
}
