package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// record is a transfer as the ledger stores it: the transfer, the batch that
// wrote it, and for each of its two accounts the previous transfer of that
// account (its id, zero for none) and the account's posted balance after
// this transfer. The links make an account's history a walk, with no
// per-transfer index in account order (docs/ledger.md, "Storage").
type record struct {
	Transfer
	state       int   // ledger_transfers.state
	expiresAt   int64 // Unix ms; 0 for none
	result      Result
	batch       int64
	debitPrev   ID
	creditPrev  ID
	debitAfter  int64
	creditAfter int64
}

// Pending transfer states, stored in ledger_transfers.state.
const (
	stateDone    = 0 // an ordinary transfer, or a post or void
	statePending = 1
	statePosted  = 2
	stateVoided  = 3
	stateExpired = 4
	stateFailed  = 5 // refused; kept so that a retry returns the first result
)

const bodyVersion = 1

var errBadBody = errors.New("ledger: corrupt transfer body")

// marshalBody encodes what ledger_transfers.body holds: everything but the
// id, timestamp, state and expiry, which are columns.
//
//	version u8 | flags u16 | ledger u32 | code u16 | result u8 | amount u64 |
//	debit [16] | credit [16] | pending id [16] (post and void only) |
//	links u8 (1: debit prev follows, 2: credit prev follows) | debit prev [16] | credit prev [16] |
//	timeout uvarint (s) | batch uvarint | debit after varint | credit after varint |
//	reference (the rest)
func (r *record) marshalBody(out []byte) []byte {
	out = append(out, bodyVersion)
	out = binary.BigEndian.AppendUint16(out, uint16(r.Flags))
	out = binary.BigEndian.AppendUint32(out, r.Ledger)
	out = binary.BigEndian.AppendUint16(out, r.Code)
	out = append(out, byte(r.result))
	out = binary.BigEndian.AppendUint64(out, uint64(r.Amount))
	out = append(out, r.Debit[:]...)
	out = append(out, r.Credit[:]...)
	if r.Flags&(PostPending|VoidPending) != 0 {
		out = append(out, r.PendingID[:]...)
	}
	var links byte
	if r.debitPrev != (ID{}) {
		links |= 1
	}
	if r.creditPrev != (ID{}) {
		links |= 2
	}
	out = append(out, links)
	if links&1 != 0 {
		out = append(out, r.debitPrev[:]...)
	}
	if links&2 != 0 {
		out = append(out, r.creditPrev[:]...)
	}
	out = binary.AppendUvarint(out, uint64(r.Timeout/time.Second))
	out = binary.AppendUvarint(out, uint64(r.batch))
	out = binary.AppendVarint(out, r.debitAfter)
	out = binary.AppendVarint(out, r.creditAfter)
	return append(out, r.Reference...)
}

// unmarshalBody decodes a body. It never panics on corrupt input.
func (r *record) unmarshalBody(b []byte) error {
	const fixed = 1 + 2 + 4 + 2 + 1 + 8 + 16 + 16
	if len(b) < fixed || b[0] != bodyVersion {
		return errBadBody
	}
	r.Flags = TransferFlags(binary.BigEndian.Uint16(b[1:]))
	r.Ledger = binary.BigEndian.Uint32(b[3:])
	r.Code = binary.BigEndian.Uint16(b[7:])
	r.result = Result(b[9])
	r.Amount = int64(binary.BigEndian.Uint64(b[10:]))
	copy(r.Debit[:], b[18:34])
	copy(r.Credit[:], b[34:50])
	b = b[fixed:]
	r.PendingID = ID{}
	if r.Flags&(PostPending|VoidPending) != 0 {
		if len(b) < 16 {
			return errBadBody
		}
		copy(r.PendingID[:], b[:16])
		b = b[16:]
	}
	if len(b) < 1 || b[0] > 3 {
		return errBadBody
	}
	links := b[0]
	b = b[1:]
	r.debitPrev, r.creditPrev = ID{}, ID{}
	var ok bool
	if links&1 != 0 {
		if b, ok = takeID(b, &r.debitPrev); !ok {
			return errBadBody
		}
	}
	if links&2 != 0 {
		if b, ok = takeID(b, &r.creditPrev); !ok {
			return errBadBody
		}
	}
	var u [2]uint64
	for i := range u {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return errBadBody
		}
		u[i], b = v, b[n:]
	}
	if u[0] > math.MaxUint32 || int64(u[1]) < 0 {
		return errBadBody
	}
	r.Timeout, r.batch = time.Duration(u[0])*time.Second, int64(u[1])
	var s [2]int64
	for i := range s {
		v, n := binary.Varint(b)
		if n <= 0 {
			return errBadBody
		}
		s[i], b = v, b[n:]
	}
	r.debitAfter, r.creditAfter = s[0], s[1]
	if len(b) > MaxReference {
		return errBadBody
	}
	r.Reference = string(b)
	return nil
}

// takeID reads an id off the front of b.
func takeID(b []byte, id *ID) ([]byte, bool) {
	if len(b) < len(id) {
		return b, false
	}
	copy(id[:], b)
	return b[len(id):], true
}

// decodeRow rebuilds a record from a ledger_transfers row.
func decodeRow(id []byte, ts int64, state int, expiresAt int64, body []byte) (*record, error) {
	r := &record{state: state, expiresAt: expiresAt}
	if len(id) != len(r.ID) {
		return nil, fmt.Errorf("%w: id of %d bytes", errBadBody, len(id))
	}
	copy(r.ID[:], id)
	if err := r.unmarshalBody(body); err != nil {
		return nil, fmt.Errorf("transfer %s: %w", r.ID, err)
	}
	r.Timestamp = time.Unix(0, ts).UTC()
	return r, nil
}

// side reports, for an account the record moved money for, the previous
// transfer of that account and its posted balance after this one.
func (r *record) side(account ID) (prev ID, after int64) {
	if r.Debit == account {
		return r.debitPrev, r.debitAfter
	}
	return r.creditPrev, r.creditAfter
}

// MaxReference is the longest reference a transfer may carry, in bytes.
const MaxReference = 64

// encode is a transfer's canonical encoding, hashed into the batch root:
//
//	id [16] | debit [16] | credit [16] | amount u64 | pending id [16] |
//	ledger u32 | code u16 | flags u16 | timeout u64 (s) | timestamp u64 (ns) |
//	SHA-256(reference) [32]
func encode(t *Transfer) []byte {
	out := make([]byte, 0, 128)
	out = append(out, t.ID[:]...)
	out = append(out, t.Debit[:]...)
	out = append(out, t.Credit[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(t.Amount))
	out = append(out, t.PendingID[:]...)
	out = binary.BigEndian.AppendUint32(out, t.Ledger)
	out = binary.BigEndian.AppendUint16(out, t.Code)
	out = binary.BigEndian.AppendUint16(out, uint16(t.Flags))
	out = binary.BigEndian.AppendUint64(out, uint64(t.Timeout/time.Second))
	out = binary.BigEndian.AppendUint64(out, uint64(t.Timestamp.UnixNano()))
	sum := sha256.Sum256([]byte(t.Reference))
	return append(out, sum[:]...)
}

const stateVersion = 1

// stateSize is the size of ledger_accounts.state, always the same so that
// SQLite rewrites it in place.
const stateSize = 1 + 8*8 + 16

// marshalState encodes ledger_accounts.state: what the engine changes on an
// account with every transfer.
//
//	version u8 | debits pending, debits posted, credits pending, credits posted,
//	newest transfer's timestamp, transfers, day, day's debits: u64 each |
//	newest transfer's id [16] (zero for none)
func (a *Account) marshalState(out []byte) []byte {
	out = append(out, stateVersion)
	for _, v := range [...]int64{a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted, a.last, a.transfers, a.day, a.dayDebits} {
		out = binary.BigEndian.AppendUint64(out, uint64(v))
	}
	return append(out, a.lastID[:]...)
}

var errBadState = errors.New("ledger: corrupt account state")

// unmarshalState decodes ledger_accounts.state. It never panics.
func (a *Account) unmarshalState(b []byte) error {
	if len(b) != stateSize || b[0] != stateVersion {
		return errBadState
	}
	b = b[1:]
	for _, dst := range [...]*int64{&a.DebitsPending, &a.DebitsPosted, &a.CreditsPending, &a.CreditsPosted, &a.last, &a.transfers, &a.day, &a.dayDebits} {
		v := binary.BigEndian.Uint64(b)
		if v > math.MaxInt64 {
			return errBadState
		}
		*dst, b = int64(v), b[8:]
	}
	copy(a.lastID[:], b)
	if (a.lastID == ID{}) != (a.last == 0) {
		return errBadState
	}
	return nil
}
