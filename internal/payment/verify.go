package payment

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	xtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/tlog"
)

// Bundle is a signed document as a person downloads it: the JWS, a readable
// copy of its payload, the merchant's public key, and (once the log has
// integrated them) inclusion proofs of the document's hash and of the
// merchant key's registration, both against one signed checkpoint. With the
// log's verifier key, anyone can check it offline.
type Bundle struct {
	Document Document  `json:"document"`
	JWS      string    `json:"jws"`
	Key      JWK       `json:"merchant_key"`
	Log      *LogProof `json:"log,omitempty"`
}

// LogProof places a document and its merchant key in the transparency log.
type LogProof struct {
	Checkpoint string       `json:"checkpoint"` // signed note (C2SP tlog-checkpoint)
	Index      int64        `json:"index"`      // the document's entry
	Entry      []byte       `json:"entry"`      // its bytes (base64)
	Proof      []xtlog.Hash `json:"proof"`
	KeyIndex   int64        `json:"key_index"` // the merchant key's registration entry
	KeyEntry   []byte       `json:"key_entry"`
	KeyProof   []xtlog.Hash `json:"key_proof"`
}

// Check is one verification step and its outcome.
type Check struct {
	Name   string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Report is what Verify found.
type Report struct {
	Type     string    `json:"type,omitempty"`
	Document *Document `json:"document,omitempty"`
	Checks   []Check   `json:"checks"`
}

// OK reports whether every check passed.
func (r *Report) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return len(r.Checks) > 0
}

// Failed is the first failed check's sentence, or "".
func (r *Report) Failed() string {
	for _, c := range r.Checks {
		if !c.OK {
			return c.Name + ": " + c.Detail
		}
	}
	return ""
}

// ErrBadBundle is returned for input that is not a document bundle at all.
var ErrBadBundle = errors.New("not a civstack receipt, invoice or cash-flow report")

// MaxBundle bounds what Verify reads.
const MaxBundle = 1 << 20

// Verify checks a downloaded bundle offline: the merchant's signature, that
// the key is the one the merchant registered in the log, that the readable
// copy is what was signed, and that the document and the key are included
// in a checkpoint signed by the log whose verifier key is logKey ("" skips
// the log checks, which then fail). It returns ErrBadBundle for input that
// does not parse; otherwise the report says what passed.
func Verify(r io.Reader, logKey string) (*Report, error) {
	raw, err := io.ReadAll(io.LimitReader(r, MaxBundle+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxBundle {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadBundle, MaxBundle)
	}
	var b Bundle
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBundle, err)
	}
	if b.JWS == "" {
		return nil, fmt.Errorf("%w: no jws", ErrBadBundle)
	}
	rep := &Report{}
	add := func(name string, err error, ok string) bool {
		if err != nil {
			rep.Checks = append(rep.Checks, Check{Name: name, Detail: err.Error()})
			return false
		}
		rep.Checks = append(rep.Checks, Check{Name: name, OK: true, Detail: ok})
		return true
	}
	pub, err := b.Key.public()
	var payload []byte
	var h jwsHeader
	if err == nil {
		h, payload, err = openJWS(b.JWS, pub)
	}
	if !add("signature", err, "ES256 signature by merchant key "+b.Key.Kid) {
		return rep, nil
	}
	var doc Document
	err = json.Unmarshal(payload, &doc)
	if err == nil && !bytes.Equal(doc.canonical(), payload) {
		err = errors.New("the signed payload is not in canonical form")
	}
	if err == nil {
		err = checkSums(&doc)
	}
	if err == nil && !bytes.Equal(b.Document.canonical(), payload) {
		err = errors.New("the readable copy in the file differs from what the merchant signed")
	}
	if err == nil && (doc.Type == TypeCashFlow) != (doc.CashFlow != nil) {
		err = errors.New("a cash-flow report's figures are missing or misplaced")
	}
	rep.Type, rep.Document = doc.Type, &doc
	desc := fmt.Sprintf("%s %s of %s, total %s %s", doc.Type, doc.ID, doc.Merchant.Name, Money(doc.Total), doc.Currency)
	if cf := doc.CashFlow; cf != nil {
		desc = fmt.Sprintf("cash-flow report %s of %s (%s to %s, revenue %s %s), issued %s for %s", doc.ID, doc.Merchant.Name, cf.From, cf.To,
			Money(cf.Revenue), doc.Currency, doc.IssuedAt, cf.Recipient)
	}
	add("document", err, desc)

	kid, spki, err := keyID(pub)
	if err == nil && (kid != h.Kid || kid != b.Key.Kid) {
		err = fmt.Errorf("the key id %q does not match the key (%s)", h.Kid, kid)
	}
	if err == nil && h.Typ != jwsType {
		err = fmt.Errorf("the JWS type is %q, not %s", h.Typ, jwsType)
	}
	add("key", err, "key id "+kid+" matches the key")

	if logKey == "" {
		add("log", errors.New("not checked: give the log's verifier key (--log-key) to check inclusion"), "")
		return rep, nil
	}
	if b.Log == nil {
		add("log", errors.New("the file carries no inclusion proof yet: download it again once the log has integrated it (seconds)"), "")
		return rep, nil
	}
	cp, err := tlog.OpenCheckpoint([]byte(b.Log.Checkpoint), logKey)
	if !add("checkpoint", err, fmt.Sprintf("signed checkpoint of %s, %d entries", cp.Origin, cp.Size)) {
		return rep, nil
	}
	jwsHash := sha256.Sum256([]byte(b.JWS))
	err = checkEntry(b.Log.Entry, func(e *tlog.Entry) error {
		if e.Kind != tlog.KindReceipt || e.Hash != jwsHash {
			return errors.New("the log entry does not hold this document's hash")
		}
		return nil
	})
	if err == nil {
		err = xtlog.CheckRecord(b.Log.Proof, cp.Size, cp.Root, b.Log.Index, xtlog.RecordHash(b.Log.Entry))
	}
	add("inclusion", err, fmt.Sprintf("the document's hash is entry %d of the log", b.Log.Index))
	spkiHash := sha256.Sum256(spki)
	err = checkEntry(b.Log.KeyEntry, func(e *tlog.Entry) error {
		if e.Kind != tlog.KindOperator || e.Event != tlog.EventKeyAdded || e.KeyID != kid || e.Hash != spkiHash ||
			e.Subject != merchantKeySubject(doc.Merchant.ID) {
			return errors.New("the log entry does not register this key for this merchant")
		}
		return nil
	})
	if err == nil {
		err = xtlog.CheckRecord(b.Log.KeyProof, cp.Size, cp.Root, b.Log.KeyIndex, xtlog.RecordHash(b.Log.KeyEntry))
	}
	add("merchant key in log", err, fmt.Sprintf("entry %d registers key %s for merchant %s", b.Log.KeyIndex, kid, doc.Merchant.ID))
	return rep, nil
}

func checkEntry(data []byte, want func(*tlog.Entry) error) error {
	e, err := tlog.Parse(data)
	if err != nil {
		return err
	}
	return want(e)
}

// checkSums checks that a document's lines and totals add up.
func checkSums(d *Document) error {
	var total, vat int64
	for i, l := range d.Lines {
		if l.Quantity*l.UnitPrice != l.Total || l.Net+l.VAT != l.Total {
			return fmt.Errorf("line %d does not add up", i+1)
		}
		total += l.Total
		vat += l.VAT
	}
	if len(d.Lines) > 0 && (total != d.Total || vat != d.VAT) {
		return errors.New("the lines do not add up to the totals")
	}
	if d.Net+d.VAT != d.Total {
		return errors.New("net plus VAT is not the total")
	}
	return nil
}

// merchantKeySubject is the Subject of a merchant key's log entry.
func merchantKeySubject(orgID string) string { return "merchant:" + orgID }
