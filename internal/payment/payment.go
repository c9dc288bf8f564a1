// Package payment owns civstack's cashless payments on the ledger: merchant
// payment profiles and signing keys, static and dynamic EMV merchant QR codes
// (see package emv), customer-presented one-time payment codes, payments,
// person-to-person transfers and refunds, and the signed e-receipts,
// e-invoices and cancellations whose hashes go into the transparency log.
//
// A payment is one ledger transfer. Its payment row, its receipt and the
// receipt's log entry are written by ledger.SubmitThen in the transaction
// that writes the transfer, so money, receipt and log entry commit together
// or not at all. Transfer ids are derived from what makes a payment unique (a
// payment code, a dynamic sale, the wallet's confirmation nonce), so the
// ledger's idempotency refuses a second charge of the same code or sale.
package payment

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"crypto/ecdsa"

	"github.com/civstack/civstack/internal/keyring"
	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/text"
	"github.com/civstack/civstack/internal/tlog"
)

// Errors. Refusal carries a message for the person paying or charging.
var (
	ErrInvalid  = errors.New("invalid")
	ErrNotFound = errors.New("not found")
	ErrRefused  = errors.New("payment refused")
	// ErrStepUp: the amount needs the payer to confirm with their passkey.
	ErrStepUp = errors.New("confirm with your passkey")
)

// Refusal is a payment the rules refused, with a code for machines and a
// sentence for people. It wraps ErrRefused.
type Refusal struct {
	Code    string
	Message string
}

func (r *Refusal) Error() string { return r.Message }
func (r *Refusal) Unwrap() error { return ErrRefused }

func refusal(code, msg string) error { return &Refusal{Code: code, Message: msg} }

// invalidError is input the service cannot take; it wraps ErrInvalid.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return "invalid: " + e.msg }
func (e *invalidError) Unwrap() error { return ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// Explain is the sentence to show for a refusal or invalid input ("" for
// other errors, which are not the caller's to read).
func Explain(err error) string {
	var ref *Refusal
	var inv *invalidError
	switch {
	case errors.As(err, &ref):
		return ref.Message
	case errors.As(err, &inv) && inv.msg != "":
		return strings.ToUpper(inv.msg[:1]) + inv.msg[1:] + "."
	}
	return ""
}

// Config is what a node's payments are set up with.
type Config struct {
	Currency     string // ISO 4217 numeric, for QR codes (978)
	CurrencyCode string // alphabetic, for documents (EUR)
	Country      string // ISO 3166 alpha-2, for QR codes
	City         string // default merchant city
	// StepUp: wallet payments above it need the payer's passkey; payment
	// codes (which the customer does not confirm) are refused above it.
	StepUp int64
	// Zone is the city's: whose calendar months the cash-flow report counts
	// (nil: UTC), as the point of sale's days and exports count its days.
	Zone *time.Location
}

// DefaultConfig is a euro-area city.
var DefaultConfig = Config{Currency: "978", CurrencyCode: "EUR", Country: "IT", City: "Bologna", StepUp: 100_00}

// Service runs payments. Its methods are safe for concurrent use.
type Service struct {
	cfg  Config
	db   *store.DB
	eng  *ledger.Engine
	log  *tlog.Log // for inclusion proofs; nil: bundles carry none
	seal *keyring.Sealer
	now  func() time.Time
	rand io.Reader

	mu        sync.Mutex
	keys      map[string]*ecdsa.PrivateKey // merchants' signing keys, opened
	merchants map[string]cachedProfile     // profiles for the payment path
	devices   map[string]cachedDevice      // by handle, for charging codes
	deviceOf  map[string]string            // person → cached handle

	// codeMu serialises, per device (striped), the check of a payment
	// code against the device's wrong-code counts and the counting of a
	// wrong one, so that guesses sent at once are counted as if sent one
	// after another (see codeMissLimit).
	codeMu [256]sync.Mutex
}

// profileTTL bounds how stale a cached merchant profile may be when another
// process changed it (this process's own changes drop the entry at once).
const profileTTL = 5 * time.Second

type cachedProfile struct {
	p  *Profile
	at time.Time
}

// merchantCached is Merchant for the hot payment path (charging, resolving
// codes), from a cache of at most profileTTL. A profile change made by
// another process reaches receipts within that time; invoices and refunds
// read the profile fresh.
func (s *Service) merchantCached(ctx context.Context, orgID string) (*Profile, error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.merchants[orgID]
	s.mu.Unlock()
	if ok && now.Sub(c.at) < profileTTL {
		return c.p, nil
	}
	p, err := s.Merchant(ctx, orgID)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if len(s.merchants) > 10_000 {
		clear(s.merchants)
	}
	s.merchants[orgID] = cachedProfile{p: p, at: now}
	s.mu.Unlock()
	return p, nil
}

func (s *Service) forgetMerchant(orgID string) {
	s.mu.Lock()
	delete(s.merchants, orgID)
	s.mu.Unlock()
}

// Deps are the service's collaborators.
type Deps struct {
	DB     *store.DB
	Ledger *ledger.Engine
	Log    *tlog.Log
	// SealKey (32 bytes) encrypts device secrets and merchant keys at rest.
	SealKey []byte
	Now     func() time.Time
	Rand    io.Reader
}

// New returns a Service.
func New(cfg Config, d Deps) (*Service, error) {
	s, err := keyring.NewSealer(d.SealKey, "payment", d.Rand)
	if err != nil {
		return nil, err
	}
	if cfg.Currency == "" {
		cfg = DefaultConfig
	}
	return &Service{cfg: cfg, db: d.DB, eng: d.Ledger, log: d.Log, seal: s, now: d.Now, rand: d.Rand, keys: map[string]*ecdsa.PrivateKey{},
		merchants: map[string]cachedProfile{}, devices: map[string]cachedDevice{}, deviceOf: map[string]string{}}, nil
}

// Config returns the service's configuration.
func (s *Service) Config() Config { return s.cfg }

// derive makes a ledger id from parts.
func derive(parts ...string) ledger.ID { return ledger.DeriveID(parts...) }

// WalletAccount is a person's cash wallet account id.
func WalletAccount(personID string) ledger.ID { return derive("wallet", personID) }

// MerchantAccount is a merchant organisation's account id.
func MerchantAccount(orgID string) ledger.ID { return derive("merchant", orgID) }

// IssuerAccount issues the node's digital cash.
var IssuerAccount = derive("issuer", "cash")

// ensureAccount creates an account unless it exists.
func (s *Service) ensureAccount(ctx context.Context, a ledger.Account) error {
	return s.eng.EnsureAccount(ctx, a)
}

// Wallet opens (once) and returns a person's wallet account. An account
// under the wallet's id that is not such a wallet (opened through the back
// office) is an error, never taken for the person's.
func (s *Service) Wallet(ctx context.Context, personID string) (*ledger.Account, error) {
	want := ledger.Account{ID: WalletAccount(personID), Ledger: ledger.LedgerCash, Kind: ledger.KindWallet, Owner: personID,
		Flags: ledger.DebitsMustNotExceedCredits, Profile: "basic"}
	if a, err := s.eng.Account(ctx, want.ID); err == nil {
		if !a.Same(&want) {
			return nil, fmt.Errorf("wallet: account %s: %w with another ledger, kind, owner or balance rule", want.ID, ledger.ErrExists)
		}
		return a, nil
	}
	if err := s.ensureAccount(ctx, want); err != nil {
		return nil, fmt.Errorf("open wallet: %w", err)
	}
	return s.eng.Account(ctx, want.ID)
}

// TopUp issues cash into a wallet (demo seeding; an operator's system
// through POST /api/v1/top-ups, e.g. when the citizen's bank transfer
// arrives); id makes it idempotent. The wallet's history lists it
// (KindTopUp), written in the transfer's transaction, so that the history
// adds up to the balance. It returns the top-up as stored: for a retry of
// one that committed before, the first one (nothing is credited again).
// The caller checks that the person exists: a wallet is opened for any id.
func (s *Service) TopUp(ctx context.Context, id ledger.ID, personID string, amount int64, reference string) (*Payment, error) {
	switch {
	case amount < 1:
		return nil, invalidf("a top-up is at least 0.01")
	case len(reference) > ledger.MaxReference:
		return nil, invalidf("a reference is at most %d bytes", ledger.MaxReference)
	}
	if err := s.ensureAccount(ctx, ledger.Account{ID: IssuerAccount, Ledger: ledger.LedgerCash, Kind: ledger.KindIssuer, Owner: "node"}); err != nil {
		return nil, err
	}
	wallet, err := s.Wallet(ctx, personID)
	if err != nil {
		return nil, err
	}
	t := ledger.Transfer{ID: id, Debit: IssuerAccount, Credit: wallet.ID, Amount: amount, Code: ledger.CodeIssuance, Reference: reference}
	pay := &Payment{ID: id.String(), Kind: KindTopUp, Method: "top-up", PayeePerson: personID, Amount: amount, Reference: t.Reference,
		CreatedAt: s.now().Truncate(time.Millisecond)} // as stored, so that a retry's answer is the same
	overCap := func(more string) error {
		limit := "its balance cap"
		if limits, ok := s.eng.Profiles()[wallet.Profile]; ok {
			limit += " of " + Money(limits.BalanceCap)
		}
		return refusal("over_limit", "This top-up would take the wallet over "+limit+". Nothing was credited."+more)
	}
	// Over the cap is told before the ledger is asked (unless the id was
	// used already: a retry answers as before), since the ledger keeps a
	// transfer it refused: the same request_id may credit once the wallet
	// has room.
	issuer, err := s.eng.Account(ctx, IssuerAccount)
	if err != nil {
		return nil, fmt.Errorf("top-up: %w", err)
	}
	if s.eng.Foresee(t, issuer, wallet) == ledger.ExceedsBalanceCap {
		if _, err := s.eng.Transfer(ctx, id); errors.Is(err, ledger.ErrNotFound) {
			return nil, overCap("")
		} else if err != nil {
			return nil, fmt.Errorf("top-up: %w", err)
		}
	}
	rs, err := s.eng.SubmitThen(ctx, []ledger.Transfer{t}, func(ctx context.Context, tx *store.Tx, rs []ledger.Result) error {
		if rs[0] != ledger.OK {
			return nil
		}
		return s.record(ctx, tx, pay, "", nil, "")
	})
	if err != nil {
		return nil, fmt.Errorf("top-up: %w", err)
	}
	switch r := rs[0]; r {
	case ledger.OK:
		return pay, nil
	case ledger.Exists:
		first, err := s.Payment(ctx, pay.ID)
		if errors.Is(err, ErrNotFound) {
			return pay, nil // a top-up made before top-ups were listed
		}
		return first, err
	case ledger.ExceedsBalanceCap:
		// The wallet filled meanwhile, or this id was refused before: the
		// ledger keeps the refusal, so this request_id cannot credit.
		return nil, overCap(" This request_id was refused for good: send the top-up again with a new one once the wallet has room.")
	case ledger.CreditAccountClosed:
		return nil, refusal("closed", "This wallet is closed. Nothing was credited.")
	case ledger.ExistsWithDifferentCredit, ledger.ExistsWithDifferentAmount, ledger.ExistsWithDifferentReference,
		ledger.ExistsWithDifferentDebit, ledger.ExistsWithDifferentCode, ledger.ExistsWithDifferentLedger, ledger.ExistsWithDifferentFlags:
		return nil, refusal("id_reused", "This id was used for another top-up (another wallet, amount or reference). Nothing was credited.")
	default:
		return nil, refusal(r.String(), "The top-up was refused ("+r.String()+"). Nothing was credited.")
	}
}

// Profile is a merchant's payment profile.
type Profile struct {
	OrgID      string
	Name       string // on QR codes and documents (at most 25 characters on codes)
	City       string
	MCC        string
	TaxID      string
	VATRate    int64 // default, basis points
	KeyID      string
	public     *ecdsa.PublicKey
	sealed     []byte
	keyLogIdx  int64
	invoiceSeq int64
}

// SetupMerchant creates a merchant's payment profile, ledger account and
// signing key (its registration logged), or updates name, city, MCC, tax id
// and VAT rate of an existing one. The key is kept.
func (s *Service) SetupMerchant(ctx context.Context, p Profile) (*Profile, error) {
	if err := checkProfile(&p); err != nil {
		return nil, err
	}
	defer s.forgetMerchant(p.OrgID)
	if err := s.ensureAccount(ctx, ledger.Account{ID: MerchantAccount(p.OrgID), Ledger: ledger.LedgerCash, Kind: ledger.KindMerchant,
		Owner: p.OrgID, Flags: ledger.DebitsMustNotExceedCredits}); err != nil {
		return nil, fmt.Errorf("open merchant account: %w", err)
	}
	if _, err := s.Merchant(ctx, p.OrgID); err == nil {
		err := s.db.Tx(ctx, func(tx *store.Tx) error {
			_, err := tx.ExecContext(ctx, "UPDATE payment_merchants SET name = $1, city = $2, mcc = $3, tax_id = $4, vat_rate = $5 WHERE org_id = $6",
				p.Name, p.City, p.MCC, p.TaxID, p.VATRate, p.OrgID)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("update merchant: %w", err)
		}
		return s.Merchant(ctx, p.OrgID)
	}
	key, err := ecdsa.GenerateKey(p256(), s.rand)
	if err != nil {
		return nil, err
	}
	kid, spki, err := keyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	der, err := marshalKey(key)
	if err != nil {
		return nil, err
	}
	sealed, err := s.seal.Seal(der, "merchant-key:"+p.OrgID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	entry, err := (&tlog.Entry{Kind: tlog.KindOperator, Time: now, Event: tlog.EventKeyAdded, Subject: merchantKeySubject(p.OrgID),
		KeyID: kid, Hash: sha256.Sum256(spki)}).Marshal()
	if err != nil {
		return nil, err
	}
	err = s.db.Tx(ctx, func(tx *store.Tx) error {
		idx, err := tlog.Sequence(ctx, tx, now, entry)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO payment_merchants (org_id, name, city, mcc, tax_id, vat_rate, key_id, public_key, sealed_key, key_log_index, invoice_seq, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11)`, p.OrgID, p.Name, p.City, p.MCC, p.TaxID, p.VATRate, kid, spki, sealed, idx, now.UnixMilli())
		return err
	})
	if store.IsConflict(err) { // another process set it up meanwhile
		return s.Merchant(ctx, p.OrgID)
	}
	if err != nil {
		return nil, fmt.Errorf("set up merchant: %w", err)
	}
	return s.Merchant(ctx, p.OrgID)
}

func checkProfile(p *Profile) error {
	switch {
	case p.OrgID == "" || len(p.OrgID) > 64:
		return invalidf("an organisation id is needed")
	case p.Name == "" || len([]rune(p.Name)) > 25:
		return invalidf("the merchant name must be 1 to 25 characters (it is printed on the QR code)")
	case p.City == "" || len([]rune(p.City)) > 15:
		return invalidf("the city must be 1 to 15 characters")
	case len(p.MCC) != 4 || !allDigits(p.MCC):
		return invalidf("the merchant category code is 4 digits (5814 fast food, 5411 groceries)")
	case p.TaxID == "" || utf8.RuneCountInString(p.TaxID) > 32:
		return invalidf("a tax id of at most 32 characters is needed")
	case p.VATRate < 0 || p.VATRate > 10000:
		return invalidf("the VAT rate is in basis points, 0 to 10000")
	}
	// What the QR code's encoder refuses (unicode.IsControl: C0, DEL and
	// C1), and bidirectional overrides, which would reorder the name on a
	// receipt or the payer's confirmation.
	if !text.Line(p.Name + p.City + p.TaxID) {
		return invalidf("name, city and tax id must be plain text (no line breaks, control characters or bidirectional overrides)")
	}
	return nil
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// Merchant returns a merchant's profile; ErrNotFound if it has none.
func (s *Service) Merchant(ctx context.Context, orgID string) (*Profile, error) {
	p := &Profile{}
	var spki []byte
	err := s.db.QueryRowRead(ctx, `SELECT org_id, name, city, mcc, tax_id, vat_rate, key_id, public_key, sealed_key, key_log_index, invoice_seq
		FROM payment_merchants WHERE org_id = $1`, orgID).Scan(&p.OrgID, &p.Name, &p.City, &p.MCC, &p.TaxID, &p.VATRate, &p.KeyID, &spki, &p.sealed, &p.keyLogIdx, &p.invoiceSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("merchant %s: %w", orgID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("merchant: %w", err)
	}
	if p.public, err = parsePublic(spki); err != nil {
		return nil, err
	}
	return p, nil
}

// signer opens a merchant's private key (cached).
func (s *Service) signer(p *Profile) (*ecdsa.PrivateKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.keys[p.OrgID]; k != nil && k.PublicKey.Equal(p.public) {
		return k, nil
	}
	der, err := s.seal.Open(p.sealed, "merchant-key:"+p.OrgID)
	if err != nil {
		return nil, err
	}
	k, err := parseKey(der)
	if err != nil {
		return nil, err
	}
	s.keys[p.OrgID] = k
	return k, nil
}
