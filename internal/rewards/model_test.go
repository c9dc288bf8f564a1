package rewards_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/civstack/civstack/internal/modeltest"
	"github.com/civstack/civstack/internal/rewards"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestRewardsModel runs random sequences of what citizens and partners do
// (join, leave and join again; events recorded by the right partner and
// the wrong one, new and retried, under a member's card, an old card or
// none; vouchers bought, with a purchase key or without, and scanned by
// their partner or another; points expiring; time passing) against a
// model of the published rules, on every engine. After every step the
// answer and the citizen's balance must be the model's: each event earns
// its rule's points up to the day's cap, counted across leaving and
// joining again; a retry earns nothing more; a voucher costs its price
// once, and is honoured once, by its partner, before it expires; points
// older than the period expire oldest first, at most once a day. At the
// end the ledger's own check must pass.
func TestRewardsModel(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		w := setup(t, db, rewards.Config{PointsExpire: 10 * 24 * time.Hour})
		modeltest.Check(t, rwOutcomes, func(rt *rapid.T, seen *modeltest.Outcomes) { newRewardsRun(w, rt, seen).run() })
		w.audit(t)
	})
}

// rwOutcomes are what the runs must reach between them.
var rwOutcomes = []string{"earned", "capped", "replayed", "wrong partner", "not a member", "no card", "bought", "bought again", "too few points",
	"honoured", "used", "other partner", "voucher expired", "points expired", "left", "rejoined", "bought with a key refused before"}

var (
	rwRules = map[string]struct {
		partner     string
		points, cap int64
	}{"transit_ride": {transit, 10, 25}, "recycling_dropoff": {recycling, 5, 5}}
	rwItems = map[string]struct {
		price int64
		valid time.Duration
	}{"museum-entry": {20, 30 * 24 * time.Hour}, "museum-tour": {5, 24 * time.Hour}}
	rwWaits = []time.Duration{time.Hour, 24 * time.Hour, 5 * 24 * time.Hour, 11 * 24 * time.Hour}
)

type rwEarning struct {
	at     time.Time
	points int64
}

type rwEvent struct {
	person, typ string
	points      int64
}

type rwVoucher struct {
	v     *rewards.Voucher
	price int64
	used  bool
}

type rewardsRun struct {
	w      *world
	rt     *rapid.T
	ctx    context.Context
	seen   *modeltest.Outcomes
	prefix string
	people []string
	cards  map[string]string // the member's card; "" when not a member
	old    []string          // cards of memberships that ended
	joined map[string]bool   // ever joined (the points account exists)

	earned   map[string][]rwEarning
	spent    map[string]int64
	expired  map[string]int64
	expiries map[string]bool             // person and UTC day of a points-expired transfer
	capUsed  map[string]int64            // person, type and day → points minted
	events   map[string]rwEvent          // partner and event id → the event, while the member's events are kept
	eventIDs []string                    // partner and event id, to retry
	vouchers []*rwVoucher                // bought
	keys     map[string]*rewards.Voucher // person, item and purchase key → the voucher it bought
	refused  map[string]bool             // person, item and purchase key of a purchase refused for too few points
}

func newRewardsRun(w *world, rt *rapid.T, seen *modeltest.Outcomes) *rewardsRun {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	p := hex.EncodeToString(b)
	return &rewardsRun{w: w, rt: rt, ctx: context.Background(), seen: seen, prefix: p, people: []string{"a-" + p, "b-" + p},
		cards: map[string]string{}, joined: map[string]bool{}, earned: map[string][]rwEarning{}, spent: map[string]int64{}, expired: map[string]int64{},
		expiries: map[string]bool{}, capUsed: map[string]int64{}, events: map[string]rwEvent{}, keys: map[string]*rewards.Voucher{},
		refused: map[string]bool{}}
}

func (r *rewardsRun) run() {
	for range rapid.IntRange(10, 40).Draw(r.rt, "steps") {
		switch rapid.SampledFrom([]string{"record", "join", "buy", "record", "redeem", "wait", "record", "expire", "buy", "leave", "redeem", "buy again"}).Draw(r.rt, "op") {
		case "join":
			r.join()
		case "leave":
			r.leave()
		case "record":
			r.record()
		case "buy":
			r.buy()
		case "buy again":
			r.buyAgain()
		case "redeem":
			r.redeem()
		case "wait":
			r.w.clock.add(rapid.SampledFrom(rwWaits).Draw(r.rt, "wait"))
		case "expire":
			r.expire()
		}
		for _, p := range r.people {
			r.checkBalance(p)
		}
	}
}

func (r *rewardsRun) balance(p string) int64 {
	var b int64
	for _, e := range r.earned[p] {
		b += e.points
	}
	return b - r.spent[p] - r.expired[p]
}

func (r *rewardsRun) checkBalance(p string) {
	got, err := r.w.svc.Balance(r.ctx, p)
	if err != nil || got != r.balance(p) {
		r.rt.Fatalf("%s's balance %d (%v), want %d", p, got, err, r.balance(p))
	}
}

func (r *rewardsRun) join() {
	p := rapid.SampledFrom(r.people).Draw(r.rt, "joiner")
	m, err := r.w.svc.Join(r.ctx, p)
	if err != nil {
		r.rt.Fatalf("join %s: %v", p, err)
	}
	switch {
	case r.cards[p] != "" && m.Card != r.cards[p]:
		r.rt.Fatalf("%s joined again and got card %s, not their card %s", p, m.Card, r.cards[p])
	case r.cards[p] == "" && r.joined[p]:
		r.seen.Saw("rejoined")
	}
	r.cards[p], r.joined[p] = m.Card, true
}

func (r *rewardsRun) leave() {
	p := rapid.SampledFrom(r.people).Draw(r.rt, "leaver")
	err := r.w.svc.Leave(r.ctx, p)
	if r.cards[p] == "" {
		if !errors.Is(err, rewards.ErrNotMember) {
			r.rt.Fatalf("%s left without being a member: %v", p, err)
		}
		return
	}
	if err != nil {
		r.rt.Fatalf("%s left: %v", p, err)
	}
	r.old = append(r.old, r.cards[p])
	r.cards[p] = ""
	for k, e := range r.events {
		if e.person == p {
			delete(r.events, k) // leaving deletes the member's events
		}
	}
	r.seen.Saw("left")
}

func (r *rewardsRun) record() {
	typ := rapid.SampledFrom([]string{"transit_ride", "recycling_dropoff"}).Draw(r.rt, "type")
	rule := rwRules[typ]
	partner := rule.partner
	if rapid.IntRange(0, 5).Draw(r.rt, "wrong partner") == 5 {
		partner = rapid.SampledFrom([]string{transit, recycling, museum}).Draw(r.rt, "partner")
	}
	p := rapid.SampledFrom(r.people).Draw(r.rt, "member")
	card := r.cards[p]
	if len(r.old) > 0 && rapid.IntRange(0, 5).Draw(r.rt, "old card") == 5 {
		card = rapid.SampledFrom(r.old).Draw(r.rt, "card")
	}
	id := fmt.Sprintf("%s-e%d", r.prefix, len(r.eventIDs))
	if len(r.eventIDs) > 0 && rapid.IntRange(0, 3).Draw(r.rt, "retry") == 3 {
		id = rapid.SampledFrom(r.eventIDs).Draw(r.rt, "event")
	}
	award, err := r.w.svc.Record(r.ctx, partner, rewards.RecordIn{Card: card, Type: typ, EventID: id})
	key := partner + " " + id
	switch first, recorded := r.events[key]; {
	case card == "": // a member who left: the form's card is empty
		if !errors.Is(err, rewards.ErrInvalid) {
			r.rt.Fatalf("an event with no card: %+v %v", award, err)
		}
		r.seen.Saw("no card")
	case card != r.cards[p]:
		if !errors.Is(err, rewards.ErrNotMember) {
			r.rt.Fatalf("an event under card %q, not a member's: %+v %v", card, award, err)
		}
		r.seen.Saw("not a member")
	case partner != rule.partner:
		if !errors.Is(err, rewards.ErrInvalid) {
			r.rt.Fatalf("%s recorded a %s: %+v %v", partner, typ, award, err)
		}
		r.seen.Saw("wrong partner")
	case recorded && (first.person != p || first.typ != typ):
		if !errors.Is(err, rewards.ErrInvalid) {
			r.rt.Fatalf("event %s reused for another event: %+v %v", id, award, err)
		}
	case recorded:
		if err != nil || !award.Replayed || award.Points != first.points {
			r.rt.Fatalf("retry of event %s: %+v %v, want its first award of %d replayed", id, award, err, first.points)
		}
		r.seen.Saw("replayed")
	default:
		now := r.w.clock.now()
		day := p + " " + typ + " " + now.Format(time.DateOnly)
		due := min(rule.points, rule.cap-r.capUsed[day])
		if due <= 0 {
			if !errors.Is(err, rewards.ErrCap) {
				r.rt.Fatalf("event %s past the day's cap: %+v %v", id, award, err)
			}
			r.seen.Saw("capped")
			return
		}
		if err != nil || award.Replayed || award.Points != due {
			r.rt.Fatalf("event %s: %+v %v, want %d points", id, award, err, due)
		}
		r.capUsed[day] += due
		r.earned[p] = append(r.earned[p], rwEarning{at: now, points: due})
		r.events[key] = rwEvent{person: p, typ: typ, points: due}
		r.eventIDs = append(r.eventIDs, id)
		r.seen.Saw("earned")
	}
}

func (r *rewardsRun) buy() {
	p := rapid.SampledFrom(r.people).Draw(r.rt, "buyer")
	item := rapid.SampledFrom([]string{"museum-tour", "museum-entry"}).Draw(r.rt, "item")
	key := rapid.SampledFrom([]string{"", "k1", "k2"}).Draw(r.rt, "purchase key")
	v, err := r.w.svc.Buy(r.ctx, p, item, key)
	k := p + " " + item + " " + key
	if first := r.keys[k]; key != "" && first != nil {
		if err != nil || !v.Again || v.ID != first.ID {
			r.rt.Fatalf("%s bought %s again with key %s: %+v %v, want the first voucher %s", p, item, key, v, err, first.ID)
		}
		r.seen.Saw("bought again")
		return
	}
	price := rwItems[item].price
	if r.balance(p) < price {
		if !errors.Is(err, rewards.ErrPoints) {
			r.rt.Fatalf("%s bought %s for %d with %d points: %+v %v", p, item, price, r.balance(p), v, err)
		}
		r.seen.Saw("too few points")
		if key != "" {
			r.refused[k] = true
		}
		return
	}
	if err != nil || v.Again || v.Price != price || !v.Expires.Equal(r.w.clock.now().Add(rwItems[item].valid)) {
		r.rt.Fatalf("%s buys %s: %+v %v", p, item, v, err)
	}
	r.spent[p] += price
	r.vouchers = append(r.vouchers, &rwVoucher{v: v, price: price})
	if key != "" {
		r.keys[k] = v
	}
	r.seen.Saw("bought")
	if r.refused[k] {
		r.seen.Saw("bought with a key refused before") // a purchase key is not spent by a refusal
	}
}

// buyAgain sends a purchase made with a key once more (a double click, a
// reload): it answers with the first voucher, whatever the points now.
func (r *rewardsRun) buyAgain() {
	if len(r.keys) == 0 {
		return
	}
	k := rapid.SampledFrom(slices.Sorted(maps.Keys(r.keys))).Draw(r.rt, "purchase sent again")
	first := r.keys[k]
	parts := strings.Split(k, " ") // person, item, key
	v, err := r.w.svc.Buy(r.ctx, parts[0], parts[1], parts[2])
	if err != nil || !v.Again || v.ID != first.ID {
		r.rt.Fatalf("%s sent again: %+v %v, want the first voucher %s", k, v, err, first.ID)
	}
	r.seen.Saw("bought again")
}

func (r *rewardsRun) redeem() {
	if len(r.vouchers) == 0 {
		return
	}
	rv := rapid.SampledFrom(r.vouchers).Draw(r.rt, "voucher")
	partner := museum
	if rapid.IntRange(0, 4).Draw(r.rt, "another partner") == 4 {
		partner = transit
	}
	code, err := r.w.svc.Code(rv.v)
	if err != nil {
		r.rt.Fatal(err)
	}
	got, err := r.w.svc.Redeem(r.ctx, partner, code)
	switch {
	case partner != rv.v.Partner:
		if !errors.Is(err, rewards.ErrOther) {
			r.rt.Fatalf("%s honoured %s's voucher: %+v %v", partner, rv.v.Partner, got, err)
		}
		r.seen.Saw("other partner")
	case rv.used:
		if !errors.Is(err, rewards.ErrUsed) {
			r.rt.Fatalf("voucher %s honoured twice: %+v %v", rv.v.ID, got, err)
		}
		r.seen.Saw("used")
	case !r.w.clock.now().Before(rv.v.Expires):
		if !errors.Is(err, rewards.ErrExpired) {
			r.rt.Fatalf("voucher %s honoured after it expired: %+v %v", rv.v.ID, got, err)
		}
		r.seen.Saw("voucher expired")
	default:
		if err != nil || got.State != rewards.Used {
			r.rt.Fatalf("voucher %s: %+v %v", rv.v.ID, got, err)
		}
		rv.used = true
		r.seen.Saw("honoured")
	}
}

// expire runs the hourly expiry: each account loses what it earned before
// the cut-off less what it has spent or lost to expiry, at most once a
// (UTC) day.
func (r *rewardsRun) expire() {
	if _, err := r.w.svc.ExpirePoints(r.ctx); err != nil {
		r.rt.Fatal(err)
	}
	now := r.w.clock.now()
	cutoff := now.Add(-10 * 24 * time.Hour)
	for _, p := range r.people {
		if !r.joined[p] {
			continue
		}
		var before int64
		for _, e := range r.earned[p] {
			if e.at.Before(cutoff) {
				before += e.points
			}
		}
		due := min(before-r.spent[p]-r.expired[p], r.balance(p))
		day := p + " " + now.UTC().Format(time.DateOnly)
		if due <= 0 || r.expiries[day] {
			continue
		}
		r.expired[p] += due
		r.expiries[day] = true
		r.seen.Saw("points expired")
	}
}
