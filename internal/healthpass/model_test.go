package healthpass_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/civstack/civstack/internal/healthpass"
	"github.com/civstack/civstack/internal/modeltest"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestHealthCodeModel runs random sequences of questionnaires, check-ins
// (normal or not, several a day, days missed), reads of the code and time
// passing in steps that cross Rome's midnights and its change to summer
// time, against a model of the rules: a code is the rules' decision on the
// latest answers; its streak is the run of consecutive normal check-in
// days (the city's days, the latest check-in of a day counting) since the
// day it was decided, ending today or, if there is no check-in today,
// yesterday; a yellow or red code turns green when it is read with a
// streak of the rules' days, and then counts again from that day. Every
// answer's colour, days left, "checked in today" and (for a yellow or red
// code, where the page shows it) streak must be the model's, on every
// engine.
func TestHealthCodeModel(t *testing.T) {
	rome, err := time.LoadLocation("Europe/Rome")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			s, _, now := newServiceIn(t, e, rome)
			*now = time.Date(2027, 3, 14, 9, 30, 0, 0, time.UTC) // two weeks before summer time
			run := 0
			modeltest.Check(t, []string{"yellow", "red", "green by check-ins", "streak broken", "checked in twice a day", "no code yet", "a day of 23 or 25 hours",
				"appealed", "upheld", "overruled", "appeal closed", "decision on a closed appeal"},
				func(rt *rapid.T, seen *modeltest.Outcomes) {
					run++
					m := &codeModel{s: s, now: now, zone: rome, rt: rt, person: fmt.Sprintf("person-%d", run), checkins: map[string]bool{}, seen: seen}
					m.run()
				})
		})
	}
}

type codeModel struct {
	s      *healthpass.Service
	now    *time.Time
	zone   *time.Location
	rt     *rapid.T
	person string
	seen   *modeltest.Outcomes

	colour   healthpass.Colour // "" before the first questionnaire
	sinceDay string            // the city's day the colour was decided
	checkins map[string]bool   // the city's day → normal
	appeal   string            // the latest appeal's id ("" for none)
	state    string            // and its state
}

func (m *codeModel) day(t time.Time) string { return t.In(m.zone).Format(time.DateOnly) }

func (m *codeModel) run() {
	ctx := context.Background()
	if _, err := m.s.CheckIn(ctx, m.person, true); !errors.Is(err, healthpass.ErrNoStatus) {
		m.rt.Fatalf("a check-in before any questionnaire: %v", err)
	}
	m.seen.Saw("no code yet")
	for range rapid.IntRange(5, 60).Draw(m.rt, "steps") {
		switch rapid.SampledFrom([]string{"check in", "wait", "days in a row", "check in", "answer", "wait", "read", "appeal", "decide"}).Draw(m.rt, "op") {
		case "appeal":
			a, err := m.s.Appeal(ctx, m.person, "The questionnaire was wrong.")
			if m.colour == "" {
				if !errors.Is(err, healthpass.ErrNoStatus) {
					m.rt.Fatalf("an appeal before any code: %v", err)
				}
				continue
			}
			m.settle() // the appeal reads the code first
			switch {
			case m.colour == healthpass.Green:
				if !errors.Is(err, healthpass.ErrNothingToAsk) {
					m.rt.Fatalf("an appeal of a green code: %+v %v", a, err)
				}
			case m.state == healthpass.AppealPending:
				if !errors.Is(err, healthpass.ErrAlreadyOpen) {
					m.rt.Fatalf("a second appeal while one is pending: %+v %v", a, err)
				}
			case err != nil || a.State != healthpass.AppealPending:
				m.rt.Fatalf("an appeal of a %s code: %+v %v", m.colour, a, err)
			default:
				m.appeal, m.state = a.ID, healthpass.AppealPending
				m.seen.Saw("appealed")
			}
		case "decide":
			if m.appeal == "" {
				continue
			}
			grant := rapid.Bool().Draw(m.rt, "grant")
			a, err := m.s.Decide(ctx, m.appeal, "officer", grant, "Looked at it.")
			switch m.state {
			case healthpass.AppealPending:
				if err != nil {
					m.rt.Fatalf("a decision on a pending appeal: %v", err)
				}
				m.state = healthpass.AppealUpheld
				if grant {
					m.state, m.colour, m.sinceDay = healthpass.AppealOverruled, healthpass.Green, m.day(*m.now)
				}
				if a.State != m.state {
					m.rt.Fatalf("decided %v: %+v, want %s", grant, a, m.state)
				}
				m.seen.Saw(m.state)
			case healthpass.AppealClosed:
				if !errors.Is(err, healthpass.ErrClosed) {
					m.rt.Fatalf("a decision on a closed appeal: %+v %v", a, err)
				}
				m.seen.Saw("decision on a closed appeal")
			default:
				if !errors.Is(err, healthpass.ErrAlreadyDone) {
					m.rt.Fatalf("a second decision: %+v %v", a, err)
				}
			}
		case "days in a row":
			// The same time of day on the next days (the city's clock,
			// across the change to summer time), a normal check-in each.
			for range rapid.IntRange(1, 8).Draw(m.rt, "days") {
				_, before := m.now.In(m.zone).Zone()
				*m.now = m.now.In(m.zone).AddDate(0, 0, 1).UTC()
				if _, after := m.now.In(m.zone).Zone(); after != before {
					m.seen.Saw("a day of 23 or 25 hours")
				}
				m.checkIn(ctx, true)
			}
		case "answer":
			a := healthpass.Answers{Symptoms: rapid.Bool().Draw(m.rt, "symptoms"), Contact: rapid.Bool().Draw(m.rt, "contact"),
				Travel: rapid.Bool().Draw(m.rt, "travel"), Test: rapid.SampledFrom([]string{"none", "negative", "positive"}).Draw(m.rt, "test")}
			d, err := m.s.Rules().Decide(a, *m.now)
			if err != nil {
				m.rt.Fatal(err)
			}
			st, err := m.s.Submit(ctx, m.person, "1980-01-31", a)
			if err != nil {
				m.rt.Fatalf("answers %+v: %v", a, err)
			}
			m.colour, m.sinceDay = d.Colour, m.day(*m.now)
			m.closeAppeal()
			m.seen.Saw(string(d.Colour))
			m.check("answers", st)
		case "check in":
			m.checkIn(ctx, rapid.IntRange(0, 4).Draw(m.rt, "normal") < 4)
		case "read":
			st, err := m.s.Status(ctx, m.person)
			if m.colour == "" {
				if !errors.Is(err, healthpass.ErrNoStatus) {
					m.rt.Fatalf("a code before any questionnaire: %+v %v", st, err)
				}
				continue
			}
			if err != nil {
				m.rt.Fatalf("read: %v", err)
			}
			m.check("read", st)
		case "wait":
			*m.now = m.now.Add(rapid.SampledFrom([]time.Duration{time.Hour, 5 * time.Hour, 13 * time.Hour, 23 * time.Hour, 24 * time.Hour, 25 * time.Hour, 49 * time.Hour}).Draw(m.rt, "wait"))
		}
	}
}

func (m *codeModel) checkIn(ctx context.Context, normal bool) {
	st, err := m.s.CheckIn(ctx, m.person, normal)
	if m.colour == "" {
		if !errors.Is(err, healthpass.ErrNoStatus) {
			m.rt.Fatalf("a check-in before any questionnaire: %v", err)
		}
		return
	}
	if err != nil {
		m.rt.Fatalf("check-in: %v", err)
	}
	m.settle() // the check-in reads the code first
	today := m.day(*m.now)
	if _, ok := m.checkins[today]; ok {
		m.seen.Saw("checked in twice a day")
	}
	if !normal && m.colour != healthpass.Green {
		m.seen.Saw("streak broken")
	}
	m.checkins[today] = normal
	m.check("check-in", st)
}

// streak is the model's count: consecutive normal check-in days since the
// code's day, from today if there is a check-in today, else yesterday.
func (m *codeModel) streak() int {
	d := m.now.In(m.zone)
	if _, ok := m.checkins[m.day(d)]; !ok {
		d = d.AddDate(0, 0, -1)
	}
	n := 0
	for {
		day := m.day(d)
		if normal, ok := m.checkins[day]; !ok || !normal || day < m.sinceDay {
			return n
		}
		n++
		d = d.AddDate(0, 0, -1)
	}
}

// settle is what reading the code does: a yellow or red code with a
// streak of the rules' days turns green, from today.
func (m *codeModel) settle() {
	if need := m.s.Rules().DaysFor(m.colour); need > 0 && m.streak() >= need {
		m.colour, m.sinceDay = healthpass.Green, m.day(*m.now)
		m.closeAppeal()
		m.seen.Saw("green by check-ins")
	}
}

// closeAppeal: the code a pending appeal was about has been replaced.
func (m *codeModel) closeAppeal() {
	if m.state == healthpass.AppealPending {
		m.state = healthpass.AppealClosed
		m.seen.Saw("appeal closed")
	}
}

func (m *codeModel) check(what string, st *healthpass.Status) {
	m.settle()
	streak, left := m.streak(), 0
	if need := m.s.Rules().DaysFor(m.colour); need > 0 {
		left = need - streak
	}
	_, today := m.checkins[m.day(*m.now)]
	if m.colour == healthpass.Green {
		streak = st.Streak // a green code's streak is shown nowhere; the read that turns it green keeps the one that did
	}
	state := ""
	if st.Appeal != nil {
		state = st.Appeal.State
		if st.Appeal.ID != m.appeal {
			m.rt.Fatalf("%s: the latest appeal is %s, want %s", what, st.Appeal.ID, m.appeal)
		}
	}
	if state != m.state {
		m.rt.Fatalf("%s: the latest appeal is %q, want %q", what, state, m.state)
	}
	if st.Colour != m.colour || st.Streak != streak || st.DaysLeft != left || st.CheckedIn != today {
		m.rt.Fatalf("%s at %s (Rome %s): colour %s, streak %d, %d days left, checked in %v; want %s, %d, %d, %v (code since %s, check-ins %v)",
			what, m.now.Format(time.RFC3339), m.now.In(m.zone).Format("2006-01-02 15:04"), st.Colour, st.Streak, st.DaysLeft, st.CheckedIn,
			m.colour, streak, left, today, m.sinceDay, m.checkins)
	}
}
