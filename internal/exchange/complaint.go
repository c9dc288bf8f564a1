package exchange

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/text"
)

// A citizen who finds an access on her page she does not understand, or
// thinks wrong, asks the data-protection authority to look into it (GDPR
// Art. 77, the right to lodge a complaint with a supervisory authority;
// Estonia's data tracker sends its users to the DPA with the same
// question). She complains about one access at a time, once; the DPA
// answers once, and she reads the answer beside the access.
//
// A complaint names the access by its log entry and holds her words and
// the DPA's. Nobody else reads them: the DPA's list shows the access (which
// the DPA sees anyway) and her words, not her name, and no log line, error
// or metric carries either.

// ComplaintMax is the most characters a complaint's words, or the DPA's
// answer, may have.
const ComplaintMax = 2000

// Complaint is a citizen's complaint about one access to her data, and the
// DPA's answer once it is given.
type Complaint struct {
	ID       string
	LogIndex int64 // the access it is about
	Message  string
	Created  time.Time
	Answer   string
	Answered time.Time // zero while the DPA has not answered
	// AnsweredBy is who at the DPA answered (for the DPA's records; the
	// citizen is not shown it).
	AnsweredBy string
	// Access is the access it is about, as the DPA sees it (set by
	// Complaints; nil if the record can no longer be read).
	Access *Access
}

// KeepComplaints is how long an answered complaint is kept after the
// DPA's answer (Deps.KeepComplaints sets another, from MinKeepComplaints
// to MaxKeepComplaints); then ForgetComplaints deletes it, her words and
// the answer with it, and the access is as if she never complained (she
// may again). An open complaint is kept until it is answered. The access
// record itself is kept, as the log is.
const (
	KeepComplaints    = 5 * 365 * Day
	MinKeepComplaints = 30 * Day
	MaxKeepComplaints = 10 * 365 * Day
)

// ComplaintsKept is how long this exchange keeps an answered complaint.
func (x *Exchange) ComplaintsKept() time.Duration { return x.keep }

// ForgetComplaints deletes the complaints answered longer ago than the
// exchange keeps them, a batch at a time, and returns how many it deleted.
func (x *Exchange) ForgetComplaints(ctx context.Context) (int64, error) {
	return x.forget(ctx, "forget answered complaints", `DELETE FROM ex_complaints WHERE id IN
		(SELECT id FROM ex_complaints WHERE answered_at > 0 AND answered_at < $1 ORDER BY answered_at LIMIT $2)`, x.now().Add(-x.keep))
}

// Open reports whether the DPA has yet to answer.
func (c *Complaint) Open() bool { return c.Answered.IsZero() }

// checkWords trims s and checks it is text a person wrote: valid UTF-8 of
// at most ComplaintMax characters, with no control characters but line
// breaks and tabs. empty says whether it may be empty; what names it in
// the error.
func checkWords(s, what string, empty bool) (string, error) {
	s = strings.TrimSpace(text.Newlines(s))
	switch {
	case !utf8.ValidString(s):
		return "", fmt.Errorf("%w: %s is not valid UTF-8 text", ErrInvalid, what)
	case s == "" && !empty:
		return "", fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	case utf8.RuneCountInString(s) > ComplaintMax:
		return "", fmt.Errorf("%w: %s is longer than %d characters", ErrInvalid, what, ComplaintMax)
	}
	switch text.LinesFault(s) {
	case text.HasControl:
		return "", fmt.Errorf("%w: %s holds a control character", ErrInvalid, what)
	case text.HasReorder:
		return "", fmt.Errorf("%w: %s holds a bidirectional override (U+202A to U+202E or U+2066 to U+2069), which would change the order it reads in", ErrInvalid, what)
	}
	return s, nil
}

// CitizenAccess is the access at log entry idx as ForCitizen shows it,
// verified, if it is personID's and she may see it now; otherwise
// ErrNotFound, the same for another citizen's access, one still deferred
// and none at all, so that she learns nothing of others.
func (x *Exchange) CitizenAccess(ctx context.Context, personID string, idx int64) (*Verified, error) {
	f, ok := herAccessAt(personID, idx)
	if !ok {
		return nil, noAccessAt(idx)
	}
	vs, err := x.forCitizen(ctx, f)
	if err != nil {
		return nil, err
	}
	if len(vs) == 0 || vs[0].LogIndex != idx || vs[0].Missing {
		return nil, noAccessAt(idx)
	}
	return vs[0], nil
}

// herAccessAt selects the citizen's newest access below idx+1, which is
// the one at idx if she has one there; ok is false for an idx no access
// can have.
func herAccessAt(personID string, idx int64) (f filter, ok bool) {
	return filter{person: personID, before: idx + 1, limit: 1}, idx >= 0 && idx < math.MaxInt64
}

// noAccessAt is CitizenAccess's ErrNotFound.
func noAccessAt(idx int64) error {
	return fmt.Errorf("%w: none of the accesses to your data is at log entry %d", ErrNotFound, idx)
}

// Complain records personID's complaint about her access at log entry idx
// (CitizenAccess's ErrNotFound if it is not one she can see), with her
// words (checkWords; they may be empty: she asks the DPA to check it).
// A second complaint about the same access is ErrDecided, with the first
// returned as it stands.
func (x *Exchange) Complain(ctx context.Context, personID string, idx int64, message string) (*Complaint, error) {
	message, err := checkWords(message, "what you ask the data-protection authority", true)
	if err != nil {
		return nil, err
	}
	// Hers and visible to her, as CitizenAccess decides, without verifying
	// it against the log (her page does that when it shows it).
	f, ok := herAccessAt(personID, idx)
	if !ok {
		return nil, noAccessAt(idx)
	}
	f.visibleAt = max(x.now().UnixMilli(), 1) // as forCitizen's
	as, err := x.accesses(ctx, f)
	if err != nil {
		return nil, err
	}
	if len(as) == 0 || as[0].LogIndex != idx || as[0].Missing {
		return nil, noAccessAt(idx)
	}
	c := &Complaint{ID: x.id(), LogIndex: idx, Message: message, Created: x.now().UTC()}
	var first *Complaint
	err = x.db.Tx(ctx, func(tx *store.Tx) error {
		first = nil
		r, err := tx.ExecContext(ctx, `INSERT INTO ex_complaints (id, log_index, person_id, message, created_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (log_index) DO NOTHING`, c.ID, idx, personID, message, c.Created.UnixMilli())
		if err != nil {
			return fmt.Errorf("complaint: %w", err)
		}
		if n, _ := r.RowsAffected(); n == 1 {
			return nil
		}
		cs, err := readComplaints(ctx, tx.QueryContext, `WHERE log_index = $1 AND person_id = $2`, idx, personID)
		if err != nil {
			return err
		}
		if len(cs) == 0 { // an access is one citizen's; never reached
			return fmt.Errorf("complaint: the access at log entry %d has another's complaint", idx)
		}
		first = hers(cs)[0]
		return nil
	})
	if err != nil {
		return nil, err
	}
	if first != nil {
		return first, fmt.Errorf("%w: you asked the data-protection authority about this access on %s", ErrDecided, first.Created.Format(time.DateOnly))
	}
	return c, nil
}

// ComplaintsOf are personID's complaints about her accesses at log
// entries from lo to hi (both included), by log entry: what her page
// shows beside the accesses it lists.
func (x *Exchange) ComplaintsOf(ctx context.Context, personID string, lo, hi int64) (map[int64]*Complaint, error) {
	cs, err := readComplaints(ctx, x.db.QueryRead, `WHERE person_id = $1 AND log_index >= $2 AND log_index <= $3`, personID, lo, hi)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]*Complaint, len(cs))
	for _, c := range hers(cs) {
		out[c.LogIndex] = c
	}
	return out, nil
}

// ComplaintsBy lists personID's complaints by the accesses they are
// about, the newest access first, at most limit (> 0), each with its
// access, without the officer's name (which the citizen is not shown).
func (x *Exchange) ComplaintsBy(ctx context.Context, personID string, limit int) ([]*Complaint, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: a list of complaints needs a positive size", ErrInvalid)
	}
	cs, err := readComplaints(ctx, x.db.QueryRead, fmt.Sprintf(`WHERE person_id = $1 ORDER BY log_index DESC LIMIT %d`, limit), personID)
	if err != nil {
		return nil, err
	}
	if err := x.withAccesses(ctx, cs); err != nil {
		return nil, err
	}
	for _, c := range hers(cs) {
		if c.Access != nil {
			c.Access.Officer = ""
		}
	}
	return cs, nil
}

// hers clears in cs what the citizen is not shown: who at the DPA
// answered.
func hers(cs []*Complaint) []*Complaint {
	for _, c := range cs {
		c.AnsweredBy = ""
	}
	return cs
}

// AnswerNewsWithin is how long after the DPA answers a citizen's
// complaint her home page says so.
const AnswerNewsWithin = 30 * Day

// AnsweredSince counts personID's complaints the DPA answered at or after
// since.
func (x *Exchange) AnsweredSince(ctx context.Context, personID string, since time.Time) (int, error) {
	var n int
	if err := x.db.QueryRowRead(ctx, `SELECT COUNT(*) FROM ex_complaints WHERE person_id = $1 AND answered_at >= $2`, personID, max(since.UnixMilli(), 1)).Scan(&n); err != nil {
		return 0, fmt.Errorf("answered complaints: %w", err)
	}
	return n, nil
}

// ComplaintQuery selects complaints for Complaints: those still open, the
// oldest first, after the one whose ID is After ("" from the oldest); or,
// with Answered, those answered, the latest answer first. At most Limit
// (> 0).
type ComplaintQuery struct {
	Answered bool
	After    string
	Limit    int
}

// Complaints is the DPA's list of complaints, each with its access as the
// DPA sees it. An After that is no open complaint's id is ErrInvalid.
func (x *Exchange) Complaints(ctx context.Context, q ComplaintQuery) ([]*Complaint, error) {
	if q.Limit <= 0 {
		return nil, fmt.Errorf("%w: a page of complaints needs a positive size", ErrInvalid)
	}
	var cs []*Complaint
	var err error
	switch {
	case q.Answered:
		cs, err = readComplaints(ctx, x.db.QueryRead, fmt.Sprintf(`WHERE answered_at > 0 ORDER BY answered_at DESC, id DESC LIMIT %d`, q.Limit))
	case q.After != "":
		var after []*Complaint
		if after, err = readComplaints(ctx, x.db.QueryRead, `WHERE id = $1 AND answered_at = 0`, q.After); err == nil && len(after) == 0 {
			return nil, fmt.Errorf("%w: the place to list complaints from is no open complaint (it may have been answered since)", ErrInvalid)
		}
		if err == nil {
			a := after[0]
			cs, err = readComplaints(ctx, x.db.QueryRead, fmt.Sprintf(`WHERE answered_at = 0 AND (created_at > $1 OR (created_at = $1 AND id > $2)) ORDER BY created_at, id LIMIT %d`, q.Limit),
				a.Created.UnixMilli(), a.ID)
		}
	default:
		cs, err = readComplaints(ctx, x.db.QueryRead, fmt.Sprintf(`WHERE answered_at = 0 ORDER BY created_at, id LIMIT %d`, q.Limit))
	}
	if err != nil {
		return nil, err
	}
	if err := x.withAccesses(ctx, cs); err != nil {
		return nil, err
	}
	return cs, nil
}

// ComplaintsByEntry lists every complaint, open or answered, by the log
// entry of the access it is about, the oldest access first, after the
// entry after (-1 from the first), at most limit (> 0), each with its
// access as the DPA sees it: the DPA's file of them (complaints.csv). It
// pages on the log entry, which is unique and indexed.
func (x *Exchange) ComplaintsByEntry(ctx context.Context, after int64, limit int) ([]*Complaint, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: a page of complaints needs a positive size", ErrInvalid)
	}
	cs, err := readComplaints(ctx, x.db.QueryRead, fmt.Sprintf(`WHERE log_index > $1 ORDER BY log_index LIMIT %d`, limit), after)
	if err != nil {
		return nil, err
	}
	if err := x.withAccesses(ctx, cs); err != nil {
		return nil, err
	}
	return cs, nil
}

// OpenComplaints counts the complaints the DPA has yet to answer.
func (x *Exchange) OpenComplaints(ctx context.Context) (int, error) {
	var n int
	if err := x.db.QueryRowRead(ctx, `SELECT COUNT(*) FROM ex_complaints WHERE answered_at = 0`).Scan(&n); err != nil {
		return 0, fmt.Errorf("open complaints: %w", err)
	}
	return n, nil
}

// withAccesses sets each complaint's Access to the access at its log
// entry as the DPA sees it, read at once; nil where none reads (a record
// deleted or damaged: the audit reports it).
func (x *Exchange) withAccesses(ctx context.Context, cs []*Complaint) error {
	if len(cs) == 0 {
		return nil
	}
	idxs := make([]int64, len(cs))
	for i, c := range cs {
		idxs[i] = c.LogIndex
	}
	as, err := x.accesses(ctx, filter{entries: idxs, labelled: true})
	if err != nil {
		return err
	}
	at := make(map[int64]*Access, len(as))
	for _, a := range as {
		if !a.Missing {
			at[a.LogIndex] = a
		}
	}
	for _, c := range cs {
		c.Access = at[c.LogIndex]
	}
	return nil
}

// AnswerComplaint gives the DPA's answer (checkWords, not empty) to the
// complaint id, once: an answered one is ErrDecided, an unknown one
// ErrNotFound. by is who answered (kept, not shown to the citizen).
func (x *Exchange) AnswerComplaint(ctx context.Context, id, by, answer string) (*Complaint, error) {
	answer, err := checkWords(answer, "the answer", false)
	if err != nil {
		return nil, err
	}
	var c *Complaint
	err = x.db.Tx(ctx, func(tx *store.Tx) error {
		now := x.now().UTC()
		r, err := tx.ExecContext(ctx, `UPDATE ex_complaints SET answer = $2, answered_by = $3, answered_at = $4 WHERE id = $1 AND answered_at = 0`,
			id, answer, by, max(now.UnixMilli(), 1))
		if err != nil {
			return fmt.Errorf("answer: %w", err)
		}
		n, _ := r.RowsAffected()
		cs, err := readComplaints(ctx, tx.QueryContext, `WHERE id = $1`, id)
		switch {
		case err != nil:
			return err
		case len(cs) == 0:
			return fmt.Errorf("%w: there is no complaint %q", ErrNotFound, short(id))
		case n == 0:
			return fmt.Errorf("%w: the complaint was answered on %s", ErrDecided, cs[0].Answered.Format(time.DateOnly))
		}
		c = cs[0]
		return nil
	})
	return c, err
}

// readComplaints reads the complaints where selects through query.
func readComplaints(ctx context.Context, query func(context.Context, string, ...any) (*sql.Rows, error), where string, args ...any) ([]*Complaint, error) {
	rows, err := query(ctx, `SELECT id, log_index, message, created_at, answer, answered_by, answered_at FROM ex_complaints `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("complaints: %w", err)
	}
	defer rows.Close()
	var out []*Complaint
	for rows.Next() {
		c := &Complaint{}
		var created, answered int64
		if err := rows.Scan(&c.ID, &c.LogIndex, &c.Message, &created, &c.Answer, &c.AnsweredBy, &answered); err != nil {
			return nil, fmt.Errorf("complaints: %w", err)
		}
		c.Created = time.UnixMilli(created).UTC()
		if answered > 0 {
			c.Answered = time.UnixMilli(answered).UTC()
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("complaints: %w", err)
	}
	return out, nil
}
