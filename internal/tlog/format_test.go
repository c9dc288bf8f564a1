package tlog

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func TestTilePaths(t *testing.T) {
	cases := []struct {
		t    Tile
		path string
	}{
		{Tile{0, 0, 256}, "tile/0/000"},
		{Tile{0, 273, 256}, "tile/0/273"},
		{Tile{0, 273, 112}, "tile/0/273.p/112"},
		{Tile{1, 1000, 256}, "tile/1/x001/000"},
		{Tile{2, 1234067, 256}, "tile/2/x001/x234/067"},
		{Tile{0, 1000000, 256}, "tile/0/x001/x000/000"},
		{Tile{EntriesLevel, 273, 112}, "tile/entries/273.p/112"},
		{Tile{63, 5, 1}, "tile/63/005.p/1"},
	}
	for _, c := range cases {
		if got := c.t.Path(); got != c.path {
			t.Errorf("%+v.Path() = %q, want %q", c.t, got, c.path)
		}
		got, err := ParseTilePath(c.path)
		if err != nil || got != c.t {
			t.Errorf("ParseTilePath(%q) = %+v, %v", c.path, got, err)
		}
	}
	for _, bad := range []string{"tile/0/0", "tile/00/000", "tile/64/000", "tile/0/1000", "tile/0/001/000", "tile/0/x000/001",
		"tile/0/000.p/0", "tile/0/000.p/256", "tile/0/000.p/012", "tile/-1/000", "tile/data/000", "tile/0/", "checkpoint", "tile/0/x001",
		"tile/entries/000.p/", "tile/0/x1/000"} {
		if _, err := ParseTilePath(bad); !errors.Is(err, ErrBadRequest) {
			t.Errorf("ParseTilePath(%q) accepted", bad)
		}
	}
}

// The C2SP worked example: a tree of 70,000 entries.
func TestTilesForSize70000(t *testing.T) {
	const size = 70000
	for _, c := range []struct {
		t    Tile
		want bool
	}{
		{Tile{0, 272, 256}, true}, {Tile{0, 273, 112}, true}, {Tile{0, 273, 113}, false}, {Tile{0, 273, 256}, false},
		{Tile{1, 0, 256}, true}, {Tile{1, 1, 17}, true}, {Tile{1, 1, 18}, false},
		{Tile{2, 0, 1}, true}, {Tile{2, 0, 2}, false},
		{Tile{EntriesLevel, 273, 112}, true}, {Tile{EntriesLevel, 274, 1}, false},
		{Tile{40, 0, 1}, false},
	} {
		if got := c.t.covered(size); got != c.want {
			t.Errorf("%s covered by 70000: %v, want %v", c.t.Path(), got, c.want)
		}
	}
}

func sampleEntries() []*Entry {
	at := time.UnixMilli(1_790_000_000_123).UTC()
	h := [32]byte{1, 2, 3}
	return []*Entry{
		{Kind: KindLedgerBatch, Time: at, BatchID: [16]byte{9}, Count: 8189, Root: h},
		{Kind: KindReceipt, Time: at, Hash: h},
		{Kind: KindCredential, Time: at, Event: EventRevoked, Subject: "registry-office/zVfxAL7sz2Q", Hash: h},
		{Kind: KindDataAccess, Time: at, Commitment: h, Tag: [32]byte{7}},
		{Kind: KindOperator, Time: at, Event: EventKeyAdded, Subject: "document", KeyID: "zVfxAL7sz2Q", Hash: h},
		{Kind: KindHealth, Time: at, Event: EventOverruled, Subject: "civstack-health-rules 1.0.0", Hash: h},
		RewoundEntry(at, Checkpoint{Size: 1234, Root: h}),
	}
}

func TestEntryRoundTrip(t *testing.T) {
	for _, e := range sampleEntries() {
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", e.Kind, err)
		}
		if *got != *e {
			t.Fatalf("%s: round trip %+v != %+v", e.Kind, got, e)
		}
		if _, err := Parse(b[:len(b)-1]); !errors.Is(err, ErrBadEntry) {
			t.Errorf("%s: truncated entry accepted", e.Kind)
		}
		if _, err := Parse(append(bytes.Clone(b), 0)); !errors.Is(err, ErrBadEntry) {
			t.Errorf("%s: trailing byte accepted", e.Kind)
		}
	}
	bad := []*Entry{
		{Kind: 99},
		{Kind: KindCredential, Event: 9},
		{Kind: KindOperator, Event: EventIssued},
		{Kind: KindHealth, Event: EventIssued},
		{Kind: KindOperator, Event: EventKeyAdded, Subject: strings.Repeat("x", 256)},
		{Kind: KindOperator, Event: EventLogRewound, Subject: "012"},
		{Kind: KindOperator, Event: EventLogRewound, Subject: "0"},
		{Kind: KindOperator, Event: EventLogRewound, Subject: "-5"},
		{Kind: KindOperator, Event: EventLogRewound, Subject: "many"},
		{Kind: KindOperator, Event: EventLogRewound, Subject: "12", KeyID: "k"},
	}
	if size, root, ok := RewoundEntry(time.Now(), Checkpoint{Size: 1234, Root: [32]byte{1, 2, 3}}).Rewound(); !ok || size != 1234 || root != [32]byte{1, 2, 3} {
		t.Errorf("a rewind declaration reads back as %d %x %v", size, root, ok)
	}
	if _, _, ok := sampleEntries()[4].Rewound(); ok {
		t.Error("a key's entry reads as a rewind")
	}
	for _, e := range bad {
		if _, err := e.Marshal(); !errors.Is(err, ErrBadEntry) {
			t.Errorf("Marshal(%+v) accepted", e)
		}
	}
	if _, err := Parse(make([]byte, MaxEntrySize+1)); !errors.Is(err, ErrBadEntry) {
		t.Error("oversize entry accepted")
	}
}

func TestCheckpointText(t *testing.T) {
	c := Checkpoint{Origin: "example.com/log", Size: 70000, Root: tlog.RecordHash([]byte("x"))}
	got, err := ParseCheckpoint(c.Body())
	if err != nil || got != c {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range []string{"", "example.com/log\n1\n", "example.com/log\n01\n" + c.Root.String() + "\n",
		"example.com/log\n-1\n" + c.Root.String() + "\n", "example.com/log\n1\nAAAA\n", "example.com/log\n1\n" + c.Root.String() + "\nextra\n",
		"https://example.com/log\n1\n" + c.Root.String() + "\n", "example.com/log\n0\n" + c.Root.String() + "\n"} {
		if _, err := ParseCheckpoint(bad); err == nil {
			t.Errorf("ParseCheckpoint(%q) accepted", bad)
		}
	}
}

func FuzzParseEntry(f *testing.F) {
	for _, e := range sampleEntries() {
		b, _ := e.Marshal()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Parse(b)
		if err != nil {
			return
		}
		again, err := e.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted %x, re-encodes as %x (%v)", b, again, err)
		}
	})
}

func FuzzParseTilePath(f *testing.F) {
	for _, s := range []string{"tile/0/000", "tile/entries/x001/x234/067.p/9", "tile/63/005.p/1", "tile//", "tile/0/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tile, err := ParseTilePath(s)
		if err == nil && tile.Path() != s {
			t.Fatalf("%q parsed as %+v, which prints as %q", s, tile, tile.Path())
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add(Checkpoint{Origin: "example.com/log", Size: 3, Root: tlog.RecordHash(nil)}.Body())
	f.Add("x\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCheckpoint(s)
		if err == nil && c.Body() != s {
			t.Fatalf("%q parsed as %+v, which prints as %q", s, c, c.Body())
		}
	})
}

func FuzzSplitBundle(f *testing.F) {
	f.Add([]byte{0, 1, 'a', 0, 0})
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := SplitBundle(b)
		if err != nil {
			return
		}
		var again []byte
		for _, e := range entries {
			again = append(again, byte(len(e)>>8), byte(len(e)))
			again = append(again, e...)
		}
		if !bytes.Equal(again, b) {
			t.Fatal("bundle does not round-trip")
		}
	})
}

func FuzzOpenCheckpoint(f *testing.F) {
	f.Add([]byte("example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n\u2014 example.com/log AAAA\n"))
	f.Add([]byte("x\n\n"))
	vkey, err := note.NewEd25519VerifierKey("example.com/log", ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey))
	if err != nil {
		f.Fatal(err)
	}
	if _, err := note.NewVerifier(vkey); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := OpenCheckpoint(b, vkey)
		if err == nil {
			t.Fatalf("a checkpoint nobody signed verified: %+v", c)
		}
	})
}
