package exchange

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/civstack/civstack/internal/modeltest"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

// TestExchangeModel runs random sequences of what operators, agencies and
// citizens do (policies put in force and retired; requests with any
// fields, purpose, legal basis and deferral; consent given, refused and
// withdrawn; cancellations; collections; time passing; a release that
// fails between its record and its commit) against a model of what the
// policies allow, on every engine. After every step the exchange's answer
// must be the model's:
//   - a request is released or put to the citizen only under a policy in
//     force that names every field asked for and allows its deferral; it
//     waits for consent whenever that policy needs it, and is denied when
//     no policy allows it;
//   - a release carries exactly the asked fields the citizen has values
//     for, and nothing when it fails;
//   - an answer, a withdrawal, a cancellation or a collection is taken
//     only in the state (and time) that allows it, and only from the
//     citizen or agency the request is about or from;
//
// and at the end of each sequence the records must be the model's
// releases, one each: every agency's as the DPA reads them, deferred
// ones included, and every citizen's as their page lists them, their own
// only, deferred ones once their deferral has ended, each verified
// against a signed checkpoint.
func TestExchangeModel(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		m := newModelWorld(t, db)
		modeltest.Check(t, modelOutcomes, func(rt *rapid.T, seen *modeltest.Outcomes) {
			m.seen = seen
			m.run(rt)
		})
	})
}

// modelWorld is what the runs on one database share: the exchange, its
// log and clock, and the fault switch.
type modelWorld struct {
	ex  *Exchange
	log *tlog.Log
	clk *modelClock
	db  *store.DB

	mu    sync.Mutex
	fault bool // the next release fails after its record, before its commit
	seen  *modeltest.Outcomes
}

// modelOutcomes are what the runs must reach between them.
var modelOutcomes = []string{"denied", "released", "released deferred", "awaiting consent", "consented", "refused", "withdrawn", "cancelled",
	"collected", "collection denied", "lapsed", "release failed", "collection failed", "twin refused", "retired", "deferral seen", "replayed", "key reused", "value set", "value removed"}

func (m *modelWorld) saw(outcome string) { m.seen.Saw(outcome) }

type modelClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *modelClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *modelClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var errInjected = errors.New("injected failure")

func newModelWorld(t *testing.T, db *store.DB) *modelWorld {
	ctx, cancel := context.WithCancel(context.Background())
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := tlog.NewEd25519Signer("model.civstack/log", priv)
	if err != nil {
		t.Fatal(err)
	}
	m := &modelWorld{clk: &modelClock{t: time.UnixMilli(1_790_000_000_000).UTC()}, db: db}
	if m.log, err = tlog.New(db, signer.Name(), signer, m.clk.now); err != nil {
		t.Fatal(err)
	}
	app := tlog.NewAppender(db, m.clk.now, nil)
	done := make(chan struct{})
	go func() { app.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	m.ex, err = New(Deps{DB: db, Appender: app, Log: m.log, LogKey: signer.VerifierKey(), Secret: secret, Now: m.clk.now, IndexBatch: 1,
		Fault: func(point string) error {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.fault {
				m.fault = false
				return fmt.Errorf("%w at %s", errInjected, point)
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The model's vocabulary: each run's organisations, citizens and service
// are its own (ids with the run's prefix), on a database the runs share.
var (
	modelFields   = []string{"address", "household", "income"}
	modelPurposes = []string{"AUDIT", "CHECK"}
	modelBases    = []string{"§1", "§2"}
	modelDefers   = []time.Duration{0, 5 * Day, 20 * Day}
	modelSteps    = []time.Duration{time.Hour, 5 * Day, 20 * Day, 30 * Day}
	// modelOps: asking and answering more often than changing the
	// policies (rapid draws the first ones more often).
	modelOps = []string{"ask", "answer", "collect", "ask", "policy", "wait", "answer", "ask", "collect", "withdraw", "values", "cancel", "policy", "retire", "answer", "collect"}
)

type mPolicy struct {
	id             string
	agency         string
	fields         []string
	purpose, basis string
	consent        bool
	maxDefer       time.Duration
	active         bool
	retention      time.Duration
}

type mRequest struct {
	id, agency, citizen string
	fields              []string
	purpose, basis      string
	state               string // Denied, AwaitConsent, Consented, RefusedConsent (refused or withdrawn), Cancelled, Released
	withdrawn           bool
	created, decided    time.Time
}

type mRelease struct {
	request, agency, citizen string
	purpose, policy          string
	fields                   []string
	deferUntil               time.Time // zero: not deferred
}

type modelRun struct {
	m        *modelWorld
	rt       *rapid.T
	ctx      context.Context
	agencies []string
	citizens []string
	service  string
	holder   string
	values   map[string]map[string]string // citizen → field → value
	policies []*mPolicy
	requests []*mRequest
	releases []mRelease
	keys     map[string]keyedAsk // by agency and idempotency key
	keyed    []Ask               // the asks that took a key, to retry
}

type keyedAsk struct {
	ask Ask
	id  string // the request it named
}

func (m *modelWorld) run(rt *rapid.T) {
	prefix := make([]byte, 4)
	_, _ = rand.Read(prefix)
	p := hex.EncodeToString(prefix)
	r := &modelRun{m: m, rt: rt, ctx: context.Background(), agencies: []string{"tax-" + p, "police-" + p}, holder: "holder-" + p,
		citizens: []string{"p1-" + p, "p2-" + p, "p3-" + p}, service: "reg-" + p, values: map[string]map[string]string{}, keys: map[string]keyedAsk{}}
	svc := Service{ID: r.service, Name: "Register " + p}
	for _, f := range modelFields {
		svc.Fields = append(svc.Fields, Field{Name: f, Label: f, Type: "text"})
	}
	if _, err := m.ex.PublishService(r.ctx, r.holder, svc); err != nil {
		rt.Fatal(err)
	}
	for i, c := range r.citizens {
		vals := map[string]string{}
		for j, f := range modelFields {
			if i == 2 && j == 2 {
				continue // the third citizen has no income on record
			}
			vals[f] = c + "/" + f
		}
		if err := m.ex.SetValues(r.ctx, r.holder, r.service, c, vals); err != nil {
			rt.Fatal(err)
		}
		r.values[c] = vals
	}
	// A few policies to start from, so that asks meet them.
	for range rapid.IntRange(1, 3).Draw(rt, "first policies") {
		r.createPolicy()
	}
	steps := rapid.IntRange(10, 50).Draw(rt, "steps")
	for range steps {
		switch rapid.SampledFrom(modelOps).Draw(rt, "op") {
		case "policy":
			r.createPolicy()
		case "retire":
			r.retirePolicy()
		case "ask":
			r.submit()
		case "answer":
			r.decide()
		case "withdraw":
			r.withdraw()
		case "cancel":
			r.cancel()
		case "collect":
			r.collect()
		case "values":
			r.changeValues()
		case "wait":
			m.clk.add(rapid.SampledFrom(modelSteps).Draw(rt, "wait"))
		}
	}
	r.checkRecords()
}

// changeValues has the holder set a citizen's value of a field anew, or
// remove some of their values (or all): what a later release carries.
func (r *modelRun) changeValues() {
	c := rapid.SampledFrom(r.citizens).Draw(r.rt, "whose values")
	f := rapid.SampledFrom(modelFields).Draw(r.rt, "field")
	switch rapid.IntRange(0, 2).Draw(r.rt, "change") {
	case 0:
		v := fmt.Sprintf("%s/%s/%d", c, f, rapid.IntRange(0, 99).Draw(r.rt, "value"))
		if err := r.m.ex.SetValues(r.ctx, r.holder, r.service, c, map[string]string{f: v}); err != nil {
			r.rt.Fatalf("set %s's %s: %v", c, f, err)
		}
		r.values[c][f] = v
		r.m.saw("value set")
	case 1:
		if err := r.m.ex.RemoveValues(r.ctx, r.holder, r.service, c, []string{f}); err != nil {
			r.rt.Fatalf("remove %s's %s: %v", c, f, err)
		}
		delete(r.values[c], f)
		r.m.saw("value removed")
	default:
		if err := r.m.ex.RemoveValues(r.ctx, r.holder, r.service, c, nil); err != nil {
			r.rt.Fatalf("remove %s's values: %v", c, err)
		}
		r.values[c] = map[string]string{}
	}
}

// fields draws a non-empty set of field names, now and then one the
// service does not have.
func (r *modelRun) fields(label string) []string {
	pool := append(slices.Clone(modelFields), "shoe_size")
	set := rapid.SliceOfNDistinct(rapid.SampledFrom(pool), 1, 3, rapid.ID[string]).Draw(r.rt, label)
	return slices.Sorted(slices.Values(set))
}

func (r *modelRun) createPolicy() {
	p := &mPolicy{agency: rapid.SampledFrom(r.agencies).Draw(r.rt, "agency"), purpose: rapid.SampledFrom(modelPurposes).Draw(r.rt, "purpose"),
		basis: rapid.SampledFrom(modelBases).Draw(r.rt, "basis"), consent: rapid.Bool().Draw(r.rt, "consent"), retention: 30 * Day}
	p.fields = rapid.SliceOfNDistinct(rapid.SampledFrom(modelFields), 1, 3, rapid.ID[string]).Draw(r.rt, "policy fields")
	if !p.consent {
		p.maxDefer = rapid.SampledFrom([]time.Duration{0, 10 * Day}).Draw(r.rt, "max deferral")
	}
	got, err := r.m.ex.CreatePolicy(r.ctx, Policy{Requester: p.agency, Service: r.service, Fields: p.fields, Purpose: p.purpose, LegalBasis: p.basis,
		Consent: p.consent, MaxDeferral: p.maxDefer, Retention: p.retention}, "model")
	for _, q := range r.policies {
		if q.active && q.agency == p.agency && q.purpose == p.purpose && q.basis == p.basis && q.consent == p.consent && q.maxDefer == p.maxDefer &&
			slices.Equal(slices.Sorted(slices.Values(q.fields)), slices.Sorted(slices.Values(p.fields))) {
			if !errors.Is(err, ErrPolicyInForce) {
				r.rt.Fatalf("a twin of policy %s in force: %v, want ErrPolicyInForce", q.id, err)
			}
			r.m.saw("twin refused")
			return
		}
	}
	if err != nil {
		r.rt.Fatalf("create policy %+v: %v", p, err)
	}
	p.id, p.active = got.ID, true
	r.policies = append(r.policies, p)
}

func (r *modelRun) retirePolicy() {
	var active []*mPolicy
	for _, p := range r.policies {
		if p.active {
			active = append(active, p)
		}
	}
	if len(active) == 0 {
		return
	}
	r.retire(rapid.SampledFrom(active).Draw(r.rt, "retire"))
}

func (r *modelRun) retire(p *mPolicy) {
	if err := r.m.ex.RetirePolicy(r.ctx, p.id, "model"); err != nil {
		r.rt.Fatalf("retire %s: %v", p.id, err)
	}
	p.active = false
	r.m.saw("retired")
	if err := r.m.ex.RetirePolicy(r.ctx, p.id, "model"); !errors.Is(err, ErrAlreadyRetired) {
		r.rt.Fatalf("retire %s twice: %v", p.id, err)
	}
}

// allowing lists the policies in force that let agency read fields for
// purpose on basis with that deferral.
func (r *modelRun) allowing(agency string, fields []string, purpose, basis string, deferral time.Duration) []*mPolicy {
	var out []*mPolicy
	for _, p := range r.policies {
		if !p.active || p.agency != agency || p.purpose != purpose || p.basis != basis {
			continue
		}
		if !everyIn(fields, p.fields) || (deferral > 0 && deferral > p.maxDefer) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func everyIn(fields, allowed []string) bool {
	for _, f := range fields {
		if !slices.Contains(allowed, f) {
			return false
		}
	}
	return true
}

func (r *modelRun) policy(id string) *mPolicy {
	for _, p := range r.policies {
		if p.id == id {
			return p
		}
	}
	return nil
}

// released checks the values a release carries: exactly the asked fields
// the citizen has values for.
func (r *modelRun) released(got *Request, citizen string, fields []string) {
	want := map[string]string{}
	for _, f := range fields {
		if v, ok := r.values[citizen][f]; ok {
			want[f] = v
		}
	}
	if !maps.Equal(got.Values, want) {
		r.rt.Fatalf("request %s released %v, want %v", got.ID, got.Values, want)
	}
}

func (r *modelRun) submit() {
	a := Ask{Requester: rapid.SampledFrom(r.agencies).Draw(r.rt, "asker"), Officer: "officer", Citizen: rapid.SampledFrom(r.citizens).Draw(r.rt, "citizen"),
		Service: r.service, Fields: r.fields("asked"), Purpose: rapid.SampledFrom(modelPurposes).Draw(r.rt, "asked purpose"),
		LegalBasis: rapid.SampledFrom(modelBases).Draw(r.rt, "asked basis"), Defer: rapid.SampledFrom(modelDefers).Draw(r.rt, "defer")}
	// Mostly near a policy (its agency, purpose and basis, some of its
	// fields, now and then one more), so that the runs reach releases and
	// consent as often as denials.
	if len(r.policies) > 0 && rapid.IntRange(0, 3).Draw(r.rt, "near a policy") < 3 {
		p := rapid.SampledFrom(r.policies).Draw(r.rt, "near")
		a.Requester, a.Purpose, a.LegalBasis = p.agency, p.purpose, p.basis
		a.Fields = rapid.SliceOfNDistinct(rapid.SampledFrom(p.fields), 1, len(p.fields), rapid.ID[string]).Draw(r.rt, "some of its fields")
		if rapid.IntRange(0, 4).Draw(r.rt, "one more field") == 4 {
			a.Fields = append(a.Fields, rapid.SampledFrom(append(slices.Clone(modelFields), "shoe_size")).Draw(r.rt, "more"))
		}
		a.Fields = slices.Compact(slices.Sorted(slices.Values(a.Fields)))
	}
	// Now and then with an idempotency key: a retry of an earlier keyed
	// ask, as it was or changed, or one of a few keys.
	switch {
	case len(r.keyed) > 0 && rapid.IntRange(0, 3).Draw(r.rt, "retry") == 3:
		a = rapid.SampledFrom(r.keyed).Draw(r.rt, "retried")
		if rapid.IntRange(0, 2).Draw(r.rt, "changed") == 2 {
			a.Officer = "another officer"
		}
	case rapid.IntRange(0, 2).Draw(r.rt, "with a key") == 2:
		a.Key = rapid.SampledFrom([]string{"k1", "k2", "k3"}).Draw(r.rt, "key")
	}
	if first, ok := r.keys[a.Requester+" "+a.Key]; ok && a.Key != "" {
		r.replay(a, first)
		return
	}
	allowed := r.allowing(a.Requester, a.Fields, a.Purpose, a.LegalBasis, a.Defer)
	if slices.Contains(a.Fields, "shoe_size") {
		allowed = nil // the service has no such field: no policy can name it
	}
	fail := len(allowed) > 0 && rapid.IntRange(0, 7).Draw(r.rt, "fail") == 7
	r.m.mu.Lock()
	r.m.fault = fail
	r.m.mu.Unlock()
	defer func() { r.m.mu.Lock(); r.m.fault = false; r.m.mu.Unlock() }()
	got, err := r.m.ex.Submit(r.ctx, a)
	now := r.m.clk.now()
	if err == nil && a.Key != "" {
		r.keys[a.Requester+" "+a.Key] = keyedAsk{ask: a, id: got.ID}
		r.keyed = append(r.keyed, a)
	}
	if len(allowed) == 0 {
		if err != nil || got.State != Denied || got.Reason == "" || len(got.Values) != 0 {
			r.rt.Fatalf("ask %+v allowed by no policy: %+v %v, want denied with a reason", a, got, err)
		}
		r.requests = append(r.requests, &mRequest{id: got.ID, agency: a.Requester, citizen: a.Citizen, fields: got.Fields, purpose: a.Purpose, basis: a.LegalBasis,
			state: Denied, created: now})
		r.m.saw("denied")
		return
	}
	if err != nil && errors.Is(err, errInjected) {
		// Only a release fails there; it left nothing behind (checked at the end).
		if !slices.ContainsFunc(allowed, func(p *mPolicy) bool { return !p.consent }) {
			r.rt.Fatalf("ask %+v: a release failed where every allowing policy needs consent", a)
		}
		r.m.saw("release failed")
		return
	}
	if err != nil {
		r.rt.Fatalf("ask %+v: %v", a, err)
	}
	if fail && got.State == Released {
		r.rt.Fatalf("ask %+v released although its release was made to fail", a)
	}
	pol := r.policy(got.PolicyID)
	if pol == nil || !slices.Contains(allowed, pol) {
		r.rt.Fatalf("ask %+v decided under policy %q, which does not allow it (allowing: %d)", a, got.PolicyID, len(allowed))
	}
	switch {
	case pol.consent && got.State == AwaitConsent:
		if len(got.Values) != 0 {
			r.rt.Fatalf("a request awaiting consent carries values: %v", got.Values)
		}
		r.requests = append(r.requests, &mRequest{id: got.ID, agency: a.Requester, citizen: a.Citizen, fields: got.Fields, purpose: a.Purpose, basis: a.LegalBasis,
			state: AwaitConsent, created: now})
		r.m.saw("awaiting consent")
	case !pol.consent && got.State == Released:
		r.released(got, a.Citizen, a.Fields)
		rel := mRelease{request: got.ID, agency: a.Requester, citizen: a.Citizen, purpose: a.Purpose, policy: got.PolicyID, fields: got.Fields}
		r.m.saw("released")
		if a.Defer > 0 {
			rel.deferUntil = now.Add(a.Defer)
			r.m.saw("released deferred")
		}
		r.releases = append(r.releases, rel)
	default:
		r.rt.Fatalf("ask %+v under policy %+v: state %q", a, pol, got.State)
	}
}

// replay checks a keyed ask whose key names a request already: the same
// ask answers with that request as it stands, marked replayed and without
// values; another ask is refused. Neither asks or records anything.
func (r *modelRun) replay(a Ask, first keyedAsk) {
	got, err := r.m.ex.Submit(r.ctx, a)
	f := first.ask
	if a.Officer != f.Officer || a.Citizen != f.Citizen || !slices.Equal(a.Fields, f.Fields) || a.Purpose != f.Purpose || a.LegalBasis != f.LegalBasis || a.Defer != f.Defer {
		if !errors.Is(err, ErrKeyReused) {
			r.rt.Fatalf("key %q given again with another ask: %+v %v, want ErrKeyReused", a.Key, got, err)
		}
		r.m.saw("key reused")
		return
	}
	want := ""
	for _, q := range r.requests {
		if q.id == first.id {
			want = q.state
			if r.lapsed(q) {
				want = Lapsed
			}
		}
	}
	for _, rel := range r.releases {
		if rel.request == first.id && want == "" {
			want = Released
		}
	}
	if err != nil || !got.Replayed || got.ID != first.id || len(got.Values) != 0 || got.State != want {
		r.rt.Fatalf("retry of %s with key %q: %+v %v, want it replayed as %q without values", first.id, a.Key, got, err, want)
	}
	r.m.saw("replayed")
}

// lapsed is whether the model's request reads as lapsed now.
func (r *modelRun) lapsed(q *mRequest) bool {
	now := r.m.clk.now()
	switch q.state {
	case AwaitConsent:
		return !now.Before(q.created.Add(AnswerWithin))
	case Consented:
		return !now.Before(q.decided.Add(CollectWithin))
	}
	return false
}

// pick draws one of the run's requests, mostly one in the states the
// step applies to (if there is one), now and then any.
func (r *modelRun) pick(label string, states ...string) *mRequest {
	if len(r.requests) == 0 {
		return nil
	}
	apt := slices.DeleteFunc(slices.Clone(r.requests), func(q *mRequest) bool { return !slices.Contains(states, q.state) || r.lapsed(q) })
	if len(apt) > 0 && rapid.IntRange(0, 4).Draw(r.rt, label+": an apt one") < 4 {
		return rapid.SampledFrom(apt).Draw(r.rt, label)
	}
	return rapid.SampledFrom(r.requests).Draw(r.rt, label)
}

// other is one of the run's citizens or agencies other than not.
func (r *modelRun) other(of []string, not string) string {
	return rapid.SampledFrom(slices.DeleteFunc(slices.Clone(of), func(s string) bool { return s == not })).Draw(r.rt, "other")
}

func (r *modelRun) decide() {
	q := r.pick("answer", AwaitConsent)
	if q == nil {
		return
	}
	approve := rapid.IntRange(0, 2).Draw(r.rt, "approve") < 2
	if _, err := r.m.ex.Decide(r.ctx, r.other(r.citizens, q.citizen), q.id, approve); !errors.Is(err, ErrNotFound) {
		r.rt.Fatalf("another citizen answered request %s: %v", q.id, err)
	}
	_, err := r.m.ex.Decide(r.ctx, q.citizen, q.id, approve)
	lapsed := r.lapsed(q)
	switch {
	case q.state == AwaitConsent && !lapsed:
		if err != nil {
			r.rt.Fatalf("answer %v to %s: %v", approve, q.id, err)
		}
		q.decided = r.m.clk.now()
		q.state = Consented
		if !approve {
			q.state = RefusedConsent
		}
		r.m.saw(map[bool]string{true: "consented", false: "refused"}[approve])
	case lapsed:
		if !errors.Is(err, ErrLapsed) {
			r.rt.Fatalf("answer %v to lapsed %s (%s): %v, want ErrLapsed", approve, q.id, q.state, err)
		}
		r.m.saw("lapsed")
	case (q.state == Consented && approve) || (q.state == RefusedConsent && !q.withdrawn && !approve):
		if !errors.Is(err, ErrSameAnswer) {
			r.rt.Fatalf("the same answer %v to %s again: %v, want ErrSameAnswer", approve, q.id, err)
		}
	default:
		if !errors.Is(err, ErrDecided) || errors.Is(err, ErrSameAnswer) {
			r.rt.Fatalf("answer %v to %s (%s): %v, want ErrDecided", approve, q.id, q.state, err)
		}
	}
}

func (r *modelRun) withdraw() {
	q := r.pick("withdraw", Consented)
	if q == nil {
		return
	}
	if _, err := r.m.ex.Withdraw(r.ctx, r.other(r.citizens, q.citizen), q.id); !errors.Is(err, ErrNotFound) {
		r.rt.Fatalf("another citizen withdrew %s: %v", q.id, err)
	}
	_, err := r.m.ex.Withdraw(r.ctx, q.citizen, q.id)
	lapsed := r.lapsed(q)
	switch {
	case q.state == Consented && !lapsed:
		if err != nil {
			r.rt.Fatalf("withdraw %s: %v", q.id, err)
		}
		q.state, q.withdrawn, q.decided = RefusedConsent, true, r.m.clk.now()
		r.m.saw("withdrawn")
	case q.withdrawn:
		if !errors.Is(err, ErrSameAnswer) {
			r.rt.Fatalf("withdraw %s twice: %v, want ErrSameAnswer", q.id, err)
		}
	case lapsed:
		if !errors.Is(err, ErrLapsed) {
			r.rt.Fatalf("withdraw lapsed %s: %v, want ErrLapsed", q.id, err)
		}
	default:
		if !errors.Is(err, ErrDecided) || errors.Is(err, ErrSameAnswer) {
			r.rt.Fatalf("withdraw %s (%s): %v, want ErrDecided", q.id, q.state, err)
		}
	}
}

func (r *modelRun) cancel() {
	q := r.pick("cancel", AwaitConsent, Consented)
	if q == nil {
		return
	}
	if _, err := r.m.ex.Cancel(r.ctx, r.other(r.agencies, q.agency), q.id); !errors.Is(err, ErrNotFound) {
		r.rt.Fatalf("another agency cancelled %s: %v", q.id, err)
	}
	_, err := r.m.ex.Cancel(r.ctx, q.agency, q.id)
	if (q.state == AwaitConsent || q.state == Consented) && !r.lapsed(q) {
		if err != nil {
			r.rt.Fatalf("cancel %s (%s): %v", q.id, q.state, err)
		}
		q.state, q.decided = Cancelled, r.m.clk.now()
		r.m.saw("cancelled")
		return
	}
	if !errors.Is(err, ErrDecided) {
		r.rt.Fatalf("cancel %s (%s, lapsed %v): %v, want ErrDecided", q.id, q.state, r.lapsed(q), err)
	}
}

func (r *modelRun) collect() {
	q := r.pick("collect", Consented)
	if q == nil {
		return
	}
	if _, err := r.m.ex.Collect(r.ctx, r.other(r.agencies, q.agency), q.id); !errors.Is(err, ErrNotFound) {
		r.rt.Fatalf("another agency collected %s: %v", q.id, err)
	}
	if q.state == Consented && !r.lapsed(q) && rapid.IntRange(0, 3).Draw(r.rt, "retire its policies first") == 3 {
		for _, p := range r.allowing(q.agency, q.fields, q.purpose, q.basis, 0) {
			r.retire(p) // the operator retires what allowed it before the agency collects
		}
	}
	fail := rapid.Bool().Draw(r.rt, "fail collection")
	r.m.mu.Lock()
	r.m.fault = fail
	r.m.mu.Unlock()
	defer func() { r.m.mu.Lock(); r.m.fault = false; r.m.mu.Unlock() }()
	got, err := r.m.ex.Collect(r.ctx, q.agency, q.id)
	lapsed := r.lapsed(q)
	switch {
	case q.state == Consented && !lapsed:
		// Collection decides again, on the policies in force now.
		allowed := r.allowing(q.agency, q.fields, q.purpose, q.basis, 0)
		switch {
		case len(allowed) == 0:
			if !errors.Is(err, ErrInvalid) {
				r.rt.Fatalf("collect %s with no policy in force allowing it: %v, want ErrInvalid", q.id, err)
			}
			r.m.saw("collection denied")
		case fail:
			if !errors.Is(err, errInjected) {
				r.rt.Fatalf("collect %s with a failing release: %v", q.id, err)
			}
			r.m.saw("collection failed")
		case err != nil:
			r.rt.Fatalf("collect %s: %v", q.id, err)
		default:
			if got.State != Released || !slices.Contains(allowed, r.policy(got.PolicyID)) {
				r.rt.Fatalf("collect %s: %+v under policy %q", q.id, got, got.PolicyID)
			}
			r.released(got, q.citizen, q.fields)
			q.state = Released
			r.m.saw("collected")
			r.releases = append(r.releases, mRelease{request: q.id, agency: q.agency, citizen: q.citizen, purpose: q.purpose, policy: got.PolicyID, fields: q.fields})
		}
	case q.state == Released:
		if !errors.Is(err, ErrDecided) {
			r.rt.Fatalf("collect %s twice: %v, want ErrDecided", q.id, err)
		}
	case lapsed:
		if !errors.Is(err, ErrLapsed) {
			r.rt.Fatalf("collect lapsed %s: %v, want ErrLapsed", q.id, err)
		}
		r.m.saw("lapsed")
	default:
		if !errors.Is(err, ErrInvalid) {
			r.rt.Fatalf("collect %s (%s): %v, want ErrInvalid", q.id, q.state, err)
		}
	}
}

// checkRecords compares the records with the model's releases: each
// agency's as the DPA reads them, each citizen's as their page does.
func (r *modelRun) checkRecords() {
	if _, _, err := r.m.log.Integrate(r.ctx); err != nil {
		r.rt.Fatal(err)
	}
	key := func(request, citizen string, fields []string) string {
		return fmt.Sprint(request, " ", citizen, " ", fields)
	}
	for _, ag := range r.agencies {
		got, err := r.m.ex.Accesses(r.ctx, AccessQuery{Agency: ag, Limit: 1000})
		if err != nil {
			r.rt.Fatal(err)
		}
		var have, want []string
		for _, a := range got {
			have = append(have, key(a.Request, a.personID, a.Fields)+" under "+a.Policy)
		}
		for _, rel := range r.releases {
			if rel.agency == ag {
				want = append(want, key(rel.request, rel.citizen, rel.fields)+" under "+rel.policy)
			}
		}
		slices.Sort(have)
		slices.Sort(want)
		if !slices.Equal(have, want) {
			r.rt.Fatalf("%s's records:\n%q\nwant the releases\n%q", ag, have, want)
		}
	}
	// The DPA's counts per agency and purpose (kept by the index).
	view, err := r.m.ex.DPA(r.ctx)
	if err != nil {
		r.rt.Fatal(err)
	}
	counts, want := map[string]int{}, map[string]int{}
	for _, c := range view.Summary {
		if slices.Contains(r.agencies, c.Agency) {
			counts[c.Agency+" "+c.Purpose] += c.Count
		}
	}
	for _, rel := range r.releases {
		want[rel.agency+" "+rel.purpose]++
	}
	if !maps.Equal(counts, want) {
		r.rt.Fatalf("the DPA's counts %v, want %v", counts, want)
	}
	// Each request as its agency reads it back: the model's state (lapsed
	// once its time is up), and a released one's policy is its release's.
	releasedUnder := map[string]string{}
	for _, rel := range r.releases {
		releasedUnder[rel.request] = rel.policy
	}
	for _, q := range r.requests {
		got, err := r.m.ex.RequestFor(r.ctx, q.agency, q.id)
		want := q.state
		if r.lapsed(q) {
			want = Lapsed
		}
		if err != nil || got.State != want || got.Withdrawn() != q.withdrawn {
			r.rt.Fatalf("request %s reads %+v (%v), want state %q (withdrawn %v)", q.id, got, err, want, q.withdrawn)
		}
		if q.state == Released && got.PolicyID != releasedUnder[q.id] {
			r.rt.Fatalf("collected request %s reads policy %s, released under %s", q.id, got.PolicyID, releasedUnder[q.id])
		}
	}
	for _, ag := range r.agencies {
		page, err := r.m.ex.History(r.ctx, ag, "", 1000)
		if err != nil {
			r.rt.Fatal(err)
		}
		for _, got := range page.Requests {
			if p, ok := releasedUnder[got.ID]; ok && (got.State != Released || got.PolicyID != p) {
				r.rt.Fatalf("%s's history lists %s as %s under %s, released under %s", ag, got.ID, got.State, got.PolicyID, p)
			}
		}
	}
	now := r.m.clk.now()
	for _, c := range r.citizens {
		got, err := r.m.ex.ForCitizen(r.ctx, c)
		if err != nil {
			r.rt.Fatal(err)
		}
		var have, want []string
		for _, v := range got {
			if !v.Verified {
				r.rt.Fatalf("%s's record of %s is not verified: %s", c, v.Request, v.Status)
			}
			have = append(have, key(v.Request, v.personID, v.Fields))
		}
		for _, rel := range r.releases {
			if rel.citizen == c && (rel.deferUntil.IsZero() || !now.Before(rel.deferUntil)) {
				want = append(want, key(rel.request, rel.citizen, rel.fields))
				if !rel.deferUntil.IsZero() {
					r.m.saw("deferral seen")
				}
			}
		}
		slices.Sort(have)
		slices.Sort(want)
		if !slices.Equal(have, want) {
			r.rt.Fatalf("%s's page lists\n%q\nwant\n%q", c, have, want)
		}
	}
}
