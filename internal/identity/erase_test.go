package identity

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/credential"
	"github.com/civstack/civstack/internal/dcql"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestKeepPresentationsBounds: a node keeps presentations from a minute
// to 30 days; 0 is the default.
func TestKeepPresentationsBounds(t *testing.T) {
	key := make([]byte, 32)
	for _, c := range []struct {
		keep, want time.Duration
		ok         bool
	}{
		{0, KeepPresentations, true}, {time.Minute, time.Minute, true}, {MaxKeepPresentations, MaxKeepPresentations, true},
		{time.Minute - time.Second, 0, false}, {MaxKeepPresentations + time.Second, 0, false}, {-time.Hour, 0, false},
	} {
		s, err := New(Deps{SealKey: key, KeepPresentations: c.keep, Now: time.Now})
		switch {
		case c.ok && (err != nil || s.Keep() != c.want):
			t.Errorf("keep %v: %v, %v", c.keep, s, err)
		case !c.ok && !errors.Is(err, ErrInvalid):
			t.Errorf("keep %v accepted (%v)", c.keep, err)
		}
	}
}

// testService is a Service on a fresh, migrated database of engine e,
// keeping presentations keep (0: the default), at a clock tests move
// through the returned pointer.
func testService(t *testing.T, e storetest.Engine, keep time.Duration) (*Service, *store.DB, *time.Time) {
	t.Helper()
	db := storetest.OpenMigrated(t, e.Open(t))
	now := time.UnixMilli(1_790_000_000_000).UTC()
	s, err := New(Deps{DB: db, SealKey: make([]byte, 32), Now: func() time.Time { return now }, Rand: rand.Reader, BaseURL: "https://id.example",
		KeepPresentations: keep})
	if err != nil {
		t.Fatal(err)
	}
	return s, db, &now
}

// TestErasePresentations: the sweep erases the stored presentation and
// result of every verified answer at least Keep old, in batches, and no
// other; on SQLite it finds them by the partial index of those kept.
func TestErasePresentations(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
			s, db, clock := testService(t, e, time.Hour)
			now := *clock
			q, _ := json.Marshal(dcql.Query{Credentials: []dcql.CredentialQuery{{ID: "pid", Format: credential.Type, Meta: &dcql.Meta{VCTValues: []string{Types[0].VCT}},
				Claims: []dcql.ClaimQuery{{ID: "c0", Path: []any{"age_over_18"}}}}}})
			insert := func(prefix string, n int, state, vp string, answered time.Time) {
				t.Helper()
				err := db.Tx(ctx, func(tx *store.Tx) error {
					for i := range n {
						if _, err := tx.ExecContext(ctx, `INSERT INTO id_requests (id, verifier_org, nonce, query, state, vp_token, result, reason, created_by, created_at, expires_at, answered_at)
							VALUES ($1, 'org', 'n', $2, $3, $4, $5, '', '', $6, $6, $6)`, fmt.Sprintf("%s-%d", prefix, i), string(q), state, vp, map[bool]string{true: `{"type":"pid"}`}[vp != ""], answered.UnixMilli()); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			const old = 2*eraseBatch + 234
			insert("old", old, Verified, "vp", now.Add(-time.Hour))                // exactly Keep ago: erased
			insert("new", 3, Verified, "vp", now.Add(-time.Hour+time.Millisecond)) // just younger: kept
			insert("rejected", 2, Rejected, "", now.Add(-2*time.Hour))
			if n, err := s.ErasePresentations(ctx); err != nil || n != old {
				t.Fatalf("erased %d of %d: %v", n, old, err)
			}
			count := func(where string) (n int) {
				t.Helper()
				if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM id_requests WHERE `+where).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			if n := count(`id LIKE 'old-%' AND vp_token = '' AND result = '' AND state = 'verified'`); n != old {
				t.Fatalf("%d old requests erased and still verified, want %d", n, old)
			}
			if n := count(`id LIKE 'new-%' AND vp_token = 'vp' AND result <> ''`); n != 3 {
				t.Fatalf("%d younger presentations kept, want 3", n)
			}
			if n, err := s.ErasePresentations(ctx); err != nil || n != 0 {
				t.Fatalf("a second sweep erased %d: %v", n, err)
			}
			rs, err := s.requests(ctx, `WHERE id IN ('old-0', 'new-0') ORDER BY id`)
			if err != nil || len(rs) != 2 {
				t.Fatalf("read back: %v %v", rs, err)
			}
			if o, n := rs[1], rs[0]; !o.Erased || o.Result != nil || o.vpToken != "" || n.Erased || n.Result == nil || !n.KeptUntil.Equal(now.Add(time.Millisecond)) {
				t.Fatalf("read back: old %+v, new %+v", o, n)
			}
			usesIndex(t, e, db, keptBefore, "id_requests_kept")
		})
	}
}

// usesIndex checks, on SQLite, that query (with one time parameter) reads
// the index.
func usesIndex(t *testing.T, e storetest.Engine, db *store.DB, query, index string) {
	t.Helper()
	if e.Name != "sqlite" {
		return
	}
	rows, err := db.Reader().QueryContext(context.Background(), `EXPLAIN QUERY PLAN `+query, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if p := strings.Join(plan, "; "); !strings.Contains(p, "USING INDEX "+index) {
		t.Fatalf("%s does not read %s: %s", query, index, p)
	}
}

// TestEraseLapsedOffers: the sweep erases the sealed claims and link of
// every offer expired at least TokenLifetime ago (used, burnt, issued or
// not), when no access token from it can still fetch a credential, and
// keeps the others'.
func TestEraseLapsedOffers(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
			s, db, clock := testService(t, e, 0)
			now := *clock
			insert := func(prefix string, n int, claims string, expires time.Time, used bool) {
				t.Helper()
				usedAt := int64(0)
				if used {
					usedAt = expires.Add(-time.Minute).UnixMilli()
				}
				err := db.Tx(ctx, func(tx *store.Tx) error {
					for i := range n {
						if _, err := tx.ExecContext(ctx, `INSERT INTO id_offers (code_hash, issuer_org, type_id, person_id, claims, link, tx_hash, attempts, created_by, created_at, expires_at, used_at)
							VALUES ($1, 'org', 'pid', 'person', $2, 'sealed link', $3, 0, '', $4, $4, $5)`,
							[]byte(fmt.Sprintf("%s-%d", prefix, i)), claims, []byte("tx"), expires.UnixMilli(), usedAt); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			lapsed := now.Add(-TokenLifetime)
			insert("unused", eraseBatch+1, "sealed claims", lapsed, false)          // expired unused: erased
			insert("issued", 2, "", lapsed.Add(-time.Hour), true)                   // issued (claims gone already): its link erased
			insert("token", 3, "sealed claims", lapsed.Add(time.Millisecond), true) // a token may still be in use: kept
			insert("fresh", 4, "sealed claims", now.Add(OfferLifetime), false)      // still offered: kept
			if n, err := s.EraseLapsedOffers(ctx); err != nil || n != eraseBatch+3 {
				t.Fatalf("erased %d offers, want %d: %v", n, eraseBatch+3, err)
			}
			count := func(where string) (n int) {
				t.Helper()
				if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM id_offers WHERE `+where).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}
			if n := count(`claims = '' AND link = ''`); n != eraseBatch+3 {
				t.Fatalf("%d offers erased, want %d", n, eraseBatch+3)
			}
			if n := count(`claims = 'sealed claims' AND link = 'sealed link'`); n != 7 {
				t.Fatalf("%d offers kept whole, want the 7 still in use", n)
			}
			if n, err := s.EraseLapsedOffers(ctx); err != nil || n != 0 {
				t.Fatalf("a second sweep erased %d: %v", n, err)
			}
			usesIndex(t, e, db, offersBefore, "id_offers_kept")
		})
	}
}
