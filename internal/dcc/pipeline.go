package dcc

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Options configure Verify.
type Options struct {
	Trust *Trust    // document signers; required unless DecodeOnly
	At    time.Time // the validation clock
	// DecodeOnly stops after prefix, base45, zlib, COSE and CBOR decoding.
	DecodeOnly bool
	// Rules, when set, runs after the schema check on the payload; its
	// error is the rules check's failure.
	Rules func(doc map[string]any, c *Claims, signer *Signer) error
}

// Report is everything Verify found. Fields past the failing check are
// zero; Doc and Claims are set once decoded, but only Valid reports mean
// the content can be trusted.
type Report struct {
	Results []Result       `json:"checks"`
	Sign1   *Sign1         `json:"-"`
	Claims  *Claims        `json:"-"`
	Doc     map[string]any `json:"-"`
	Signer  *Signer        `json:"-"`
}

// Valid reports whether every check that ran passed and none was left out
// (apart from those DecodeOnly leaves out).
func (r *Report) Valid() bool {
	for _, res := range r.Results {
		if res.Status != StatusPass {
			return false
		}
	}
	return len(r.Results) > 0
}

// Failed returns the first failed result, or nil.
func (r *Report) Failed() *Result {
	for i := range r.Results {
		if r.Results[i].Status == StatusFail {
			return &r.Results[i]
		}
	}
	return nil
}

// Verify runs every check on an HC1 payload in order, recording each
// result; once one fails the rest are reported as not run.
func Verify(payload string, o Options) *Report {
	r := &Report{}
	failed := false
	step := func(c Check, f func() error) {
		if failed {
			r.Results = append(r.Results, Result{Check: c, Status: StatusNotRun})
			return
		}
		if err := f(); err != nil {
			failed = true
			r.Results = append(r.Results, Result{Check: c, Status: StatusFail, Detail: err.Error()})
			return
		}
		r.Results = append(r.Results, Result{Check: c, Status: StatusPass})
	}
	var b45 string
	var compressed, coseBytes []byte
	step(CheckPrefix, func() (err error) { b45, err = Unprefix(payload); return })
	step(CheckBase45, func() (err error) { compressed, err = Base45Decode(b45); return })
	step(CheckCompression, func() (err error) { coseBytes, err = Inflate(compressed); return })
	step(CheckCOSE, func() (err error) { r.Sign1, err = ParseSign1(coseBytes); return })
	step(CheckCBOR, func() (err error) {
		if r.Claims, err = ParseClaims(r.Sign1.Payload); err != nil {
			return err
		}
		r.Doc, err = DecodeHCert(r.Claims.HCert)
		return err
	})
	if o.DecodeOnly {
		return r
	}
	step(CheckSignature, func() (err error) {
		if o.Trust == nil {
			return fmt.Errorf("signature: no trust list")
		}
		r.Signer, err = o.Trust.VerifySignature(r.Sign1)
		return
	})
	var cert *x509.Certificate
	if r.Signer != nil {
		cert = r.Signer.Cert
	}
	step(CheckKeyUsage, func() error {
		if r.Claims.HealthCode {
			return CheckKeyUsageOf(cert, "")
		}
		return CheckKeyUsageOf(cert, CertType(r.Doc))
	})
	step(CheckExpiry, func() error { return CheckValidity(cert, r.Claims, o.At) })
	step(CheckSchema, func() error {
		if r.Claims.HealthCode {
			return ValidateHealthCode(r.Doc)
		}
		return ValidateSchema(r.Doc)
	})
	step(CheckRules, func() error {
		if o.Rules == nil {
			return nil
		}
		return o.Rules(r.Doc, r.Claims, r.Signer)
	})
	return r
}

// DecodeHCert turns the eu_dcc_v1 CBOR into JSON values (maps with string
// keys, []any, string, float64, bool, nil), as the schema and rules see
// them.
func DecodeHCert(raw cbor.RawMessage) (map[string]any, error) {
	var v any
	if err := decMode.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("cbor: health certificate: %w", err)
	}
	j, err := toJSON(v, 0)
	if err != nil {
		return nil, fmt.Errorf("cbor: health certificate: %w", err)
	}
	m, ok := j.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("cbor: health certificate is not a map")
	}
	return m, nil
}

func toJSON(v any, depth int) (any, error) {
	if depth > 16 {
		return nil, fmt.Errorf("nested too deeply")
	}
	switch x := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("map key %v is not text", k)
			}
			j, err := toJSON(e, depth+1)
			if err != nil {
				return nil, err
			}
			m[ks] = j
		}
		return m, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			j, err := toJSON(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = j
		}
		return out, nil
	case string, bool, nil, float64:
		return x, nil
	case float32:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano), nil
	case cbor.Tag:
		return toJSON(x.Content, depth+1)
	case []byte:
		return nil, fmt.Errorf("a byte string where JSON has none")
	default:
		return nil, fmt.Errorf("unsupported CBOR value %T", v)
	}
}

// EncodeHCert turns a DCC payload (any JSON-marshalable value) into the
// CBOR of the eu_dcc_v1 object.
func EncodeHCert(doc any) ([]byte, error) {
	j, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("dcc: %w", err)
	}
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		return nil, fmt.Errorf("dcc: %w", err)
	}
	return encMode.Marshal(intsAsInts(v))
}

var encMode, _ = cbor.CoreDetEncOptions().EncMode()

// intsAsInts keeps integral JSON numbers integers in CBOR (dose numbers).
func intsAsInts(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = intsAsInts(e)
		}
	case []any:
		for i, e := range x {
			x[i] = intsAsInts(e)
		}
	case float64:
		if x == float64(int64(x)) {
			return int64(x)
		}
	}
	return v
}
