package healthpass

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/civstack/civstack/internal/dcc"
	"github.com/civstack/civstack/internal/keyring"
)

// Node is a node's health pass setup: its rules, its issuer (the active
// document key's DSC) and its verifier (the published trust list).
type Node struct {
	Rules     *Rules
	Issuer    *dcc.Issuer
	Verifier  *Verifier
	TrustList []byte // the published file
	Dir       string
	// DSCs are the node's own document signing certificates, by document
	// key id (the trust list also holds the trusted/ ones).
	DSCs map[string]*x509.Certificate
}

// Setup prepares dir (DATA/health): rules.json (the default rules the
// first time), a DSC per document key, and trust-list.json: the node's
// DSCs plus every certificate in dir/trusted/*.pem (other health
// authorities' DSCs an operator adds), re-signed at start whenever that
// set differs from the list's. An operator edits rules.json and the
// trusted/ directory, then restarts.
func Setup(dir string, keys *keyring.Ring, country string, now time.Time) (*Node, error) {
	rules, err := LoadRules(filepath.Join(dir, "rules.json"))
	if err != nil {
		return nil, err
	}
	active := keys.Active(keyring.Document)
	var certs []*x509.Certificate
	own := map[string]*x509.Certificate{}
	var issuer *dcc.Issuer
	for _, k := range keys.All() {
		if k.Purpose != keyring.Document {
			continue
		}
		c, err := DSC(dir, k.ID, k.Signer, country, k.CreatedAt)
		if err != nil {
			return nil, err
		}
		certs, own[k.ID] = append(certs, c), c
		if k == active {
			issuer = &dcc.Issuer{Key: k.Signer, Cert: c, Country: country}
		}
	}
	if issuer == nil {
		return nil, fmt.Errorf("health: no active document key")
	}
	others, _ := filepath.Glob(filepath.Join(dir, "trusted", "*.pem"))
	for _, f := range others {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("health: %w", err)
		}
		cs, err := ParseCertificates(b)
		if err != nil {
			return nil, fmt.Errorf("health: %s: %w", f, err)
		}
		certs = append(certs, cs...)
	}
	path := filepath.Join(dir, "trust-list.json")
	b, err := os.ReadFile(path)
	var trust *dcc.Trust
	var tl *TrustList
	if err == nil {
		if tl, trust, err = ParseTrustList(b); err != nil || !sameSigners(tl, certs) {
			trust = nil
		}
	}
	if trust == nil {
		made, err := NewTrustList("civstack health authority trust list", certs, active.Signer, now)
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(made); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			return nil, fmt.Errorf("health: trust list: %w", err)
		}
		b = buf.Bytes()
		if tl, trust, err = ParseTrustList(b); err != nil {
			return nil, err
		}
	}
	info := fmt.Sprintf("trust list %s, %d signers, signed by %s", tl.Version, len(tl.Signers), tl.Signature.Fingerprint())
	return &Node{Rules: rules, Issuer: issuer, Verifier: &Verifier{Trust: trust, TrustInfo: info, Rules: rules}, TrustList: b, Dir: dir, DSCs: own}, nil
}

// sameSigners reports whether the list holds exactly certs.
func sameSigners(tl *TrustList, certs []*x509.Certificate) bool {
	var have, want []string
	for _, s := range tl.Signers {
		have = append(have, s.Certificate)
	}
	for _, c := range certs {
		want = append(want, encodeCert(c))
	}
	slices.Sort(have)
	slices.Sort(want)
	return slices.Equal(slices.Compact(have), slices.Compact(want))
}
