package dcc

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/veraison/go-cose"
)

// Check names one step of verification, in the order Verify runs them.
type Check string

// The checks, in order. Decoding stops at CheckCBOR with DecodeOnly.
const (
	CheckPrefix      Check = "prefix"
	CheckBase45      Check = "base45"
	CheckCompression Check = "zlib"
	CheckCOSE        Check = "cose"
	CheckCBOR        Check = "cbor"
	CheckSignature   Check = "signature"
	CheckKeyUsage    Check = "key usage"
	CheckExpiry      Check = "expiry"
	CheckSchema      Check = "schema"
	CheckRules       Check = "rules"
)

// Checks lists every check in order.
var Checks = []Check{CheckPrefix, CheckBase45, CheckCompression, CheckCOSE, CheckCBOR,
	CheckSignature, CheckKeyUsage, CheckExpiry, CheckSchema, CheckRules}

// Status of one check.
type Status string

// Statuses: a check that could not run because an earlier one failed is
// StatusNotRun.
const (
	StatusPass   Status = "pass"
	StatusFail   Status = "fail"
	StatusNotRun Status = "not run"
)

// Result is one check's outcome.
type Result struct {
	Check  Check  `json:"check"`
	Status Status `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// OIDs of the DSC extended key usages that restrict certificate types.
var (
	oidTest        = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 1847, 2021, 1, 1}
	oidVaccination = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 1847, 2021, 1, 2}
	oidRecovery    = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 1847, 2021, 1, 3}
)

// Signer is a trusted document signing certificate.
type Signer struct {
	KID      []byte
	Cert     *x509.Certificate
	verifier cose.Verifier // for the algorithm the key implies
	alg      int64
}

// KID is the HCERT key identifier of a DSC: the first 8 bytes of SHA-256
// over its DER.
func KID(der []byte) []byte {
	h := sha256.Sum256(der)
	return h[:8]
}

// NewSigner prepares a DSC for verification. Keys must be P-256 (ES256) or
// RSA of at least 2048 bits (PS256).
func NewSigner(cert *x509.Certificate) (*Signer, error) {
	s := &Signer{KID: KID(cert.Raw), Cert: cert}
	var err error
	switch k := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		s.alg = AlgES256
		s.verifier, err = cose.NewVerifier(cose.AlgorithmES256, k)
	case *rsa.PublicKey:
		s.alg = AlgPS256
		s.verifier, err = cose.NewVerifier(cose.AlgorithmPS256, k)
	default:
		err = fmt.Errorf("key type %T is neither ECDSA P-256 nor RSA", cert.PublicKey)
	}
	if err != nil {
		return nil, fmt.Errorf("document signer %s: %w", base64.StdEncoding.EncodeToString(s.KID), err)
	}
	return s, nil
}

// Trust is a set of trusted document signers, looked up by kid (the
// truncated kid may collide, so every match is tried).
type Trust struct {
	byKID map[string][]*Signer
	all   []*Signer
}

// NewTrust builds a trust set from certificates.
func NewTrust(certs ...*x509.Certificate) (*Trust, error) {
	t := &Trust{byKID: map[string][]*Signer{}}
	for _, c := range certs {
		s, err := NewSigner(c)
		if err != nil {
			return nil, err
		}
		t.byKID[string(s.KID)] = append(t.byKID[string(s.KID)], s)
		t.all = append(t.all, s)
	}
	return t, nil
}

// Signers returns every trusted signer.
func (t *Trust) Signers() []*Signer { return t.all }

// VerifySignature checks the Sign1 against the trusted signers with its kid
// and returns the one that signed it.
func (t *Trust) VerifySignature(s *Sign1) (*Signer, error) {
	if len(s.KID) == 0 {
		return nil, errors.New("signature: no kid in either header")
	}
	cands := t.byKID[string(s.KID)]
	if len(cands) == 0 {
		return nil, fmt.Errorf("signature: kid %s is not in the trust list", base64.StdEncoding.EncodeToString(s.KID))
	}
	if s.Alg != AlgES256 && s.Alg != AlgPS256 {
		return nil, fmt.Errorf("signature: algorithm %d is neither ES256 (-7) nor PS256 (-37)", s.Alg)
	}
	tbs := s.ToBeSigned()
	for _, c := range cands {
		if c.alg != s.Alg {
			continue
		}
		if err := c.verifier.Verify(tbs, s.Signature); err == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("signature: does not verify against the document signer %s", base64.StdEncoding.EncodeToString(s.KID))
}

// CertType is the kind of certificate a payload holds: "v", "t" or "r".
func CertType(doc map[string]any) string {
	for _, g := range []string{"v", "t", "r"} {
		if _, ok := doc[g]; ok {
			return g
		}
	}
	return ""
}

// CheckKeyUsageOf reports whether the DSC may sign certificates of type
// typ ("v", "t", "r"): a DSC without HCERT extended key usages may sign
// any; one with them only the types they name (the malformed
// 1.3.6.1.4.1.0.1847.2021.1.x seen in the field counts too). Type ""
// (a civstack health code) needs a DSC without usage restrictions.
func CheckKeyUsageOf(cert *x509.Certificate, typ string) error {
	if cert == nil {
		return errors.New("key usage: no document signer")
	}
	if typ == "" {
		if len(cert.UnknownExtKeyUsage) > 0 || len(cert.ExtKeyUsage) > 0 {
			return errors.New("key usage: the document signer is restricted to EU certificate types")
		}
		return nil
	}
	want := map[string]asn1.ObjectIdentifier{"t": oidTest, "v": oidVaccination, "r": oidRecovery}[typ]
	if want == nil {
		return errors.New("key usage: the payload has no certificate type")
	}
	malformed := asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 0, 1847, 2021, 1, want[len(want)-1]}
	for _, oid := range cert.UnknownExtKeyUsage {
		if oid.Equal(want) || oid.Equal(malformed) {
			return nil
		}
	}
	restricting := len(cert.UnknownExtKeyUsage) > 0 || len(cert.ExtKeyUsage) > 0
	if restricting {
		return fmt.Errorf("key usage: the document signer may not sign %s certificates", typeName(typ))
	}
	return nil
}

func typeName(t string) string {
	return map[string]string{"v": "vaccination", "t": "test", "r": "recovery"}[t]
}

// CheckValidity checks DSC.notBefore ≤ iat ≤ at ≤ exp ≤ DSC.notAfter.
func CheckValidity(cert *x509.Certificate, c *Claims, at time.Time) error {
	switch {
	case c.IssuedAt.After(at):
		return fmt.Errorf("expiry: issued %s, in the future", c.IssuedAt.Format(time.RFC3339))
	case !at.Before(c.Expires) && !at.Equal(c.Expires):
		return fmt.Errorf("expiry: expired %s", c.Expires.Format(time.RFC3339))
	case cert != nil && c.IssuedAt.Before(cert.NotBefore):
		return fmt.Errorf("expiry: issued %s, before the document signer was valid (%s)", c.IssuedAt.Format(time.RFC3339), cert.NotBefore.Format(time.RFC3339))
	case cert != nil && c.Expires.After(cert.NotAfter):
		return fmt.Errorf("expiry: valid until %s, after the document signer expires (%s)", c.Expires.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
	}
	return nil
}
