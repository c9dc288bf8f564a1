package identity

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/civstack/civstack/internal/issuance"
	"github.com/civstack/civstack/internal/modeltest"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestOfferModel runs random sequences of credential offers, tries of
// their transaction codes (right, wrong, for an unknown code), the
// node's sweep of lapsed offers and time passing, against a model of the
// pre-authorized flow, on every engine. After every step: the right code
// gives an access token once, while the offer is unexpired and not burnt;
// each wrong code counts, and the fifth burns the offer; a used, burnt or
// expired offer answers "used or expired"; each citizen's wallet lists
// exactly their unused, unexpired offers, and can open every one of them
// (the sweep never erases an offer still listed or still usable).
func TestOfferModel(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
			s, _, now := testService(t, e, 0)
			iss, err := s.RegisterIssuer(ctx, "registry-org", "Civil Registry", []string{"pid"})
			if err != nil {
				t.Fatal(err)
			}
			run := 0
			modeltest.Check(t, []string{"token", "wrong code", "burnt", "used", "expired", "unknown code", "swept"}, func(rt *rapid.T, seen *modeltest.Outcomes) {
				run++
				m := &offerModel{s: s, iss: iss, now: now, rt: rt, seen: seen, ctx: ctx,
					people: []string{fmt.Sprintf("p%d-a", run), fmt.Sprintf("p%d-b", run)}}
				m.run()
			})
		})
	}
}

type mOffer struct {
	person, code, tx string
	attempts         int
	used, burnt      bool
	expires          time.Time
}

type offerModel struct {
	s      *Service
	iss    *Issuer
	now    *time.Time
	rt     *rapid.T
	seen   *modeltest.Outcomes
	ctx    context.Context
	people []string
	offers []*mOffer
}

func (m *offerModel) run() {
	for range rapid.IntRange(5, 30).Draw(m.rt, "steps") {
		switch rapid.SampledFrom([]string{"offer", "token", "wait", "token", "guess", "sweep"}).Draw(m.rt, "op") {
		case "guess":
			// Someone with the link guesses codes, several in a row.
			if len(m.offers) > 0 {
				o := rapid.SampledFrom(m.offers).Draw(m.rt, "guessed offer")
				for range rapid.IntRange(1, 6).Draw(m.rt, "guesses") {
					m.try(o, fmt.Sprintf("%06d", (mustAtoi(o.tx)+1)%1_000_000))
				}
			}
		case "offer":
			p := rapid.SampledFrom(m.people).Draw(m.rt, "person")
			made, err := m.s.CreateOffer(m.ctx, m.iss, "pid", p, "officer", map[string]any{"given_name": "A", "family_name": "B", "birthdate": "1990-01-01"})
			if err != nil {
				m.rt.Fatal(err)
			}
			o, err := issuance.ParseOffer(made.Link)
			if err != nil {
				m.rt.Fatal(err)
			}
			m.offers = append(m.offers, &mOffer{person: p, code: o.Grants.PreAuthorized.Code, tx: made.TxCode, expires: made.Expires})
		case "token":
			m.token()
		case "wait":
			*m.now = m.now.Add(rapid.SampledFrom([]time.Duration{time.Minute, 10 * time.Minute, 50 * time.Minute, 61 * time.Minute}).Draw(m.rt, "wait"))
		case "sweep":
			n, err := m.s.EraseLapsedOffers(m.ctx)
			if err != nil {
				m.rt.Fatal(err)
			}
			if n > 0 {
				m.seen.Saw("swept")
			}
		}
		m.checkWallets()
	}
}

func (m *offerModel) token() {
	if len(m.offers) == 0 || rapid.IntRange(0, 9).Draw(m.rt, "unknown code") == 9 {
		_, err := m.s.Token(m.ctx, m.iss, "no-such-code", "123456")
		if !errors.Is(err, ErrInvalidGrant) || !strings.Contains(err.Error(), "unknown") {
			m.rt.Fatalf("an unknown code: %v", err)
		}
		m.seen.Saw("unknown code")
		return
	}
	o := rapid.SampledFrom(m.offers).Draw(m.rt, "offer")
	tx := o.tx
	if rapid.IntRange(0, 2).Draw(m.rt, "wrong code") == 2 {
		tx = fmt.Sprintf("%06d", (mustAtoi(o.tx)+1)%1_000_000)
	}
	m.try(o, tx)
}

// try asks for a token with offer o's code and transaction code tx.
func (m *offerModel) try(o *mOffer, tx string) {
	tok, err := m.s.Token(m.ctx, m.iss, o.code, tx)
	switch {
	case o.used || o.burnt || !m.now.Before(o.expires):
		if !errors.Is(err, ErrInvalidGrant) || !strings.Contains(err.Error(), "used or has expired") {
			m.rt.Fatalf("a used (%v), burnt (%v) or expired offer: %q %v", o.used, o.burnt, tok, err)
		}
		m.seen.Saw(map[bool]string{true: "expired", false: "used"}[!m.now.Before(o.expires) && !o.used && !o.burnt])
	case tx != o.tx:
		o.attempts++
		if !errors.Is(err, ErrInvalidGrant) || !strings.Contains(err.Error(), "wrong transaction code") {
			m.rt.Fatalf("a wrong code: %q %v", tok, err)
		}
		if o.attempts >= MaxTxAttempts {
			o.burnt = true
			if !strings.Contains(err.Error(), "void") {
				m.rt.Fatalf("the fifth wrong code does not say the offer is void: %v", err)
			}
			m.seen.Saw("burnt")
		}
		m.seen.Saw("wrong code")
	default:
		if err != nil || tok == "" {
			m.rt.Fatalf("the right code: %q %v", tok, err)
		}
		o.used = true
		m.seen.Saw("token")
	}
}

// checkWallets: each citizen's wallet lists their unused, unexpired
// offers, and opens each.
func (m *offerModel) checkWallets() {
	for _, p := range m.people {
		want := 0
		for _, o := range m.offers {
			if o.person == p && !o.used && !o.burnt && m.now.Before(o.expires) {
				want++
			}
		}
		n, err := m.s.CountPendingOffers(m.ctx, p)
		if err != nil || n != want {
			m.rt.Fatalf("%s's wallet counts %d offers (%v), want %d", p, n, err, want)
		}
		listed, err := m.s.PendingOffers(m.ctx, p)
		if err != nil || len(listed) != want {
			m.rt.Fatalf("%s's wallet lists %d offers (%v), want %d", p, len(listed), err, want)
		}
	}
}

// mustAtoi is a transaction code's number (six digits, as CreateOffer makes them).
func mustAtoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
