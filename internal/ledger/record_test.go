package ledger

import (
	"bytes"
	"testing"
	"time"

	xtlog "golang.org/x/mod/sumdb/tlog"
)

func sampleRecord() *record {
	r := &record{Transfer: Transfer{ID: ID{1}, Debit: ID{2}, Credit: ID{3}, Amount: 12_50, Ledger: LedgerCash, Code: CodePayment,
		Flags: PostPending | Linked, PendingID: ID{4}, Timeout: 0, Reference: "dumplings"},
		result: ExceedsCredits, batch: 77, debitPrev: ID{5}, debitAfter: -3, creditAfter: 1 << 40}
	return r
}

func TestBodyRoundTrip(t *testing.T) {
	for _, r := range []*record{sampleRecord(), {Transfer: Transfer{ID: ID{9}, Flags: Pending, Timeout: 90 * time.Second, Amount: 1}}} {
		body := r.marshalBody(nil)
		got, err := decodeRow(r.ID[:], 123, 0, 0, body)
		if err != nil {
			t.Fatal(err)
		}
		got.Timestamp, got.state, got.expiresAt = r.Timestamp, r.state, r.expiresAt
		if *got != *r {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
		}
		for cut := 0; cut < len(body)-len(r.Reference); cut++ {
			if _, err := decodeRow(r.ID[:], 1, 0, 0, body[:cut]); err == nil {
				t.Fatalf("a body cut to %d bytes decoded", cut)
			}
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	a := Account{DebitsPending: 1, DebitsPosted: 2, CreditsPending: 3, CreditsPosted: 1 << 50, last: 99, lastID: ID{7}, transfers: 5, day: 20000, dayDebits: 6}
	var b Account
	if err := b.unmarshalState(a.marshalState(nil)); err != nil || b != a {
		t.Fatalf("round trip: %+v %v", b, err)
	}
	if len(a.marshalState(nil)) != stateSize || len((&Account{}).marshalState(nil)) != stateSize {
		t.Fatal("the state is not of fixed size")
	}
}

// merkleRoot must be x/mod's tree hash, which receipts' proofs are checked against.
func TestMerkleRoot(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 8, 255, 256, 1000} {
		leaves := make([]xtlog.Hash, n)
		raw := make([]byte, 0, 32*n)
		for i := range leaves {
			leaves[i] = xtlog.RecordHash([]byte{byte(i), byte(i >> 8)})
			raw = append(raw, leaves[i][:]...)
		}
		r, size, err := batchTree(raw)
		if err != nil {
			t.Fatal(err)
		}
		want, err := xtlog.TreeHash(size, r)
		if err != nil {
			t.Fatal(err)
		}
		if got := merkleRoot(leaves); got != want {
			t.Fatalf("%d leaves: root %s, x/mod says %s", n, got, want)
		}
	}
}

// FuzzBody: decoding stored bodies never panics, and what decodes encodes
// back to the same bytes.
func FuzzBody(f *testing.F) {
	f.Add(sampleRecord().marshalBody(nil))
	f.Add((&record{Transfer: Transfer{Flags: VoidPending}}).marshalBody(nil))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r record
		if r.unmarshalBody(b) != nil {
			return
		}
		if again := r.marshalBody(nil); !bytes.Equal(again, b) {
			// Varints have more than one encoding; the decoded record must
			// still survive a second round trip.
			var r2 record
			if err := r2.unmarshalBody(again); err != nil || r2 != r {
				t.Fatalf("re-encoding changed the record: %+v %+v %v", r, r2, err)
			}
		}
	})
}

// FuzzState: decoding account states never panics and round-trips.
func FuzzState(f *testing.F) {
	f.Add((&Account{last: 1, lastID: ID{1}, CreditsPosted: 5}).marshalState(nil))
	f.Add(make([]byte, stateSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		var a Account
		if a.unmarshalState(b) != nil {
			return
		}
		if !bytes.Equal(a.marshalState(nil), b) {
			t.Fatalf("state %x decoded to %+v, which encodes differently", b, a)
		}
	})
}
