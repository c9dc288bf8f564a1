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
			reqs, err := latestRequests(ctx, ex, "tax", 10)
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
			checked, problems, err := Audit(ctx, db, entries, 1<<40, secret)
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
	v1, _ := (&opening{version: openingV1, nonce: make([]byte, 32), at: 5, deferUntil: 7, person: "x", request: "r", agency: "a", purpose: "p", raw: raw}).encode()
	f.Add(v1)
	salt := make([]byte, saltSize)
	rec.OfficerSeal = sealOfficer(salt, "officer")
	raw, _ = json.Marshal(rec)
	v2, _ := (&opening{version: openingV2, nonce: make([]byte, 32), at: 5, deferUntil: 7, person: "x", request: "r", agency: "a", purpose: "p", officer: "officer", salt: salt, raw: raw}).encode()
	f.Add(v2)
	f.Add([]byte{1})
	f.Add([]byte{2})
	f.Add(append([]byte{1}, make([]byte, 60)...))
	f.Add(append([]byte{2}, make([]byte, 60)...))
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

// TestTailAndIndex: with the index's default batch, fresh records are
// read from the log's rows (the tail), verified once integrated, and after
// FlushIndex from the index, each exactly once.
func TestTailAndIndex(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, l, _ := auditExchange(t, db, 0)
		people := []string{"p1", "p2", "p3"}
		for _, p := range people {
			if err := ex.SetValues(ctx, "holder", "income", p, map[string]string{"income": "7"}); err != nil {
				t.Fatal(err)
			}
			if r, err := ex.Submit(ctx, Ask{Requester: "tax", Officer: "o", Citizen: p, Service: "income", Fields: []string{"income"}, Purpose: "AUDIT", LegalBasis: "§1"}); err != nil || r.State != Released || r.Values["income"] != "7" {
				t.Fatalf("release for %s: %+v %v", p, r, err)
			}
		}
		indexed := func() int {
			var n int
			if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM ex_access`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		see := func(when string, verified bool) {
			t.Helper()
			for _, p := range people {
				vs, err := ex.ForCitizen(ctx, p)
				if err != nil || len(vs) != 1 || vs[0].Verified != verified || vs[0].Purpose != "AUDIT" {
					t.Fatalf("%s, %s sees %+v (%v)", when, p, vs, err)
				}
			}
			reqs, err := latestRequests(ctx, ex, "tax", 10)
			if err != nil || len(reqs) != 3 {
				t.Fatalf("%s, the agency's requests: %+v %v", when, reqs, err)
			}
			v, err := ex.DPA(ctx)
			if err != nil || len(v.Summary) != 1 || v.Summary[0].Count != 3 || len(v.Recent) != 3 {
				t.Fatalf("%s, the DPA sees %+v %v", when, v, err)
			}
		}
		see("before integration", false)
		if _, _, err := l.Integrate(ctx); err != nil {
			t.Fatal(err)
		}
		if n := indexed(); n != 0 {
			t.Fatalf("%d records indexed before %d entries passed", n, indexBatch)
		}
		see("integrated, in the tail", true)
		if err := ex.FlushIndex(ctx); err != nil {
			t.Fatal(err)
		}
		if n := indexed(); n != 3 {
			t.Fatalf("%d records indexed after FlushIndex, want 3", n)
		}
		see("indexed", true)
	})
}

// TestMigrateDownKeepsRecords rolls a database with access records back
// to the schema before migration 12 and forward again: every record (one
// indexed, one integrated but past the index's cursor, one not integrated
// yet) is an ex_access row in the older schema that still opens its log
// entry, and after migrating up again each citizen still finds their
// record, verified, and the audit passes.
func TestMigrateDownKeepsRecords(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, l, secret := auditExchange(t, db, 0)
		people := []string{"p-indexed", "p-integrated-ü", "p-tail"}
		logIndex := map[string]int64{}
		for i, p := range people {
			if err := ex.SetValues(ctx, "holder", "income", p, map[string]string{"income": "7"}); err != nil {
				t.Fatal(err)
			}
			r, err := ex.Submit(ctx, Ask{Requester: "tax", Officer: "o", Citizen: p, Service: "income", Fields: []string{"income"}, Purpose: "AUDIT", LegalBasis: "§1"})
			if err != nil || r.State != Released {
				t.Fatalf("release for %s: %+v %v", p, r, err)
			}
			var idx int64
			if err := db.Reader().QueryRowContext(ctx, `SELECT MAX(idx) FROM tlog_entries WHERE kind = $1`, int(tlog.KindDataAccess)).Scan(&idx); err != nil {
				t.Fatal(err)
			}
			logIndex[p] = idx
			switch i {
			case 0:
				if _, _, err := l.Integrate(ctx); err != nil {
					t.Fatal(err)
				}
				if err := ex.FlushIndex(ctx); err != nil {
					t.Fatal(err)
				}
			case 1:
				if _, _, err := l.Integrate(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		var sealed int
		if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM tlog_entries WHERE kind = $1 AND opening IS NOT NULL`, int(tlog.KindDataAccess)).Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		rows, err := db.Reader().QueryContext(ctx, `SELECT opening FROM tlog_entries WHERE kind = $1 AND opening IS NOT NULL`, int(tlog.KindDataAccess))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil || len(b) == 0 || b[0] != openingV2 {
				t.Fatalf("a new record's opening is not of version 2: %x %v", b[:min(len(b), 1)], err)
			}
		}
		rows.Close()
		// 00030 drops the per-shop wrong-code counts, 00029 the payment devices' ones, 00028 the pending field changes, 00027 the accesses' time indexes, 00026 the complaints, 00025 the keys' age index, 00024 the identity erasure's indexes, 00023 the tokens' expiry, 00022 the consoles' indexes, 00021 the wallet copies' requests, 00020 the idempotency keys, 00019 withdrawn services, 00018 the policies' retirement
		// times, 00017 and 00016 drop indexes, 00015 swaps one back, 00014
		// turns the openings back into version 1, 00013 drops the counts,
		// 00012 makes the records rows of their own again.
		undone, err := db.MigrateDown(ctx, 11)
		if err != nil || len(undone) != 19 || sealed != len(people) {
			t.Fatalf("migrate down to 11 (%d sealed records): %v %v", sealed, undone, err)
		}
		for _, p := range people {
			var record string
			var nonce []byte
			var idx int64
			if err := db.Reader().QueryRowContext(ctx, `SELECT record, nonce, log_index FROM ex_access WHERE person_id = $1`, p).Scan(&record, &nonce, &idx); err != nil {
				t.Fatalf("%s's record in the older schema: %v", p, err)
			}
			var data []byte
			if err := db.Reader().QueryRowContext(ctx, `SELECT data FROM tlog_entries WHERE idx = $1`, idx).Scan(&data); err != nil {
				t.Fatal(err)
			}
			e, err := tlog.Parse(data)
			if err != nil || idx != logIndex[p] || e.Commitment != Commit(nonce, []byte(record)) {
				t.Fatalf("%s's record in the older schema does not open entry %d (want %d): %v", p, idx, logIndex[p], err)
			}
		}
		var requests int
		if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM ex_requests WHERE state = 'released'`).Scan(&requests); err != nil || requests != len(people) {
			t.Fatalf("the older schema has %d released requests, want %d (%v)", requests, len(people), err)
		}
		if err := db.Migrate(ctx); err != nil {
			t.Fatalf("migrate up again: %v", err)
		}
		if _, _, err := l.Integrate(ctx); err != nil {
			t.Fatal(err)
		}
		entries := map[int64]*tlog.Entry{}
		for _, p := range people {
			vs, err := ex.ForCitizen(ctx, p)
			if err != nil || len(vs) != 1 || !vs[0].Verified || vs[0].LogIndex != logIndex[p] {
				t.Fatalf("%s after rolling back and forward: %+v %v", p, vs, err)
			}
			var data []byte
			if err := db.Reader().QueryRowContext(ctx, `SELECT data FROM tlog_entries WHERE idx = $1`, logIndex[p]).Scan(&data); err != nil {
				t.Fatal(err)
			}
			entries[logIndex[p]], _ = tlog.Parse(data)
		}
		if reqs, err := latestRequests(ctx, ex, "tax", 10); err != nil || len(reqs) != len(people) {
			t.Fatalf("the agency's requests after rolling back and forward: %+v %v", reqs, err)
		}
		checked, problems, err := Audit(ctx, db, entries, 1<<40, secret)
		if err != nil || checked != len(people) || len(problems) != 0 {
			t.Fatalf("audit after rolling back and forward: %d %v %v", checked, problems, err)
		}
	})
}

// TestMigrationsRoundTrip undoes every migration on a new database and
// applies them again, on each engine, so that no Down section is left
// untried.
func TestMigrationsRoundTrip(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		undone, err := db.MigrateDown(ctx, 1)
		if err != nil {
			t.Fatalf("down to 1 (undid %v): %v", undone, err)
		}
		if v, err := db.SchemaVersion(ctx); err != nil || v != 1 {
			t.Fatalf("after down: version %d %v", v, err)
		}
		if err := db.Migrate(ctx); err != nil {
			t.Fatalf("up again: %v", err)
		}
		ms, newer, err := db.Migrations(ctx)
		if err != nil || newer != 0 || len(ms) != len(undone)+1 {
			t.Fatalf("migrations: %d known, %d undone, newer %d, %v", len(ms), len(undone), newer, err)
		}
		for _, m := range ms {
			if !m.Applied {
				t.Fatalf("migration %d (%s) not applied again", m.Version, m.Name)
			}
		}
	})
}

// TestReindex: with index rows deleted and changed and the counts wrong,
// the audit complains; Reindex rebuilds the index and the counts from the
// records in the log's rows, reporting progress, and the audit passes.
func TestReindex(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, l, secret := auditExchange(t, db, 1)
		people := []string{"p1", "p2", "p3"}
		for _, p := range people {
			if r, err := ex.Submit(ctx, Ask{Requester: "tax", Officer: "o", Citizen: p, Service: "income", Fields: []string{"income"}, Purpose: "AUDIT", LegalBasis: "§1"}); err != nil || r.State != Released {
				t.Fatalf("release for %s: %+v %v", p, r, err)
			}
		}
		if _, _, err := l.Integrate(ctx); err != nil {
			t.Fatal(err)
		}
		entries := map[int64]*tlog.Entry{}
		rows, err := db.Reader().QueryContext(ctx, `SELECT idx, data FROM tlog_entries`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var idx int64
			var data []byte
			if err := rows.Scan(&idx, &data); err != nil {
				t.Fatal(err)
			}
			entries[idx], _ = tlog.Parse(data)
		}
		rows.Close()
		audit := func() []string {
			t.Helper()
			checked, problems, err := Audit(ctx, db, entries, 1<<40, secret)
			if err != nil || checked != len(people) {
				t.Fatalf("audit: %d checked, %v", checked, err)
			}
			return problems
		}
		if p := audit(); len(p) != 0 {
			t.Fatalf("audit before the damage: %v", p)
		}
		err = db.Tx(ctx, func(tx *store.Tx) error {
			for _, q := range []string{`DELETE FROM ex_access WHERE person_id = 'p1'`, `UPDATE ex_access SET person_id = 'p3' WHERE person_id = 'p2'`, `UPDATE ex_access_counts SET n = 7`} {
				if _, err := tx.ExecContext(ctx, q); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if p := audit(); len(p) < 3 {
			t.Fatalf("audit of the damaged index: %v", p)
		}
		var calls []int64
		n, err := Reindex(ctx, db, func(done, total int64) { calls = append(calls, done, total) })
		if err != nil || n != int64(len(people)) {
			t.Fatalf("reindex: %d %v", n, err)
		}
		if len(calls) != 2 || calls[0] != calls[1] || calls[1] != int64(len(entries)) {
			t.Fatalf("progress: %v, want one call with %d of %d", calls, len(entries), len(entries))
		}
		if p := audit(); len(p) != 0 {
			t.Fatalf("audit after reindex: %v", p)
		}
		for _, p := range people {
			vs, err := ex.ForCitizen(ctx, p)
			if err != nil || len(vs) != 1 || !vs[0].Verified {
				t.Fatalf("%s after reindex: %+v %v", p, vs, err)
			}
		}
	})
}

// auditExchange is an exchange on db with its own log and a running
// appender, a service "income" of holder "holder" and a policy letting
// "tax" read it for AUDIT; indexBatch 0 is the default batch.
func auditExchange(t testing.TB, db *store.DB, indexBatch int) (*Exchange, *tlog.Log, []byte) {
	t.Helper()
	return clockedExchange(t, db, indexBatch, time.Now)
}

// clockedExchange is auditExchange with the exchange's clock (the log
// keeps the real one).
func clockedExchange(t testing.TB, db *store.DB, indexBatch int, now func() time.Time) (*Exchange, *tlog.Log, []byte) {
	t.Helper()
	ex, l, secret, _ := signedExchange(t, db, indexBatch, now)
	return ex, l, secret
}

// signedExchange is clockedExchange with the log's signer, for tests that
// sign what the log would not.
func signedExchange(t testing.TB, db *store.DB, indexBatch int, now func() time.Time) (*Exchange, *tlog.Log, []byte, *tlog.Ed25519Signer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := tlog.NewEd25519Signer("test.civstack/log", priv)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tlog.New(db, signer.Name(), signer, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	app := tlog.NewAppender(db, time.Now, nil)
	done := make(chan struct{})
	go func() { app.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	ex, err := New(Deps{DB: db, Appender: app, Log: l, LogKey: signer.VerifierKey(), Secret: secret, Now: now, IndexBatch: indexBatch})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ex.PublishService(ctx, "holder", Service{ID: "income", Name: "Income", Fields: []Field{{Name: "income", Label: "Income", Type: "number"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ex.CreatePolicy(ctx, Policy{Requester: "tax", Service: "income", Fields: []string{"income"}, Purpose: "AUDIT", LegalBasis: "§1", Retention: Day}, "t"); err != nil {
		t.Fatal(err)
	}
	return ex, l, secret, signer
}

// latestRequests is the first page of an agency's history.
func latestRequests(ctx context.Context, ex *Exchange, org string, n int) ([]*Request, error) {
	p, err := ex.History(ctx, org, "", n)
	if err != nil {
		return nil, err
	}
	return p.Requests, nil
}
