package exchange

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/tlog"
)

// Request states.
const (
	Released       = "released"
	Denied         = "denied"
	AwaitConsent   = "awaiting consent"
	Consented      = "consented"              // the agency may collect it (once)
	RefusedConsent = "refused by the citizen" // or consent withdrawn before it was collected
	Cancelled      = "cancelled by the agency"
	// Lapsed is never stored: a request waiting for consent, or consented
	// to and not collected, is read as lapsed once its time is up.
	Lapsed = "lapsed"
)

// The reasons a request that asked for consent ended without a release,
// as the agency, the DPA and the citizen read them.
const (
	reasonRefused   = "The citizen refused."
	reasonWithdrawn = "The citizen withdrew consent before the data was collected."
	reasonCancelled = "Cancelled by the agency."
)

// Consent is asked for and given for a while, not for ever: a request
// waits at most AnswerWithin for the citizen's answer, and an approval
// lets the agency collect within CollectWithin of it. Until it is
// collected the citizen may withdraw an approval (GDPR Art. 7(3)).
const (
	AnswerWithin  = 30 * Day
	CollectWithin = 30 * Day
)

// Ask is an agency's request for fields about one citizen.
type Ask struct {
	Requester  string // the agency's organisation id
	Officer    string // who asks: an officer's name or an API token's name
	Citizen    string // the citizen's person id
	Service    string
	Fields     []string
	Purpose    string
	LegalBasis string
	Defer      time.Duration // 0: the citizen sees the access at once
	// Key is the agency's idempotency key for this request ("" for
	// none): a retry with it answers with the first request (keys.go).
	Key string
}

// Request is a request as recorded, with its outcome.
type Request struct {
	ID         string        `json:"id"`
	Requester  string        `json:"requester"`
	Officer    string        `json:"officer"`
	Citizen    string        `json:"-"`
	Service    string        `json:"service"`
	Fields     []string      `json:"fields"`
	Purpose    string        `json:"purpose"`
	LegalBasis string        `json:"legal_basis"`
	Defer      time.Duration `json:"-"`
	// PolicyID is the policy the request was decided under; once it is
	// released, the one it was released under (a collection decides
	// again, on the policies in force then, as its record says).
	PolicyID string    `json:"policy,omitempty" doc:"the policy the request was decided under; once released, the one it was released under (a collection decides again on the policies in force then)"`
	State    string    `json:"state" enum:"released,denied,awaiting consent,consented,refused by the citizen,cancelled by the agency,lapsed" doc:"'refused by the citizen' also when they withdrew consent before collection (the reason says which); 'lapsed' when nobody answered, or nobody collected, in time (see lapses_at)"`
	Reason   string    `json:"reason,omitempty"`
	Created  time.Time `json:"created_at"`
	Decided  time.Time `json:"decided_at,omitzero"`
	// Lapses is, while the request waits for the citizen, when it lapses
	// unanswered; once consented, when it lapses uncollected.
	Lapses time.Time `json:"lapses_at,omitzero" doc:"waiting for consent: when the request lapses unanswered; consented: when it lapses uncollected"`
	// RetainUntil is, once released, when the agency must have deleted
	// what it got (the policy's retention from the release).
	RetainUntil time.Time `json:"retain_until,omitzero"`
	// Values are the released fields (only in the answer to the agency).
	Values map[string]string `json:"values,omitempty"`
	// Replayed: this answers a retry with the same idempotency key.
	Replayed bool `json:"replayed,omitempty" doc:"true when this answers a retry with the same Idempotency-Key: the first request as it stands now, without values (they are released once, to the first answer; ask again, as a new request, if they were lost)"`
	// RequesterName and ServiceName are for display, and FieldLabels:
	// Fields as the service labels them now (empty if it is withdrawn).
	RequesterName string   `json:"requester_name"`
	ServiceName   string   `json:"service_name"`
	FieldLabels   []string `json:"-"`
}

// Submit checks an ask against the policies and answers it: released
// (with the values), awaiting the citizen's consent, or denied with the
// reason. Every outcome is recorded.
func (x *Exchange) Submit(ctx context.Context, a Ask) (*Request, error) {
	now := x.now()
	r := &Request{ID: x.id(), Requester: a.Requester, Officer: strings.TrimSpace(a.Officer), Citizen: a.Citizen, Service: a.Service,
		Fields: slices.Compact(slices.Sorted(slices.Values(a.Fields))), Purpose: strings.TrimSpace(a.Purpose), LegalBasis: strings.TrimSpace(a.LegalBasis),
		Defer: a.Defer, Created: now.UTC()}
	if r.Officer == "" || r.Citizen == "" || len(r.Fields) == 0 || r.Purpose == "" || r.LegalBasis == "" {
		return nil, fmt.Errorf("%w: a request names the officer, the citizen, the service, at least one field, the purpose and the legal basis", ErrInvalid)
	}
	// Lengths in characters, as people count them; the officer's name
	// also fits its opening's length byte.
	switch {
	case utf8.RuneCountInString(r.Officer) > 100 || len(r.Officer) > 255:
		return nil, fmt.Errorf("%w: the officer's name is longer than 100 characters", ErrInvalid)
	case len(r.Purpose) > 40:
		return nil, fmt.Errorf("%w: a purpose code is at most 40 characters", ErrInvalid)
	case utf8.RuneCountInString(r.LegalBasis) > 200:
		return nil, fmt.Errorf("%w: the legal basis is longer than 200 characters", ErrInvalid)
	}
	if a.Defer < 0 {
		return nil, fmt.Errorf("%w: a deferral cannot be negative", ErrInvalid)
	}
	for _, t := range []struct{ s, what string }{{r.Officer, "the officer's name"}, {r.Citizen, "the citizen's id"}, {r.Service, "the service's id"}, {r.Purpose, "the purpose code"}, {r.LegalBasis, "the legal basis"}} {
		if err := oneLine(t.s, t.what); err != nil {
			return nil, err
		}
	}
	// A name no service could have is a malformed request, not a denial
	// to record (and keep, and show the DPA) at whatever length it came.
	for _, f := range r.Fields {
		if !nameRE.MatchString(f) {
			return nil, fmt.Errorf("%w: %q is not a field's name: names are 1 to 41 lower-case letters, digits and _, as the service lists them", ErrInvalid, short(f))
		}
	}
	key, err := keyFor(a.Key, r)
	if err != nil {
		return nil, err
	}
	if key != nil {
		if first, err := x.replay(ctx, key); first != nil || err != nil {
			return first, err
		}
	}
	// settle records a request that releases nothing now.
	settle := func(counter *atomic.Int64) (*Request, error) {
		err := x.store(ctx, r, key)
		if errors.Is(err, errKeyTaken) {
			return x.taken(ctx, key)
		}
		return r, count(counter, err)
	}
	for attempt := 0; ; attempt++ {
		svc, pol, reason, err := x.decide(ctx, r)
		if err != nil {
			return nil, err
		}
		switch {
		case reason != "":
			r.State, r.Reason, r.Decided = Denied, reason, now.UTC()
			return settle(&x.stats.denied)
		case pol.Consent:
			r.PolicyID, r.State, r.Lapses = pol.ID, AwaitConsent, r.Created.Add(AnswerWithin)
			return settle(&x.stats.asked)
		}
		r.PolicyID = pol.ID
		err = x.release(ctx, r, svc, pol, consentNotNeeded, key)
		switch {
		case errors.Is(err, errRetired) && attempt == 0:
			continue // decided on a policy retired meanwhile: decide again
		case errors.Is(err, errKeyTaken):
			return x.taken(ctx, key)
		}
		return r, err
	}
}

// taken answers a request whose idempotency key a concurrent request with
// the same key committed first: with that request.
func (x *Exchange) taken(ctx context.Context, k *requestKey) (*Request, error) {
	first, err := x.replay(ctx, k)
	if err == nil && first == nil {
		err = errors.New("idempotency key: taken, but it names no request")
	}
	return first, err
}

// decide finds the policy that allows the request, or says why none does,
// on the catalog snapshot, and again on a fresh one before it says no.
func (x *Exchange) decide(ctx context.Context, r *Request) (*Service, *Policy, string, error) {
	cat, err := x.catalog(ctx, false)
	if err != nil {
		return nil, nil, "", err
	}
	svc, pol, reason, err := x.decideOn(ctx, cat, r)
	if err == nil && reason == "" {
		return svc, pol, "", nil
	}
	if fresh, ferr := x.catalog(ctx, true); ferr != nil {
		return nil, nil, "", ferr
	} else if fresh != cat {
		return x.decideOn(ctx, fresh, r)
	}
	return svc, pol, reason, err
}

func (x *Exchange) decideOn(ctx context.Context, cat *catalog, r *Request) (*Service, *Policy, string, error) {
	svc, ok := cat.services[r.Service]
	if !ok {
		return nil, nil, "", fmt.Errorf("%w: no data service %q", ErrNotFound, r.Service)
	}
	r.ServiceName, r.RequesterName, r.FieldLabels = svc.Name, x.name(ctx, cat, r.Requester), svc.Labels(r.Fields)
	for _, f := range r.Fields {
		if _, ok := svc.Field(f); !ok {
			return svc, nil, fmt.Sprintf("%s has no field %q.", svc.Name, f), nil
		}
	}
	var forPurpose []*Policy
	for _, p := range cat.policies[[2]string{r.Requester, r.Service}] {
		if p.Purpose == r.Purpose && p.LegalBasis == r.LegalBasis {
			forPurpose = append(forPurpose, p)
		}
	}
	if len(forPurpose) == 0 {
		return svc, nil, fmt.Sprintf("No policy lets %s read %s for purpose %s on the legal basis %q.", r.RequesterName, svc.Name, r.Purpose, r.LegalBasis), nil
	}
	var why string
	for _, p := range forPurpose {
		var outside []string
		for _, f := range r.Fields {
			if !slices.Contains(p.Fields, f) {
				outside = append(outside, svc.Label(f))
			}
		}
		switch {
		case len(outside) > 0:
			why = fmt.Sprintf("%s is outside the policy for %s (it allows %s).", strings.Join(outside, ", "), r.Purpose, labels(svc, p.Fields))
		case r.Defer > 0 && p.MaxDeferral == 0:
			why = fmt.Sprintf("The policy for %s does not allow hiding the access from the citizen.", r.Purpose)
		case r.Defer > p.MaxDeferral:
			why = fmt.Sprintf("A deferral of %d days exceeds the policy's maximum of %d days.", days(r.Defer), days(p.MaxDeferral))
		default:
			return svc, p, "", nil
		}
	}
	return svc, nil, why, nil
}

// short is s cut to 40 characters, for quoting outside input in an error.
func short(s string) string {
	if r := []rune(s); len(r) > 40 {
		return string(r[:40]) + "…"
	}
	return s
}

func labels(svc *Service, names []string) string {
	var out []string
	for _, n := range names {
		out = append(out, svc.Label(n))
	}
	return strings.Join(out, ", ")
}

// store records a request that releases nothing now, with its
// idempotency key (k may be nil).
func (x *Exchange) store(ctx context.Context, r *Request, k *requestKey) error {
	row := requestRow(r)
	return x.db.Tx(ctx, func(tx *store.Tx) error {
		if k != nil {
			if err := k.claim(ctx, tx, r.ID, x.now()); err != nil {
				return err
			}
		}
		return tx.InsertRows(ctx, row.Table, row.Cols, [][]any{row.Vals})
	})
}

// requestCols are ex_requests' columns, in requestRow's order.
var requestCols = []string{"id", "requester_org", "officer", "person_id", "service_id", "fields", "purpose", "legal_basis", "deferral", "policy_id", "state", "reason", "created_at", "decided_at"}

func requestRow(r *Request) tlog.Row {
	fj, _ := json.Marshal(r.Fields)
	var decided int64
	if !r.Decided.IsZero() {
		decided = r.Decided.UnixMilli()
	}
	return tlog.Row{Table: "ex_requests", Cols: requestCols, Vals: []any{r.ID, r.Requester, r.Officer, r.Citizen, r.Service, string(fj), r.Purpose, r.LegalBasis,
		r.Defer.Milliseconds(), r.PolicyID, r.State, r.Reason, r.Created.UnixMilli(), decided}}
}

// Consent, as an access record states it.
const (
	consentNotNeeded = "not needed"
	consentGiven     = "given"
)

// release reads the allowed fields and commits the access record with its
// log entry (the record in the entry's own row, see index.go) and, for a
// request the citizen consented to, the request's new state (for a new
// request, its idempotency key k, if not nil); the values leave only after
// that commit. A direct release writes no request row: its record is the
// request.
func (x *Exchange) release(ctx context.Context, r *Request, svc *Service, pol *Policy, consent string, k *requestKey) error {
	now := x.now()
	salt := make([]byte, saltSize)
	if _, err := x.rand.Read(salt); err != nil {
		return err
	}
	rec := Record{ID: x.id(), Request: r.ID, Agency: r.Requester, AgencyName: r.RequesterName, OfficerSeal: sealOfficer(salt, r.Officer), Service: r.Service, ServiceName: svc.Name,
		Holder: svc.HolderName, Purpose: r.Purpose, LegalBasis: r.LegalBasis, Fields: r.Fields, Time: now.UnixMilli(), Consent: consent,
		RetainUntil: now.Add(pol.Retention).UnixMilli(), Policy: pol.ID}
	if r.Defer > 0 {
		rec.DeferUntil = now.Add(r.Defer).UnixMilli()
	}
	canon, err := rec.canonical()
	if err != nil {
		return err
	}
	nonce := make([]byte, 32)
	if _, err := x.rand.Read(nonce); err != nil {
		return err
	}
	commitment := Commit(nonce, canon)
	entry, err := (&tlog.Entry{Kind: tlog.KindDataAccess, Time: now, Commitment: commitment, Tag: x.tag(r.Citizen, commitment)}).Marshal()
	if err != nil {
		return err
	}
	fresh := r.State == "" // a new request; otherwise one the citizen consented to
	r.State, r.Decided, r.Reason, r.RetainUntil = Released, now.UTC(), "", time.UnixMilli(rec.RetainUntil).UTC()
	// The release commits only if its policy is still in force then.
	// The values are read in the same transaction, with the batch's others.
	d := &disclosure{service: r.Service, person: r.Citizen, fields: r.Fields}
	op, err := (&opening{version: openingV2, nonce: nonce, at: rec.Time, deferUntil: rec.DeferUntil, person: r.Citizen, request: r.ID, agency: r.Requester, purpose: r.Purpose,
		officer: r.Officer, salt: salt, raw: canon}).encode()
	if err != nil {
		return err
	}
	w := tlog.Write{Check: &tlog.Check{Query: `SELECT 1 FROM ex_policies WHERE id = $1 AND active = 1`, Args: []any{pol.ID}},
		Read: valuesReader{}, Item: d, Opening: op}
	if fresh && k != nil {
		w.With = func(tx *store.Tx, _ int64) error { return k.claim(ctx, tx, r.ID, now) }
	}
	if !fresh {
		w.With = func(tx *store.Tx, _ int64) error {
			// Not if the citizen withdrew meanwhile, or the consent lapsed.
			res, err := tx.ExecContext(ctx, `UPDATE ex_requests SET state = $1, decided_at = $2 WHERE id = $3 AND state = $4 AND decided_at > $5`,
				Released, now.UnixMilli(), r.ID, Consented, now.Add(-CollectWithin).UnixMilli())
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return ErrDecided
			}
			return nil
		}
	}
	if x.fault != nil {
		with := w.With
		w.With = func(tx *store.Tx, idx int64) error {
			if with != nil {
				if err := with(tx, idx); err != nil {
					return err
				}
			}
			return x.fault("after-record")
		}
	}
	_, err = x.app.AppendWrite(ctx, entry, w)
	if err != nil {
		r.State, r.Decided, r.RetainUntil = "", time.Time{}, time.Time{}
		if !fresh {
			r.State = Consented
		}
		if errors.Is(err, ErrDecided) {
			return ErrDecided
		}
		if errors.Is(err, errKeyTaken) {
			return errKeyTaken
		}
		if errors.Is(err, tlog.ErrCheckFailed) {
			x.cat.drop()
			return errRetired
		}
		return fmt.Errorf("release: %w", err)
	}
	r.Values, r.PolicyID = d.values, pol.ID
	x.stats.released.Add(1)
	return nil
}

// disclosure is one release's read: the fields of a citizen's record in
// a service, and (once read) their values.
type disclosure struct {
	service, person string
	fields          []string
	values          map[string]string
}

// valuesReader reads a batch's disclosures, a query per service and up
// to 128 citizens.
type valuesReader struct{}

func (valuesReader) ReadBatch(ctx context.Context, tx *store.Tx, items []any) error {
	type key struct{ service, person string }
	want := map[key][]*disclosure{}
	persons := map[string][]string{}
	var services []string
	for _, it := range items {
		d := it.(*disclosure)
		d.values = map[string]string{}
		k := key{d.service, d.person}
		if _, ok := want[k]; !ok {
			if _, ok := persons[d.service]; !ok {
				services = append(services, d.service)
			}
			persons[d.service] = append(persons[d.service], d.person)
		}
		want[k] = append(want[k], d)
	}
	const chunk = 128
	for _, svc := range services {
		ps := persons[svc]
		for start := 0; start < len(ps); start += chunk {
			part := ps[start:min(start+chunk, len(ps))]
			q, args := `SELECT person_id, field, value FROM ex_values WHERE service_id = $1 AND person_id = ANY($2::text[])`, []any{svc, part}
			if tx.Dialect() == store.SQLite {
				var in []any
				q, in = store.PaddedQuery(`SELECT person_id, field, value FROM ex_values WHERE service_id = ? AND person_id IN (`, `)`, part)
				args = append([]any{svc}, in...)
			}
			if err := readValues(ctx, tx, q, args, func(person, field, value string) {
				for _, d := range want[key{svc, person}] {
					if slices.Contains(d.fields, field) {
						d.values[field] = value
					}
				}
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

func readValues(ctx context.Context, tx *store.Tx, query string, args []any, each func(person, field, value string)) error {
	rows, err := tx.QueryPrepared(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("values: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p, f, v string
		if err := rows.Scan(&p, &f, &v); err != nil {
			return err
		}
		each(p, f, v)
	}
	return rows.Err()
}

// Decide records the citizen's answer to a request that needs consent:
// approving lets the agency collect the fields once, within
// CollectWithin (the release, its access record and its log entry happen
// then, at the actual read); refusing is recorded and shown to the agency.
func (x *Exchange) Decide(ctx context.Context, personID, requestID string, approve bool) (*Request, error) {
	r, err := x.request(ctx, `WHERE id = $1 AND person_id = $2`, requestID, personID)
	if err != nil {
		return nil, err
	}
	if sameAnswer(r, approve) {
		return r, ErrSameAnswer
	}
	switch r.State {
	case AwaitConsent:
	case Lapsed:
		return nil, fmt.Errorf("%w: the request was not answered within %d days, so it can no longer be approved or refused", ErrLapsed, AnswerWithin/Day)
	default:
		return nil, ErrDecided
	}
	state, reason, counter := Consented, "", &x.stats.given
	if !approve {
		state, reason, counter = RefusedConsent, reasonRefused, &x.stats.refused
	}
	now := x.now()
	// The conditions are the lapse's, so an answer racing it loses.
	if err := count(counter, x.setState(ctx, r.ID, state, reason, now, `state = $5 AND created_at > $6`, AwaitConsent, now.Add(-AnswerWithin).UnixMilli())); err != nil {
		if errors.Is(err, ErrDecided) {
			// The same answer sent twice at once: the other send took it.
			if cur, err2 := x.request(ctx, `WHERE id = $1 AND person_id = $2`, requestID, personID); err2 == nil && sameAnswer(cur, approve) {
				return cur, ErrSameAnswer
			}
		}
		return nil, err
	}
	r.State, r.Reason, r.Decided, r.Lapses = state, reason, now.UTC(), time.Time{}
	if state == Consented {
		r.Lapses = r.Decided.Add(CollectWithin)
	}
	return r, nil
}

// sameAnswer reports whether r already holds the citizen's answer approve
// (approved and not yet collected, or refused by them).
func sameAnswer(r *Request, approve bool) bool {
	if approve {
		return r.State == Consented
	}
	return r.State == RefusedConsent && r.Reason == reasonRefused
}

// Withdraw takes back a citizen's consent that the agency has not used
// yet: the request is then refused, and the agency is told so.
func (x *Exchange) Withdraw(ctx context.Context, personID, requestID string) (*Request, error) {
	r, err := x.request(ctx, `WHERE id = $1 AND person_id = $2`, requestID, personID)
	if err != nil {
		return nil, err
	}
	if r.Withdrawn() {
		return r, ErrSameAnswer
	}
	switch r.State {
	case Consented:
	case Released:
		return nil, fmt.Errorf("%w: %s collected the data already; the access is in your list", ErrDecided, r.RequesterName)
	case Lapsed:
		return nil, fmt.Errorf("%w: the consent ran out uncollected, so there is nothing to withdraw", ErrLapsed)
	default:
		return nil, fmt.Errorf("%w: there is no consent to withdraw", ErrDecided)
	}
	now := x.now()
	reason := reasonWithdrawn
	// A collection committing first wins: the state is no longer consented.
	if err := count(&x.stats.withdrawn, x.setState(ctx, r.ID, RefusedConsent, reason, now, `state = $5`, Consented)); err != nil {
		if errors.Is(err, ErrDecided) {
			if cur, err2 := x.request(ctx, `WHERE id = $1 AND person_id = $2`, requestID, personID); err2 == nil && cur.Withdrawn() {
				return cur, ErrSameAnswer // withdrawn twice at once: the other send took it
			}
			return nil, fmt.Errorf("%w: the request changed meanwhile (collected or withdrawn already); reload to see it", ErrDecided)
		}
		return nil, err
	}
	r.State, r.Reason, r.Decided, r.Lapses = RefusedConsent, reason, now.UTC(), time.Time{}
	return r, nil
}

// Cancel is the agency taking back a request it no longer needs (asked
// of the wrong person, say) while it waits for the citizen or for
// collection: the citizen is no longer asked, and nothing is released.
func (x *Exchange) Cancel(ctx context.Context, requesterOrg, requestID string) (*Request, error) {
	r, err := x.RequestFor(ctx, requesterOrg, requestID)
	if err != nil {
		return nil, err
	}
	if !r.Open() {
		return nil, fmt.Errorf("%w: only a request waiting for the citizen or for collection can be cancelled; this one is %s", ErrDecided, r.State)
	}
	now := x.now()
	reason := reasonCancelled
	if err := x.setState(ctx, r.ID, Cancelled, reason, now, `state IN ($5, $6)`, AwaitConsent, Consented); err != nil {
		if errors.Is(err, ErrDecided) {
			return nil, fmt.Errorf("%w: the request changed meanwhile (answered or collected); reload to see it", ErrDecided)
		}
		return nil, err
	}
	r.State, r.Reason, r.Decided, r.Lapses = Cancelled, reason, now.UTC(), time.Time{}
	return r, nil
}

// setState moves one request to state, if the conditions (SQL over $5
// and on, with args) still hold; ErrDecided if they no longer do.
func (x *Exchange) setState(ctx context.Context, id, state, reason string, now time.Time, cond string, args ...any) error {
	return x.db.Tx(ctx, func(tx *store.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE ex_requests SET state = $1, reason = $2, decided_at = $3 WHERE id = $4 AND `+cond,
			append([]any{state, reason, now.UnixMilli(), id}, args...)...)
		if err != nil {
			return fmt.Errorf("request %s: %w", state, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrDecided
		}
		return nil
	})
}

// Collect releases a request the citizen consented to, once, to the
// agency that made it, within CollectWithin of the consent; the policy
// must still be in force.
func (x *Exchange) Collect(ctx context.Context, requesterOrg, requestID string) (*Request, error) {
	r, err := x.RequestFor(ctx, requesterOrg, requestID)
	if err != nil {
		return nil, err
	}
	switch r.State {
	case Consented:
	case Released:
		return nil, fmt.Errorf("%w: the data was collected already", ErrDecided)
	case AwaitConsent:
		return nil, fmt.Errorf("%w: the citizen has not answered yet", ErrInvalid)
	case Lapsed:
		return nil, fmt.Errorf("%w: %s Ask again if you still need the data", ErrLapsed, r.Reason)
	case RefusedConsent, Cancelled:
		return nil, fmt.Errorf("%w: %s", ErrInvalid, r.Reason)
	default:
		return nil, fmt.Errorf("%w: the request was %s", ErrInvalid, r.State)
	}
	for attempt := 0; ; attempt++ {
		svc, pol, reason, err := x.decide(ctx, r)
		if err != nil {
			return nil, err
		}
		if reason != "" {
			return nil, fmt.Errorf("%w: %s", ErrInvalid, reason)
		}
		err = x.release(ctx, r, svc, pol, consentGiven, nil)
		if errors.Is(err, errRetired) && attempt == 0 {
			continue
		}
		return r, err
	}
}

// requestOf is the request a direct release's record stands for.
func requestOf(a *Access) *Request {
	at := time.UnixMilli(a.Time).UTC()
	r := &Request{ID: a.Request, Requester: a.Agency, Officer: a.Officer, Citizen: a.personID, Service: a.Service, Fields: a.Fields, Purpose: a.Purpose,
		LegalBasis: a.LegalBasis, PolicyID: a.Policy, State: Released, Created: at, Decided: at, RetainUntil: a.Retain(), RequesterName: a.AgencyName, ServiceName: a.ServiceName,
		FieldLabels: a.FieldLabels}
	if a.DeferUntil != 0 {
		r.Defer = time.Duration(a.DeferUntil-a.Time) * time.Millisecond
	}
	return r
}

// Pending lists at most limit of a citizen's open requests, the oldest
// asked first: those waiting for their consent and those they consented
// to that the agency has not collected yet (which they may withdraw).
// Lapsed ones are left out. after, if not empty, is the id of one of the
// citizen's requests (the last of the page before): only those asked after
// it are listed.
func (x *Exchange) Pending(ctx context.Context, personID, after string, limit int) ([]*Request, error) {
	return x.openOf(ctx, "person_id", personID, after, limit)
}

// Asking counts a citizen's requests that wait for their answer (not
// lapsed): what their home page announces.
func (x *Exchange) Asking(ctx context.Context, personID string) (int, error) {
	var n int
	// The state condition is the partial index's (ex_requests_open), literally.
	err := x.db.QueryRowRead(ctx, `SELECT COUNT(*) FROM ex_requests WHERE person_id = $1 AND `+lapsing+` AND state = $2 AND created_at > $3`,
		personID, AwaitConsent, x.now().Add(-AnswerWithin).UnixMilli()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("requests asking for consent: %w", err)
	}
	return n, nil
}

// Past lists at most limit of a citizen's requests that asked for their
// consent and ended without a release, newest asked first: refused or
// withdrawn, cancelled by the agency, or lapsed. (What was released is
// in their accesses; a request the policies denied never reached them.)
// before, if not empty, is the id of one of these (the last of the page
// before): only those asked before it are listed.
func (x *Exchange) Past(ctx context.Context, personID, before string, limit int) ([]*Request, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: a list of requests needs a positive size", ErrInvalid)
	}
	// Past the newest request there is nothing: the place to list on
	// from starts after every one.
	at, id := int64(math.MaxInt64), ""
	if before != "" {
		r, err := x.request(ctx, `WHERE id = $1 AND person_id = $2`, before, personID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if err != nil || !r.ended() {
			return nil, fmt.Errorf("%w: the request to list on from is not one of your past requests", ErrInvalid)
		}
		at, id = r.Created.UnixMilli(), r.ID
	}
	// Each state condition is its partial index's, literally; the place
	// is a range of that index's created_at, the id breaking ties.
	const older = ` AND (created_at < $2 OR (created_at = $2 AND id < $3))`
	ended, err := x.requests(ctx, `WHERE person_id = $1 AND state IN ('`+RefusedConsent+`', '`+Cancelled+`')`+older+` ORDER BY created_at DESC, id DESC LIMIT $4`,
		personID, at, id, limit)
	if err != nil {
		return nil, err
	}
	// Anything open and asked before AnswerWithin has lapsed, unless it
	// was consented to within CollectWithin.
	now := x.now()
	lapsed, err := x.requests(ctx, `WHERE person_id = $1 AND state IN ('`+AwaitConsent+`', '`+Consented+`')`+older+` AND created_at <= $5 AND (state = '`+AwaitConsent+`' OR decided_at <= $6) ORDER BY created_at DESC, id DESC LIMIT $4`,
		personID, at, id, limit, now.Add(-AnswerWithin).UnixMilli(), now.Add(-CollectWithin).UnixMilli())
	if err != nil {
		return nil, err
	}
	return newestFirst(ended, lapsed, limit), nil
}

// ended says whether a request that asked for consent ended without a
// release: one of those Past lists.
func (r *Request) ended() bool {
	return r.State == RefusedConsent || r.State == Cancelled || r.State == Lapsed
}

// Withdrawn says whether the citizen took back consent they had given
// (the request reads as refused, with this reason).
func (r *Request) Withdrawn() bool { return r.State == RefusedConsent && r.Reason == reasonWithdrawn }

// OpenFor lists at most limit of an agency's open requests, the oldest
// asked first: those waiting for the citizen's answer and
// those the citizen consented to that it has not collected yet. Lapsed
// ones are left out. However many newer requests the agency makes, these
// stay in reach until they lapse. after, if not empty, is the id of one of
// the agency's requests (the last of the page before): only those asked
// after it are listed.
func (x *Exchange) OpenFor(ctx context.Context, requesterOrg, after string, limit int) ([]*Request, error) {
	return x.openOf(ctx, "requester_org", requesterOrg, after, limit)
}

// openOf lists at most limit open requests whose column (requester_org
// or person_id) is owner, the oldest asked first, from after the request
// after (if not empty), which must be one of owner's.
func (x *Exchange) openOf(ctx context.Context, column, owner, after string, limit int) ([]*Request, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: a list of requests needs a positive size", ErrInvalid)
	}
	now := x.now()
	// Nothing asked before both spans together is still open; the range
	// keeps the scan of the (owner, created_at) index short.
	at, id := now.Add(-AnswerWithin-CollectWithin).UnixMilli(), ""
	if after != "" {
		r, err := x.request(ctx, `WHERE id = $1 AND `+column+` = $2`, after, owner)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: the request to list from is not one of your waiting requests", ErrInvalid)
		}
		if err != nil {
			return nil, err
		}
		at, id = max(at, r.Created.UnixMilli()), r.ID
	}
	// The first state condition is the partial index's (ex_requests_open),
	// literally; the second leaves out the lapsed.
	rs, err := x.requests(ctx, `WHERE `+column+` = $1 AND `+lapsing+` AND (created_at > $2 OR (created_at = $2 AND id > $3)) AND ((state = '`+AwaitConsent+`' AND created_at > $4) OR (state = '`+Consented+`' AND decided_at > $5)) ORDER BY created_at, id LIMIT $6`,
		owner, at, id, now.Add(-AnswerWithin).UnixMilli(), now.Add(-CollectWithin).UnixMilli(), limit)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(rs, func(r *Request) bool { return !r.Open() }), nil // lapsed since the query
}

// OpenUnder counts the requests asked under the policy id that still
// wait (for the citizen's answer, or for the agency to collect; not
// lapsed): what retiring the policy leaves to be collected only if
// another policy in force allows them.
func (x *Exchange) OpenUnder(ctx context.Context, policyID string) (int, error) {
	now := x.now()
	var n int
	// The first state condition is the partial index's (ex_requests_open),
	// literally, so only the open requests are read.
	err := x.db.QueryRowRead(ctx, `SELECT COUNT(*) FROM ex_requests WHERE `+lapsing+` AND policy_id = $1 AND ((state = '`+AwaitConsent+`' AND created_at > $2) OR (state = '`+Consented+`' AND decided_at > $3))`,
		policyID, now.Add(-AnswerWithin).UnixMilli(), now.Add(-CollectWithin).UnixMilli()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("open requests under a policy: %w", err)
	}
	return n, nil
}

// Open says whether a request still waits: for the citizen's answer, or
// for the agency to collect what the citizen consented to (not lapsed).
func (r *Request) Open() bool { return r.State == AwaitConsent || r.State == Consented }

// unreleased is the condition for the requests the DPA looks into that
// were closed without a release: denied by the policies, refused (or
// consent withdrawn) by the citizen, or cancelled by the agency. It is
// the partial index's (ex_requests_denied), literally.
const unreleased = `state IN ('` + Denied + `', '` + RefusedConsent + `', '` + Cancelled + `')`

// lapsing is the condition for the requests whose stored state is still
// open, among which the lapsed ones are; it is the partial index's
// (ex_requests_lapsing), literally.
const lapsing = `state IN ('` + AwaitConsent + `', '` + Consented + `')`

// Denied lists the newest requests that released nothing (for the DPA's
// overview): see DeniedBy.
func (x *Exchange) Denied(ctx context.Context, limit int) ([]*Request, error) {
	return x.DeniedBy(ctx, "", "", limit)
}

// DeniedBy is the DPA's look into the requests that released nothing:
// denied by the policies, refused or withdrawn by the citizen, cancelled
// by the agency, or lapsed (not answered, or not collected, in time). At
// most limit, newest asked first, of one agency (every agency if empty),
// asked before the request before (empty: from the newest; the last
// one's ID pages on).
func (x *Exchange) DeniedBy(ctx context.Context, agency, before string, limit int) ([]*Request, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: a page of requests needs a positive size", ErrInvalid)
	}
	at, id := int64(math.MaxInt64), ""
	if before != "" {
		r, err := x.request(ctx, `WHERE id = $1`, before)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if err != nil || (r.State != Denied && !r.ended()) {
			return nil, fmt.Errorf("%w: the request to page on from is not a denied, refused, cancelled or lapsed one", ErrInvalid)
		}
		at, id = r.Created.UnixMilli(), r.ID
	}
	// Each state condition is its partial index's, literally; an agency's
	// are found by its (requester_org, created_at) index.
	where := ` AND (created_at < $1 OR (created_at = $1 AND id < $2))`
	args := []any{at, id}
	if agency != "" {
		where += ` AND requester_org = $3`
		args = append(args, agency)
	}
	args = append(args, limit)
	order := fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT $%d`, len(args))
	closed, err := x.requests(ctx, `WHERE `+unreleased+where+order, args...)
	if err != nil {
		return nil, err
	}
	// Asked before AnswerWithin and not consented to within CollectWithin.
	now := x.now()
	n := len(args)
	lapsed, err := x.requests(ctx, `WHERE `+lapsing+where+fmt.Sprintf(` AND created_at <= $%d AND (state = '`+AwaitConsent+`' OR decided_at <= $%d)`, n+1, n+2)+order,
		append(args, now.Add(-AnswerWithin).UnixMilli(), now.Add(-CollectWithin).UnixMilli())...)
	if err != nil {
		return nil, err
	}
	return newestFirst(closed, lapsed, limit), nil
}

// newestFirst merges closed requests and the lapsed ones among open ones
// (each list newest first), newest asked first, the id breaking ties, at
// most limit.
func newestFirst(closed, open []*Request, limit int) []*Request {
	out := append(closed, slices.DeleteFunc(open, func(r *Request) bool { return r.State != Lapsed })...)
	slices.SortFunc(out, func(a, b *Request) int {
		return cmp.Or(b.Created.Compare(a.Created), strings.Compare(b.ID, a.ID))
	})
	return out[:min(len(out), limit)]
}

// RequestFor returns one of an agency's requests (with no values).
func (x *Exchange) RequestFor(ctx context.Context, requesterOrg, id string) (*Request, error) {
	r, err := x.request(ctx, `WHERE id = $1 AND requester_org = $2`, id, requesterOrg)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if r != nil && r.State != Released {
		return r, nil
	}
	// A direct release's record is the request; a collected one's record
	// says until when the agency may keep what it got.
	as, aerr := x.accesses(ctx, filter{org: requesterOrg, requests: []string{id}, limit: 1, labelled: true})
	if aerr != nil {
		return nil, aerr
	}
	switch {
	case len(as) == 0 || as[0].Missing:
		return r, err
	case r != nil:
		r.RetainUntil, r.PolicyID = as[0].Retain(), cmp.Or(as[0].Policy, r.PolicyID)
		return r, nil
	case as[0].Consent != consentNotNeeded:
		return nil, err
	}
	return requestOf(as[0]), nil
}

func (x *Exchange) request(ctx context.Context, where string, args ...any) (*Request, error) {
	rs, err := x.requests(ctx, where, args...)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("%w: no such request", ErrNotFound)
	}
	return rs[0], nil
}

func (x *Exchange) requests(ctx context.Context, where string, args ...any) ([]*Request, error) {
	now := x.now()
	rows, err := x.db.QueryRead(ctx, `SELECT id, requester_org, officer, person_id, service_id, fields, purpose, legal_basis, deferral, policy_id, state, reason, created_at, decided_at FROM ex_requests `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("requests: %w", err)
	}
	defer rows.Close()
	var out []*Request
	for rows.Next() {
		r := &Request{}
		var fj string
		var deferral, at, decided int64
		if err := rows.Scan(&r.ID, &r.Requester, &r.Officer, &r.Citizen, &r.Service, &fj, &r.Purpose, &r.LegalBasis, &deferral, &r.PolicyID, &r.State, &r.Reason, &at, &decided); err != nil {
			return nil, err
		}
		_ = json.Unmarshal([]byte(fj), &r.Fields)
		r.Defer, r.Created = time.Duration(deferral)*time.Millisecond, time.UnixMilli(at).UTC()
		if decided != 0 {
			r.Decided = time.UnixMilli(decided).UTC()
		}
		lapse(r, now)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	names := map[string]string{}
	svcs := x.serviceLookup(ctx)
	for _, r := range out {
		if _, ok := names[r.Requester]; !ok {
			names[r.Requester] = x.names(ctx, r.Requester)
		}
		r.RequesterName = names[r.Requester]
		if svc := svcs(r.Service); svc != nil {
			r.ServiceName, r.FieldLabels = svc.Name, svc.Labels(r.Fields)
		}
	}
	return out, nil
}

// lapse sets when a request waiting for or holding consent lapses, and
// reads it as lapsed once that time has come (the stored state stays;
// Decide and the release check the same times again in SQL).
func lapse(r *Request, now time.Time) {
	var reason string
	switch r.State {
	case AwaitConsent:
		r.Lapses, reason = r.Created.Add(AnswerWithin), fmt.Sprintf("The citizen did not answer within %d days.", AnswerWithin/Day)
	case Consented:
		r.Lapses, reason = r.Decided.Add(CollectWithin), fmt.Sprintf("Not collected within %d days of the citizen's consent.", CollectWithin/Day)
	default:
		return
	}
	if !now.Before(r.Lapses) {
		r.State, r.Reason = Lapsed, reason
	}
}
