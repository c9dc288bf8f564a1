package exchange

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

// TestMigrateLegacyRecords writes access records as the schema before
// migration 12 kept them (a row of their own in ex_access, and a request
// row for a direct release), migrates, and checks that every record
// still opens its log entry, is found by its citizen, verified, listed
// once for its agency, and passes the audit.
func TestMigrateLegacyRecords(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
			db, err := store.Open(ctx, e.Open(t))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.MigrateTo(ctx, 11); err != nil {
				t.Fatal(err)
			}
			_, priv, _ := ed25519.GenerateKey(rand.Reader)
			signer, err := tlog.NewEd25519Signer("test.civstack/log", priv)
			if err != nil {
				t.Fatal(err)
			}
			now := time.UnixMilli(1_790_000_000_000).UTC()
			clock := func() time.Time { return now }
			l, err := tlog.New(db, signer.Name(), signer, clock)
			if err != nil {
				t.Fatal(err)
			}
			secret := make([]byte, 32)
			x := &Exchange{secret: secret}
			people := []string{"person-a", "person-b"}
			var indexes []int64
			err = db.Tx(ctx, func(tx *store.Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO ex_policies (id, requester_org, service_id, fields, purpose, legal_basis, consent, max_deferral, retention, active, created_by, created_at)
					VALUES ('pol-1', 'tax', 'income', '["income"]', 'TAX-AUDIT', '§1', 0, 0, 86400000, 1, 't', 0)`); err != nil {
					return err
				}
				for i, person := range people {
					rec := Record{ID: "rec-" + person, Request: "req-" + person, Agency: "tax", AgencyName: "Tax Office", Officer: "o", Service: "income",
						ServiceName: "Income", Holder: "Registry", Purpose: "TAX-AUDIT", LegalBasis: "§1", Fields: []string{"income"}, Consent: consentNotNeeded,
						Time: now.UnixMilli() + int64(i), RetainUntil: now.UnixMilli() + 86400000}
					canon, _ := json.Marshal(rec)
					nonce := make([]byte, 32)
					_, _ = rand.Read(nonce)
					c := Commit(nonce, canon)
					entry, err := (&tlog.Entry{Kind: tlog.KindDataAccess, Time: now, Commitment: c, Tag: x.tag(person, c)}).Marshal()
					if err != nil {
						return err
					}
					idx, err := tlog.Sequence(ctx, tx, now, entry)
					if err != nil {
						return err
					}
					indexes = append(indexes, idx)
					if _, err := tx.ExecContext(ctx, `INSERT INTO ex_access (id, request_id, person_id, requester_org, purpose, record, nonce, at, defer_until, log_index)
						VALUES ($1, $2, $3, 'tax', 'TAX-AUDIT', $4, $5, $6, 0, $7)`, rec.ID, rec.Request, person, string(canon), nonce, rec.Time, idx); err != nil {
						return err
					}
					if _, err := tx.ExecContext(ctx, `INSERT INTO ex_requests (id, requester_org, officer, person_id, service_id, fields, purpose, legal_basis, deferral, policy_id, state, reason, created_at, decided_at)
						VALUES ($1, 'tax', 'o', $2, 'income', '["income"]', 'TAX-AUDIT', '§1', 0, 'pol-1', 'released', '', $3, $3)`, rec.Request, person, rec.Time); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			ex, err := New(Deps{DB: db, Log: l, LogKey: signer.VerifierKey(), Secret: secret, Now: clock, IndexBatch: 1})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := l.Integrate(ctx); err != nil {
				t.Fatal(err)
			}
			for i, person := range people {
				vs, err := ex.ForCitizen(ctx, person)
				if err != nil {
					t.Fatal(err)
				}
				if len(vs) != 1 || !vs[0].Verified || vs[0].LogIndex != indexes[i] || vs[0].Request != "req-"+person {
					t.Fatalf("%s after the migration: %+v", person, vs)
				}
			}
			reqs, err := ex.Requests(ctx, "tax", 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(reqs) != 2 || reqs[0].ID != "req-person-b" || reqs[0].State != Released || reqs[1].ID != "req-person-a" {
				t.Fatalf("the agency's requests after the migration: %+v", reqs)
			}
			if r, err := ex.RequestFor(ctx, "tax", "req-person-a"); err != nil || r.Citizen != "person-a" || r.PolicyID != "" {
				t.Fatalf("request by id: %+v %v", r, err)
			}
			entries := map[int64]*tlog.Entry{}
			for _, idx := range indexes {
				var data []byte
				if err := db.Reader().QueryRowContext(ctx, `SELECT data FROM tlog_entries WHERE idx = $1`, idx).Scan(&data); err != nil {
					t.Fatal(err)
				}
				entries[idx], _ = tlog.Parse(data)
			}
			checked, problems, err := Audit(ctx, db, entries, 1<<40)
			if err != nil || checked != 2 || len(problems) != 0 {
				t.Fatalf("audit after the migration: %d %v %v", checked, problems, err)
			}
		})
	}
}

// FuzzOpening: an opening read back from the database never panics the
// parser, and what encodes decodes to the same.
func FuzzOpening(f *testing.F) {
	rec := Record{Request: "r", Agency: "a", Purpose: "p", Time: 5, DeferUntil: 7}
	raw, _ := json.Marshal(rec)
	good, _ := (&opening{nonce: make([]byte, 32), at: 5, deferUntil: 7, person: "x", request: "r", agency: "a", purpose: "p", raw: raw}).encode()
	f.Add(good)
	f.Add([]byte{1})
	f.Add(append([]byte{1}, make([]byte, 60)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := parseOpening(b)
		if err != nil {
			return
		}
		again, err := o.encode()
		if err != nil {
			t.Fatalf("a parsed opening does not encode: %v", err)
		}
		if string(again) != string(b) {
			t.Fatalf("round trip changed the opening")
		}
		_, _, _ = decodeOpening(b)
	})
}
