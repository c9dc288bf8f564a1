package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	civtlog "github.com/civstack/civstack/internal/tlog"
)

// Export is a citizen's "Who looked at my data" as a file: every access
// they may see, in words, each with the proof that lets anyone re-check it
// offline against the transparency log (VerifyExport; civstack verify).
type Export struct {
	Person     string           `json:"person"`
	ExportedAt time.Time        `json:"exported_at"`
	LogKey     string           `json:"log_key"` // the node's word for it: a verifier uses a key it got elsewhere
	Accesses   []ExportedAccess `json:"accesses"`
}

// ExportedAccess is one access in an Export: the readable copy of its
// record, whether the node verified it, and the proof (when it did).
type ExportedAccess struct {
	Agency      string    `json:"agency"`
	Service     string    `json:"service"`
	Holder      string    `json:"holder"`
	Fields      []string  `json:"fields"`
	Purpose     string    `json:"purpose"`
	LegalBasis  string    `json:"legal_basis"`
	Time        time.Time `json:"time"`
	RetainTill  time.Time `json:"retain_until"`
	HiddenUntil time.Time `json:"hidden_until,omitzero"` // a deferred access: hidden from the citizen until then
	Consent     string    `json:"consent"`
	Verified    bool      `json:"verified"`
	Status      string    `json:"status"`
	Proof       *Proof    `json:"proof,omitempty"`
	// Complaint is the citizen's complaint to the DPA about this access,
	// with its answer. It is hers, not the log's: VerifyExport reads it
	// but has nothing to check it against.
	Complaint *ExportedComplaint `json:"complaint,omitempty"`
}

// ExportedComplaint is a complaint in an Export: when she sent it, her
// words (if any), and the DPA's answer once it has answered.
type ExportedComplaint struct {
	Sent       time.Time `json:"sent_at"`
	Message    string    `json:"message,omitempty"`
	Answer     string    `json:"answer,omitempty"`
	AnsweredAt time.Time `json:"answered_at,omitzero"`
}

// NewExport is the file of a citizen's verified accesses (ForCitizen's),
// with her complaints about them by log entry (ComplaintsOf's; nil for
// none).
func NewExport(person string, at time.Time, logKey string, recs []*Verified, complaints map[int64]*Complaint) *Export {
	out := &Export{Person: person, ExportedAt: at.UTC(), LogKey: logKey, Accesses: []ExportedAccess{}}
	for _, a := range recs {
		out.Accesses = append(out.Accesses, exported(a, complaints[a.LogIndex]))
	}
	return out
}

// exported is an access as an export holds it, with c, her complaint
// about it (nil for none).
func exported(a *Verified, c *Complaint) ExportedAccess {
	e := ExportedAccess{Agency: a.AgencyName, Service: a.ServiceName, Holder: a.Holder, Fields: a.Fields, Purpose: a.Purpose, LegalBasis: a.LegalBasis,
		Time: a.When(), RetainTill: a.Retain(), Consent: a.Consent, Verified: a.Verified, Status: a.Status, Proof: a.Proof}
	if a.DeferUntil != 0 {
		e.HiddenUntil = a.Until()
	}
	if c != nil {
		e.Complaint = &ExportedComplaint{Sent: c.Created.UTC(), Message: c.Message, Answer: c.Answer}
		if !c.Open() {
			e.Complaint.AnsweredAt = c.Answered.UTC()
		}
	}
	return e
}

// exportPage is how many accesses WriteExport verifies and writes at a
// time; tests set it lower, so that a few accesses span pages.
var exportPage = 500

// WriteExport writes a citizen's export (the JSON of NewExport over
// ForCitizen's list, at the time given) to w as it verifies it, a page of
// accesses at a time, so that a long history takes the memory of a page.
// begin is called once, just before the first byte, when the first page
// has been read: an error before that has written nothing (the caller can
// still answer with a status of its own); one after it leaves the file
// cut short, which no JSON reader (VerifyExport included) accepts.
func (x *Exchange) WriteExport(ctx context.Context, w io.Writer, begin func(), personID string, at time.Time, logKey string) error {
	page, err := x.ForCitizenPage(ctx, personID, 0, exportPage)
	if err != nil {
		return err
	}
	head, err := json.Marshal(Export{Person: personID, ExportedAt: at.UTC(), LogKey: logKey})
	if err != nil {
		return err
	}
	// {"person":…,"log_key":…,"accesses":null}, the list to come in place
	// of null.
	head, ok := bytes.CutSuffix(head, []byte(`"accesses":null}`))
	if !ok {
		return errors.New("export: the accesses are not the last member")
	}
	begin()
	if _, err := io.WriteString(w, string(head)+`"accesses":`); err != nil {
		return err
	}
	sep := "["
	for {
		var complaints map[int64]*Complaint
		if len(page) > 0 {
			// A page is newest first; her complaints about it in one read.
			if complaints, err = x.ComplaintsOf(ctx, personID, page[len(page)-1].LogIndex, page[0].LogIndex); err != nil {
				return err
			}
		}
		for _, v := range page {
			b, err := json.Marshal(exported(v, complaints[v.LogIndex]))
			if err != nil {
				return err
			}
			if _, err := io.WriteString(w, sep); err != nil {
				return err
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
			sep = ","
		}
		// A short page is the last; so is one that ends at entry 0
		// (nothing is below it, and before 0 means the newest).
		if len(page) < exportPage || page[len(page)-1].LogIndex == 0 {
			break
		}
		if page, err = x.ForCitizenPage(ctx, personID, page[len(page)-1].LogIndex, exportPage); err != nil {
			return err
		}
	}
	end := "]}\n"
	if sep == "[" { // no accesses
		end = "[" + end
	}
	_, err = io.WriteString(w, end)
	return err
}

// ExportCheck is one step of VerifyExport and its outcome.
type ExportCheck struct {
	Name   string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// ExportReport is what VerifyExport found.
type ExportReport struct {
	Person   string        `json:"person"`
	Accesses int           `json:"accesses"`
	Origin   string        `json:"log,omitempty"` // the log whose checkpoints were checked
	Checks   []ExportCheck `json:"checks"`
}

// OK reports whether every check passed.
func (r *ExportReport) OK() bool {
	return len(r.Checks) > 0 && !slices.ContainsFunc(r.Checks, func(c ExportCheck) bool { return !c.OK })
}

// Failed is the first failed check's sentence, or "".
func (r *ExportReport) Failed() string {
	for _, c := range r.Checks {
		if !c.OK {
			return c.Name + ": " + c.Detail
		}
	}
	return ""
}

// ErrBadExport is returned for input that is not an access export at all.
var ErrBadExport = errors.New("not a civstack export of data accesses")

// MaxExport bounds what VerifyExport reads.
const MaxExport = 16 << 20

// IsExport tells an access export from other JSON files.
func IsExport(raw []byte) bool {
	var probe struct {
		Accesses json.RawMessage `json:"accesses"`
	}
	return json.Unmarshal(raw, &probe) == nil && probe.Accesses != nil
}

// VerifyExport checks a citizen's export offline, one check per access:
// that the readable copy is what the record says, that the record and
// its nonce open the commitment in the log entry, and, with logKey (the
// log's verifier key, got from the log itself rather than from the file),
// that the entry is included in a checkpoint signed by that log. Without
// logKey the log checks fail. It returns ErrBadExport for input that does
// not parse; otherwise the report says what passed. It does not check that
// the entries are about the person named in the file: the pseudonym's key
// stays with the node (a citizen holding it could find deferred accesses
// in the public log before they may see them).
func VerifyExport(r io.Reader, logKey string) (*ExportReport, error) {
	ex, err := readExport(r)
	if err != nil {
		return nil, err
	}
	return verifyDoc(ex, logKey).rep, nil
}

// readExport parses an export file, strictly (ErrBadExport for anything
// else).
func readExport(r io.Reader) (*Export, error) {
	raw, err := io.ReadAll(io.LimitReader(r, MaxExport+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxExport {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadExport, MaxExport)
	}
	var ex Export
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ex); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadExport, err)
	}
	switch {
	case ex.Accesses == nil:
		return nil, fmt.Errorf("%w: no accesses", ErrBadExport)
	case ex.Person == "":
		return nil, fmt.Errorf("%w: it names no citizen", ErrBadExport)
	case ex.ExportedAt.IsZero():
		return nil, fmt.Errorf("%w: it does not say when it was exported", ErrBadExport)
	}
	return &ex, nil
}

// checkedExport is an export with what verifyDoc found: its report, the
// accesses proved in the log (with logKey), and the signed checkpoints
// that proved them.
type checkedExport struct {
	*Export
	rep      *ExportReport
	proved   map[int64]int // log entry → place in Accesses
	unproved []int         // the places of the others
	cps      []civtlog.Checkpoint
}

// verifyDoc is VerifyExport of a parsed export.
func verifyDoc(ex *Export, logKey string) *checkedExport {
	c := &checkedExport{Export: ex, rep: &ExportReport{Person: ex.Person, Accesses: len(ex.Accesses)}, proved: map[int64]int{}}
	rep := c.rep
	what := fmt.Sprintf("%s to the data of %s, exported %s", Accesses(len(ex.Accesses)), ex.Person, ex.ExportedAt.Format(time.RFC3339))
	if n := complained(ex.Accesses); n > 0 {
		what += fmt.Sprintf("; %d with the citizen's complaint to the data-protection authority, which is hers and not in the log (not checked)", n)
	}
	rep.add("export", nil, what)
	if logKey == "" {
		rep.add("log", errors.New("not checked: give the log's verifier key (--log-key) to check that each access is in the log"), "")
	}
	checkpoints := map[string]checkpointCheck{}
	for i := range ex.Accesses {
		a := &ex.Accesses[i]
		detail, err := verifyExported(a, logKey, checkpoints)
		if err == nil && logKey != "" {
			cp := checkpoints[a.Proof.Checkpoint].cp
			rep.Origin = cp.Origin
			c.proved[a.Proof.Index] = i
			if !slices.Contains(c.cps, cp) {
				c.cps = append(c.cps, cp)
			}
		}
		rep.add(accessName(i, a), err, detail)
	}
	for i, a := range ex.Accesses {
		if a.Proof == nil || !c.provedAt(a.Proof.Index, i) {
			c.unproved = append(c.unproved, i)
		}
	}
	return c
}

// provedAt reports whether the access at place i in Accesses is the one
// proved at log entry idx.
func (c *checkedExport) provedAt(idx int64, i int) bool {
	j, ok := c.proved[idx]
	return ok && j == i
}

// add appends a check: failed with err, or passed with detail ok.
func (r *ExportReport) add(name string, err error, ok string) {
	if err != nil {
		r.Checks = append(r.Checks, ExportCheck{Name: name, Detail: err.Error()})
	} else {
		r.Checks = append(r.Checks, ExportCheck{Name: name, OK: true, Detail: ok})
	}
}

// accessName names the ith access of an export in a check.
func accessName(i int, a *ExportedAccess) string {
	return fmt.Sprintf("access %d (%s, %s, %s)", i+1, a.Agency, a.Purpose, a.Time.UTC().Format("2 Jan 2006 15:04 UTC"))
}

// complained counts the accesses with a complaint.
func complained(as []ExportedAccess) int {
	n := 0
	for _, a := range as {
		if a.Complaint != nil {
			n++
		}
	}
	return n
}

// Accesses counts accesses in words: "1 access", "3 accesses".
func Accesses(n int) string {
	if n == 1 {
		return "1 access"
	}
	return fmt.Sprintf("%d accesses", n)
}

type checkpointCheck struct {
	cp  civtlog.Checkpoint
	err error
}

// verifyExported checks one exported access (see VerifyExport); the
// checkpoints it opened are kept in seen.
func verifyExported(a *ExportedAccess, logKey string, seen map[string]checkpointCheck) (string, error) {
	p := a.Proof
	if p == nil {
		return "", fmt.Errorf("the node had not verified it when exporting (%s): export again once the log has a new checkpoint", a.Status)
	}
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(p.Record))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return "", fmt.Errorf("the record does not parse: %v", err)
	}
	// The commitment is over the record's canonical encoding, which the
	// file may have indented or escaped otherwise: encode it again.
	canon, err := rec.canonical()
	if err != nil {
		return "", fmt.Errorf("the record does not encode: %v", err)
	}
	if err := sameAsRecord(a, &rec); err != nil {
		return "", err
	}
	e, err := civtlog.Parse(p.Entry)
	if err != nil {
		return "", fmt.Errorf("log entry %d: %v", p.Index, err)
	}
	if e.Kind != civtlog.KindDataAccess {
		return "", fmt.Errorf("log entry %d is a %s, not a data access", p.Index, e.Kind)
	}
	if len(p.Nonce) != 32 || e.Commitment != Commit(p.Nonce, canon) {
		return "", fmt.Errorf("the record does not open log entry %d's commitment", p.Index)
	}
	opened := fmt.Sprintf("the record opens log entry %d's commitment", p.Index)
	if logKey == "" {
		return opened + " (its inclusion in the log not checked)", nil
	}
	c, ok := seen[p.Checkpoint]
	if !ok {
		c.cp, c.err = civtlog.OpenCheckpoint([]byte(p.Checkpoint), logKey)
		seen[p.Checkpoint] = c
	}
	if c.err != nil {
		return "", c.err
	}
	if err := tlog.CheckRecord(p.Inclusion, c.cp.Size, c.cp.Root, p.Index, tlog.RecordHash(p.Entry)); err != nil {
		return "", fmt.Errorf("log entry %d is not in the signed checkpoint of size %d: %v", p.Index, c.cp.Size, err)
	}
	return fmt.Sprintf("%s, which is in %s's signed checkpoint of size %d", opened, c.cp.Origin, c.cp.Size), nil
}

// sameAsRecord checks that an export's readable copy says what its record
// says.
func sameAsRecord(a *ExportedAccess, r *Record) error {
	var hidden int64
	if !a.HiddenUntil.IsZero() {
		hidden = a.HiddenUntil.UnixMilli()
	}
	if a.Agency != r.AgencyName || a.Service != r.ServiceName || a.Holder != r.Holder || !slices.Equal(a.Fields, r.Fields) ||
		a.Purpose != r.Purpose || a.LegalBasis != r.LegalBasis || a.Consent != r.Consent || a.Time.UnixMilli() != r.Time ||
		a.RetainTill.UnixMilli() != r.RetainUntil || hidden != r.DeferUntil {
		return errors.New("the readable copy in the file differs from the record the log commits to")
	}
	return nil
}
