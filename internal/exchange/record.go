package exchange

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/store"
	civtlog "github.com/civstack/civstack/internal/tlog"
)

// Record is an access record: who read which fields of whom, why, on which
// legal basis and when. It stays off the log; the log holds
// Commit(nonce, canonical record).
type Record struct {
	ID          string   `json:"id"`
	Request     string   `json:"request"`
	Agency      string   `json:"agency"`
	AgencyName  string   `json:"agency_name"`
	Officer     string   `json:"officer"`
	Service     string   `json:"service"`
	ServiceName string   `json:"service_name"`
	Holder      string   `json:"holder"`
	Purpose     string   `json:"purpose"`
	LegalBasis  string   `json:"legal_basis"`
	Fields      []string `json:"fields"`
	Consent     string   `json:"consent"`
	Time        int64    `json:"time"`        // Unix milliseconds
	DeferUntil  int64    `json:"defer_until"` // 0: not deferred
	RetainUntil int64    `json:"retain_until"`
}

// canonical is the record's one encoding (struct order, no spaces).
func (r Record) canonical() ([]byte, error) { return json.Marshal(r) }

// commitDomain separates access commitments from every other hash.
const commitDomain = "civstack access record v1\n"

// Commit is the log's commitment to a record: SHA-256 over the domain,
// the 32-byte nonce and the canonical record.
func Commit(nonce, canonical []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(commitDomain))
	h.Write(nonce)
	h.Write(canonical)
	return [32]byte(h.Sum(nil))
}

// citizenKey is the citizen's pseudonym key, k = HMAC(secret, person id);
// the tag of an entry is HMAC(k, commitment): different for every entry,
// so the public log does not show which entries concern one person, and
// computable only with k.
func (x *Exchange) citizenKey(personID string) []byte {
	m := hmac.New(sha256.New, x.secret)
	m.Write([]byte("citizen:" + personID))
	return m.Sum(nil)
}

func (x *Exchange) tag(personID string, commitment [32]byte) [32]byte {
	m := hmac.New(sha256.New, x.citizenKey(personID))
	m.Write(commitment[:])
	return [32]byte(m.Sum(nil))
}

// Access is a stored access record with its log position.
type Access struct {
	Record
	Nonce    []byte
	LogIndex int64
	raw      []byte
	personID string
}

// Deferred reports whether the citizen may not see it yet at now.
func (a *Access) Deferred(now time.Time) bool {
	return a.DeferUntil != 0 && now.UnixMilli() < a.DeferUntil
}

// When is the access time.
func (a *Access) When() time.Time { return time.UnixMilli(a.Time).UTC() }

// Until is the end of the deferral.
func (a *Access) Until() time.Time { return time.UnixMilli(a.DeferUntil).UTC() }

// Retain is how long the recipient may keep the data.
func (a *Access) Retain() time.Time { return time.UnixMilli(a.RetainUntil).UTC() }

func (x *Exchange) accesses(ctx context.Context, where string, args ...any) ([]*Access, error) {
	rows, err := x.db.QueryRead(ctx, `SELECT record, nonce, log_index, person_id FROM ex_access `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("access records: %w", err)
	}
	defer rows.Close()
	var out []*Access
	for rows.Next() {
		a := &Access{}
		if err := rows.Scan(&a.raw, &a.Nonce, &a.LogIndex, &a.personID); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(a.raw, &a.Record); err != nil {
			return nil, fmt.Errorf("access record: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Verified is an access record as the citizen sees it, with the proof.
type Verified struct {
	*Access
	Verified bool   // the entry is in a signed checkpoint and matches the record
	Status   string // what the check found, in words
	Proof    *Proof
}

// Proof is what lets anyone re-check one record offline: the record and
// nonce (the commitment's opening), the log entry, its inclusion proof and
// the signed checkpoint.
type Proof struct {
	Record     json.RawMessage `json:"record"`
	Nonce      []byte          `json:"nonce"`
	Index      int64           `json:"log_index"`
	Entry      []byte          `json:"entry"`
	Inclusion  []tlog.Hash     `json:"inclusion"`
	Checkpoint string          `json:"checkpoint"`
}

// ForCitizen lists a citizen's access records that are no longer
// deferred, newest first, each checked against the log: the entry at its
// index must carry its commitment and the citizen's tag, and be included
// in the latest signed checkpoint.
func (x *Exchange) ForCitizen(ctx context.Context, personID string) ([]*Verified, error) {
	now := x.now().UnixMilli()
	as, err := x.accesses(ctx, `WHERE person_id = $1 AND defer_until <= $2 ORDER BY at DESC, id`, personID, now)
	if err != nil {
		return nil, err
	}
	signed, cp, err := x.log.Latest(ctx)
	if err != nil && !errors.Is(err, civtlog.ErrNotFound) {
		return nil, err
	}
	cpOK := err == nil
	if cpOK && x.logKey != "" {
		if _, err := civtlog.OpenCheckpoint(signed, x.logKey); err != nil {
			cpOK = false
		}
	}
	var out []*Verified
	for _, a := range as {
		v := &Verified{Access: a}
		v.Status = x.check(ctx, v, signed, cp, cpOK)
		out = append(out, v)
	}
	return out, nil
}

func (x *Exchange) check(ctx context.Context, v *Verified, signed []byte, cp civtlog.Checkpoint, cpOK bool) string {
	entry, err := x.entry(ctx, v.LogIndex)
	if err != nil {
		return "Not verified: the log has no entry for this record."
	}
	commitment := Commit(v.Nonce, v.raw)
	if entry.Kind != civtlog.KindDataAccess || entry.Commitment != commitment {
		return "NOT VERIFIED: the record does not match its log entry."
	}
	if entry.Tag != x.tag(v.personID, commitment) {
		return "NOT VERIFIED: the log entry is not about you."
	}
	if !cpOK || v.LogIndex >= cp.Size {
		return "Recorded; waiting for the next signed checkpoint."
	}
	leaf, proof, err := x.log.InclusionProof(ctx, v.LogIndex, cp.Size, cp.Size)
	if err != nil {
		return "Not verified: no inclusion proof."
	}
	raw, _ := entry.Marshal()
	if leaf != tlog.RecordHash(raw) || tlog.CheckRecord(proof, cp.Size, cp.Root, v.LogIndex, leaf) != nil {
		return "NOT VERIFIED: the inclusion proof does not check against the signed checkpoint."
	}
	v.Verified = true
	v.Proof = &Proof{Record: v.raw, Nonce: v.Nonce, Index: v.LogIndex, Entry: raw, Inclusion: proof, Checkpoint: string(signed)}
	return fmt.Sprintf("Verified: entry %d of the signed log of %d entries.", v.LogIndex, cp.Size)
}

func (x *Exchange) entry(ctx context.Context, idx int64) (*civtlog.Entry, error) {
	var data []byte
	if err := x.db.QueryRowRead(ctx, `SELECT data FROM tlog_entries WHERE idx = $1`, idx).Scan(&data); err != nil {
		return nil, err
	}
	return civtlog.Parse(data)
}

// Summary is the DPA's view: accesses per agency and purpose.
type Summary struct {
	Agency, AgencyName, Purpose string
	Count                       int
}

// DPAView is what the data-protection authority sees.
type DPAView struct {
	Summary  []Summary
	Deferred []*Access // not yet visible to the citizen, with deadlines
	Recent   []*Access
	Denied   []*Request
	Policies []*Policy
}

// DPA gathers the data-protection authority's view; it sees deferred
// accesses at once.
func (x *Exchange) DPA(ctx context.Context) (*DPAView, error) {
	v := &DPAView{}
	rows, err := x.db.QueryRead(ctx, `SELECT requester_org, purpose, COUNT(*) FROM ex_access GROUP BY requester_org, purpose ORDER BY requester_org, purpose`)
	if err != nil {
		return nil, fmt.Errorf("dpa: %w", err)
	}
	for rows.Next() {
		var s Summary
		if err := rows.Scan(&s.Agency, &s.Purpose, &s.Count); err != nil {
			rows.Close()
			return nil, err
		}
		v.Summary = append(v.Summary, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range v.Summary {
		v.Summary[i].AgencyName = x.names(ctx, v.Summary[i].Agency)
	}
	if v.Deferred, err = x.accesses(ctx, `WHERE defer_until > 0 AND defer_until > $1 ORDER BY defer_until`, x.now().UnixMilli()); err != nil {
		return nil, err
	}
	if v.Recent, err = x.accesses(ctx, `ORDER BY at DESC, id LIMIT 50`); err != nil {
		return nil, err
	}
	if v.Denied, err = x.Denied(ctx, 50); err != nil {
		return nil, err
	}
	if v.Policies, err = x.Policies(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// Audit compares every access record in db with the log's entries (from
// a verified log: index → entry, for the first size entries). It returns
// one line per problem: a record changed (it no longer opens its entry's
// commitment), a record whose entry is not an access entry, and an access
// entry with no record (deleted).
func Audit(ctx context.Context, db *store.DB, entries map[int64]*civtlog.Entry, size int64) (checked int, problems []string, err error) {
	rows, err := db.Reader().QueryContext(ctx, `SELECT id, record, nonce, log_index FROM ex_access ORDER BY log_index`)
	if err != nil {
		return 0, nil, fmt.Errorf("access records: %w", err)
	}
	defer rows.Close()
	seen := map[int64]bool{}
	for rows.Next() {
		var id string
		var raw, nonce []byte
		var idx int64
		if err := rows.Scan(&id, &raw, &nonce, &idx); err != nil {
			return 0, nil, err
		}
		if idx >= size {
			continue // not in the checkpoint yet
		}
		checked++
		seen[idx] = true
		e, ok := entries[idx]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("access record %s points at log entry %d, which is not a data access", id, idx))
		case e.Commitment != Commit(nonce, raw):
			problems = append(problems, fmt.Sprintf("ACCESS RECORD %s WAS CHANGED: it no longer matches log entry %d", id, idx))
		}
	}
	if err := rows.Err(); err != nil {
		return 0, nil, err
	}
	for _, idx := range slices.Sorted(maps.Keys(entries)) {
		if !seen[idx] {
			problems = append(problems, fmt.Sprintf("AN ACCESS RECORD WAS DELETED: log entry %d records a data access that the database no longer holds", idx))
		}
	}
	return checked, problems, nil
}
