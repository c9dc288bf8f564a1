package exchange

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/store"
	civtlog "github.com/civstack/civstack/internal/tlog"
)

// Record is an access record: who read which fields of whom, why, on which
// legal basis and when. It stays off the log; the log holds
// Commit(nonce, canonical record).
//
// The citizen gets the record (to check it against the log), but not the
// name of the officer who asked: the CJEU (C-579/21, Pankki S) holds that
// the person whose data was consulted is owed the dates and purposes, not
// the identities of the employees, and a covert police access must not name
// its officer to the suspect once its deferral ends. So a record commits
// to its officer by OfficerSeal, and the officer and the seal's salt stay
// on the node, beside the record (the opening): the agency and the DPA see
// the officer and the audit checks the seal. Records made before the seal
// name the officer in Officer instead.
type Record struct {
	ID          string   `json:"id"`
	Request     string   `json:"request"`
	Agency      string   `json:"agency"`
	AgencyName  string   `json:"agency_name"`
	Officer     string   `json:"officer,omitempty"`      // older records only
	OfficerSeal string   `json:"officer_seal,omitempty"` // sealOfficer(salt, officer), hex
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
	Policy      string   `json:"policy,omitempty"` // the policy it was released under
}

// canonical is the record's one encoding (struct order, no spaces).
func (r Record) canonical() ([]byte, error) { return json.Marshal(r) }

// commitDomain separates access commitments from every other hash.
const commitDomain = "civstack access record v1\n"

// officerDomain separates officer seals from every other hash.
const officerDomain = "civstack access officer v1\n"

// sealOfficer is a record's commitment to its officer: hex SHA-256 over
// the domain, a random salt (so that nobody holding the record can test a
// list of names against it) and the officer's name.
func sealOfficer(salt []byte, officer string) string {
	h := sha256.New()
	h.Write([]byte(officerDomain))
	h.Write(salt)
	h.Write([]byte(officer))
	return hex.EncodeToString(h.Sum(nil))
}

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
func citizenKey(secret []byte, personID string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("citizen:" + personID))
	return m.Sum(nil)
}

func (x *Exchange) tag(personID string, commitment [32]byte) [32]byte {
	return pseudonymTag(citizenKey(x.secret, personID), commitment)
}

// pseudonymTag is an access entry's tag: the citizen's key (citizenKey)
// over the entry's commitment.
func pseudonymTag(key []byte, commitment [32]byte) [32]byte {
	m := hmac.New(sha256.New, key)
	m.Write(commitment[:])
	return [32]byte(m.Sum(nil))
}

// Access is a stored access record with its log position. Missing is set
// when the log entry's row no longer holds a record that decodes (it was
// deleted or damaged); only the index's fields are known then.
type Access struct {
	Record
	// Officer is who asked (from the record, or beside it for a record
	// that seals it); never shown to the citizen.
	Officer  string
	Nonce    []byte
	LogIndex int64
	Missing  bool
	// FieldLabels are Fields as the service labels them now (set by
	// Accesses; empty if the service is withdrawn).
	FieldLabels []string
	raw         []byte
	personID    string
	entry       []byte
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

// filter selects access records; the zero filter selects all.
type filter struct {
	person, org, purpose string
	requests             []string // not empty: only the records of these requests
	entries              []int64  // not empty: only the records at these log entries
	direct               bool     // only direct releases (whose requests have no row of their own)
	before               int64    // > 0: only those at log indexes below it
	from, to             int64    // > 0: only those at or after from, before to (Unix ms)
	visibleAt            int64    // > 0: only those whose deferral has ended by then
	deferredAt           int64    // > 0: only those still deferred then
	soonest              bool     // by the end of their deferral, soonest first (not newest first)
	byTime               bool     // find them by their time (from and to set), then order them
	labelled             bool     // set FieldLabels (for an agency's or the DPA's list)
	limit                int      // > 0: only the first limit
}

// where is the WHERE clause (on ex_access a) and its arguments that
// select the index's rows below cur the filter wants.
func (f filter) where(cur int64) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	// Found by time, the log index is only a condition: with the unary
	// plus, which both engines read as the column, no planner takes its
	// range (every row below the cursor) for the time index's.
	logIndex := "a.log_index"
	if f.byTime {
		logIndex = "+a.log_index"
	}
	add(logIndex+" < $%d", cur)
	if f.person != "" {
		add("a.person_id = $%d", f.person)
	}
	if f.org != "" {
		add("a.requester_org = $%d", f.org)
	}
	// in adds "col IN (...)" for vals (each a parameter).
	in := func(col string, vals []any) {
		ps := make([]string, len(vals))
		for i, v := range vals {
			args = append(args, v)
			ps[i] = fmt.Sprintf("$%d", len(args))
		}
		conds = append(conds, col+" IN ("+strings.Join(ps, ", ")+")")
	}
	if len(f.requests) > 0 {
		in("a.request_id", anys(f.requests))
	}
	if len(f.entries) > 0 {
		in("a.log_index", anys(f.entries))
	}
	if f.direct {
		// A request that asked for consent keeps its row once collected.
		conds = append(conds, "NOT EXISTS (SELECT 1 FROM ex_requests r WHERE r.id = a.request_id)")
	}
	if f.purpose != "" {
		add("a.purpose = $%d", f.purpose)
	}
	if f.before > 0 {
		add(logIndex+" < $%d", f.before)
	}
	if f.from > 0 {
		add("a.at >= $%d", f.from)
	}
	if f.to > 0 {
		add("a.at < $%d", f.to)
	}
	if f.visibleAt > 0 {
		add("a.defer_until <= $%d", f.visibleAt)
	}
	if f.deferredAt > 0 {
		add("a.defer_until > $%d", f.deferredAt)
		conds = append(conds, "a.defer_until > 0") // the partial index's condition
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// order is the ORDER BY and LIMIT of the index's part of a list.
func (f filter) order() string {
	var q string
	if f.soonest {
		q += " ORDER BY a.defer_until, a.log_index"
	} else if f.byTime {
		// The unary plus keeps the planner from reading the log index's
		// order (newest first, past every access after to) instead of the
		// accesses' time index; both engines read it as the column.
		q += " ORDER BY +a.log_index DESC"
	} else {
		q += " ORDER BY a.log_index DESC"
	}
	if f.limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.limit)
	}
	return q
}

// anys is vals as query arguments.
func anys[T any](vals []T) []any {
	out := make([]any, len(vals))
	for i, v := range vals {
		out[i] = v
	}
	return out
}

// match applies the filter to what a record itself says (the index only
// narrows the search: a record is shown for what it says, not for what
// its index row says).
func (f filter) match(a *Access) bool {
	return f.matches(a.LogIndex, a.personID, a.Agency, a.Request, a.Purpose, a.Time, a.DeferUntil) &&
		(!f.direct || a.Missing || a.Consent == consentNotNeeded)
}

// matchHeader is match on an opening's header (before its record is decoded).
func (f filter) matchHeader(idx int64, o *opening) bool {
	return f.matches(idx, o.person, o.agency, o.request, o.purpose, o.at, o.deferUntil)
}

// below reports whether f wants only entries below cur, none of the
// tail's: a list from a place below it (an older page), or the entries it
// names (a complaint's access) all below it.
func (f filter) below(cur int64) bool {
	return (f.before > 0 && f.before <= cur) || (len(f.entries) > 0 && slices.Max(f.entries) < cur)
}

func (f filter) matches(idx int64, person, org, request, purpose string, at, deferUntil int64) bool {
	return (f.person == "" || person == f.person) && (f.org == "" || org == f.org) && (len(f.requests) == 0 || slices.Contains(f.requests, request)) &&
		(len(f.entries) == 0 || slices.Contains(f.entries, idx)) &&
		(f.purpose == "" || purpose == f.purpose) && (f.before <= 0 || idx < f.before) && (f.from <= 0 || at >= f.from) && (f.to <= 0 || at < f.to) &&
		(f.visibleAt <= 0 || deferUntil <= f.visibleAt) && (f.deferredAt <= 0 || deferUntil > f.deferredAt)
}

// accesses returns the records the filter selects, newest first (or by
// the end of their deferral, with soonest): those in the index and those
// in the tail past its cursor.
func (x *Exchange) accesses(ctx context.Context, f filter) ([]*Access, error) {
	ls, err := x.lists(ctx, f)
	if err != nil {
		return nil, err
	}
	return ls[0], nil
}

// lists is accesses for each filter, the log's tail read once for all of
// them: the i-th list is what accesses(fs[i]) returns. A record of the
// tail two lists hold is one *Access in both.
func (x *Exchange) lists(ctx context.Context, fs ...filter) ([][]*Access, error) {
	// Below the cursor from the index, from it on from the log's rows (an
	// entry the index takes meanwhile is still read from the rows).
	cur, err := x.cursor(ctx)
	if err != nil {
		return nil, err
	}
	return x.listsAt(ctx, cur, nil, fs...)
}

// listsAt is lists with the index's cursor read (cur), calling seen, if
// not nil, with every entry of the tail (its header), which it then reads
// whole.
func (x *Exchange) listsAt(ctx context.Context, cur int64, seen func(o *opening), fs ...filter) ([][]*Access, error) {
	out, err := x.tail(ctx, cur, seen, fs)
	if err != nil {
		return nil, err
	}
	labelled := false
	for i, f := range fs {
		labelled = labelled || f.labelled
		// Every index row is older than the tail's entries: a list the
		// tail filled newest first needs none of them.
		if f.soonest || f.limit <= 0 || len(out[i]) < f.limit {
			if out[i], err = x.indexed(ctx, cur, f, out[i]); err != nil {
				return nil, err
			}
		}
		slices.SortFunc(out[i], func(a, b *Access) int {
			if f.soonest {
				return cmp.Or(cmp.Compare(a.DeferUntil, b.DeferUntil), cmp.Compare(a.LogIndex, b.LogIndex))
			}
			return cmp.Compare(b.LogIndex, a.LogIndex)
		})
		if f.limit > 0 && len(out[i]) > f.limit {
			out[i] = out[i][:f.limit]
		}
	}
	if labelled {
		svcs := x.serviceLookup(ctx)
		for i, f := range fs {
			if !f.labelled {
				continue
			}
			for _, a := range out[i] {
				if svc := svcs(a.Service); svc != nil {
					a.FieldLabels = svc.Labels(a.Fields)
				}
			}
		}
	}
	return out, nil
}

// indexed appends to out the records below cur (the index's cursor) that
// f selects, read through the index, in its order.
func (x *Exchange) indexed(ctx context.Context, cur int64, f filter, out []*Access) ([]*Access, error) {
	where, args := f.where(cur)
	rows, err := x.db.QueryRead(ctx, `SELECT a.log_index, a.request_id, a.person_id, a.requester_org, a.purpose, a.at, a.defer_until, e.data, e.opening
		FROM ex_access a LEFT JOIN tlog_entries e ON e.idx = a.log_index`+where+f.order(), args...)
	if err != nil {
		return nil, fmt.Errorf("access records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ix Access
		var opening []byte
		if err := rows.Scan(&ix.LogIndex, &ix.Request, &ix.personID, &ix.Agency, &ix.Purpose, &ix.Time, &ix.DeferUntil, &ix.entry, &opening); err != nil {
			return nil, fmt.Errorf("access records: %w", err)
		}
		a := openAccess(ix.LogIndex, ix.entry, opening)
		if a.Missing {
			a.Request, a.personID, a.Agency, a.Purpose, a.Time, a.DeferUntil = ix.Request, ix.personID, ix.Agency, ix.Purpose, ix.Time, ix.DeferUntil
		}
		if f.match(a) {
			out = append(out, a)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("access records: %w", err)
	}
	return out, nil
}

// tail reads, for each filter, the access records it selects from cur
// (the index's cursor) on, newest first, in one pass; it stops once every
// filter has what it may want (its limit, unless it lists by deferral:
// the tail is read newest first, so all of it, then sorted), and reads
// nothing when none wants any entry from there on; with seen, which it
// calls with every entry's header, it reads all of it.
func (x *Exchange) tail(ctx context.Context, cur int64, seen func(o *opening), fs []filter) ([][]*Access, error) {
	out := make([][]*Access, len(fs))
	open := 0 // the filters still wanting records
	want := make([]bool, len(fs))
	for i, f := range fs {
		if want[i] = !f.below(cur); want[i] {
			open++
		}
	}
	if open == 0 && seen == nil {
		return out, nil
	}
	err := x.eachTail(ctx, cur, func(idx int64, data, opening []byte, o *opening) bool {
		if seen != nil {
			seen(o)
		}
		var a *Access
		for i, f := range fs {
			// The header first: only the records a filter wants are decoded.
			if !want[i] || !f.matchHeader(idx, o) {
				continue
			}
			if a == nil {
				a = openAccess(idx, data, opening)
			}
			if a.Missing || !f.match(a) {
				continue
			}
			out[i] = append(out[i], a)
			if !f.soonest && f.limit > 0 && len(out[i]) >= f.limit {
				want[i] = false
				open--
			}
		}
		return open > 0 || seen != nil
	})
	return out, err
}

// eachTail calls each, newest first, with the access entries from cur (the
// index's cursor) on whose opening parses, until each returns false.
func (x *Exchange) eachTail(ctx context.Context, cur int64, each func(idx int64, data, opening []byte, o *opening) bool) error {
	rows, err := x.db.QueryRead(ctx, `SELECT idx, data, opening FROM tlog_entries WHERE kind = $1 AND idx >= $2 ORDER BY idx DESC`, int(civtlog.KindDataAccess), cur)
	if err != nil {
		return fmt.Errorf("access records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var idx int64
		var data, opening []byte
		if err := rows.Scan(&idx, &data, &opening); err != nil {
			return err
		}
		if o, err := parseOpening(opening); err == nil && !each(idx, data, opening, o) {
			break
		}
	}
	return rows.Err()
}

// counts returns the index's cursor and its counts per agency and purpose,
// read in one statement so that both are of the same moment.
func (x *Exchange) counts(ctx context.Context) (int64, map[[2]string]int64, error) {
	rows, err := x.db.QueryRead(ctx, `SELECT '', '', value, 1 FROM ex_index_state WHERE name = 'indexed'
		UNION ALL SELECT requester_org, purpose, n, 0 FROM ex_access_counts`)
	if err != nil {
		return 0, nil, fmt.Errorf("access counts: %w", err)
	}
	defer rows.Close()
	cur, counts := int64(-1), map[[2]string]int64{}
	for rows.Next() {
		var k [2]string
		var n int64
		var isCursor int
		if err := rows.Scan(&k[0], &k[1], &n, &isCursor); err != nil {
			return 0, nil, fmt.Errorf("access counts: %w", err)
		}
		if isCursor == 1 {
			cur = n
		} else if n > 0 {
			counts[k] = n
		}
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("access counts: %w", err)
	}
	if cur < 0 {
		return 0, nil, errors.New("access index: no cursor")
	}
	return cur, counts, nil
}

// cursor is how far the index covers the log.
func (x *Exchange) cursor(ctx context.Context) (int64, error) {
	var cur int64
	if err := x.db.QueryRowRead(ctx, `SELECT value FROM ex_index_state WHERE name = 'indexed'`).Scan(&cur); err != nil {
		return 0, fmt.Errorf("access index: %w", err)
	}
	return cur, nil
}

func openAccess(idx int64, entry, opening []byte) *Access {
	a := &Access{LogIndex: idx, entry: entry}
	o, rec, err := decodeOpening(opening)
	if err != nil {
		a.Missing = true
		return a
	}
	a.Record, a.Officer, a.Nonce, a.raw, a.personID = rec, o.officerOf(&rec), o.nonce, o.raw, o.person
	return a
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
	return x.forCitizen(ctx, filter{person: personID})
}

// ForCitizenPage is ForCitizen a page at a time: at most limit records,
// newest first, of those at log indexes below before (0: from the newest).
// The next page is asked for with the last record's LogIndex (a page
// that ends at entry 0 is the last: nothing is below it, and before 0
// means the newest). A place that is no log index, or a limit below 1,
// is ErrInvalid.
func (x *Exchange) ForCitizenPage(ctx context.Context, personID string, before int64, limit int) ([]*Verified, error) {
	return x.ForCitizenBy(ctx, personID, "", before, limit)
}

// ForCitizenBy is ForCitizenPage of the accesses one agency (its
// organisation id) made; agency "" is every agency's, as ForCitizenPage.
// An agency that made none has an empty list, not an error: the citizen
// asks which of the agencies made any.
func (x *Exchange) ForCitizenBy(ctx context.Context, personID, agency string, before int64, limit int) ([]*Verified, error) {
	if before < 0 || limit < 1 {
		return nil, fmt.Errorf("%w: a page of accesses needs a positive size and a log entry number to list from", ErrInvalid)
	}
	return x.forCitizen(ctx, filter{person: personID, org: agency, before: before, limit: limit})
}

// DisclosedWithin is how long, after a deferral ends, the citizen's page
// shows the access apart, on top (Disclosed): listed by when it happened,
// it may sit below newer accesses, on an older page.
const DisclosedWithin = 30 * Day

// Disclosed lists, newest first, at most limit of the citizen's accesses
// that were deferred and whose deferral ended after since and by now,
// verified as ForCitizen's are. A limit below 1 is ErrInvalid.
func (x *Exchange) Disclosed(ctx context.Context, personID string, since time.Time, limit int) ([]*Verified, error) {
	if limit < 1 {
		return nil, fmt.Errorf("%w: a list of accesses needs a positive size", ErrInvalid)
	}
	f := disclosedSince(personID, since)
	f.limit = limit
	return x.forCitizen(ctx, f)
}

// FirstPage is what the first page of the citizen's accesses shows: the
// page, ForCitizenPage(personID, 0, limit), and the deferred accesses
// disclosed lately, Disclosed(personID, since, disclosedLimit), read
// together (the log's tail once, an access on both verified once). A
// limit below 1 is ErrInvalid.
func (x *Exchange) FirstPage(ctx context.Context, personID string, limit int, since time.Time, disclosedLimit int) (page, disclosed []*Verified, err error) {
	if limit < 1 || disclosedLimit < 1 {
		return nil, nil, fmt.Errorf("%w: a list of accesses needs a positive size", ErrInvalid)
	}
	d := disclosedSince(personID, since)
	d.limit = disclosedLimit
	vs, err := x.forCitizenLists(ctx, filter{person: personID, limit: limit}, d)
	if err != nil {
		return nil, nil, err
	}
	return vs[0], vs[1], nil
}

// HomeNews is what the citizen's home says of her accesses, read without
// verifying them: how many deferred ones became visible to her since one
// time (those Disclosed would list without a limit), and how many she can
// see by now (never deferred, or their deferral has ended) of those made
// since another.
type HomeNews struct{ Disclosed, Recent int }

// News reads HomeNews for personID, the log's tail once for both.
func (x *Exchange) News(ctx context.Context, personID string, disclosedSince, recentSince time.Time) (HomeNews, error) {
	ns, err := x.count(ctx, x.disclosedCounted(personID, disclosedSince), x.recentCounted(personID, recentSince))
	if err != nil {
		return HomeNews{}, err
	}
	return HomeNews{Disclosed: ns[0], Recent: ns[1]}, nil
}

func (x *Exchange) disclosedCounted(personID string, since time.Time) filter {
	f := disclosedSince(personID, since)
	f.visibleAt = max(x.now().UnixMilli(), 1) // as forCitizen's
	return f
}

func (x *Exchange) recentCounted(personID string, since time.Time) filter {
	return filter{person: personID, from: max(since.UnixMilli(), 1), visibleAt: max(x.now().UnixMilli(), 1)}
}

// count counts the records each filter (without a limit) selects, as
// accesses would list them without verifying them: the index's rows
// counted where they are, the log's tail past its cursor read once for
// all the filters, and only the records whose header a filter wants
// decoded.
func (x *Exchange) count(ctx context.Context, fs ...filter) ([]int, error) {
	ns := make([]int, len(fs))
	cur, err := x.cursor(ctx)
	if err != nil {
		return ns, err
	}
	err = x.eachTail(ctx, cur, func(idx int64, data, opening []byte, o *opening) bool {
		var a *Access
		for i, f := range fs {
			if !f.matchHeader(idx, o) {
				continue
			}
			if a == nil {
				a = openAccess(idx, data, opening)
			}
			if !a.Missing && f.match(a) {
				ns[i]++
			}
		}
		return true
	})
	if err != nil {
		return ns, err
	}
	for i, f := range fs {
		where, args := f.where(cur)
		var n int
		if err := x.db.QueryRowRead(ctx, `SELECT COUNT(*) FROM ex_access a`+where, args...).Scan(&n); err != nil {
			return ns, fmt.Errorf("access records: %w", err)
		}
		ns[i] += n
	}
	return ns, nil
}

// disclosedSince selects the citizen's accesses deferred until after
// since (those visible by now are forCitizen's to keep).
func disclosedSince(personID string, since time.Time) filter {
	// deferredAt 0 would select every access, deferred or not.
	return filter{person: personID, deferredAt: max(since.UnixMilli(), 1)}
}

// forCitizen verifies the records f selects that are visible to the
// citizen now.
func (x *Exchange) forCitizen(ctx context.Context, f filter) ([]*Verified, error) {
	vs, err := x.forCitizenLists(ctx, f)
	if err != nil {
		return nil, err
	}
	return vs[0], nil
}

// forCitizenLists is forCitizen for each filter, the log's tail read and
// the latest checkpoint opened once for all, and an access two lists hold
// (the same log entry) verified once: one *Verified in both.
func (x *Exchange) forCitizenLists(ctx context.Context, fs ...filter) ([][]*Verified, error) {
	now := max(x.now().UnixMilli(), 1)
	for i := range fs {
		fs[i].visibleAt = now
	}
	ls, err := x.lists(ctx, fs...)
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
	out := make([][]*Verified, len(ls))
	done := map[int64]*Verified{}
	for i, as := range ls {
		for _, a := range as {
			v := done[a.LogIndex]
			if v == nil {
				v = &Verified{Access: a}
				v.Status = x.check(ctx, v, signed, cp, cpOK)
				done[a.LogIndex] = v
			}
			out[i] = append(out[i], v)
		}
	}
	return out, nil
}

func (x *Exchange) check(ctx context.Context, v *Verified, signed []byte, cp civtlog.Checkpoint, cpOK bool) string {
	if v.Missing {
		return "NOT VERIFIED: the record of this access is missing from the database."
	}
	entry, err := civtlog.Parse(v.entry)
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

// Summary is the DPA's view: accesses per agency and purpose.
type Summary struct {
	Agency, AgencyName, Purpose string
	Count                       int
}

// DPAView is what the data-protection authority sees.
type DPAView struct {
	Summary []Summary
	// Deferred are the accesses not yet visible to the citizen whose
	// deferral ends soonest (at most DPAOverview of them), of
	// DeferredCount in all.
	Deferred      []*Access
	DeferredCount int
	Recent        []*Access // the newest DPAOverview
	Denied        []*Request
	// PoliciesInForce counts the policies not retired.
	PoliciesInForce int
	// OpenComplaints counts the citizens' complaints not yet answered.
	OpenComplaints int
}

// DPAOverview is how many deferred, recent and denied ones the DPA's
// overview lists; Accesses and Denied page through all of them.
const DPAOverview = 50

// DPA gathers the data-protection authority's view; it sees deferred
// accesses at once.
func (x *Exchange) DPA(ctx context.Context) (*DPAView, error) {
	v := &DPAView{}
	now := x.now().UnixMilli()
	cur, counts, err := x.counts(ctx)
	if err != nil {
		return nil, err
	}
	if err := x.db.QueryRowRead(ctx, `SELECT COUNT(*) FROM ex_access WHERE log_index < $1 AND defer_until > $2 AND defer_until > 0`, cur, now).Scan(&v.DeferredCount); err != nil {
		return nil, fmt.Errorf("deferred accesses: %w", err)
	}
	// The log's tail once: counted, and read for both lists.
	ls, err := x.listsAt(ctx, cur, func(o *opening) {
		counts[[2]string{o.agency, o.purpose}]++
		if o.deferUntil > now {
			v.DeferredCount++
		}
	}, filter{deferredAt: now, soonest: true, limit: DPAOverview, labelled: true}, filter{limit: DPAOverview, labelled: true})
	if err != nil {
		return nil, err
	}
	v.Deferred, v.Recent = ls[0], ls[1]
	for _, k := range slices.SortedFunc(maps.Keys(counts), compareKeys) {
		v.Summary = append(v.Summary, Summary{Agency: k[0], AgencyName: x.names(ctx, k[0]), Purpose: k[1], Count: int(counts[k])})
	}
	if v.Denied, err = x.Denied(ctx, DPAOverview); err != nil {
		return nil, err
	}
	if err := x.db.QueryRowRead(ctx, `SELECT COUNT(*) FROM ex_policies WHERE active = 1`).Scan(&v.PoliciesInForce); err != nil {
		return nil, fmt.Errorf("policies in force: %w", err)
	}
	if v.OpenComplaints, err = x.OpenComplaints(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// ByTimeWithin is the longest range of time, far back and holding more
// than ByTimeRows accesses, that Accesses reads through the accesses' time
// indexes (migration 00027) and sorts (see Exchange.byTime;
// docs/benchmarks.md, BenchmarkDPADays and BenchmarkDPARanges).
const ByTimeWithin = 92 * Day

// ByTimeRows is the most accesses a range of time may hold for Accesses to
// read it through the time indexes and sort it wherever it lies; counting
// them, and those after it, costs at most as many index entries each.
const ByTimeRows = 5000

// AccessQuery selects access records for Accesses: of one agency (every
// agency if empty), for one purpose (every purpose if empty), only those
// still deferred (the citizen cannot see them yet) if Deferred, at log
// indexes below Before (0: from the newest; the last one's LogIndex pages
// on), at most Limit (> 0) of them.
type AccessQuery struct {
	Agency, Purpose string
	Deferred        bool
	// From and To, when not zero, select the accesses made at or after
	// From and before To.
	From, To time.Time
	Before   int64
	Limit    int
}

// Accesses is the data-protection authority's look into the records (and
// an agency's into its own releases), newest first. Deferred records are
// included: the DPA sees them at once.
func (x *Exchange) Accesses(ctx context.Context, q AccessQuery) ([]*Access, error) {
	if q.Limit <= 0 || q.Before < 0 {
		return nil, fmt.Errorf("%w: a page of accesses needs a positive size and a log index", ErrInvalid)
	}
	f := filter{org: q.Agency, purpose: q.Purpose, before: q.Before, limit: q.Limit, labelled: true}
	if !q.From.IsZero() {
		f.from = max(q.From.UnixMilli(), 1)
	}
	if !q.To.IsZero() {
		f.to = max(q.To.UnixMilli(), 1)
	}
	if q.Deferred {
		f.deferredAt = x.now().UnixMilli()
	}
	// One cursor for the counts and the list, read once.
	cur, err := x.cursor(ctx)
	if err != nil {
		return nil, err
	}
	if f.from > 0 || f.to > 0 {
		if f.byTime, err = x.byTime(ctx, cur, f); err != nil {
			return nil, err
		}
	}
	ls, err := x.listsAt(ctx, cur, nil, f)
	if err != nil {
		return nil, err
	}
	return ls[0], nil
}

// byTime reports whether Accesses, at the index's cursor cur, reads f's
// range of time through the
// time indexes and sorts it, rather than newest first. A range that holds
// at most byTimeRows accesses (counted up to one more) is read by time,
// however far back it lies. A larger one is read newest first when it
// ends among the newest (open, or at most byTimeRows accesses after it,
// below f.before: the next page of a list is one), where its first page
// is and sorting it would read all of it. A larger one far back is read
// by time if it spans at most ByTimeWithin, where sorting it costs less
// than reading every newer access first, and newest first if longer.
func (x *Exchange) byTime(ctx context.Context, cur int64, f filter) (bool, error) {
	n, err := x.countIndexed(ctx, cur, f, x.byTimeRows+1)
	if err != nil || n <= x.byTimeRows {
		return err == nil, err
	}
	if f.to <= 0 {
		return false, nil
	}
	after := f
	after.from, after.to = f.to, 0
	if n, err = x.countIndexed(ctx, cur, after, x.byTimeRows+1); err != nil || n <= x.byTimeRows {
		return false, err
	}
	return f.from > 0 && f.to-f.from <= ByTimeWithin.Milliseconds(), nil
}

// countIndexed counts the index's rows below cur (its cursor) that f
// selects, up to most, found as a read by time finds them.
func (x *Exchange) countIndexed(ctx context.Context, cur int64, f filter, most int) (int, error) {
	f.byTime = true
	where, args := f.where(cur)
	args = append(args, most)
	var n int
	if err := x.db.QueryRowRead(ctx, fmt.Sprintf(`SELECT COUNT(*) FROM (SELECT 1 FROM ex_access a%s LIMIT $%d) n`, where, len(args)), args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("access records: %w", err)
	}
	return n, nil
}

// Audit compares the access records in db with the log's entries (from a
// verified log: index → data-access entry, for the first size entries).
// It is NewAuditor, one Check of the whole range and Finish; see Auditor
// for what it reports.
func Audit(ctx context.Context, db *store.DB, entries map[int64]*civtlog.Entry, size int64, secret []byte) (checked int, problems []string, err error) {
	a, err := NewAuditor(ctx, db, size, secret)
	if err != nil {
		return 0, nil, err
	}
	if err := a.Check(ctx, size, entries); err != nil {
		return 0, nil, err
	}
	return a.Finish(ctx)
}

// An Auditor compares the access records in a node's database with the
// data-access entries of a verified log of size entries, one range of the
// log at a time, so that auditing a log of any length takes the memory of
// one range, not of the log. It reports, one line per problem: a record
// changed (it no longer opens its entry's commitment), an access entry
// whose record is gone (deleted), a record hidden from the citizen (indexed
// entries whose index row is missing or names someone else), an index row
// pointing at an entry that is not a data access, and a wrong count on the
// DPA's page. With the node's exchange secret (nil: not checked) it also
// reports a record that names another citizen than the one its entry's
// pseudonym is for: moved away from its citizen. And it reports a record
// that was not released under a policy in force (see policyProblem): its
// policy gone, changed, or not in force at the time.
//
// Contract: Check is called with ranges in log order, each starting where
// the one before ended (the first at 0) and the last ending at size; then
// Finish, once. An Auditor is not safe for concurrent use.
type Auditor struct {
	r        *sql.DB
	size     int64
	next     int64 // where the next range starts
	indexed  int64 // the index's position when the audit began
	secret   []byte
	policies map[string]*Policy // by id, all of them
	checked  int
	problems []string
}

// NewAuditor starts an audit of db against a verified log of size entries.
func NewAuditor(ctx context.Context, db *store.DB, size int64, secret []byte) (*Auditor, error) {
	a := &Auditor{r: db.Reader(), size: size, secret: secret}
	if err := a.r.QueryRowContext(ctx, `SELECT value FROM ex_index_state WHERE name = 'indexed'`).Scan(&a.indexed); err != nil {
		return nil, fmt.Errorf("access index: %w", err)
	}
	pols, err := readPolicies(ctx, a.r.QueryContext, "")
	if err != nil {
		return nil, err
	}
	a.policies = make(map[string]*Policy, len(pols))
	for _, p := range pols {
		a.policies[p.ID] = p
	}
	return a, nil
}

// policySkew is how far a record's time may lie outside its policy's
// time in force before the audit reports it: the nodes' clocks differ a
// little, and a release may commit while a retirement, timed just before
// it, is still in flight (the release checks the policy is active when it
// commits).
const policySkew = time.Minute

// policyProblem says how rec was not released under the policy it names,
// p (nil: not in the database), or "" when it was: p lets rec's agency ask
// for those fields of that service for that purpose on that legal basis;
// it was in force at rec's time; it allows rec's deferral, consent and
// retention. Policies never change once in force (they are only retired),
// so a mismatch is a policy changed or deleted behind the exchange's back,
// or a record released without one.
func policyProblem(rec Record, p *Policy) string {
	if p == nil {
		return fmt.Sprintf("its policy %s is not in the database", rec.Policy)
	}
	if p.Requester != rec.Agency || p.Service != rec.Service || p.Purpose != rec.Purpose || p.LegalBasis != rec.LegalBasis {
		return fmt.Sprintf("its policy %s is for another agency, service, purpose or legal basis", p.ID)
	}
	for _, f := range rec.Fields {
		if !slices.Contains(p.Fields, f) {
			return fmt.Sprintf("its policy %s does not allow the field %s", p.ID, f)
		}
	}
	at := time.UnixMilli(rec.Time).UTC()
	if at.Before(p.CreatedAt.Add(-policySkew)) || (!p.RetiredAt.IsZero() && at.After(p.RetiredAt.Add(policySkew))) {
		until := "it was retired (time not recorded)"
		if p.Active {
			until = "now"
		} else if !p.RetiredAt.IsZero() {
			until = p.RetiredAt.Format(time.RFC3339)
		}
		return fmt.Sprintf("it was released at %s, and its policy %s was in force from %s until %s", at.Format(time.RFC3339), p.ID, p.CreatedAt.Format(time.RFC3339), until)
	}
	ms := func(d int64) time.Duration { return time.Duration(d) * time.Millisecond }
	switch {
	case rec.DeferUntil != 0 && ms(rec.DeferUntil-rec.Time) > p.MaxDeferral:
		return fmt.Sprintf("it was hidden from the citizen longer than its policy %s allows", p.ID)
	case p.Consent && rec.Consent != consentGiven:
		return fmt.Sprintf("its policy %s needs the citizen's consent, and the record does not say it was given", p.ID)
	case ms(rec.RetainUntil-rec.Time) > p.Retention:
		return fmt.Sprintf("it may be kept longer than its policy %s allows", p.ID)
	}
	return ""
}

// Check audits the log's range from where the last range ended up to hi
// (exclusive): entries holds that range's data-access entries by index.
func (a *Auditor) Check(ctx context.Context, hi int64, entries map[int64]*civtlog.Entry) error {
	lo := a.next
	if hi < lo || hi > a.size {
		return fmt.Errorf("audit range %d–%d does not follow %d within %d entries", lo, hi, lo, a.size)
	}
	a.next = hi
	rows, err := a.r.QueryContext(ctx, `SELECT e.idx, e.opening, a.log_index, a.request_id, a.person_id, a.requester_org, a.purpose, a.at, a.defer_until
		FROM tlog_entries e LEFT JOIN ex_access a ON a.log_index = e.idx WHERE e.kind = $1 AND e.idx >= $2 AND e.idx < $3 ORDER BY e.idx`, int(civtlog.KindDataAccess), lo, hi)
	if err != nil {
		return fmt.Errorf("access records: %w", err)
	}
	defer rows.Close()
	seen := map[int64]bool{}
	for rows.Next() {
		var idx int64
		var opening []byte
		var ixIdx sql.NullInt64
		var ixReq, ixPerson, ixOrg, ixPurpose sql.NullString
		var ixAt, ixDefer sql.NullInt64
		if err := rows.Scan(&idx, &opening, &ixIdx, &ixReq, &ixPerson, &ixOrg, &ixPurpose, &ixAt, &ixDefer); err != nil {
			return fmt.Errorf("access records: %w", err)
		}
		seen[idx] = true
		e, ok := entries[idx]
		if !ok {
			a.problems = append(a.problems, fmt.Sprintf("log entry %d is a data access in the database but not in the verified log", idx))
			continue
		}
		o, rec, derr := decodeOpening(opening)
		switch {
		case opening == nil:
			a.deleted(idx)
			continue
		case derr != nil || e.Commitment != Commit(o.nonce, o.raw):
			a.problems = append(a.problems, fmt.Sprintf("ACCESS RECORD %d WAS CHANGED: it no longer matches its log entry", idx))
			continue
		case a.secret != nil && e.Tag != pseudonymTag(citizenKey(a.secret, o.person), e.Commitment):
			a.problems = append(a.problems, fmt.Sprintf("ACCESS RECORD %d IS HIDDEN FROM THE CITIZEN: it names another citizen than its log entry's pseudonym is for", idx))
			continue
		}
		a.checked++
		if rec.Policy != "" { // older records do not name theirs
			if why := policyProblem(rec, a.policies[rec.Policy]); why != "" {
				a.problems = append(a.problems, fmt.Sprintf("ACCESS RECORD %d WAS NOT RELEASED UNDER A POLICY IN FORCE: %s", idx, why))
			}
		}
		if idx >= a.indexed {
			continue // not indexed yet
		}
		want := indexRow(idx, o)
		got := []any{ixIdx.Int64, ixReq.String, ixPerson.String, ixOrg.String, ixPurpose.String, ixAt.Int64, ixDefer.Int64}
		if !ixIdx.Valid || !slices.Equal(want, got) {
			a.problems = append(a.problems, fmt.Sprintf("ACCESS RECORD %d IS HIDDEN FROM THE CITIZEN: its index row is missing or changed", idx))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("access records: %w", err)
	}
	for _, idx := range slices.Sorted(maps.Keys(entries)) {
		if !seen[idx] && idx >= lo && idx < hi {
			a.deleted(idx)
		}
	}
	return nil
}

// deleted reports the record of access entry idx gone.
func (a *Auditor) deleted(idx int64) {
	a.problems = append(a.problems, fmt.Sprintf("AN ACCESS RECORD WAS DELETED: log entry %d records a data access that the database no longer holds", idx))
}

// Finish checks what spans the whole log (index rows that point at no
// data access, the DPA's counts) and returns the number of records that
// matched their entries and every problem found.
func (a *Auditor) Finish(ctx context.Context) (checked int, problems []string, err error) {
	if a.next != a.size {
		return 0, nil, fmt.Errorf("audit ended at entry %d of %d", a.next, a.size)
	}
	stray, err := a.r.QueryContext(ctx, `SELECT a.log_index FROM ex_access a LEFT JOIN tlog_entries e ON e.idx = a.log_index
		WHERE a.log_index < $2 AND (e.idx IS NULL OR e.kind <> $1) ORDER BY a.log_index`, int(civtlog.KindDataAccess), a.size)
	if err != nil {
		return 0, nil, fmt.Errorf("access index: %w", err)
	}
	defer stray.Close()
	for stray.Next() {
		var idx int64
		if err := stray.Scan(&idx); err != nil {
			return 0, nil, fmt.Errorf("access index: %w", err)
		}
		a.problems = append(a.problems, fmt.Sprintf("an access index row points at log entry %d, which is not a data access", idx))
	}
	if err := stray.Err(); err != nil {
		return 0, nil, fmt.Errorf("access index: %w", err)
	}
	wrong, err := auditCounts(ctx, a.r)
	return a.checked, append(a.problems, wrong...), err
}

// auditCounts compares the DPA's counts per agency and purpose with the
// index they summarise, in one statement (one moment of the database).
func auditCounts(ctx context.Context, r *sql.DB) ([]string, error) {
	rows, err := r.QueryContext(ctx, `SELECT requester_org, purpose, COUNT(*), 0 FROM ex_access GROUP BY requester_org, purpose
		UNION ALL SELECT requester_org, purpose, n, 1 FROM ex_access_counts`)
	if err != nil {
		return nil, fmt.Errorf("access counts: %w", err)
	}
	defer rows.Close()
	indexed, counted := map[[2]string]int64{}, map[[2]string]int64{}
	for rows.Next() {
		var k [2]string
		var n int64
		var isCount int
		if err := rows.Scan(&k[0], &k[1], &n, &isCount); err != nil {
			return nil, fmt.Errorf("access counts: %w", err)
		}
		if isCount == 1 {
			counted[k] = n
		} else {
			indexed[k] = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("access counts: %w", err)
	}
	keys := slices.SortedFunc(maps.Keys(indexed), compareKeys)
	for _, k := range slices.SortedFunc(maps.Keys(counted), compareKeys) {
		if _, ok := indexed[k]; !ok {
			keys = append(keys, k)
		}
	}
	var problems []string
	for _, k := range keys {
		if indexed[k] != counted[k] {
			problems = append(problems, fmt.Sprintf("THE DPA'S COUNT IS WRONG: %s for purpose %s shows %d accesses, the index holds %d", k[0], k[1], counted[k], indexed[k]))
		}
	}
	return problems, nil
}
