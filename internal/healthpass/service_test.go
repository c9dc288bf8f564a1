package healthpass_test

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/healthpass"
	"github.com/civstack/civstack/internal/keyring"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestCheckInStreaks: only consecutive normal days count; a day with
// symptoms or a missed day starts the count again.
func TestCheckInStreaks(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
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
			s := healthpass.New(healthpass.Deps{DB: db, Rules: hn.Rules, Issuer: hn.Issuer, Now: clock, Rand: rand.Reader})
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
				now = now.Add(24 * time.Hour)
				return st
			}
			for i := 0; i < 5; i++ {
				checkIn(true)
			}
			if st := checkIn(false); st.Streak != 0 || st.DaysLeft != 14 {
				t.Fatalf("a day with symptoms: streak %d, %d left", st.Streak, st.DaysLeft)
			}
			checkIn(true)
			now = now.Add(24 * time.Hour) // a missed day
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
