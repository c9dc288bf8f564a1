package exchange

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

// TestCompareExports: a citizen's export made after another one (the
// node's own streamed files, a deferral ending between them) compares
// clean, counting what is new and what was hidden then; and each way a
// node can go back on what it showed her is reported: an access gone from
// the later file, one kept from the earlier (by its log entry and by its
// time), a log rewound, and a log forked (two trees signed with the log's
// own key). Files in the wrong order, of two citizens, without the key or
// not exports are refused; an earlier file the node had not proved
// compares without a false alarm.
func TestCompareExports(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		t0 := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
		clock := t0
		ex, l, _, signer := signedExchange(t, db, 0, func() time.Time { return clock })
		covert(t, ex, 30*Day, "p1", "p2")
		release := func(a Ask) {
			t.Helper()
			a.Requester, a.Officer, a.Service, a.Fields = "tax", "o", "income", []string{"income"}
			if a.Purpose == "" {
				a.Purpose, a.LegalBasis = "AUDIT", "§1"
			} else {
				a.Requester = "police"
			}
			if r, err := ex.Submit(ctx, a); err != nil || r.State != Released {
				t.Fatalf("%+v: %+v %v", a, r, err)
			}
		}
		integrate := func() {
			t.Helper()
			if _, _, err := l.Integrate(ctx); err != nil {
				t.Fatal(err)
			}
		}
		export := func(person string) []byte {
			t.Helper()
			var buf bytes.Buffer
			if err := ex.WriteExport(ctx, &buf, func() {}, person, clock, ex.logKey); err != nil {
				t.Fatal(err)
			}
			return buf.Bytes()
		}
		compare := func(earlier, later []byte) *ExportReport {
			t.Helper()
			rep, err := CompareExports(bytes.NewReader(earlier), bytes.NewReader(later), ex.logKey)
			if err != nil {
				t.Fatalf("compare: %v", err)
			}
			return rep
		}
		detail := func(rep *ExportReport, name string) string {
			t.Helper()
			i := slices.IndexFunc(rep.Checks, func(c ExportCheck) bool { return c.Name == name })
			if i < 0 {
				t.Fatalf("no check %q: %+v", name, rep.Checks)
			}
			return rep.Checks[i].Detail
		}

		release(Ask{Citizen: "p1"})
		release(Ask{Citizen: "p1"})
		release(Ask{Citizen: "p1", Purpose: "COVERT", LegalBasis: "§9", Defer: 10 * Day})
		release(Ask{Citizen: "p2"})
		clock = t0.Add(10 * time.Minute)
		unproved := export("p1") // before any checkpoint: listed, not proved
		integrate()
		earlier := export("p1")
		other := export("p2")
		clock = t0.Add(time.Hour)
		release(Ask{Citizen: "p1"})
		integrate()
		clock = t0.Add(11 * Day)
		later := export("p1")

		rep := compare(earlier, later)
		if !rep.OK() || rep.Accesses != 4 || rep.Person != "p1" {
			t.Fatalf("the node's own exports: %s\n%+v", rep.Failed(), rep.Checks)
		}
		for name, want := range map[string]string{
			"earlier export":           "2 accesses to the data of p1, exported 2026-11-02T09:10:00Z, each checked",
			"earlier accesses":         "the 2 accesses the earlier file proves in the log are in this one, at the same log entries, unchanged",
			"since the earlier export": "1 access made since; 1 access hidden from you then (deferred) and shown now",
			"log":                      "the log grew from 4 to 5 entries",
		} {
			if got := detail(rep, name); !strings.HasPrefix(got, want) {
				t.Errorf("%s: %q, want %q", name, got, want)
			}
		}
		// A file compared with itself: nothing gone, nothing new.
		if rep := compare(later, later); !rep.OK() || !strings.HasPrefix(detail(rep, "since the earlier export"), "0 accesses made since; 0 accesses hidden") {
			t.Fatalf("a file against itself: %s %+v", rep.Failed(), rep.Checks)
		}
		// Not proved then: not compared, and not taken for kept from her.
		rep = compare(unproved, later)
		if got := rep.Failed(); !strings.HasPrefix(got, "earlier export: ") || strings.Contains(got, "kept from you") {
			t.Fatalf("an earlier file without proofs: %q", got)
		}
		if got := detail(rep, "earlier accesses"); !strings.Contains(got, "; 2 it did not prove not compared") {
			t.Errorf("an earlier file without proofs: %q", got)
		}
		for _, c := range rep.Checks[1:] {
			if !c.OK && c.Name != "earlier export" {
				t.Errorf("an earlier file without proofs: %s: %s", c.Name, c.Detail)
			}
		}

		// Gone from the later file.
		gone := dropAccess(t, later, func(a ExportedAccess) bool { return a.Proof.Index == 0 })
		failsWith(t, "an access gone", compare(earlier, gone), "log entry 0 is missing from this file: the node no longer shows you this access")
		// Listed in the later file but not proved there: its own check
		// fails, and it is not said to be gone.
		var doc Export
		if err := json.Unmarshal(later, &doc); err != nil {
			t.Fatal(err)
		}
		k := slices.IndexFunc(doc.Accesses, func(a ExportedAccess) bool { return a.Proof.Index == 0 })
		doc.Accesses[k].Proof, doc.Accesses[k].Verified, doc.Accesses[k].Status = nil, false, "Recorded; waiting for the next signed checkpoint."
		notProved, _ := json.Marshal(doc)
		rep = compare(earlier, notProved)
		failsWith(t, "not proved in the later file", rep, "had not verified it when exporting")
		if got := detail(rep, "earlier accesses"); !strings.Contains(got, "the 1 access the earlier file proves in the log is in this one") || !strings.Contains(got, "; 1 listed here but not proved (see above)") {
			t.Errorf("not proved in the later file: %q", got)
		}
		for _, c := range rep.Checks {
			if strings.Contains(c.Detail, "no longer shows") {
				t.Errorf("not proved in the later file, said to be gone: %s", c.Detail)
			}
		}
		// Nothing left in the later file: no log to hold the earlier's.
		var none Export
		if err := json.Unmarshal(later, &none); err != nil {
			t.Fatal(err)
		}
		none.Accesses = []ExportedAccess{}
		emptied, _ := json.Marshal(none)
		rep = compare(earlier, emptied)
		failsWith(t, "an emptied file", rep, "this file proves no access in the log, so it cannot show that the log still holds the earlier file's (whose log had 4 entries)")
		if n := strings.Count(fmtChecks(rep), "the node no longer shows you this access"); n != 2 {
			t.Errorf("an emptied file: %d accesses said gone, want 2:\n%s", n, fmtChecks(rep))
		}
		if got := detail(compare(unproved, unproved), "log"); got != "neither file proves an access in the log" {
			t.Errorf("two files without proofs: %q", got)
		}
		// Kept from the earlier file: below an entry it holds, and by time.
		// (Said to be exported within ExportSkew of it, only the entry above
		// it in the earlier file tells.)
		failsWith(t, "kept below", compare(retime(t, dropAccess(t, earlier, func(a ExportedAccess) bool { return a.Proof.Index == 0 }), t0.Add(ExportSkew-time.Second)), later),
			"log entry 0 is not in the earlier file, though it was made before that file and not hidden from you then: it was kept from you")
		// Below the newest entry it holds, not only below its first.
		failsWith(t, "kept between", compare(retime(t, dropAccess(t, later, func(a ExportedAccess) bool { return a.Proof.Index == 1 }), t0.Add(ExportSkew-time.Second)), later),
			"log entry 1 is not in the earlier file")
		failsWith(t, "kept by time", compare(dropAccess(t, earlier, func(a ExportedAccess) bool { return a.Proof.Index == 1 }), later),
			"log entry 1 is not in the earlier file")
		// Made within ExportSkew of the earlier export (and above the
		// newest entry it holds), an access may be missing from it.
		within := retime(t, dropAccess(t, earlier, func(a ExportedAccess) bool { return a.Proof.Index == 1 }), t0.Add(ExportSkew-time.Second))
		if rep := compare(within, later); !rep.OK() {
			t.Fatalf("an access made within the skew of the earlier export: %s", rep.Failed())
		}

		// Rewound: the earlier file saw a longer log than the later one.
		failsWith(t, "rewound", compare(retime(t, later, t0), retime(t, earlier, clock)), "the log had 5 entries when the earlier file was exported, and this file's has 4: it was rewound")
		// Forked: the log's own key signs another tree in which her access
		// at entry 0 says something else.
		forged := forge(t, signer, later, 0, 5)
		if rep := compare(later, forged); rep.OK() || !strings.Contains(rep.Failed(), "the log signed two different trees of 5 entries") {
			t.Fatalf("a forked tree of the same size: %+v", rep.Checks)
		}
		failsWith(t, "rewritten", compare(earlier, forge(t, signer, later, 0, 6)),
			"this file has another entry at log entry 0, under a checkpoint signed by the same key: the log was rewritten")
		if rep, err := VerifyExport(bytes.NewReader(forged), ex.logKey); err != nil || !rep.OK() {
			t.Fatalf("the forged file verifies on its own (only comparing finds it): %v %+v", err, rep)
		}

		failsWith(t, "the wrong order", compare(later, earlier), "the earlier file was exported 2026-11-13T09:00:00Z, after this one")
		failsWith(t, "two citizens", compare(other, later), "the earlier file is of p2, this one of p1")
		if _, err := CompareExports(bytes.NewReader(earlier), bytes.NewReader(later), ""); err == nil {
			t.Error("compared without the log's key")
		}
		if _, err := CompareExports(strings.NewReader(`{"person": "p1"}`), bytes.NewReader(later), ex.logKey); !errors.Is(err, ErrBadExport) || !strings.HasPrefix(err.Error(), "the earlier file: ") {
			t.Errorf("a bad earlier file: %v", err)
		}
		if _, err := CompareExports(bytes.NewReader(earlier), strings.NewReader(`[]`), ex.logKey); !errors.Is(err, ErrBadExport) || strings.Contains(err.Error(), "earlier") {
			t.Errorf("a bad later file: %v", err)
		}
		// A file without its time of export (against which an access
		// missing from it is judged due) or its citizen is no export.
		if _, err := CompareExports(bytes.NewReader(retime(t, earlier, time.Time{})), bytes.NewReader(later), ex.logKey); !errors.Is(err, ErrBadExport) || !strings.Contains(err.Error(), "the earlier file: ") || !strings.Contains(err.Error(), "does not say when it was exported") {
			t.Errorf("an earlier file without its time: %v", err)
		}
		var nobody Export
		if err := json.Unmarshal(later, &nobody); err != nil {
			t.Fatal(err)
		}
		nobody.Person = ""
		nameless, _ := json.Marshal(nobody)
		if _, err := CompareExports(bytes.NewReader(earlier), bytes.NewReader(nameless), ex.logKey); !errors.Is(err, ErrBadExport) || !strings.Contains(err.Error(), "it names no citizen") {
			t.Errorf("a later file without its citizen: %v", err)
		}
	})
}

// fmtChecks is a report's checks, one a line.
func fmtChecks(rep *ExportReport) string {
	var b strings.Builder
	for _, c := range rep.Checks {
		b.WriteString(c.Name + ": " + c.Detail + "\n")
	}
	return b.String()
}

// dropAccess is an export file without the accesses drop picks (those
// with a proof).
func dropAccess(t *testing.T, file []byte, drop func(ExportedAccess) bool) []byte {
	t.Helper()
	var ex Export
	if err := json.Unmarshal(file, &ex); err != nil {
		t.Fatal(err)
	}
	n := len(ex.Accesses)
	ex.Accesses = slices.DeleteFunc(ex.Accesses, func(a ExportedAccess) bool { return a.Proof != nil && drop(a) })
	if n-len(ex.Accesses) > 1 {
		t.Fatalf("dropped %d accesses", n-len(ex.Accesses))
	}
	b, _ := json.Marshal(ex)
	return b
}

// retime is an export file said to be exported at another time.
func retime(t *testing.T, file []byte, at time.Time) []byte {
	t.Helper()
	var ex Export
	if err := json.Unmarshal(file, &ex); err != nil {
		t.Fatal(err)
	}
	ex.ExportedAt = at
	b, _ := json.Marshal(ex)
	return b
}

// forge is an export file as a log holding the key could make it: its
// access at log entry at says another purpose (record, commitment and
// readable copy alike), in a tree of size entries built around the file's
// entries and signed with the log's key.
func forge(t *testing.T, signer *tlog.Ed25519Signer, file []byte, at, size int64) []byte {
	t.Helper()
	var ex Export
	if err := json.Unmarshal(file, &ex); err != nil {
		t.Fatal(err)
	}
	leaves := make([][]byte, size)
	for j := range leaves {
		leaves[j] = []byte{'x', byte(j)} // entries not hers: anything
	}
	for k := range ex.Accesses {
		a := &ex.Accesses[k]
		p := a.Proof
		if p.Index == at {
			var rec Record
			if err := json.Unmarshal(p.Record, &rec); err != nil {
				t.Fatal(err)
			}
			rec.Purpose, a.Purpose = "FORGED", "FORGED"
			canon, _ := rec.canonical()
			nonce := make([]byte, 32)
			_, _ = rand.Read(nonce)
			e, err := tlog.Parse(p.Entry)
			if err != nil {
				t.Fatal(err)
			}
			e.Commitment = Commit(nonce, canon)
			p.Record, p.Nonce = canon, nonce
			if p.Entry, err = e.Marshal(); err != nil {
				t.Fatal(err)
			}
		}
		leaves[p.Index] = p.Entry
	}
	var hashes []sumtlog.Hash
	read := sumtlog.HashReaderFunc(func(idx []int64) ([]sumtlog.Hash, error) {
		out := make([]sumtlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	for j, leaf := range leaves {
		hs, err := sumtlog.StoredHashes(int64(j), leaf, read)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, hs...)
	}
	root, err := sumtlog.TreeHash(size, read)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := note.Sign(&note.Note{Text: tlog.Checkpoint{Origin: signer.Name(), Size: size, Root: root}.Body()}, signer)
	if err != nil {
		t.Fatal(err)
	}
	for k := range ex.Accesses {
		p := ex.Accesses[k].Proof
		if p.Inclusion, err = sumtlog.ProveRecord(size, p.Index, read); err != nil {
			t.Fatal(err)
		}
		p.Checkpoint = string(signed)
	}
	b, _ := json.Marshal(ex)
	return b
}

// FuzzCompareExports: CompareExports reads two files from anywhere and
// never panics.
func FuzzCompareExports(f *testing.F) {
	_, key := otherLog(f)
	f.Add([]byte(`{"person":"p","exported_at":"2026-12-05T00:00:00Z","log_key":"","accesses":[]}`), []byte(`{"person":"p","accesses":[]}`))
	f.Add([]byte(`{"person":"p","accesses":[{"agency":"a","time":"2026-12-05T00:00:00Z"}]}`), []byte(`{"person":"q","accesses":[{"proof":{"log_index":-1}}]}`))
	f.Add([]byte(`{"accesses":[{"proof":{"record":null,"log_index":9223372036854775807}}]}`), []byte(`{"accesses":[{"proof":{"log_index":0,"checkpoint":"x\n"}}]}`))
	f.Fuzz(func(t *testing.T, earlier, later []byte) {
		rep, err := CompareExports(bytes.NewReader(earlier), bytes.NewReader(later), key)
		if err == nil {
			_ = rep.OK()
			_ = rep.Failed()
		}
	})
}
