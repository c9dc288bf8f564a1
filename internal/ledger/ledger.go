// Package ledger owns civstack's money engine: double-entry accounts and
// immutable transfers in integer minor units, with TigerBeetle's semantics
// (idempotent client-chosen ids, two-phase pending/post/void with timeouts,
// linked chains that succeed or fail together, accounts whose debits must not
// exceed their credits or the reverse) and e-CNY-style wallet limit profiles.
// Transfers are validated in order in memory and written in batches (group
// commit): one transaction, one disk sync, one balance update per account, and
// one transparency-log entry carrying the batch's Merkle root.
package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// ID identifies an account or a transfer: 16 bytes chosen by the client (a
// UUID fits). The zero ID is reserved.
type ID [16]byte

// String is the ID in hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID reads 32 hex digits.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("%w: an id is 32 hex digits", ErrInvalid)
	}
	copy(id[:], b)
	if id == (ID{}) {
		return id, fmt.Errorf("%w: the zero id is reserved", ErrInvalid)
	}
	return id, nil
}

// Kind is what an account is for.
type Kind uint8

// Account kinds.
const (
	KindIssuer   Kind = 1 // creates and redeems an asset (its balance goes negative)
	KindWallet   Kind = 2 // a person's wallet
	KindMerchant Kind = 3 // an organisation that takes payments
	KindFee      Kind = 4
	KindSuspense Kind = 5
)

// AccountFlags constrain an account.
type AccountFlags uint16

// Account flags.
const (
	// DebitsMustNotExceedCredits: debits (pending and posted) may not exceed
	// posted credits: a wallet cannot go below zero.
	DebitsMustNotExceedCredits AccountFlags = 1 << 0
	// CreditsMustNotExceedDebits: the symmetric rule (e.g. a liability).
	CreditsMustNotExceedDebits AccountFlags = 1 << 1
	// Closed: the account takes no transfers except voids of its pendings.
	Closed AccountFlags = 1 << 2
)

// Account is a double-entry account. Balances are in minor units.
type Account struct {
	ID             ID
	Ledger         uint32 // the asset: see Ledgers
	Kind           Kind
	Owner          string // person or organisation id
	Flags          AccountFlags
	Profile        string // limit profile name, "" for none
	DebitsPending  int64
	DebitsPosted   int64
	CreditsPending int64
	CreditsPosted  int64
	CreatedAt      time.Time

	seq       int64 // SQLite: the row's integer key, as the engine loaded it
	last      int64 // timestamp of the account's newest transfer, 0 for none
	lastID    ID    // and its id
	transfers int64 // how many transfers it has
	day       int64 // the calendar day (dayOf) dayDebits counts
	dayDebits int64 // debits on that day, pending ones included

	reservedGen uint32 // the SetReserved predicate reservedAns is the answer of (0: none yet)
	reservedAns bool
}

// Balance is posted credits minus posted debits.
func (a *Account) Balance() int64 { return a.CreditsPosted - a.DebitsPosted }

// Transfers is how many transfers the account has taken part in.
func (a *Account) Transfers() int64 { return a.transfers }

// Debited is what the account was debited (pending included, voided and
// expired amounts given back) on the calendar day of t in t's location: what
// a daily limit counts when the engine's zone is that location.
func (a *Account) Debited(t time.Time) int64 { return a.debitedOn(dayOf(t)) }

// dayOf numbers the calendar day of t in t's own location: days from
// 1970-01-01 to that date. For a time in UTC it is t.Unix() / 86400.
func dayOf(t time.Time) int64 {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// debitedOn is what the account was debited on day (dayOf).
func (a *Account) debitedOn(day int64) int64 {
	if a.day != day {
		return 0
	}
	return a.dayDebits
}

// TransferFlags shape a transfer.
type TransferFlags uint16

// Transfer flags.
const (
	Linked      TransferFlags = 1 << 0 // this transfer and the next succeed or fail together
	Pending     TransferFlags = 1 << 1 // reserve the amount; post or void it later
	PostPending TransferFlags = 1 << 2 // post (part of) the pending transfer PendingID
	VoidPending TransferFlags = 1 << 3 // void the pending transfer PendingID
)

// Codes say why money moved (free for applications; these are civstack's).
const (
	CodePayment    uint16 = 1
	CodeRefund     uint16 = 2
	CodeIssuance   uint16 = 3
	CodeRedemption uint16 = 4
	CodeReward     uint16 = 5
	CodeTransfer   uint16 = 6
	CodeReversal   uint16 = 7
)

// Transfer moves Amount from the Debit account to the Credit account.
// Transfers are immutable; corrections are new transfers.
type Transfer struct {
	ID        ID
	Debit     ID
	Credit    ID
	Amount    int64
	PendingID ID // for PostPending and VoidPending
	Ledger    uint32
	Code      uint16
	Flags     TransferFlags
	Timeout   time.Duration // pending transfers only; 0 means never; whole seconds
	Reference string        // the client's reference, at most 64 bytes
	// Set by the ledger:
	Timestamp time.Time // unique, strictly increasing
}

// Sentinel errors.
var (
	ErrInvalid  = errors.New("invalid")
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrTooMany  = errors.New("too many transfers in one request")
)

// MaxBatch is the most transfers one request may carry.
const MaxBatch = 8189

// maxGroup is the most transfers the engine writes in one transaction: the
// requests that arrive together, up to four full ones.
const maxGroup = 4 * MaxBatch

// DeriveID makes a deterministic id from parts (length-prefixed, so that
// ("ab", "c") and ("a", "bc") differ): account ids and idempotent transfer
// ids that several processes must agree on without talking.
func DeriveID(parts ...string) ID {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	var id ID
	copy(id[:], h.Sum(nil))
	return id
}

// EnsureAccount creates a unless an account with its id exists. The one
// that exists must be a's: the same ledger, kind, owner and balance rules,
// else ErrExists. So a service that derives its accounts' ids never takes
// as its own an account someone opened under such an id through the back
// office (its limit profile and its Closed flag may have changed since).
func (e *Engine) EnsureAccount(ctx context.Context, a Account) error {
	got, err := e.Account(ctx, a.ID)
	if errors.Is(err, ErrNotFound) {
		if err = e.CreateAccount(ctx, a); !errors.Is(err, ErrExists) {
			return err // nil: created
		}
		got, err = e.Account(ctx, a.ID) // created meanwhile
	}
	if err != nil {
		return err
	}
	if !got.Same(&a) {
		return fmt.Errorf("account %s: %w with another ledger, kind, owner or balance rule", a.ID, ErrExists)
	}
	return nil
}

// Same reports whether a and b are one account as their opener meant it:
// the same id, ledger, kind, owner and balance rules.
func (a *Account) Same(b *Account) bool {
	const rules = DebitsMustNotExceedCredits | CreditsMustNotExceedDebits
	return a.ID == b.ID && a.Ledger == b.Ledger && a.Kind == b.Kind && a.Owner == b.Owner && a.Flags&rules == b.Flags&rules
}
