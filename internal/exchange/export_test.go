package exchange

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

// TestVerifyExport builds a citizen's export (an access, a deferred one
// after its deferral, another citizen's left out), checks it offline with
// the log's key, and then each way it can fail: no key, another log's key,
// a readable copy that is not the record, a record that is not the
// committed one, a proof that does not lead to the checkpoint, an access
// the node had not verified yet, and files that are not exports.
func TestVerifyExport(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, l, _ := auditExchange(t, db, 0)
		if _, err := ex.CreatePolicy(ctx, Policy{Requester: "tax", Service: "income", Fields: []string{"income"}, Purpose: "COVERT", LegalBasis: "§2",
			MaxDeferral: 10 * Day, Retention: 3 * Day}, "t"); err != nil {
			t.Fatal(err)
		}
		for _, a := range []Ask{
			{Requester: "tax", Officer: "o", Citizen: "p1", Service: "income", Fields: []string{"income"}, Purpose: "AUDIT", LegalBasis: "§1"},
			{Requester: "tax", Officer: "o", Citizen: "p1", Service: "income", Fields: []string{"income"}, Purpose: "COVERT", LegalBasis: "§2", Defer: 2 * Day},
			{Requester: "tax", Officer: "o", Citizen: "p2", Service: "income", Fields: []string{"income"}, Purpose: "AUDIT", LegalBasis: "§1"},
		} {
			if r, err := ex.Submit(ctx, a); err != nil || r.State != Released {
				t.Fatalf("%+v: %+v %v", a, r, err)
			}
		}
		export := func() []byte {
			t.Helper()
			recs, err := ex.ForCitizen(ctx, "p1")
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.MarshalIndent(NewExport("p1", ex.now(), ex.logKey, recs, nil), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		verify := func(b []byte, key string) *ExportReport {
			t.Helper()
			rep, err := VerifyExport(bytes.NewReader(b), key)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			return rep
		}

		// Before integration the node has no proof to give: the file says so.
		failsWith(t, "not integrated", verify(export(), ex.logKey), "had not verified it when exporting")
		if _, _, err := l.Integrate(ctx); err != nil {
			t.Fatal(err)
		}
		later := time.Now().Add(3 * Day)
		ex.now = func() time.Time { return later }
		good := export()
		rep := verify(good, ex.logKey)
		if !rep.OK() || rep.Accesses != 2 || rep.Person != "p1" || rep.Origin != "test.civstack/log" || len(rep.Checks) != 3 {
			t.Fatalf("a good export: %+v (%s)", rep, rep.Failed())
		}
		if !strings.Contains(string(good), `"hidden_until"`) || strings.Count(string(good), `"hidden_until"`) != 1 {
			t.Fatalf("the deferred access does not say until when it was hidden:\n%s", good)
		}

		other := func() string {
			_, key := otherLog(t)
			return key
		}()
		edit := func(old, new string, n int) []byte {
			t.Helper()
			if !strings.Contains(string(good), old) {
				t.Fatalf("the export holds no %q", old)
			}
			return []byte(strings.Replace(string(good), old, new, n))
		}
		failsWith(t, "no log key", verify(good, ""), "log: not checked")
		if rep := verify(good, ""); rep.Checks[2].OK != true || !strings.Contains(rep.Checks[2].Detail, "opens log entry") {
			t.Fatalf("without the key the records are still checked: %+v", rep.Checks)
		}
		failsWith(t, "another log's key", verify(good, other), "not signed by the key")
		failsWith(t, "a readable copy changed", verify(edit(`"purpose": "AUDIT"`, `"purpose": "OTHER"`, 1), ex.logKey), "readable copy in the file differs")
		unhidden := regexp.MustCompile(`\s*"hidden_until": "[^"]*",`).ReplaceAll(good, nil)
		failsWith(t, "the deferral left out of the readable copy", verify(unhidden, ex.logKey), "readable copy in the file differs")
		failsWith(t, "record and copy changed alike", verify(edit(`§1`, `§9`, -1), ex.logKey), "does not open log entry")
		var doc Export
		if err := json.Unmarshal(good, &doc); err != nil {
			t.Fatal(err)
		}
		doc.Accesses[0].Proof.Index++
		moved, _ := json.Marshal(doc)
		failsWith(t, "a proof for another index", verify(moved, ex.logKey), "is not in the signed checkpoint")
		doc.Accesses[0].Proof.Index--
		doc.Accesses[1].Proof.Entry = doc.Accesses[0].Proof.Entry
		swapped, _ := json.Marshal(doc)
		failsWith(t, "another access's entry", verify(swapped, ex.logKey), "does not open log entry")

		for _, bad := range []string{"hello", `{"person": "p1"}`, `{"accesses": [], "extra": 1}`, `[1, 2]`,
			`{"accesses": []}`, `{"exported_at": "2026-12-05T00:00:00Z", "accesses": []}`, `{"person": "p1", "accesses": []}`} {
			if _, err := VerifyExport(strings.NewReader(bad), ex.logKey); !errors.Is(err, ErrBadExport) {
				t.Errorf("%q: %v, want ErrBadExport", bad, err)
			}
		}
		if !IsExport(good) || IsExport([]byte(`{"document": {}}`)) {
			t.Error("IsExport tells exports apart wrongly")
		}
		// Nobody's data read: an empty export verifies, and says so.
		recs, err := ex.ForCitizen(ctx, "p3")
		if err != nil {
			t.Fatal(err)
		}
		empty, _ := json.Marshal(NewExport("p3", later, ex.logKey, recs, nil))
		if rep := verify(empty, ex.logKey); !rep.OK() || rep.Accesses != 0 {
			t.Fatalf("an empty export: %+v", rep)
		}
	})
}

// TestWriteExport: the streamed export is NewExport over ForCitizen's
// list, at every page size (records in the index and in the tail, a
// deferred one left out, another citizen's too), with her complaints
// about her accesses and the DPA's answers (not another's), and it
// verifies offline;
// a citizen with none gets an empty list; begin comes once, before the
// first byte, and an error before it writes nothing.
func TestWriteExport(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, l, _ := auditExchange(t, db, 0) // the index takes entries only when flushed
		covert(t, ex, 30*Day, "p1", "p2")
		for i := range 7 {
			a := Ask{Requester: "tax", Officer: "o", Citizen: "p1", Service: "income", Fields: []string{"income"}, Purpose: "AUDIT", LegalBasis: "§1"}
			switch i {
			case 2:
				a.Citizen = "p2"
			case 4:
				a.Requester, a.Purpose, a.LegalBasis, a.Defer = "police", "COVERT", "§9", 10*Day
			}
			if r, err := ex.Submit(ctx, a); err != nil || r.State != Released {
				t.Fatalf("release: %+v %v", r, err)
			}
			if i == 3 { // some in the index, the rest in the log's rows only
				if _, _, err := l.Integrate(ctx); err != nil {
					t.Fatal(err)
				}
				if err := ex.FlushIndex(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, _, err := l.Integrate(ctx); err != nil { // every one in a checkpoint
			t.Fatal(err)
		}
		var indexed int
		if err := db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM ex_access WHERE person_id = 'p1'`).Scan(&indexed); err != nil || indexed == 0 || indexed >= 6 {
			t.Fatalf("want some of p1's records indexed and some in the tail: %d indexed of 6 (%v)", indexed, err)
		}
		at := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
		decode := func(b []byte) Export {
			t.Helper()
			var e Export
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("the export does not parse: %v\n%s", err, b)
			}
			return e
		}
		streamed := func(person string) []byte {
			t.Helper()
			var buf bytes.Buffer
			begun := 0
			// A paging that never ends fails here, not at the test's timeout.
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			if err := ex.WriteExport(ctx, &buf, func() {
				if begun++; buf.Len() != 0 {
					t.Fatal("begin after the first byte")
				}
			}, person, at, ex.logKey); err != nil || begun != 1 {
				t.Fatalf("WriteExport: %v (begin called %d times)", err, begun)
			}
			return buf.Bytes()
		}
		recs, err := ex.ForCitizen(ctx, "p1")
		if err != nil || len(recs) != 5 {
			t.Fatalf("the whole list: %d records (want 5) %v", len(recs), err)
		}
		// She complains about two of her accesses, the DPA answers one;
		// p2's complaint about his own stays out of her file.
		if _, err := ex.Complain(ctx, "p1", recs[0].LogIndex, "Why my income?"); err != nil {
			t.Fatal(err)
		}
		c, err := ex.Complain(ctx, "p1", recs[3].LogIndex, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ex.AnswerComplaint(ctx, c.ID, "Ana Costa", "The audit was lawful."); err != nil {
			t.Fatal(err)
		}
		theirs, err := ex.ForCitizen(ctx, "p2")
		if err != nil || len(theirs) != 1 {
			t.Fatalf("p2's accesses: %d %v", len(theirs), err)
		}
		if _, err := ex.Complain(ctx, "p2", theirs[0].LogIndex, "Not p1's"); err != nil {
			t.Fatal(err)
		}
		complaints, err := ex.ComplaintsOf(ctx, "p1", 0, math.MaxInt64)
		if err != nil || len(complaints) != 2 {
			t.Fatalf("p1's complaints: %d %v", len(complaints), err)
		}
		whole, _ := json.Marshal(NewExport("p1", at, ex.logKey, recs, complaints))
		want := decode(whole)
		if a, b := want.Accesses[0].Complaint, want.Accesses[3].Complaint; a == nil || a.Message != "Why my income?" || a.Answer != "" || !a.AnsweredAt.IsZero() ||
			b == nil || b.Message != "" || b.Answer != "The audit was lawful." || b.AnsweredAt.IsZero() || b.Sent.IsZero() || complained(want.Accesses) != 2 {
			t.Fatalf("her complaints in the file: %+v, %+v (%d in all)", a, b, complained(want.Accesses))
		}
		defer func(n int) { exportPage = n }(exportPage)
		for exportPage = 1; exportPage <= len(recs)+1; exportPage++ {
			b := streamed("p1")
			if got := decode(b); !reflect.DeepEqual(got, want) {
				t.Fatalf("pages of %d:\n%s\nwant\n%s", exportPage, b, whole)
			}
			if rep, err := VerifyExport(bytes.NewReader(b), ex.logKey); err != nil || !rep.OK() || rep.Accesses != 5 ||
				!strings.Contains(rep.Checks[0].Detail, "2 with the citizen's complaint to the data-protection authority, which is hers and not in the log (not checked)") {
				t.Fatalf("pages of %d: the export does not verify: %+v %v", exportPage, rep, err)
			}
		}
		if b := streamed("p3"); !bytes.HasSuffix(b, []byte(`"accesses":[]}`+"\n")) || len(decode(b).Accesses) != 0 {
			t.Fatalf("nobody's data read: %s", b)
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		var buf bytes.Buffer
		if err := ex.WriteExport(cancelled, &buf, func() { t.Fatal("begun despite the error") }, "p1", at, ex.logKey); err == nil || buf.Len() != 0 {
			t.Fatalf("an error before the first page: %v, %d bytes written", err, buf.Len())
		}
	})
}

// FuzzVerifyExport: VerifyExport reads files from anywhere and never panics.
func FuzzVerifyExport(f *testing.F) {
	_, key := otherLog(f)
	f.Add([]byte(`{"person":"p","exported_at":"2026-12-05T00:00:00Z","log_key":"","accesses":[]}`))
	f.Add([]byte(`{"accesses":[{"agency":"a","time":"2026-12-05T00:00:00Z","proof":{"record":{"id":"x"},"nonce":"AAAA","log_index":-1,"entry":"AQQ=","inclusion":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="],"checkpoint":"x\n"}}]}`))
	f.Add([]byte(`{"accesses":[{"proof":{"record":null,"log_index":9223372036854775807}}]}`))
	f.Add([]byte(`{"accesses":[{"agency":"a","complaint":{"sent_at":"2026-12-05T00:00:00Z","message":"Why?","answer":"Lawful.","answered_at":"2026-12-06T00:00:00Z"}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := VerifyExport(bytes.NewReader(b), key)
		if err == nil {
			_ = rep.OK()
			_ = rep.Failed()
		}
	})
}

// failsWith fails t unless rep failed, its first failure saying want.
func failsWith(t *testing.T, what string, rep *ExportReport, want string) {
	t.Helper()
	if rep.OK() || !strings.Contains(rep.Failed(), want) {
		t.Fatalf("%s: %+v; want a failure with %q", what, rep.Checks, want)
	}
}

// otherLog is a log signer, with its verifier key, that no test log uses.
func otherLog(t testing.TB) (*tlog.Ed25519Signer, string) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := tlog.NewEd25519Signer("test.civstack/log", priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, s.VerifierKey()
}

// TestRecordEncodings: a record made before officer seals (it names its
// officer) and a sealed one each encode canonically to the very bytes
// they were committed as, so that exports of both still verify; the
// older one, as the code before the seal wrote it.
func TestRecordEncodings(t *testing.T) {
	older := `{"id":"r1","request":"q1","agency":"tax","agency_name":"City Tax Office","officer":"Tomas Novak","service":"income","service_name":"Income",` +
		`"holder":"City Tax Office","purpose":"AUDIT","legal_basis":"§1","fields":["income"],"consent":"not needed","time":5,"defer_until":0,"retain_until":9,"policy":"p1"}`
	salt := bytes.Repeat([]byte{7}, saltSize)
	sealed := strings.Replace(older, `"officer":"Tomas Novak"`, `"officer_seal":"`+sealOfficer(salt, "Tomas Novak")+`"`, 1)
	for _, raw := range []string{older, sealed} {
		var rec Record
		if err := json.Unmarshal([]byte(raw), &rec); err != nil {
			t.Fatal(err)
		}
		if again, err := rec.canonical(); err != nil || string(again) != raw {
			t.Fatalf("a record does not encode as it was committed:\n%s\n%s (%v)", again, raw, err)
		}
	}
	if sealOfficer(salt, "Tomas Novak") == sealOfficer(bytes.Repeat([]byte{8}, saltSize), "Tomas Novak") || sealOfficer(salt, "Tomas Novak") == sealOfficer(salt, "Tomas Nowak") {
		t.Fatal("a seal does not depend on its salt and name")
	}
}

// BenchmarkWriteExport: the streamed export (pages of 500, verified as
// they go) against building the whole file first (ForCitizen, NewExport,
// one JSON encoding: what the export did before; the baseline, in the same
// run), for a citizen with 2,000 accesses among 4,000.
func BenchmarkWriteExport(b *testing.B) {
	ctx := context.Background()
	db := storetest.OpenMigrated(b, store.Options{DataDir: b.TempDir()}) // SQLite
	ex, l, _ := auditExchange(b, db, 0)
	for _, p := range []string{"p0", "p1"} {
		if err := ex.SetValues(ctx, "holder", "income", p, map[string]string{"income": "7"}); err != nil {
			b.Fatal(err)
		}
	}
	releaseIndexed(b, ex, l, 4000, func(i int) Ask {
		return Ask{Requester: "tax", Citizen: fmt.Sprint("p", i%2), Purpose: "AUDIT", LegalBasis: "§1"}
	})
	var whole, streamed time.Duration
	var wholeBytes, streamedBytes int
	n := 0
	for b.Loop() {
		t0 := time.Now()
		recs, err := ex.ForCitizen(ctx, "p0")
		if err != nil {
			b.Fatal(err)
		}
		raw, err := json.Marshal(NewExport("p0", t0, ex.logKey, recs, nil))
		t1 := time.Now()
		var buf bytes.Buffer
		err2 := ex.WriteExport(ctx, &buf, func() {}, "p0", t0, ex.logKey)
		whole, streamed, n = whole+t1.Sub(t0), streamed+time.Since(t1), n+1
		wholeBytes, streamedBytes = len(raw), buf.Len()
		if err != nil || err2 != nil || len(recs) != 2000 || wholeBytes+1 != streamedBytes {
			b.Fatalf("%d records, %d and %d bytes (%v, %v)", len(recs), wholeBytes, streamedBytes, err, err2)
		}
	}
	b.ReportMetric(float64(whole.Microseconds())/1000/float64(n), "ms-whole-file/op")
	b.ReportMetric(float64(streamed.Microseconds())/1000/float64(n), "ms-streamed/op")
	b.ReportMetric(float64(streamed)/float64(whole), "streamed/whole")
	b.ReportMetric(float64(wholeBytes)/1e6, "MB-file")
}
