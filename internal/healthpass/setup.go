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
}

// Setup prepares dir (DATA/health): rules.json (the default rules the
// first time), a DSC per document key, and trust-list.json, re-signed when
// the set of DSCs changed. An operator may edit rules.json (the node reads
// it at start) and replace trust-list.json with one listing other
// authorities' DSCs too (kept as long as it lists the node's own).
func Setup(dir string, keys *keyring.Ring, country string, now time.Time) (*Node, error) {
	rules, err := LoadRules(filepath.Join(dir, "rules.json"))
	if err != nil {
		return nil, err
	}
	active := keys.Active(keyring.Document)
	var certs []*x509.Certificate
	var issuer *dcc.Issuer
	for _, k := range keys.All() {
		if k.Purpose != keyring.Document {
			continue
		}
		c, err := DSC(dir, k.ID, k.Signer, country, now)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
		if k == active {
			issuer = &dcc.Issuer{Key: k.Signer, Cert: c, Country: country}
		}
	}
	if issuer == nil {
		return nil, fmt.Errorf("health: no active document key")
	}
	path := filepath.Join(dir, "trust-list.json")
	b, err := os.ReadFile(path)
	var trust *dcc.Trust
	if err == nil {
		var tl *TrustList
		if tl, trust, err = ParseTrustList(b); err == nil && !listsAll(tl, certs) {
			trust = nil
		}
	}
	if trust == nil {
		tl, err := NewTrustList("civstack health authority trust list", certs, active.Signer, now)
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(tl); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			return nil, fmt.Errorf("health: trust list: %w", err)
		}
		b = buf.Bytes()
		if _, trust, err = ParseTrustList(b); err != nil {
			return nil, err
		}
	}
	tl, _, _ := ParseTrustList(b)
	info := fmt.Sprintf("trust list %s, %d signers, signed by %s", tl.Version, len(tl.Signers), tl.Signature.Fingerprint())
	return &Node{Rules: rules, Issuer: issuer, Verifier: &Verifier{Trust: trust, TrustInfo: info, Rules: rules}, TrustList: b, Dir: dir}, nil
}

func listsAll(tl *TrustList, certs []*x509.Certificate) bool {
	var have []string
	for _, s := range tl.Signers {
		have = append(have, s.Certificate)
	}
	for _, c := range certs {
		if !slices.Contains(have, encodeCert(c)) {
			return false
		}
	}
	return true
}
