package healthpass

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/civstack/civstack/internal/dcc"
)

// TrustList is the operator's published list of document signing
// certificates, signed (ES256) so that verifiers can cache it and notice
// tampering. It is a file an operator can read and diff.
type TrustList struct {
	Name    string          `json:"name"`
	Version string          `json:"version"` // the issue time, as YYYYMMDDhhmmss
	Issued  time.Time       `json:"issued"`
	Signers []TrustedSigner `json:"signers"`
	// Signature covers the list's JSON without this field.
	Signature *ListSignature `json:"signature,omitempty"`
}

// TrustedSigner is one document signing certificate.
type TrustedSigner struct {
	KID         string `json:"kid"` // base64 of the 8-byte HCERT kid
	Subject     string `json:"subject"`
	NotAfter    string `json:"not_after"`
	Certificate string `json:"certificate"` // base64 DER
}

// ListSignature is the operator's ES256 signature over the list.
type ListSignature struct {
	Alg       string `json:"alg"`        // "ES256"
	PublicKey string `json:"public_key"` // base64 SPKI DER of the signing key
	Value     string `json:"value"`      // base64 ASN.1 ECDSA signature over SHA-256 of the unsigned JSON
}

// Fingerprint is a short, shown id of the list's signing key.
func (s *ListSignature) Fingerprint() string {
	der, _ := base64.StdEncoding.DecodeString(s.PublicKey)
	h := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(h[:8])
}

func (t *TrustList) unsigned() []byte {
	c := *t
	c.Signature = nil
	b, _ := json.Marshal(c)
	return b
}

// NewTrustList builds and signs a list of certs with key.
func NewTrustList(name string, certs []*x509.Certificate, key crypto.Signer, now time.Time) (*TrustList, error) {
	t := &TrustList{Name: name, Version: now.UTC().Format("20060102150405"), Issued: now.UTC().Truncate(time.Second)}
	for _, c := range certs {
		t.Signers = append(t.Signers, TrustedSigner{
			KID: base64.StdEncoding.EncodeToString(dcc.KID(c.Raw)), Subject: c.Subject.String(),
			NotAfter: c.NotAfter.UTC().Format(time.RFC3339), Certificate: encodeCert(c),
		})
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("trust list: %w", err)
	}
	digest := sha256.Sum256(t.unsigned())
	sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("trust list: sign: %w", err)
	}
	t.Signature = &ListSignature{Alg: "ES256", PublicKey: base64.StdEncoding.EncodeToString(spki), Value: base64.StdEncoding.EncodeToString(sig)}
	return t, nil
}

// ParseTrustList reads a trust list, checks its signature and returns the
// signers ready for verification.
func ParseTrustList(b []byte) (*TrustList, *dcc.Trust, error) {
	var t TrustList
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, nil, fmt.Errorf("trust list: %w", err)
	}
	if t.Signature == nil || t.Signature.Alg != "ES256" {
		return nil, nil, errors.New("trust list: not signed (ES256)")
	}
	der, err := base64.StdEncoding.DecodeString(t.Signature.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("trust list: signing key: %w", err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, nil, fmt.Errorf("trust list: signing key: %w", err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, nil, errors.New("trust list: signing key is not ECDSA")
	}
	sig, err := base64.StdEncoding.DecodeString(t.Signature.Value)
	if err != nil {
		return nil, nil, fmt.Errorf("trust list: signature: %w", err)
	}
	digest := sha256.Sum256(t.unsigned())
	if !ecdsa.VerifyASN1(ec, digest[:], sig) {
		return nil, nil, errors.New("trust list: the signature does not match its contents (edited or damaged)")
	}
	var certs []*x509.Certificate
	for _, s := range t.Signers {
		raw, err := base64.StdEncoding.DecodeString(s.Certificate)
		if err != nil {
			return nil, nil, fmt.Errorf("trust list: signer %s: %w", s.KID, err)
		}
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("trust list: signer %s: %w", s.KID, err)
		}
		certs = append(certs, c)
	}
	trust, err := dcc.NewTrust(certs...)
	if err != nil {
		return nil, nil, fmt.Errorf("trust list: %w", err)
	}
	return &t, trust, nil
}

// ParseCertificates reads one or more PEM "CERTIFICATE" blocks, or one DER
// certificate.
func ParseCertificates(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) > 0 {
		return out, nil
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("neither PEM nor DER X.509: %w", err)
	}
	return []*x509.Certificate{c}, nil
}

// LoadTrust reads a --trust file: a trust list (JSON) or PEM/DER
// certificates.
func LoadTrust(b []byte) (*dcc.Trust, string, error) {
	if len(b) > 0 && b[0] == '{' {
		t, trust, err := ParseTrustList(b)
		if err != nil {
			return nil, "", err
		}
		return trust, fmt.Sprintf("trust list %s, %d signers, signed by %s", t.Version, len(t.Signers), t.Signature.Fingerprint()), nil
	}
	certs, err := ParseCertificates(b)
	if err != nil {
		return nil, "", err
	}
	trust, err := dcc.NewTrust(certs...)
	if err != nil {
		return nil, "", err
	}
	return trust, fmt.Sprintf("%d certificate(s)", len(certs)), nil
}

// DSC returns the node's document signing certificate for key, kept in
// dir/dsc-<kid>.pem, creating a self-signed one (valid ten years from the
// key's creation, no usage restriction) the first time. The certificate is
// made the same way on every node with the same key, country and key
// creation time (a serial derived from the key, an RFC 6979 signature), so
// nodes that share DATA/keys publish the same DSC: its hash is the kid a
// health pass names.
func DSC(dir, keyID string, key crypto.Signer, country string, created time.Time) (*x509.Certificate, error) {
	path := filepath.Join(dir, "dsc-"+keyID+".pem")
	if b, err := os.ReadFile(path); err == nil {
		certs, err := ParseCertificates(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return certs[0], nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("document signing certificate: %w", err)
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, fmt.Errorf("document signing certificate: %w", err)
	}
	sum := sha256.Sum256(append([]byte("civstack DSC serial\n"+keyID+"\n"), spki...))
	serial := new(big.Int).Rsh(new(big.Int).SetBytes(sum[:8]), 2) // 62 bits, positive
	created = created.UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "civstack health authority DSC " + keyID, Country: []string{country}},
		NotBefore:    created.Add(-time.Hour), NotAfter: created.AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	// No randomness: an ECDSA key then signs by RFC 6979 (a key that
	// cannot, such as some HSMs, makes a certificate of its own, which the
	// nodes' check at start reports).
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("document signing certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("document signing certificate: %w", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, fmt.Errorf("document signing certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

func encodeCert(c *x509.Certificate) string { return base64.StdEncoding.EncodeToString(c.Raw) }
