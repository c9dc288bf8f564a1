package tlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Kind says what an entry records.
type Kind uint8

// The entry kinds. Numbers are part of the wire format: never reuse one.
const (
	KindLedgerBatch Kind = 1 // a committed ledger batch's Merkle root
	KindReceipt     Kind = 2 // the hash of a signed payment document (e-receipt, e-invoice, cancellation, cash-flow report)
	KindCredential  Kind = 3 // a credential issued, suspended or revoked
	KindDataAccess  Kind = 4 // an agency's access to a citizen's data
	KindOperator    Kind = 5 // an operator event such as a key rotation
	KindHealth      Kind = 6 // a health officer's decision on an appeal
)

// String names the kind for people.
func (k Kind) String() string {
	switch k {
	case KindLedgerBatch:
		return "ledger batch"
	case KindReceipt:
		return "payment document" // a receipt, e-invoice, cancellation or cash-flow report
	case KindCredential:
		return "credential event"
	case KindDataAccess:
		return "data access"
	case KindOperator:
		return "operator event"
	case KindHealth:
		return "health decision"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

// Kinds lists every kind, for pages and counters.
var Kinds = []Kind{KindLedgerBatch, KindReceipt, KindCredential, KindDataAccess, KindOperator, KindHealth}

// EntryVersion is the first byte of every encoded entry.
const EntryVersion = 1

// MaxEntrySize is the largest entry an entry bundle can frame (uint16 length).
const MaxEntrySize = 65535

// ErrBadEntry is returned for entries that do not parse.
var ErrBadEntry = errors.New("malformed log entry")

// Entry is a log entry. Entries hold hashes, commitments and keyed
// pseudonyms, never personal data in clear. The encoding is canonical: one
// value has exactly one encoding, and Parse accepts nothing else.
//
//	entry   = version(1) kind(1) time(8, big-endian Unix milliseconds) body
//	string  = length(1) bytes, at most 255 bytes of UTF-8
//	hash    = 32 bytes
type Entry struct {
	Kind Kind
	Time time.Time // kept to the millisecond

	// KindLedgerBatch
	BatchID [16]byte
	Count   uint32
	Root    [32]byte

	// KindReceipt, KindCredential (the credential's digest)
	Hash [32]byte

	// KindCredential, KindOperator and KindHealth: what happened (see the
	// Event constants). KindHealth: Subject is the rules version and Hash
	// the digest of the decision record (never the answers).
	Event uint8
	// KindCredential: issuer key id; KindOperator: key purpose.
	Subject string
	// KindOperator: key id.
	KeyID string

	// KindDataAccess
	Commitment [32]byte // H(nonce ‖ canonical access record), opened only to the citizen and the DPA
	Tag        [32]byte // keyed pseudonym of the citizen
}

// Credential and operator events.
const (
	EventIssued    uint8 = 1
	EventSuspended uint8 = 2
	EventRevoked   uint8 = 3
	EventKeyAdded  uint8 = 16 // operator: a key was created or rotated in
	// operator: the log was rewound (its database restored from a backup) and
	// this history replaces one that had a signed checkpoint of Subject (a
	// decimal size) entries with root Hash; KeyID is empty.
	EventLogRewound uint8 = 17
	EventUpheld     uint8 = 32 // health: an appeal was refused, the status stands
	EventOverruled  uint8 = 33 // health: an appeal was granted, the status changed
)

// RewoundEntry declares in the log that its history replaces one that had
// reached the checkpoint old (see EventLogRewound).
func RewoundEntry(now time.Time, old Checkpoint) *Entry {
	return &Entry{Kind: KindOperator, Time: now, Event: EventLogRewound, Subject: strconv.FormatInt(old.Size, 10), Hash: old.Root}
}

// Rewound reads a rewind declaration: the replaced history's size and root.
func (e *Entry) Rewound() (size int64, root [32]byte, ok bool) {
	if e.Kind != KindOperator || e.Event != EventLogRewound {
		return 0, root, false
	}
	size, err := strconv.ParseInt(e.Subject, 10, 64)
	return size, e.Hash, err == nil
}

// Label names the entry for people: its kind, or what an operator event
// declares when that is more than a key.
func (e *Entry) Label() string {
	if size, _, ok := e.Rewound(); ok {
		return fmt.Sprintf("operator event: log rewound (it replaces a history of %d entries)", size)
	}
	return e.Kind.String()
}

// Marshal encodes e canonically.
func (e *Entry) Marshal() ([]byte, error) {
	b := []byte{EntryVersion, byte(e.Kind)}
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixMilli()))
	switch e.Kind {
	case KindLedgerBatch:
		b = append(b, e.BatchID[:]...)
		b = binary.BigEndian.AppendUint32(b, e.Count)
		b = append(b, e.Root[:]...)
	case KindReceipt:
		b = append(b, e.Hash[:]...)
	case KindCredential:
		if e.Event < EventIssued || e.Event > EventRevoked {
			return nil, fmt.Errorf("%w: credential event %d", ErrBadEntry, e.Event)
		}
		b = append(b, e.Event)
		var err error
		if b, err = appendString(b, e.Subject); err != nil {
			return nil, err
		}
		b = append(b, e.Hash[:]...)
	case KindDataAccess:
		b = append(b, e.Commitment[:]...)
		b = append(b, e.Tag[:]...)
	case KindHealth:
		if e.Event != EventUpheld && e.Event != EventOverruled {
			return nil, fmt.Errorf("%w: health event %d", ErrBadEntry, e.Event)
		}
		b = append(b, e.Event)
		var err error
		if b, err = appendString(b, e.Subject); err != nil {
			return nil, err
		}
		b = append(b, e.Hash[:]...)
	case KindOperator:
		if e.Event != EventKeyAdded && e.Event != EventLogRewound {
			return nil, fmt.Errorf("%w: operator event %d", ErrBadEntry, e.Event)
		}
		if e.Event == EventLogRewound {
			if n, err := strconv.ParseInt(e.Subject, 10, 64); err != nil || n < 1 || strconv.FormatInt(n, 10) != e.Subject || e.KeyID != "" {
				return nil, fmt.Errorf("%w: a rewind names the replaced size, a decimal number, and no key", ErrBadEntry)
			}
		}
		b = append(b, e.Event)
		var err error
		if b, err = appendString(b, e.Subject); err != nil {
			return nil, err
		}
		if b, err = appendString(b, e.KeyID); err != nil {
			return nil, err
		}
		b = append(b, e.Hash[:]...)
	default:
		return nil, fmt.Errorf("%w: unknown kind %d", ErrBadEntry, e.Kind)
	}
	return b, nil
}

func appendString(b []byte, s string) ([]byte, error) {
	if len(s) > 255 {
		return nil, fmt.Errorf("%w: string longer than 255 bytes", ErrBadEntry)
	}
	return append(append(b, byte(len(s))), s...), nil
}

// reader consumes an encoded entry, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = fmt.Errorf("%w: truncated", ErrBadEntry)
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) byte() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) hash(dst *[32]byte) { copy(dst[:], r.take(32)) }

func (r *reader) string() string {
	n := int(r.byte())
	return string(r.take(n))
}

// Parse decodes an entry, rejecting anything Marshal would not produce.
func Parse(b []byte) (*Entry, error) {
	if len(b) > MaxEntrySize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadEntry, len(b), MaxEntrySize)
	}
	r := &reader{b: b}
	if v := r.byte(); r.err == nil && v != EntryVersion {
		return nil, fmt.Errorf("%w: version %d", ErrBadEntry, v)
	}
	e := &Entry{Kind: Kind(r.byte())}
	ms := r.take(8)
	if r.err == nil {
		e.Time = time.UnixMilli(int64(binary.BigEndian.Uint64(ms))).UTC()
	}
	switch e.Kind {
	case KindLedgerBatch:
		copy(e.BatchID[:], r.take(16))
		if c := r.take(4); c != nil {
			e.Count = binary.BigEndian.Uint32(c)
		}
		r.hash(&e.Root)
	case KindReceipt:
		r.hash(&e.Hash)
	case KindCredential, KindHealth:
		e.Event = r.byte()
		e.Subject = r.string()
		r.hash(&e.Hash)
	case KindDataAccess:
		r.hash(&e.Commitment)
		r.hash(&e.Tag)
	case KindOperator:
		e.Event = r.byte()
		e.Subject = r.string()
		e.KeyID = r.string()
		r.hash(&e.Hash)
	default:
		if r.err == nil {
			return nil, fmt.Errorf("%w: unknown kind %d", ErrBadEntry, e.Kind)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadEntry, len(r.b))
	}
	// Canonical: re-encoding must give the same bytes (this also checks the
	// event codes).
	again, err := e.Marshal()
	if err != nil {
		return nil, err
	}
	if string(again) != string(b) {
		return nil, fmt.Errorf("%w: not canonical", ErrBadEntry)
	}
	return e, nil
}
