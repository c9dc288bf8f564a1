// Package exchange owns the data exchange between agencies: data services
// (what an agency holds about citizens, as typed fields, and the values),
// policies as data (which agency may read which fields of which service,
// for which purpose code and legal basis, with or without the citizen's
// consent, whether disclosure to the citizen may be deferred and for how
// long, how long the recipient may keep the data), requests (checked
// against the policies; denied, refused and cancelled ones are kept with
// the reason; a lapse is derived on read),
// and access records. A release, its access record and its transparency-
// log entry commit in one transaction: the entry holds only a commitment
// to the record and a per-entry keyed pseudonym of the citizen, so the
// citizen's wallet can find and verify its records and nobody can
// enumerate a citizen's accesses from the public log. The record itself
// is kept, unpublished, in the entry's own row; an index written at the
// log's integration finds it (index.go).
package exchange

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/text"
	"github.com/civstack/civstack/internal/tlog"
)

// Errors the server maps to statuses.
var (
	ErrInvalid  = errors.New("invalid")
	ErrNotFound = errors.New("not found")
	// ErrDecided: the request has already been decided, or the policy
	// already retired or the service withdrawn (a second answer, a second
	// retirement or withdrawal).
	ErrDecided = errors.New("the request has already been decided")
	// ErrInUse: a change that what is stored depends on (a service's
	// field that a policy in force names, or whose stored values its new
	// type refuses).
	ErrInUse = errors.New("in use")
	// ErrPolicyInForce: a new policy would be the twin of one in force
	// (same agency, service, fields, purpose, legal basis, consent,
	// deferral and retention). Twins would let an operator retire one and
	// leave the access allowed by the other.
	ErrPolicyInForce = errors.New("the same policy is in force already")
	// ErrSameAnswer (an ErrDecided): the citizen gave this same answer
	// before (approved, refused or withdrew: a form sent twice); nothing
	// changed, and the request is returned as it stands.
	ErrSameAnswer = fmt.Errorf("%w: you gave this answer already", ErrDecided)
	// ErrAlreadyRetired (an ErrDecided): the policy was retired before.
	ErrAlreadyRetired = fmt.Errorf("%w: the policy was already retired", ErrDecided)
	// ErrLapsed: the request waited too long for the citizen's answer, or
	// the agency too long to collect what the citizen consented to.
	ErrLapsed = errors.New("lapsed")
	// errRetired: the policy a request was decided on ended before the
	// release committed; the request is decided again.
	errRetired = errors.New("the policy was retired before the release")
)

// Field is one typed field of a data service.
type Field struct {
	Name  string `json:"name"`
	Label string `json:"label"`
	Type  string `json:"type"` // text, date, number or bool
}

// Service is a data service an agency publishes.
type Service struct {
	ID         string  `json:"id"`
	HolderOrg  string  `json:"holder"`
	HolderName string  `json:"holder_name"`
	Name       string  `json:"name"`
	Fields     []Field `json:"fields"`
	// WithdrawnAt is when its holder withdrew it (zero while published):
	// it holds no values any more and nobody may ask for it.
	WithdrawnAt time.Time `json:"withdrawn_at,omitzero"`
	// pending is a change of its field types being checked, as read in
	// a write transaction (serviceIn); nil otherwise.
	pending *pendingFields
}

// Field returns the service's field called name.
func (s *Service) Field(name string) (Field, bool) {
	for _, f := range s.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// Label names a field for people.
func (s *Service) Label(name string) string {
	if f, ok := s.Field(name); ok {
		return f.Label
	}
	return name
}

// Labels are the service's labels of the fields names (a name it no
// longer has stays as it is).
func (s *Service) Labels(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = s.Label(n)
	}
	return out
}

// serviceLookup returns a function that finds a service by id (nil when
// there is none, or it cannot be read), reading each one once.
func (x *Exchange) serviceLookup(ctx context.Context) func(id string) *Service {
	seen := map[string]*Service{}
	return func(id string) *Service {
		svc, ok := seen[id]
		if !ok {
			svc, _ = x.Service(ctx, id)
			seen[id] = svc
		}
		return svc
	}
}

// Policy says who may read what, why and how.
type Policy struct {
	ID            string        `json:"id"`
	Requester     string        `json:"requester"`
	RequesterName string        `json:"requester_name"`
	Service       string        `json:"service"`
	Fields        []string      `json:"fields"`
	Purpose       string        `json:"purpose"`
	LegalBasis    string        `json:"legal_basis"`
	Consent       bool          `json:"consent_required"`
	MaxDeferral   time.Duration `json:"-"`
	Retention     time.Duration `json:"-"`
	Active        bool          `json:"active"`
	CreatedAt     time.Time     `json:"created_at"`
	// RetiredAt is when an operator retired the policy; zero while it is
	// in force, and for a policy retired before this was recorded.
	RetiredAt time.Time `json:"retired_at,omitzero"`
}

// MarshalJSON writes durations as days, for people reading the policies.
func (p Policy) MarshalJSON() ([]byte, error) {
	type plain Policy
	return json.Marshal(struct {
		plain
		MaxDeferralDays int `json:"max_deferral_days"`
		RetentionDays   int `json:"retention_days"`
	}{plain(p), days(p.MaxDeferral), days(p.Retention)})
}

func days(d time.Duration) int { return int(d / Day) }

// Day is the unit of deferrals and retention.
const Day = 24 * time.Hour

// The longest a policy may let an access be hidden from the citizen, and
// the longest it may let the recipient keep what was released.
const (
	DeferralLimit  = 3 * 365 * Day
	RetentionLimit = 30 * 365 * Day
)

// Exchange runs the data exchange. Its methods are safe for concurrent use.
type Exchange struct {
	db     *store.DB
	app    *tlog.Appender
	log    *tlog.Log
	secret []byte
	now    func() time.Time
	rand   io.Reader
	logKey string
	fault  func(point string) error
	// hook, set by this package's tests only, runs at named points of a
	// change of field types ("retype-check", before the values are read)
	// and of a write of values ("set-values", after the service is read),
	// and may fail them.
	hook  func(point string) error
	names func(ctx context.Context, orgID string) string
	cat   catalogCache
	// indexBatch: see index.go (tests set 1 to index at every integration).
	indexBatch int64
	keep       time.Duration // how long an answered complaint is kept (KeepComplaints)
	byTimeRows int           // ByTimeRows (tests set less)
	stats      struct{ released, denied, asked, given, refused, withdrawn atomic.Int64 }
}

// Stats count what the exchange decided since the process started, for
// the operator's metrics: how many, never about whom or by which agency.
type Stats struct {
	Released  int64 // releases committed (direct, or collected after consent)
	Denied    int64 // requests no policy allowed (recorded with the reason)
	Asked     int64 // requests that went to the citizen for consent
	Given     int64 // consents given
	Refused   int64 // consents refused
	Withdrawn int64 // consents withdrawn before collection
}

// Stats returns the exchange's counters. Safe for concurrent use.
func (x *Exchange) Stats() Stats {
	s := &x.stats
	return Stats{Released: s.released.Load(), Denied: s.denied.Load(), Asked: s.asked.Load(), Given: s.given.Load(), Refused: s.refused.Load(), Withdrawn: s.withdrawn.Load()}
}

// count adds one to c once err is nil.
func count(c *atomic.Int64, err error) error {
	if err == nil {
		c.Add(1)
	}
	return err
}

// Deps are the exchange's collaborators.
type Deps struct {
	DB       *store.DB
	Appender *tlog.Appender // sequences access entries with their records
	Log      *tlog.Log      // inclusion proofs for the citizen's page; its integration indexes the records
	LogKey   string         // the log's verifier key, to check checkpoints
	// Secret (32 bytes) keys the citizens' pseudonyms in the log.
	Secret []byte
	Now    func() time.Time
	Rand   io.Reader
	// OrgName names organisations (the registry's); nil: ids are shown.
	OrgName func(ctx context.Context, orgID string) string
	// Fault, for tests only, may fail a release at a named point.
	Fault func(point string) error
	// IndexBatch, if positive, replaces indexBatch (tests: 1).
	IndexBatch int
	// KeepComplaints, if not zero, is how long an answered complaint is
	// kept after the answer, from MinKeepComplaints to MaxKeepComplaints
	// (KeepComplaints if zero).
	KeepComplaints time.Duration
}

// New returns an Exchange.
func New(d Deps) (*Exchange, error) {
	if len(d.Secret) != 32 {
		return nil, fmt.Errorf("exchange: the pseudonym key is %d bytes, want 32", len(d.Secret))
	}
	if d.Rand == nil {
		d.Rand = rand.Reader
	}
	if d.OrgName == nil {
		d.OrgName = func(_ context.Context, id string) string { return id }
	}
	x := &Exchange{db: d.DB, app: d.Appender, log: d.Log, secret: d.Secret, now: d.Now, rand: d.Rand, logKey: d.LogKey, fault: d.Fault, names: d.OrgName, indexBatch: indexBatch}
	if d.IndexBatch > 0 {
		x.indexBatch = int64(d.IndexBatch)
	}
	x.keep = cmp.Or(d.KeepComplaints, KeepComplaints)
	x.byTimeRows = ByTimeRows
	if x.keep < MinKeepComplaints || x.keep > MaxKeepComplaints {
		return nil, fmt.Errorf("exchange: answered complaints kept %d days, want %d to %d", days(x.keep), days(MinKeepComplaints), days(MaxKeepComplaints))
	}
	if d.Log == nil {
		return nil, errors.New("exchange: the log is needed (its integration indexes the access records)")
	}
	d.Log.OnIntegrate(x.index)
	return x, nil
}

func (x *Exchange) id() string { return uuid.Must(uuid.NewV7FromReader(x.rand)).String() }

// Civic-reward data is used for nothing else (docs/rewards.md): no service
// may offer it through the exchange.
var rewardRE = regexp.MustCompile(`(?i)reward|voucher|civic[ _-]?points`)

const noRewards = "civic-reward data (points, events, vouchers) is not shared through the exchange"

var (
	idRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,40}$`)
	nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,40}$`)
	types  = []string{"text", "date", "number", "bool"}
)

// PublishService publishes (or replaces the fields of) a data service the
// holder organisation owns.
func (x *Exchange) PublishService(ctx context.Context, holderOrg string, svc Service) (*Service, error) {
	svc.Name = strings.TrimSpace(svc.Name)
	if !idRE.MatchString(svc.ID) {
		return nil, fmt.Errorf("%w: a service id is 2 to 41 lower-case letters, digits or dashes", ErrInvalid)
	}
	if svc.Name == "" || utf8.RuneCountInString(svc.Name) > 100 {
		return nil, fmt.Errorf("%w: a service needs a name of up to 100 characters", ErrInvalid)
	}
	if err := oneLine(svc.Name, "the service's name"); err != nil {
		return nil, err
	}
	if len(svc.Fields) == 0 || len(svc.Fields) > 100 {
		return nil, fmt.Errorf("%w: a service has 1 to 100 fields", ErrInvalid)
	}
	if rewardRE.MatchString(svc.ID) || rewardRE.MatchString(svc.Name) {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, noRewards)
	}
	seen := map[string]bool{}
	for _, f := range svc.Fields {
		if rewardRE.MatchString(f.Name) || rewardRE.MatchString(f.Label) {
			return nil, fmt.Errorf("%w: field %q: %s", ErrInvalid, short(f.Name), noRewards)
		}
		if !nameRE.MatchString(f.Name) || seen[f.Name] {
			return nil, fmt.Errorf("%w: field %q: names are lower-case letters, digits and _, once each", ErrInvalid, short(f.Name))
		}
		if !slices.Contains(types, f.Type) {
			return nil, fmt.Errorf("%w: field %q: type %q is not one of %s", ErrInvalid, short(f.Name), short(f.Type), strings.Join(types, ", "))
		}
		if strings.TrimSpace(f.Label) == "" || utf8.RuneCountInString(f.Label) > 100 {
			return nil, fmt.Errorf("%w: field %q needs a label of up to 100 characters", ErrInvalid, short(f.Name))
		}
		if err := oneLine(f.Label, fmt.Sprintf("field %q's label", f.Name)); err != nil {
			return nil, err
		}
		seen[f.Name] = true
	}
	fj, _ := json.Marshal(svc.Fields)
	now := x.now().UnixMilli()
	var change *pendingFields
	err := x.db.Tx(ctx, func(tx *store.Tx) error {
		change = nil
		old, err := serviceIn(ctx, tx, svc.ID)
		switch {
		case errors.Is(err, ErrNotFound):
			_, err = tx.ExecContext(ctx, `INSERT INTO ex_services (id, holder_org, name, fields, updated_at) VALUES ($1, $2, $3, $4, $5)`, svc.ID, holderOrg, svc.Name, string(fj), now)
			return err
		case err != nil:
			return err
		case old.HolderOrg != holderOrg:
			return fmt.Errorf("%w: the service id %q belongs to another organisation", ErrInvalid, svc.ID)
		}
		if p := old.pending; p != nil && now-p.Since < pendingStale.Milliseconds() {
			return fmt.Errorf("%w: a change of the service's field types, begun at %s, is still checking the stored values; try again when it has finished", ErrInUse, time.UnixMilli(p.Since).UTC().Format(time.RFC3339))
		}
		if checks := retyped(old.Fields, svc.Fields); len(checks) > 0 && old.WithdrawnAt.IsZero() {
			// The stored values are read after this commits, off the
			// write lock (checkRetyped); meanwhile every value stored
			// must fit the new types too (SetValues).
			if err := dropRemoved(ctx, tx, svc.ID, old.Fields, svc.Fields, false); err != nil {
				return err
			}
			change = &pendingFields{Token: x.id(), Since: now, Fields: checks}
			_, err = tx.ExecContext(ctx, `UPDATE ex_services SET pending = $1 WHERE id = $2`, change.text(), svc.ID)
			return err
		}
		if err := refit(ctx, tx, svc.ID, old.Fields, svc.Fields); err != nil {
			return err
		}
		// A change that stopped checking long ago (its node went down)
		// is dropped: this one replaces it.
		return publishFields(ctx, tx, svc, string(fj), now)
	})
	if err == nil && change != nil {
		err = x.checkRetyped(ctx, svc, string(fj), change)
	}
	if errors.Is(err, ErrInvalid) || errors.Is(err, ErrInUse) {
		return nil, err // the holder's to read as it is
	}
	if err != nil {
		return nil, fmt.Errorf("publish service: %w", err)
	}
	x.cat.drop()
	return x.Service(ctx, svc.ID)
}

// pendingStale is how long a change of a service's field types may take
// to check the stored values before another change of the service's
// fields may replace it (its node is taken to have gone down). Until it
// is replaced, values stored in the service must fit its new types too.
const pendingStale = 10 * time.Minute

// pendingFields is a change of a service's field types whose check of the
// stored values is under way (ex_services.pending): which change it is,
// since when (Unix ms), and the fields added or given another type.
type pendingFields struct {
	Token  string  `json:"token"`
	Since  int64   `json:"since"`
	Fields []Field `json:"fields"`
}

func (p *pendingFields) text() string {
	b, _ := json.Marshal(p)
	return string(b)
}

// field returns the pending change's field called name, if it checks one.
func (p *pendingFields) field(name string) (Field, bool) {
	if p == nil {
		return Field{}, false
	}
	return (&Service{Fields: p.Fields}).Field(name)
}

// checkRetyped finishes a change of svc's field types whose pending mark
// has committed: it reads the values stored under the changed fields on
// the read pool, holding no write lock (any value stored after the mark
// was checked against the new types by SetValues, and on PostgreSQL a
// SetValues that began before it either committed first or is retried),
// then publishes the change in a short transaction of its own, unless
// another change or a withdrawal replaced it meanwhile. A refusal, or any
// failure, removes the mark.
func (x *Exchange) checkRetyped(ctx context.Context, svc Service, fields string, change *pendingFields) (err error) {
	defer func() {
		if err == nil {
			return
		}
		// Only this change's mark: another may have replaced it.
		bg := context.WithoutCancel(ctx) // also when the caller gave up
		cleared := x.db.Tx(bg, func(tx *store.Tx) error {
			_, err := tx.ExecContext(bg, `UPDATE ex_services SET pending = NULL WHERE id = $1 AND pending = $2`, svc.ID, change.text())
			return err
		})
		if cleared != nil {
			err = fmt.Errorf("%w (and its mark stays until it is replaced: %w)", err, cleared)
		}
	}()
	if x.hook != nil {
		if err := x.hook("retype-check"); err != nil {
			return err
		}
	}
	if err := fitAll(ctx, x.db.Reader().QueryContext, svc.ID, change.Fields); err != nil {
		return err
	}
	return x.db.Tx(ctx, func(tx *store.Tx) error {
		cur, err := serviceIn(ctx, tx, svc.ID)
		if err != nil {
			return err
		}
		if cur.pending == nil || cur.pending.Token != change.Token {
			return fmt.Errorf("%w: the service was changed or withdrawn while its values were checked; publish the change again", ErrInUse)
		}
		// A policy put in force meanwhile may name a field this change
		// removes.
		if err := dropRemoved(ctx, tx, svc.ID, cur.Fields, svc.Fields, true); err != nil {
			return err
		}
		return publishFields(ctx, tx, svc, fields, x.now().UnixMilli())
	})
}

// publishFields writes, in tx, an existing service's name and fields (as
// JSON) as published at now (Unix ms), and drops any mark of a change
// being checked. Publishing a withdrawn service again puts it back, empty.
func publishFields(ctx context.Context, tx *store.Tx, svc Service, fields string, now int64) error {
	_, err := tx.ExecContext(ctx, `UPDATE ex_services SET name = $1, fields = $2, updated_at = $3, withdrawn_at = NULL, pending = NULL WHERE id = $4`, svc.Name, fields, now, svc.ID)
	return err
}

// refit checks, in the transaction that changes a service's fields from
// old to fields, that what is stored still fits them, so that a field's
// type stays true of every value and no policy in force names a field the
// service no longer has:
//   - a field removed while a policy in force names it is refused (an
//     operator retires the policy first); otherwise its stored values are
//     deleted with it (dropRemoved);
//   - a field added, or given another type, must fit every value stored
//     under its name (values are not converted: the holder corrects or
//     removes them first). PublishService checks these here only where
//     the service holds no values (a withdrawn one); otherwise off the
//     write lock (checkRetyped).
//
// Errors name fields, types and counts, never a value or a citizen.
func refit(ctx context.Context, tx *store.Tx, serviceID string, old, fields []Field) error {
	if err := dropRemoved(ctx, tx, serviceID, old, fields, true); err != nil {
		return err
	}
	return fitAll(ctx, tx.QueryContext, serviceID, retyped(old, fields))
}

// fitAll refuses, with misfit's error, the first of fields that some
// value stored under its name does not fit, reading them through query.
func fitAll(ctx context.Context, query func(ctx context.Context, q string, args ...any) (*sql.Rows, error), serviceID string, fields []Field) error {
	for _, f := range fields {
		misfits, first, err := countMisfits(ctx, query, serviceID, f)
		if err != nil {
			return err
		}
		if err := misfit(f, misfits, first); err != nil {
			return err
		}
	}
	return nil
}

// retyped returns the fields of fields that old does not have, or has with
// another type: those whose stored values must be checked.
func retyped(old, fields []Field) []Field {
	before := Service{Fields: old}
	var out []Field
	for _, f := range fields {
		if o, ok := before.Field(f.Name); !ok || o.Type != f.Type {
			out = append(out, f)
		}
	}
	return out
}

// dropRemoved refuses, in tx, a change of a service's fields from old to
// fields that removes a field a policy in force names, and (if drop)
// deletes the stored values of the fields it removes.
func dropRemoved(ctx context.Context, tx *store.Tx, serviceID string, old, fields []Field, drop bool) error {
	after := Service{Fields: fields}
	var removed []string
	for _, f := range old {
		if _, ok := after.Field(f.Name); !ok {
			removed = append(removed, f.Name)
		}
	}
	if len(removed) == 0 {
		return nil
	}
	pols, err := policiesInForceOn(ctx, tx, serviceID)
	if err != nil {
		return err
	}
	for _, p := range pols {
		for _, f := range removed {
			if slices.Contains(p.Fields, f) {
				return fmt.Errorf("%w: the field %q cannot be removed while a policy in force (%s, purpose %s) lets an agency read it; an operator retires that policy first", ErrInUse, f, p.ID, p.Purpose)
			}
		}
	}
	if !drop {
		return nil
	}
	for _, f := range removed {
		if _, err := tx.ExecContext(ctx, `DELETE FROM ex_values WHERE service_id = $1 AND field = $2`, serviceID, f); err != nil {
			return fmt.Errorf("the values of the removed field %q: %w", f, err)
		}
	}
	return nil
}

// misfit is the refusal of a new type for f that misfits of the stored
// values do not fit, the first because of why; nil if none.
func misfit(f Field, misfits int, why string) error {
	if misfits == 0 {
		return nil
	}
	verb := "do not fit"
	if misfits == 1 {
		verb = "does not fit"
	}
	return fmt.Errorf("%w: the field %q cannot take the type %s: %d of its stored values %s it (%s); correct or remove them first", ErrInUse, f.Name, f.Type, misfits, verb, why)
}

// policiesInForceOn reads, in tx, the policies in force that name the
// service, the oldest first: what a change to the service must not break.
func policiesInForceOn(ctx context.Context, tx *store.Tx, serviceID string) ([]*Policy, error) {
	return readPolicies(ctx, tx.QueryContext, `WHERE service_id = $1 AND active = 1 ORDER BY created_at, id`, serviceID)
}

// countMisfits counts the values stored under f's name that f's type
// refuses, and why the first is refused. It reads them misfitChunk at a
// time, by citizen, each chunk a statement of its own: off the write lock
// no read holds one snapshot for the whole service, so SQLite can
// checkpoint its WAL meanwhile (the writes stored while a long read held
// it were copied back at once afterwards, and the write that did it
// waited 20 ms behind a 100,000-value check). Every chunk is read after
// the change's mark, so it sees every value stored before it; a value
// stored after was checked against the new type.
func countMisfits(ctx context.Context, query func(ctx context.Context, q string, args ...any) (*sql.Rows, error), serviceID string, f Field) (n int, why string, err error) {
	after := ""
	for {
		rows, err := query(ctx, `SELECT person_id, value FROM ex_values WHERE service_id = $1 AND person_id > $2 AND field = $3 ORDER BY person_id LIMIT $4`, serviceID, after, f.Name, misfitChunk)
		if err != nil {
			return 0, "", fmt.Errorf("the values of %q: %w", f.Name, err)
		}
		read := 0
		for rows.Next() {
			var v string
			if err := rows.Scan(&after, &v); err != nil {
				rows.Close()
				return 0, "", fmt.Errorf("the values of %q: %w", f.Name, err)
			}
			read++
			if err := checkValue(f, v); err != nil {
				if n++; why == "" {
					why = strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, "", fmt.Errorf("the values of %q: %w", f.Name, err)
		}
		if read < misfitChunk {
			return n, why, nil
		}
	}
}

// misfitChunk is how many values countMisfits reads per statement.
const misfitChunk = 4096

// serviceIn reads a service in a write transaction (without its holder's
// name), so that what the transaction writes is checked against the
// fields as they are then, not as a read before it saw them.
// A withdrawn service is read too (WithdrawnAt set): its holder may
// publish it again, and nobody else may take its id.
func serviceIn(ctx context.Context, tx *store.Tx, id string) (*Service, error) {
	svc := &Service{ID: id}
	var fj string
	var withdrawn sql.NullInt64
	var pending sql.NullString
	err := tx.QueryRowContext(ctx, `SELECT holder_org, name, fields, withdrawn_at, pending FROM ex_services WHERE id = $1`, id).Scan(&svc.HolderOrg, &svc.Name, &fj, &withdrawn, &pending)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no data service %q", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("service %q: %w", id, err)
	}
	if err := json.Unmarshal([]byte(fj), &svc.Fields); err != nil {
		return nil, fmt.Errorf("service %q: its fields as stored: %w", id, err)
	}
	if withdrawn.Valid {
		svc.WithdrawnAt = time.UnixMilli(withdrawn.Int64).UTC()
	}
	if pending.Valid {
		svc.pending = new(pendingFields)
		if err := json.Unmarshal([]byte(pending.String), svc.pending); err != nil {
			return nil, fmt.Errorf("service %q: its change being checked, as stored: %w", id, err)
		}
	}
	return svc, nil
}

// heldService is serviceIn for the service's holder only.
func heldService(ctx context.Context, tx *store.Tx, holderOrg, id string) (*Service, error) {
	svc, err := serviceIn(ctx, tx, id)
	if err == nil && svc.HolderOrg != holderOrg {
		return nil, fmt.Errorf("%w: %s is not your service", ErrNotFound, id)
	}
	return svc, err
}

// WithdrawService ends a data service its holder no longer offers: its
// values are deleted, and no request may name it. A policy in force that
// names it must be retired first; the service stays as a tombstone (past
// policies and requests keep its name and labels, and its id stays the
// holder's, who may publish it again).
func (x *Exchange) WithdrawService(ctx context.Context, holderOrg, id string) error {
	err := x.db.Tx(ctx, func(tx *store.Tx) error {
		svc, err := heldService(ctx, tx, holderOrg, id)
		if err != nil {
			return err
		}
		if !svc.WithdrawnAt.IsZero() {
			return fmt.Errorf("%w: the service %s was already withdrawn", ErrDecided, id)
		}
		pols, err := policiesInForceOn(ctx, tx, id)
		if err != nil {
			return err
		}
		if len(pols) > 0 {
			return fmt.Errorf("%w: %d policies in force let agencies read %s (the first: %s, purpose %s); an operator retires them first", ErrInUse, len(pols), id, pols[0].ID, pols[0].Purpose)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM ex_values WHERE service_id = $1`, id); err != nil {
			return fmt.Errorf("the values of %s: %w", id, err)
		}
		// A change of its field types being checked is dropped with them.
		_, err = tx.ExecContext(ctx, `UPDATE ex_services SET withdrawn_at = $1, pending = NULL WHERE id = $2`, x.now().UnixMilli(), id)
		return err
	})
	x.cat.drop()
	return err
}

// Service returns a published service.
func (x *Exchange) Service(ctx context.Context, id string) (*Service, error) {
	ss, err := x.services(ctx, `WHERE id = $1`, id)
	if err != nil {
		return nil, err
	}
	if len(ss) == 0 {
		return nil, fmt.Errorf("%w: no data service %q", ErrNotFound, id)
	}
	return ss[0], nil
}

// Services lists every published service (not the withdrawn ones).
func (x *Exchange) Services(ctx context.Context) ([]*Service, error) {
	return x.services(ctx, `WHERE withdrawn_at IS NULL ORDER BY name`)
}

func (x *Exchange) services(ctx context.Context, where string, args ...any) ([]*Service, error) {
	rows, err := x.db.QueryRead(ctx, `SELECT id, holder_org, name, fields, withdrawn_at FROM ex_services `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("services: %w", err)
	}
	defer rows.Close()
	var out []*Service
	for rows.Next() {
		s := &Service{}
		var fj string
		var withdrawn sql.NullInt64
		if err := rows.Scan(&s.ID, &s.HolderOrg, &s.Name, &fj, &withdrawn); err != nil {
			return nil, err
		}
		if withdrawn.Valid {
			s.WithdrawnAt = time.UnixMilli(withdrawn.Int64).UTC()
		}
		if err := json.Unmarshal([]byte(fj), &s.Fields); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, s := range out {
		s.HolderName = x.names(ctx, s.HolderOrg)
	}
	return out, nil
}

// decimal is how a number field's value is written: an optional sign,
// digits with an optional fraction and an optional exponent; not the hex
// floats, underscores, NaN or infinities strconv.ParseFloat also reads.
var decimal = regexp.MustCompile(`^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$`)

// oneLine checks that s, named what in the error, is a line of text:
// valid UTF-8 with no control character (no line break, no terminal
// escape, no NUL, which PostgreSQL does not store as text where SQLite
// would) and no bidirectional embedding, override or isolate (U+202A–
// U+202E, U+2066–U+2069), which would make an officer's name or a legal
// basis read otherwise on the citizen's page than it is written; the marks
// LRM, RLM and ALM, which right-to-left text uses, may be in it. The
// server refuses a NUL at its door; the package holds the rule for every
// caller, on either engine, before anything is written.
func oneLine(s, what string) error {
	switch text.LineFault(s) {
	case text.NotUTF8:
		return fmt.Errorf("%w: %s is not valid UTF-8 text", ErrInvalid, what)
	case text.HasControl:
		return fmt.Errorf("%w: %s holds a control character (a line break, a tab or another character that is not printed)", ErrInvalid, what)
	case text.HasReorder:
		return fmt.Errorf("%w: %s holds a bidirectional override (U+202A to U+202E or U+2066 to U+2069), which would change the order it reads in", ErrInvalid, what)
	}
	return nil
}

// checkValue checks a value against its field's type. A text value may
// run over lines (an address), so line breaks and tabs are its only
// control characters.
func checkValue(f Field, v string) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s is not valid UTF-8 text", ErrInvalid, f.Label)
	}
	if strings.ContainsFunc(v, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' }) {
		return fmt.Errorf("%w: %s holds a control character (only line breaks and tabs may be in a value)", ErrInvalid, f.Label)
	}
	switch f.Type {
	case "date":
		if _, err := time.Parse(time.DateOnly, v); err != nil {
			return fmt.Errorf("%w: %s must be a date (YYYY-MM-DD)", ErrInvalid, f.Label)
		}
	case "number":
		if !decimal.MatchString(v) {
			return fmt.Errorf("%w: %s must be a number, written in decimal digits (such as 41250 or -3.5)", ErrInvalid, f.Label)
		}
		if n, err := strconv.ParseFloat(v, 64); err != nil || math.IsInf(n, 0) {
			return fmt.Errorf("%w: %s is a number too large to hold", ErrInvalid, f.Label)
		}
	case "bool":
		if v != "true" && v != "false" {
			return fmt.Errorf("%w: %s must be true or false", ErrInvalid, f.Label)
		}
	}
	if utf8.RuneCountInString(v) > 1000 {
		return fmt.Errorf("%w: %s is longer than 1000 characters", ErrInvalid, f.Label)
	}
	return nil
}

// SetValues stores what the holder holds about a citizen (the holder's
// own register, fed through the API).
func (x *Exchange) SetValues(ctx context.Context, holderOrg, serviceID, personID string, values map[string]string) error {
	if err := oneLine(personID, "the citizen's id"); err != nil {
		return err
	}
	now := x.now().UnixMilli()
	return x.db.Tx(ctx, func(tx *store.Tx) error {
		if tx.Dialect() == store.Postgres {
			// A change of the service's field types marks its row
			// before it reads the stored values: holding the row, this
			// transaction either commits before the mark (and its values
			// are read) or, started before the mark committed, fails
			// to serialize and is retried (and checks them against
			// the mark). SQLite's one writer orders the two anyway.
			if _, err := tx.ExecContext(ctx, `SELECT 1 FROM ex_services WHERE id = $1 FOR SHARE`, serviceID); err != nil {
				return err
			}
		}
		svc, err := heldService(ctx, tx, holderOrg, serviceID)
		if err != nil {
			return err
		}
		if !svc.WithdrawnAt.IsZero() {
			return fmt.Errorf("%w: the service %s was withdrawn; publish it again first", ErrInUse, serviceID)
		}
		if x.hook != nil {
			if err := x.hook("set-values"); err != nil {
				return err
			}
		}
		for name, v := range values {
			f, ok := svc.Field(name)
			if !ok {
				return fmt.Errorf("%w: %s has no field %q", ErrInvalid, svc.Name, short(name))
			}
			if err := checkValue(f, v); err != nil {
				return err
			}
			if pf, ok := svc.pending.field(name); ok {
				if err := checkValue(pf, v); err != nil {
					return fmt.Errorf("%w: the field %q is being changed to the type %s, which this value does not fit (%s); send a value of that type, or wait until the change is published or refused", ErrInUse, name, pf.Type, strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
				}
			}
		}
		for name, v := range values {
			if _, err := tx.ExecContext(ctx, `DELETE FROM ex_values WHERE service_id = $1 AND person_id = $2 AND field = $3`, serviceID, personID, name); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO ex_values (service_id, person_id, field, value, updated_at) VALUES ($1, $2, $3, $4, $5)`, serviceID, personID, name, v, now); err != nil {
				return err
			}
		}
		return nil
	})
}

// RemoveValues deletes what the holder's service holds about a citizen:
// the named fields, or every field when none is named. Removing what is
// not there is not an error; the citizen need not be registered any more
// (removing a person's data is what a register does when they leave it).
func (x *Exchange) RemoveValues(ctx context.Context, holderOrg, serviceID, personID string, fields []string) error {
	if err := oneLine(personID, "the citizen's id"); err != nil {
		return err
	}
	return x.db.Tx(ctx, func(tx *store.Tx) error {
		svc, err := heldService(ctx, tx, holderOrg, serviceID)
		if err != nil {
			return err
		}
		for _, name := range fields {
			if _, ok := svc.Field(name); !ok {
				return fmt.Errorf("%w: %s has no field %q", ErrInvalid, svc.Name, short(name))
			}
		}
		if len(fields) == 0 {
			_, err := tx.ExecContext(ctx, `DELETE FROM ex_values WHERE service_id = $1 AND person_id = $2`, serviceID, personID)
			return err
		}
		for _, name := range fields {
			if _, err := tx.ExecContext(ctx, `DELETE FROM ex_values WHERE service_id = $1 AND person_id = $2 AND field = $3`, serviceID, personID, name); err != nil {
				return err
			}
		}
		return nil
	})
}

// CreatePolicy adds a policy (operators only; the server checks).
func (x *Exchange) CreatePolicy(ctx context.Context, p Policy, createdBy string) (*Policy, error) {
	if len(p.Fields) == 0 {
		return nil, fmt.Errorf("%w: a policy allows at least one field", ErrInvalid)
	}
	p.Purpose, p.LegalBasis = strings.TrimSpace(p.Purpose), strings.TrimSpace(p.LegalBasis)
	if !ValidPurpose(p.Purpose) {
		return nil, fmt.Errorf("%w: a purpose code is 2 to 40 capitals, digits or dashes (e.g. TAX-AUDIT)", ErrInvalid)
	}
	if p.LegalBasis == "" || utf8.RuneCountInString(p.LegalBasis) > 200 {
		return nil, fmt.Errorf("%w: name the legal basis (up to 200 characters)", ErrInvalid)
	}
	if err := oneLine(p.LegalBasis, "the legal basis"); err != nil {
		return nil, err
	}
	if p.MaxDeferral < 0 || p.MaxDeferral > DeferralLimit || p.Retention <= 0 || p.Retention > RetentionLimit {
		return nil, fmt.Errorf("%w: deferral is 0 to 3 years and retention 1 day to 30 years", ErrInvalid)
	}
	if p.Consent && p.MaxDeferral > 0 {
		return nil, fmt.Errorf("%w: a request the citizen must consent to cannot be hidden from them", ErrInvalid)
	}
	p.ID, p.Active, p.CreatedAt = x.id(), true, x.now().UTC()
	fj, _ := json.Marshal(p.Fields)
	err := x.db.Tx(ctx, func(tx *store.Tx) error {
		// The service's fields as they are in this transaction: a holder's
		// change of its fields (refit) and a policy naming them do not cross.
		svc, err := serviceIn(ctx, tx, p.Service)
		if err != nil {
			return err
		}
		if !svc.WithdrawnAt.IsZero() {
			return fmt.Errorf("%w: the service %s was withdrawn by its holder", ErrInvalid, p.Service)
		}
		seen := map[string]bool{}
		for _, f := range p.Fields {
			if _, ok := svc.Field(f); !ok {
				return fmt.Errorf("%w: %s has no field %q", ErrInvalid, svc.Name, short(f))
			}
			if seen[f] {
				return fmt.Errorf("%w: the policy names the field %q twice", ErrInvalid, short(f))
			}
			seen[f] = true
		}
		if err := twinInForce(ctx, tx, &p); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO ex_policies (id, requester_org, service_id, fields, purpose, legal_basis, consent, max_deferral, retention, active, created_by, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11)`, p.ID, p.Requester, p.Service, string(fj), p.Purpose, p.LegalBasis, boolInt(p.Consent),
			p.MaxDeferral.Milliseconds(), p.Retention.Milliseconds(), createdBy, p.CreatedAt.UnixMilli())
		return err
	})
	switch {
	case errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrPolicyInForce):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("policy: %w", err)
	}
	x.cat.drop()
	p.RequesterName = x.names(ctx, p.Requester)
	return &p, nil
}

// twinInForce refuses p if a policy in force says the same (its fields in
// any order): ErrPolicyInForce, naming it. Two operators (or one form sent
// twice) cannot both create the same policy: SQLite runs one writer at a
// time, and PostgreSQL's serializable transactions fail one of two that
// read and insert the same, which store.DB.Tx retries.
func twinInForce(ctx context.Context, tx *store.Tx, p *Policy) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, fields, created_at FROM ex_policies WHERE active = 1 AND requester_org = $1 AND service_id = $2 AND purpose = $3
		AND legal_basis = $4 AND consent = $5 AND max_deferral = $6 AND retention = $7`,
		p.Requester, p.Service, p.Purpose, p.LegalBasis, boolInt(p.Consent), p.MaxDeferral.Milliseconds(), p.Retention.Milliseconds())
	if err != nil {
		return fmt.Errorf("policies in force: %w", err)
	}
	defer rows.Close()
	want := slices.Sorted(slices.Values(p.Fields))
	for rows.Next() {
		var id, fj string
		var at int64
		if err := rows.Scan(&id, &fj, &at); err != nil {
			return err
		}
		var have []string
		if err := json.Unmarshal([]byte(fj), &have); err != nil {
			return fmt.Errorf("policy %s: fields: %w", id, err)
		}
		slices.Sort(have)
		if slices.Equal(have, want) {
			return fmt.Errorf("%w: policy %s, in force since %s, says exactly this already; nothing was created", ErrPolicyInForce, id, time.UnixMilli(at).UTC().Format("2 Jan 2006 15:04 UTC"))
		}
	}
	return rows.Err()
}

var purposeRE = regexp.MustCompile(`^[A-Z0-9][A-Z0-9-]{1,39}$`)

// ValidPurpose reports whether s is a purpose code a policy may name: 2 to
// 40 capitals, digits or dashes (e.g. TAX-AUDIT).
func ValidPurpose(s string) bool { return purposeRE.MatchString(s) }

// RetirePolicy ends a policy; requests under it are refused from then on.
func (x *Exchange) RetirePolicy(ctx context.Context, id, retiredBy string) error {
	defer x.cat.drop()
	return x.db.Tx(ctx, func(tx *store.Tx) error {
		r, err := tx.ExecContext(ctx, `UPDATE ex_policies SET active = 0, retired_at = $2, retired_by = $3 WHERE id = $1 AND active = 1`,
			id, x.now().UnixMilli(), retiredBy)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 1 {
			return nil
		}
		var exists int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM ex_policies WHERE id = $1`, id).Scan(&exists); err != nil {
			return err
		}
		if exists > 0 {
			return ErrAlreadyRetired
		}
		return fmt.Errorf("%w: there is no policy %q", ErrNotFound, id)
	})
}

// Policies lists policies (active first).
func (x *Exchange) Policies(ctx context.Context) ([]*Policy, error) {
	return x.policies(ctx, `ORDER BY active DESC, created_at`)
}

// Policy is the policy id, in force or retired, with its agency's name;
// ErrNotFound if there is none.
func (x *Exchange) Policy(ctx context.Context, id string) (*Policy, error) {
	ps, err := x.policies(ctx, `WHERE id = $1`, id)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("%w: there is no policy %q", ErrNotFound, id)
	}
	return ps[0], nil
}

// PoliciesFor lists the policies in force that let org ask, the oldest
// first.
func (x *Exchange) PoliciesFor(ctx context.Context, org string) ([]*Policy, error) {
	return x.policies(ctx, `WHERE requester_org = $1 AND active = 1 ORDER BY created_at, id`, org)
}

func (x *Exchange) policies(ctx context.Context, where string, args ...any) ([]*Policy, error) {
	out, err := readPolicies(ctx, x.db.QueryRead, where, args...)
	if err != nil {
		return nil, err
	}
	for _, p := range out {
		p.RequesterName = x.names(ctx, p.Requester)
	}
	return out, nil
}

// readPolicies reads the policies where selects through query (a pool's
// QueryContext, or the store's prepared QueryRead), without their
// agencies' names.
func readPolicies(ctx context.Context, query func(context.Context, string, ...any) (*sql.Rows, error), where string, args ...any) ([]*Policy, error) {
	rows, err := query(ctx, `SELECT id, requester_org, service_id, fields, purpose, legal_basis, consent, max_deferral, retention, active, created_at, retired_at FROM ex_policies `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	defer rows.Close()
	var out []*Policy
	for rows.Next() {
		p := &Policy{}
		var fj string
		var consent, active int
		var deferral, retention, at int64
		var retired sql.NullInt64
		if err := rows.Scan(&p.ID, &p.Requester, &p.Service, &fj, &p.Purpose, &p.LegalBasis, &consent, &deferral, &retention, &active, &at, &retired); err != nil {
			return nil, fmt.Errorf("policies: %w", err)
		}
		_ = json.Unmarshal([]byte(fj), &p.Fields)
		p.Consent, p.Active = consent == 1, active == 1
		p.MaxDeferral, p.Retention = time.Duration(deferral)*time.Millisecond, time.Duration(retention)*time.Millisecond
		p.CreatedAt = time.UnixMilli(at).UTC()
		if retired.Valid {
			p.RetiredAt = time.UnixMilli(retired.Int64).UTC()
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	return out, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
