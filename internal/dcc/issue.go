package dcc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// Issuer signs HCERTs with a document signing key and its certificate.
type Issuer struct {
	Key     crypto.Signer     // P-256 (ES256) or RSA (PS256)
	Cert    *x509.Certificate // the DSC; its kid goes in the protected header
	Country string            // CWT issuer claim (ISO 3166-1 alpha-2), optional
}

// Issue signs doc (a DCC payload) valid from iat to exp and returns the QR
// payload, "HC1:" + base45(zlib(COSE_Sign1)).
func (is *Issuer) Issue(doc any, iat, exp time.Time) (string, error) {
	cose, err := is.Sign1(doc, iat, exp)
	if err != nil {
		return "", err
	}
	return Prefix + Base45Encode(Deflate(cose)), nil
}

// Sign1 returns the tagged COSE_Sign1 bytes of an HCERT.
func (is *Issuer) Sign1(doc any, iat, exp time.Time) ([]byte, error) {
	return is.sign1(1, doc, iat, exp)
}

// IssueHealthCode signs a civstack health code payload (see
// HealthCodeVersion) in the same container.
func (is *Issuer) IssueHealthCode(doc any, iat, exp time.Time) (string, error) {
	cose, err := is.sign1(HealthCodeKey, doc, iat, exp)
	if err != nil {
		return "", err
	}
	return Prefix + Base45Encode(Deflate(cose)), nil
}

func (is *Issuer) sign1(key int, doc any, iat, exp time.Time) ([]byte, error) {
	hc, err := EncodeHCert(doc)
	if err != nil {
		return nil, err
	}
	claims := map[int]any{
		4:    exp.Unix(),
		6:    iat.Unix(),
		-260: map[int]cbor.RawMessage{key: hc},
	}
	if is.Country != "" {
		claims[1] = is.Country
	}
	payload, err := encMode.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("dcc: claims: %w", err)
	}
	var alg cose.Algorithm
	switch is.Key.Public().(type) {
	case *ecdsa.PublicKey:
		alg = cose.AlgorithmES256
	case *rsa.PublicKey:
		alg = cose.AlgorithmPS256
	default:
		return nil, fmt.Errorf("dcc: key type %T is neither ECDSA nor RSA", is.Key.Public())
	}
	signer, err := cose.NewSigner(alg, is.Key)
	if err != nil {
		return nil, fmt.Errorf("dcc: signer: %w", err)
	}
	msg := cose.NewSign1Message()
	msg.Headers.Protected.SetAlgorithm(alg)
	msg.Headers.Protected[cose.HeaderLabelKeyID] = KID(is.Cert.Raw)
	msg.Payload = payload
	if err := msg.Sign(rand.Reader, nil, signer); err != nil {
		return nil, fmt.Errorf("dcc: sign: %w", err)
	}
	return msg.MarshalCBOR()
}
