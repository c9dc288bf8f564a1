package rewards_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/rewards"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

const (
	transit   = "org-transit"
	recycling = "org-recycling"
	museum    = "org-museum"
)

type world struct {
	svc   *rewards.Service
	eng   *ledger.Engine
	clock *clock
	db    *store.DB
}

func setup(t *testing.T, db *store.DB, cfg rewards.Config) *world {
	t.Helper()
	ctx := context.Background()
	c := &clock{t: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
	eng := ledger.New(db, c.now, nil)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { eng.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	svc, err := rewards.New(ctx, cfg, rewards.Deps{DB: db, Ledger: eng, Key: key, KeyID: "k1", Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []rewards.Rule{
		{Type: "transit_ride", Label: "Transit ride", Partner: transit, Points: 10, DailyCap: 25},
		{Type: "recycling_dropoff", Label: "Recycling drop-off", Partner: recycling, Points: 5, DailyCap: 5},
	} {
		if err := svc.SetRule(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, it := range []rewards.Item{
		{ID: "museum-entry", Name: "Museum entry", Partner: museum, Price: 20, ValidDays: 30, Active: true},
		{ID: "museum-tour", Name: "Guided tour", Partner: museum, Price: 5, ValidDays: 1, Active: true},
	} {
		if err := svc.SetItem(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	return &world{svc: svc, eng: eng, clock: c, db: db}
}

func (w *world) balance(t *testing.T, id ledger.ID) (posted, pendingCredits int64) {
	t.Helper()
	a, err := w.eng.Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance(), a.CreditsPending
}

func (w *world) audit(t *testing.T) {
	t.Helper()
	a, err := w.eng.Check(context.Background())
	if err != nil || len(a.Problems) > 0 {
		t.Fatalf("ledger check: %v %v", err, a)
	}
}

func is(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}

// TestMintingAndCaps: points are minted from the programme's account by
// the published rules, a retried event earns once, the daily cap holds
// (the last event gets what is left), only the rule's partner records an
// event type, non-members earn nothing, and leaving deletes the events but
// keeps the points.
func TestMintingAndCaps(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db, rewards.DefaultConfig)
		_, err := w.svc.Record(ctx, transit, rewards.RecordIn{Card: "RWNOBODY", Type: "transit_ride", EventID: "r0"})
		is(t, "unknown card", err, rewards.ErrNotMember)
		m, err := w.svc.Join(ctx, "amira")
		if err != nil || !strings.HasPrefix(m.Card, "RW") || strings.Contains(m.Card, "amira") {
			t.Fatalf("join: %v %+v", err, m)
		}
		if again, _ := w.svc.Join(ctx, "amira"); again.Card != m.Card {
			t.Fatal("joining twice changed the card")
		}
		ride := func(id string) (*rewards.Award, error) {
			return w.svc.Record(ctx, transit, rewards.RecordIn{Card: m.Card, Type: "transit_ride", EventID: id})
		}
		var got []int64
		for i, id := range []string{"r1", "r1", "r2", "r3"} {
			a, err := ride(id)
			if err != nil {
				t.Fatalf("ride %s: %v", id, err)
			}
			if a.Replayed != (i == 1) {
				t.Fatalf("ride %d (%s): replayed %v", i, id, a.Replayed)
			}
			got = append(got, a.Points)
		}
		if got[0] != 10 || got[1] != 10 || got[2] != 10 || got[3] != 5 {
			t.Fatalf("awards %v, want 10 10 (the same event) 10 5 (what is left under the cap of 25)", got)
		}
		_, err = ride("r4")
		is(t, "over the cap", err, rewards.ErrCap)
		_, err = w.svc.Record(ctx, recycling, rewards.RecordIn{Card: m.Card, Type: "transit_ride", EventID: "x1"})
		is(t, "another partner's event type", err, rewards.ErrInvalid)
		_, err = w.svc.Record(ctx, transit, rewards.RecordIn{Card: m.Card, Type: "transit_ride", EventID: "bad id!"})
		is(t, "bad event id", err, rewards.ErrInvalid)
		if b, _ := w.balance(t, rewards.PointsAccount("amira")); b != 25 {
			t.Fatalf("balance %d, want 25", b)
		}
		if b, _ := w.balance(t, rewards.ProgrammeAccount); b != -25 {
			t.Fatalf("programme %d, want -25 (it minted 25)", b)
		}
		w.clock.add(24 * time.Hour)
		if a, err := ride("r5"); err != nil || a.Points != 10 {
			t.Fatalf("next day: %v %+v", err, a)
		}
		evs, err := w.svc.Events(ctx, "amira", 10)
		if err != nil || len(evs) != 4 || evs[0].Label != "Transit ride" {
			t.Fatalf("events: %v %d", err, len(evs))
		}
		// Concurrent events of one citizen never pass the cap.
		w.clock.add(24 * time.Hour)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var total int64
		for i := range 8 {
			wg.Go(func() {
				if a, err := ride("c" + string(rune('a'+i))); err == nil {
					mu.Lock()
					total += a.Points
					mu.Unlock()
				} else if !errors.Is(err, rewards.ErrCap) {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if total != 25 {
			t.Fatalf("8 concurrent rides earned %d, want the cap of 25", total)
		}
		// Concurrent retries of one event mint once (the claim is in the
		// database, so this holds across processes too).
		w.clock.add(24 * time.Hour)
		before, _ := w.balance(t, rewards.PointsAccount("amira"))
		var minted sync.WaitGroup
		for range 8 {
			minted.Add(1)
			go func() {
				defer minted.Done()
				if a, err := ride("same"); err == nil && a.Points != 10 {
					t.Errorf("a retry got %d points", a.Points)
				} else if err != nil && !errors.Is(err, rewards.ErrBusy) {
					t.Error(err)
				}
			}()
		}
		minted.Wait()
		if after, _ := w.balance(t, rewards.PointsAccount("amira")); after != before+10 {
			t.Fatalf("8 retries of one event minted %d points, want 10", after-before)
		}
		// A claim whose recorder stopped before minting: a fresh one makes
		// a retry wait; an old one is taken over.
		for _, age := range []time.Duration{time.Second, 2 * time.Minute} {
			if err := db.Tx(ctx, func(tx *store.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO rw_events (id, person_id, partner_org, partner_event, event_type, points, day, created_at)
					VALUES ($1, 'amira', $2, $3, 'transit_ride', 0, '', $4)`, "stuck-"+age.String(), transit, "stuck-"+age.String(), w.clock.now().Add(-age).UnixMilli())
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		_, err = ride("stuck-1s")
		is(t, "a claim under way", err, rewards.ErrBusy)
		if a, err := ride("stuck-2m0s"); err != nil || a.Points != 10 {
			t.Fatalf("taking over a stale claim: %v %+v", err, a)
		}
		if a, err := ride("stuck-2m0s"); err != nil || a.Points != 10 {
			t.Fatalf("the taken-over event again: %v %+v", err, a)
		}
		if err := w.svc.Leave(ctx, "amira"); err != nil {
			t.Fatal(err)
		}
		if evs, _ := w.svc.Events(ctx, "amira", 10); len(evs) != 0 {
			t.Fatalf("%d events left after leaving", len(evs))
		}
		if b, _ := w.balance(t, rewards.PointsAccount("amira")); b != 80 {
			t.Fatalf("balance after leaving %d, want 80 (points stay)", b)
		}
		_, err = ride("r9")
		is(t, "the old card after leaving", err, rewards.ErrNotMember)
		is(t, "leaving twice", w.svc.Leave(ctx, "amira"), rewards.ErrNotMember)
		w.audit(t)
	})
}

// TestStalledRecorder: a recorder that stalls between claiming an event and
// minting it, long enough for a retry to take its claim over, mints
// nothing when it wakes: the retry minted the event, and the event's
// marker fails the stalled recorder's whole chain. It answers with the
// retry's award.
func TestStalledRecorder(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db, rewards.DefaultConfig)
		m, err := w.svc.Join(ctx, "amira")
		if err != nil {
			t.Fatal(err)
		}
		claimed, wake := make(chan struct{}), make(chan struct{})
		var first atomic.Bool
		w.svc.SetAfterClaim(func() {
			if first.CompareAndSwap(false, true) { // the first recorder stalls
				close(claimed)
				<-wake
			}
		})
		ride := rewards.RecordIn{Card: m.Card, Type: "transit_ride", EventID: "gate-7"}
		var stalled *rewards.Award
		var stalledErr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			stalled, stalledErr = w.svc.Record(ctx, transit, ride)
		}()
		<-claimed
		w.clock.add(2 * time.Minute) // past the claim's timeout: a retry takes it over
		retry, err := w.svc.Record(ctx, transit, ride)
		if err != nil || retry.Points != 10 || retry.Replayed {
			t.Fatalf("the retry: %+v %v", retry, err)
		}
		close(wake)
		<-done
		if stalledErr != nil || stalled.Points != 10 || !stalled.Replayed {
			t.Fatalf("the stalled recorder: %+v %v", stalled, stalledErr)
		}
		if b, _ := w.balance(t, rewards.PointsAccount("amira")); b != 10 {
			t.Fatalf("one event minted %d points, want 10", b)
		}
		if b, p := w.balance(t, rewards.ClaimsAccount); b != 0 || p != 0 {
			t.Fatalf("the claims account holds %d (%d pending), want 0", b, p)
		}
		if evs, _ := w.svc.Events(ctx, "amira", 10); len(evs) != 1 || evs[0].Points != 10 {
			t.Fatalf("events %+v, want one of 10 points", evs)
		}
		// Nothing about the event reaches the citizen's ledger history: the
		// mint's reference names the (random) claim, not the partner's
		// event id, and the marker stays between the programme's accounts.
		hist, err := w.eng.History(ctx, rewards.PointsAccount("amira"), time.Unix(0, 0), w.clock.now().Add(time.Hour), 100)
		if err != nil || len(hist) != 1 || strings.Contains(hist[0].Reference, "gate") || hist[0].Amount != 10 {
			t.Fatalf("her points history: %+v %v", hist, err)
		}
		w.audit(t)
	})
}

// rides makes person a member and records their transit rides, one per
// event id.
func (w *world) rides(t *testing.T, person string, ids ...string) {
	t.Helper()
	ctx := context.Background()
	m, err := w.svc.Join(ctx, person)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := w.svc.Record(ctx, transit, rewards.RecordIn{Card: m.Card, Type: "transit_ride", EventID: id}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVoucherKeys: a purchase sent with a key, however many times and
// however many at once, buys one voucher and spends the points once; a
// key refused for too few points buys once they are there.
func TestVoucherKeys(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db, rewards.DefaultConfig)
		w.rides(t, "amira", "r1", "r2", "r3") // 25 points
		const tries = 8
		got := make([]*rewards.Voucher, tries)
		errs := make([]error, tries)
		var wg sync.WaitGroup
		for i := range tries {
			wg.Go(func() {
				got[i], errs[i] = w.svc.Buy(ctx, "amira", "museum-entry", "form-1")
			})
		}
		wg.Wait()
		again := 0
		for i := range tries {
			if errs[i] != nil {
				t.Fatalf("try %d: %v", i, errs[i])
			}
			if got[i].ID != got[0].ID {
				t.Fatalf("try %d bought voucher %s, try 0 %s", i, got[i].ID, got[0].ID)
			}
			if got[i].Again {
				again++
			}
		}
		if again != tries-1 {
			t.Fatalf("%d of %d tries said bought before, want %d", again, tries, tries-1)
		}
		if b, _ := w.balance(t, rewards.PointsAccount("amira")); b != 5 {
			t.Fatalf("balance %d, want 25-20=5", b)
		}
		if vs, _ := w.svc.Vouchers(ctx, "amira"); len(vs) != 1 {
			t.Fatalf("%d vouchers, want 1", len(vs))
		}
		v, err := w.svc.Buy(ctx, "amira", "museum-entry", "form-1")
		if err != nil || !v.Again || v.ID != got[0].ID || v.State != rewards.Valid {
			t.Fatalf("sent again later: %+v %v", v, err)
		}
		_, err = w.svc.Buy(ctx, "amira", "museum-entry", "form-2")
		is(t, "another form without the points", err, rewards.ErrPoints)
		// That refusal does not spend the form's key: once the points are
		// there, the same form buys (the ledger remembers a transfer it
		// refused, so Buy tells too few points before asking it).
		w.clock.add(24 * time.Hour)
		w.rides(t, "amira", "r4", "r5") // 5 + 20 points
		if v, err := w.svc.Buy(ctx, "amira", "museum-entry", "form-2"); err != nil || v.Again || v.ID == got[0].ID {
			t.Fatalf("the refused form once the points are there: %+v %v", v, err)
		}
		_, err = w.svc.Buy(ctx, "jonas", "museum-entry", "form-1")
		is(t, "another citizen's same key is their own purchase", err, rewards.ErrPoints)
		_, err = w.svc.Buy(ctx, "amira", "museum-entry", strings.Repeat("k", rewards.MaxBuyKey+1))
		is(t, "an overlong key", err, rewards.ErrInvalid)
	})
}

// TestVouchers: buying is one linked chain (points back to the programme,
// the voucher's value reserved for the partner) or nothing; the partner's
// scan posts the reservation once; a second scan, another partner, a
// forged code and an expired voucher are refused.
func TestVouchers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db, rewards.DefaultConfig)
		w.rides(t, "amira", "r1", "r2", "r3") // 25 points
		v, err := w.svc.Buy(ctx, "amira", "museum-entry", "")
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := w.balance(t, rewards.PointsAccount("amira")); b != 5 {
			t.Fatalf("balance after buying %d, want 25-20=5", b)
		}
		if b, p := w.balance(t, rewards.PartnerAccount(museum)); b != 0 || p != 20 {
			t.Fatalf("museum: posted %d pending %d, want 0 and 20 reserved", b, p)
		}
		_, err = w.svc.Buy(ctx, "amira", "museum-entry", "")
		is(t, "buying without the points", err, rewards.ErrPoints)
		if b, _ := w.balance(t, rewards.PointsAccount("amira")); b != 5 {
			t.Fatalf("a refused purchase spent points: %d", b)
		}
		if _, p := w.balance(t, rewards.PartnerAccount(museum)); p != 20 {
			t.Fatalf("a refused purchase reserved %d for the museum", p)
		}
		if vs, _ := w.svc.Vouchers(ctx, "amira"); len(vs) != 1 {
			t.Fatalf("%d vouchers, want 1", len(vs))
		}
		_, err = w.svc.Buy(ctx, "jonas", "museum-entry", "")
		is(t, "buying with no points account", err, rewards.ErrPoints)
		code, err := w.svc.Code(v)
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.svc.Redeem(ctx, transit, code)
		is(t, "another partner scans it", err, rewards.ErrOther)
		forged := code[:len(code)-4] + "AAAA"
		_, err = w.svc.Redeem(ctx, museum, forged)
		is(t, "forged signature", err, rewards.ErrInvalid)
		_, err = w.svc.Redeem(ctx, museum, "hello")
		is(t, "not a code", err, rewards.ErrInvalid)
		used, err := w.svc.Redeem(ctx, museum, code)
		if err != nil || used.State != rewards.Used {
			t.Fatalf("scan: %v %+v", err, used)
		}
		if b, p := w.balance(t, rewards.PartnerAccount(museum)); b != 20 || p != 0 {
			t.Fatalf("museum after the scan: posted %d pending %d, want 20 and 0", b, p)
		}
		again, _ := w.svc.Code(v) // a fresh signature of the same voucher
		_, err = w.svc.Redeem(ctx, museum, again)
		is(t, "second scan", err, rewards.ErrUsed)

		tour, err := w.svc.Buy(ctx, "amira", "museum-tour", "") // valid one day
		if err != nil {
			t.Fatal(err)
		}
		w.clock.add(25 * time.Hour)
		if _, err := w.eng.Expire(ctx); err != nil {
			t.Fatal(err)
		}
		code, _ = w.svc.Code(tour)
		_, err = w.svc.Redeem(ctx, museum, code)
		is(t, "expired voucher", err, rewards.ErrExpired)
		if vs, _ := w.svc.Vouchers(ctx, "amira"); vs[0].State != rewards.ExpiredSt || vs[1].State != rewards.Used {
			t.Fatalf("voucher states %s %s", vs[0].State, vs[1].State)
		}
		if _, p := w.balance(t, rewards.PartnerAccount(museum)); p != 0 {
			t.Fatalf("an expired voucher still reserves %d", p)
		}
		w.audit(t)
	})
}

// TestPointsExpire: unspent points older than the published period expire,
// oldest first (spending uses the oldest points), once per day however
// often the sweep runs.
func TestPointsExpire(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db, rewards.Config{PointsExpire: 48 * time.Hour})
		m, _ := w.svc.Join(ctx, "amira")
		ride := func(id string) {
			if _, err := w.svc.Record(ctx, transit, rewards.RecordIn{Card: m.Card, Type: "transit_ride", EventID: id}); err != nil {
				t.Fatal(err)
			}
		}
		ride("d1a")
		ride("d1b")
		ride("d1c") // day 1: 25 points
		w.clock.add(24 * time.Hour)
		ride("d2a") // day 2: 10 points
		if _, err := w.svc.Buy(ctx, "amira", "museum-entry", ""); err != nil {
			t.Fatal(err) // 20 spent: they come from day 1's points
		}
		w.clock.add(26 * time.Hour) // day 1's points are now older than 48 h
		for range 2 {
			if _, err := w.svc.ExpirePoints(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if b, _ := w.balance(t, rewards.PointsAccount("amira")); b != 10 {
			t.Fatalf("balance %d, want 15-5: the 5 unspent points of day 1 expire, day 2's 10 stay", b)
		}
		w.clock.add(24 * time.Hour)
		if _, err := w.svc.ExpirePoints(ctx); err != nil {
			t.Fatal(err)
		}
		if b, _ := w.balance(t, rewards.PointsAccount("amira")); b != 0 {
			t.Fatalf("balance %d, want 0 once day 2's points are old too", b)
		}
		w.audit(t)
	})
}

// TestCapsInZone: with the city's zone, the daily cap counts the city's
// days: in Rome, a ride at 23:10 UTC is the next day's first.
func TestCapsInZone(t *testing.T) {
	rome, err := time.LoadLocation("Europe/Rome")
	if err != nil {
		t.Fatal(err)
	}
	db := storetest.OpenMigrated(t, storetest.Engines(t)[0].Open(t))
	cfg := rewards.DefaultConfig
	cfg.Zone = rome
	w := setup(t, db, cfg)
	w.clock.add(time.Date(2026, 12, 2, 22, 30, 0, 0, time.UTC).Sub(w.clock.now())) // 23:30 in Rome
	w.rides(t, "amira", "late-1", "late-2", "late-3")                              // 25 points, the cap
	_, err = w.svc.Record(context.Background(), transit, rewards.RecordIn{Card: w.card(t, "amira"), Type: "transit_ride", EventID: "late-4"})
	is(t, "over the cap the same Roman day", err, rewards.ErrCap)
	w.clock.add(40 * time.Minute) // 23:10 UTC, 00:10 in Rome
	a, err := w.svc.Record(context.Background(), transit, rewards.RecordIn{Card: w.card(t, "amira"), Type: "transit_ride", EventID: "early-1"})
	if err != nil || a.Points != 10 {
		t.Fatalf("the next Roman day's first ride: %+v %v", a, err)
	}
}

// card is a member's card.
func (w *world) card(t *testing.T, person string) string {
	t.Helper()
	m, err := w.svc.Member(context.Background(), person)
	if err != nil {
		t.Fatal(err)
	}
	return m.Card
}

// TestHonoured: a partner's honoured vouchers, the latest first, page by
// page without a gap or a repeat (two honoured at the same instant
// included), and only its own.
func TestHonoured(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db, rewards.DefaultConfig)
		var bought []*rewards.Voucher
		for day := range 4 { // 3 rides a day, 25 points: a museum entry each day
			w.rides(t, "amira", fmt.Sprintf("d%d-1", day), fmt.Sprintf("d%d-2", day), fmt.Sprintf("d%d-3", day))
			v, err := w.svc.Buy(ctx, "amira", "museum-entry", "")
			if err != nil {
				t.Fatal(err)
			}
			bought = append(bought, v)
			w.clock.add(24 * time.Hour)
		}
		for i, v := range bought {
			if i == 2 {
				w.clock.add(time.Minute) // the last two at the same instant
			}
			code, err := w.svc.Code(v)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.svc.Redeem(ctx, museum, code); err != nil {
				t.Fatal(err)
			}
		}
		var seen []string
		before, id := time.Time{}, ""
		for range 5 {
			page, err := w.svc.Honoured(ctx, museum, before, id, 3)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range page {
				if v.State != rewards.Used || v.Partner != museum || (len(seen) > 0 && v.Used.After(before)) {
					t.Fatalf("honoured: %+v after %v", v, before)
				}
				seen = append(seen, v.ID)
				before, id = v.Used, v.ID
			}
			if len(page) < 3 {
				break
			}
		}
		if len(seen) != 4 || len(slices.Compact(slices.Sorted(slices.Values(seen)))) != 4 {
			t.Fatalf("the pages gave %v, want the 4 vouchers once each", seen)
		}
		if other, err := w.svc.Honoured(ctx, transit, time.Time{}, "", 10); err != nil || len(other) != 0 {
			t.Fatalf("the transit company honoured %d, %v", len(other), err)
		}
	})
}

// TestCatalogueText: an item's name and a rule's label are limited in
// characters, not bytes (a name in Cyrillic of 100 characters is 200
// bytes and is taken), and are one line of text: no control character, no
// NUL (which PostgreSQL does not store), no invalid UTF-8 and no
// bidirectional override, each refused with ErrInvalid and nothing stored.
func TestCatalogueText(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setup(t, db, rewards.DefaultConfig)
		long := strings.Repeat("Ж", 100)
		if err := w.svc.SetItem(ctx, rewards.Item{ID: "cyrillic", Name: long, Partner: museum, Price: 5, ValidDays: 1, Active: true}); err != nil {
			t.Fatalf("a name of 100 characters in 200 bytes: %v", err)
		}
		if err := w.svc.SetRule(ctx, rewards.Rule{Type: "cyrillic", Label: long, Partner: transit, Points: 1, DailyCap: 1}); err != nil {
			t.Fatalf("a label of 100 characters in 200 bytes: %v", err)
		}
		for _, bad := range []string{long + "Ж", "Museum\nentry", "Museum\x00entry", "Museum \xffentry", "Museum \u202eyrtne", "\u2066Museum\u2069", "Museum\u2028entry"} {
			err := w.svc.SetItem(ctx, rewards.Item{ID: "bad-name", Name: bad, Partner: museum, Price: 5, ValidDays: 1, Active: true})
			is(t, fmt.Sprintf("an item named %q", bad), err, rewards.ErrInvalid)
			err = w.svc.SetRule(ctx, rewards.Rule{Type: "bad_label", Label: bad, Partner: transit, Points: 1, DailyCap: 1})
			is(t, fmt.Sprintf("a rule labelled %q", bad), err, rewards.ErrInvalid)
		}
		items, err := w.svc.Catalogue(ctx, true)
		if err != nil {
			t.Fatal(err)
		}
		rules, err := w.svc.Rules(ctx)
		if err != nil || len(items) != 3 || len(rules) != 3 {
			t.Fatalf("%d items and %d rules stored (%v), want 3 and 3", len(items), len(rules), err)
		}
	})
}
