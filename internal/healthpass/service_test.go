package healthpass_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/civstack/civstack/internal/healthpass"
	"github.com/civstack/civstack/internal/keyring"
	"github.com/civstack/civstack/internal/store/storetest"
)

// newService is a health service on a fresh database of engine e, with the
// rules and issuer Setup makes and a clock tests move through *now.
func newService(t *testing.T, e storetest.Engine) (*healthpass.Service, *healthpass.Node, *time.Time) {
	t.Helper()
	return newServiceIn(t, e, nil)
}

// newServiceIn is newService with check-ins by the days of zone.
func newServiceIn(t *testing.T, e storetest.Engine, zone *time.Location) (*healthpass.Service, *healthpass.Node, *time.Time) {
	t.Helper()
	db := storetest.OpenMigrated(t, e.Open(t))
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	keys, err := keyring.Open(t.TempDir(), clock, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hn, err := healthpass.Setup(t.TempDir(), keys, "IT", now)
	if err != nil {
		t.Fatal(err)
	}
	return healthpass.New(healthpass.Deps{DB: db, Rules: hn.Rules, Issuer: hn.Issuer, Now: clock, Rand: rand.Reader, Zone: zone}), hn, &now
}

// TestCheckInDaysInZone: check-ins follow the city's days. In Rome,
// 23:30 UTC is already the next day: a check-in then and one at 08:00 UTC
// the same Roman day count once; Roman days in a row make a streak however
// they fall on UTC days.
func TestCheckInDaysInZone(t *testing.T) {
	rome, err := time.LoadLocation("Europe/Rome")
	if err != nil {
		t.Fatal(err)
	}
	e := storetest.Engines(t)[0]
	ctx := context.Background()
	s, _, now := newServiceIn(t, e, rome)
	*now = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	const p = "person-rome"
	if _, err := s.Submit(ctx, p, "1980-01-31", healthpass.Answers{Contact: true, Test: "none"}); err != nil {
		t.Fatal(err)
	}
	checkIn := func(at time.Time) *healthpass.Status {
		t.Helper()
		*now = at
		st, err := s.CheckIn(ctx, p, true)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	checkIn(time.Date(2026, 12, 3, 23, 30, 0, 0, time.UTC)) // 4 December in Rome
	if st := checkIn(time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)); st.Streak != 1 {
		t.Fatalf("two check-ins on one Roman day: streak %d, want 1", st.Streak)
	}
	if st := checkIn(time.Date(2026, 12, 4, 23, 15, 0, 0, time.UTC)); st.Streak != 2 {
		t.Fatalf("the next Roman day (23:15 UTC): streak %d, want 2", st.Streak)
	}
}

// TestCheckInStreaks: only consecutive normal days count; a day with
// symptoms or a missed day starts the count again.
func TestCheckInStreaks(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
			s, _, now := newService(t, e)
			const p = "person-1"
			if _, err := s.Status(ctx, p); !errors.Is(err, healthpass.ErrNoStatus) {
				t.Fatalf("status before the questionnaire: %v", err)
			}
			st, err := s.Submit(ctx, p, "1980-01-31", healthpass.Answers{Test: "positive"})
			if err != nil || st.Colour != healthpass.Red || st.DaysLeft != 14 {
				t.Fatalf("positive: %+v %v", st, err)
			}
			checkIn := func(normal bool) *healthpass.Status {
				t.Helper()
				st, err := s.CheckIn(ctx, p, normal)
				if err != nil {
					t.Fatal(err)
				}
				*now = now.Add(24 * time.Hour)
				return st
			}
			for i := 0; i < 5; i++ {
				checkIn(true)
			}
			if st := checkIn(false); st.Streak != 0 || st.DaysLeft != 14 {
				t.Fatalf("a day with symptoms: streak %d, %d left", st.Streak, st.DaysLeft)
			}
			checkIn(true)
			*now = now.Add(24 * time.Hour) // a missed day
			if st := checkIn(true); st.Streak != 1 {
				t.Fatalf("after a missed day: streak %d", st.Streak)
			}
			for i := 0; i < 12; i++ {
				checkIn(true)
			}
			st, err = s.CheckIn(ctx, p, true)
			if err != nil || st.Colour != healthpass.Green || st.Streak != 14 {
				t.Fatalf("fourteen normal days: %+v %v", st, err)
			}
			if _, err := s.Appeal(ctx, p, "why"); !errors.Is(err, healthpass.ErrNothingToAsk) {
				t.Fatalf("appeal on green: %v", err)
			}
		})
	}
}

// TestAppealOfAReplacedCode: an appeal is about the code it was filed
// against. Answering the questionnaire again, or turning green by
// check-ins, replaces that code and closes the appeal, so a later decision
// cannot set a newer code to green.
func TestAppealOfAReplacedCode(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
			s, hn, now := newService(t, e)
			const p = "person-1"
			if _, err := s.Submit(ctx, p, "1980-01-31", healthpass.Answers{Contact: true, Test: "none"}); err != nil {
				t.Fatal(err)
			}
			// An appeal and a decision are text over lines, read as written.
			for _, bad := range []string{"Wrong\x1b[2J", "Wrong \u202egnorw", "Wrong\rcode"} {
				if _, err := s.Appeal(ctx, p, bad); !errors.Is(err, healthpass.ErrInvalid) || !strings.Contains(err.Error(), "the appeal is text") {
					t.Fatalf("an appeal of %q: %v", bad, err)
				}
			}
			a, err := s.Appeal(ctx, p, "The contact was outside,\r\n\ttwo metres\u2028apart.")
			if err != nil || a.Message != "The contact was outside,\n\ttwo metres\napart." {
				t.Fatalf("an appeal over two lines: %+v %v", a, err)
			}
			if _, err := s.Decide(ctx, a.ID, "officer-1", true, "Outside \u2066contact."); !errors.Is(err, healthpass.ErrInvalid) || !strings.Contains(err.Error(), "the explanation is text") {
				t.Fatalf("a decision with an isolate: %v", err)
			}
			*now = now.Add(time.Hour)
			st, err := s.Submit(ctx, p, "1980-01-31", healthpass.Answers{Symptoms: true, Test: "positive"})
			if err != nil || st.Colour != healthpass.Red {
				t.Fatalf("new answers: %+v %v", st, err)
			}
			if st.Appeal == nil || st.Appeal.ID != a.ID || st.Appeal.State != healthpass.AppealClosed || st.Appeal.Decision == "" {
				t.Fatalf("the appeal after new answers: %+v", st.Appeal)
			}
			if pending, err := s.PendingAppeals(ctx); err != nil || len(pending) != 0 {
				t.Fatalf("pending after new answers: %d %v", len(pending), err)
			}
			if _, err := s.Decide(ctx, a.ID, "officer-1", true, "Outside contact."); !errors.Is(err, healthpass.ErrClosed) {
				t.Fatalf("deciding a closed appeal: %v", err)
			}
			if st, err := s.Status(ctx, p); err != nil || st.Colour != healthpass.Red {
				t.Fatalf("the new code after a late decision: %+v %v", st, err)
			}
			// The new code may be appealed in its turn.
			b, err := s.Appeal(ctx, p, "The test was someone else's.")
			if err != nil {
				t.Fatal(err)
			}
			// Check-ins that turn the code green close that appeal too.
			for i := 0; i < hn.Rules.DaysFor(healthpass.Red); i++ {
				if _, err := s.CheckIn(ctx, p, true); err != nil {
					t.Fatal(err)
				}
				*now = now.Add(24 * time.Hour)
			}
			*now = now.Add(-24 * time.Hour)
			st, err = s.Status(ctx, p)
			if err != nil || st.Colour != healthpass.Green || st.Appeal == nil || st.Appeal.ID != b.ID || st.Appeal.State != healthpass.AppealClosed {
				t.Fatalf("green by check-ins: %+v %+v %v", st, st.Appeal, err)
			}
			if _, err := s.Decide(ctx, b.ID, "officer-1", false, "The test stands."); !errors.Is(err, healthpass.ErrClosed) {
				t.Fatalf("deciding an appeal closed by check-ins: %v", err)
			}
		})
	}
}

// TestCertificateKeys: a certificate request sent with a key, however many
// times and however many at once, issues one certificate (the log entry
// that goes with it is counted over HTTP, in TestHealthOverHTTP).
func TestCertificateKeys(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
			s, hn, _ := newService(t, e)
			req := healthpass.CertificateRequest{Kind: "v", Holder: healthpass.Holder{FamilyName: "Haddad", GivenName: "Amira", DOB: "1990-04-01"},
				Date: "2026-11-20", Doses: 2, Series: 2, Country: hn.Issuer.Country, Issuer: "Health Authority", Key: "form-1"}
			const tries = 8
			got := make([]*healthpass.Certificate, tries)
			errs := make([]error, tries)
			var wg sync.WaitGroup
			for i := range tries {
				wg.Go(func() {
					got[i], errs[i] = s.Issue(ctx, "person-1", req)
				})
			}
			wg.Wait()
			again := 0
			for i := range tries {
				if errs[i] != nil {
					t.Fatalf("try %d: %v", i, errs[i])
				}
				if got[i].ID != got[0].ID || got[i].HC1 != got[0].HC1 {
					t.Fatalf("try %d issued %s, try 0 %s", i, got[i].ID, got[0].ID)
				}
				if got[i].Again {
					again++
				}
			}
			if again != tries-1 {
				t.Fatalf("%d of %d tries said issued before, want %d", again, tries, tries-1)
			}
			if cs, err := s.Certificates(ctx, "person-1"); err != nil || len(cs) != 1 {
				t.Fatalf("%d certificates, %v; want 1", len(cs), err)
			}
			// Another form, and another citizen with the same key, are
			// certificates of their own.
			req.Key = "form-2"
			if c, err := s.Issue(ctx, "person-1", req); err != nil || c.Again {
				t.Fatalf("another form: %+v %v", c, err)
			}
			req.Key = "form-1"
			if c, err := s.Issue(ctx, "person-2", req); err != nil || c.Again {
				t.Fatalf("another citizen: %+v %v", c, err)
			}
			if cs, _ := s.Certificates(ctx, "person-1"); len(cs) != 2 {
				t.Fatalf("%d certificates of person-1, want 2", len(cs))
			}
			req.Key = strings.Repeat("k", healthpass.MaxCertificateKey+1)
			if _, err := s.Issue(ctx, "person-1", req); !errors.Is(err, healthpass.ErrInvalid) {
				t.Fatalf("an overlong key: %v", err)
			}
		})
	}
}
