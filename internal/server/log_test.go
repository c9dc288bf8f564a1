package server_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	xtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/tlog"
)

func appendReceipts(t *testing.T, n *node, count int) {
	t.Helper()
	for i := 0; i < count; i++ {
		e := &tlog.Entry{Kind: tlog.KindReceipt, Time: time.Now()}
		copy(e.Hash[:], fmt.Sprint("receipt ", i))
		b, _ := e.Marshal()
		if _, err := n.tlog.Append(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	integrate(t, n)
}

// The log over HTTP, read the way a C2SP client reads it.
func TestLogHTTP(t *testing.T) {
	n := startNode(t, nodeOptions{})
	c := newClient(t, n.URL)
	expectProblem(t, "no checkpoint yet", c.get("/log/checkpoint"), 404, "")
	vkeyHTML := strings.ReplaceAll(n.vkey, "+", "&#43;")
	expect(t, "log page before the first checkpoint", c.get("/log"), 200, "no signed checkpoint yet", vkeyHTML)

	appendReceipts(t, n, 300)
	r := c.get("/log/checkpoint")
	expect(t, "checkpoint", r, 200)
	if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Fatalf("checkpoint content type %q", ct)
	}
	if r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatal("the log is not readable from other sites' pages")
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-cache" {
		t.Fatalf("checkpoint cache control %q", cc)
	}
	v, _ := note.NewVerifier(n.vkey)
	nt, err := note.Open([]byte(r.body), note.VerifierList(v))
	if err != nil {
		t.Fatalf("x/mod rejects the served checkpoint: %v", err)
	}
	cp, err := tlog.ParseCheckpoint(nt.Text)
	if err != nil || cp.Size != 300 {
		t.Fatalf("checkpoint %+v %v", cp, err)
	}

	full := c.get("/log/tile/0/000")
	expect(t, "full tile", full, 200)
	if len(full.body) != 8192 || !strings.Contains(full.header.Get("Cache-Control"), "immutable") || full.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("full tile: %d bytes, %q, %q", len(full.body), full.header.Get("Cache-Control"), full.header.Get("Content-Type"))
	}
	expect(t, "partial tile", c.get("/log/tile/0/001.p/44"), 200)
	expect(t, "level-1 partial", c.get("/log/tile/1/000.p/1"), 200)
	expect(t, "bundle", c.get("/log/tile/entries/001.p/44"), 200)
	// Bundles are gzipped for clients that accept it (Go's client unzips).
	res, err := http.Get(n.URL + "/log/tile/entries/001.p/44")
	if err != nil {
		t.Fatal(err)
	}
	zipped, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !res.Uncompressed || string(zipped) != c.get("/log/tile/entries/001.p/44").body {
		t.Fatalf("gzipped bundle: uncompressed=%v, %d bytes", res.Uncompressed, len(zipped))
	}
	expectProblem(t, "tile past the tree", c.get("/log/tile/0/001.p/45"), 404, "beyond tree size")
	expectProblem(t, "full tile not yet full", c.get("/log/tile/0/001"), 404, "beyond")
	expectProblem(t, "malformed tile path", c.get("/log/tile/0/1"), 400, "three digits")
	expectProblem(t, "level too high", c.get("/log/tile/64/000"), 400, "level")
	expectProblem(t, "partial width 0", c.get("/log/tile/0/000.p/0"), 400, "width")

	// Inclusion and consistency proofs check with x/mod.
	r = c.get("/log/proof/inclusion?index=123")
	expect(t, "inclusion", r, 200)
	var inc struct {
		Index, Size int64
		Leaf        string `json:"leaf_hash"`
		Proof       []string
	}
	r.json(t, &inc)
	var leaf xtlog.Hash
	b, _ := base64.StdEncoding.DecodeString(inc.Leaf)
	copy(leaf[:], b)
	if err := xtlog.CheckRecord(decodeProof(t, inc.Proof), cp.Size, cp.Root, 123, leaf); err != nil {
		t.Fatalf("inclusion proof: %v", err)
	}
	bundle := c.get("/log/tile/entries/000")
	entries, err := tlog.SplitBundle([]byte(bundle.body))
	if err != nil || xtlog.RecordHash(entries[123]) != leaf {
		t.Fatalf("leaf hash does not match the entry: %v", err)
	}
	expectProblem(t, "inclusion past the tree", c.get("/log/proof/inclusion?index=300"), 400, "")
	expectProblem(t, "inclusion without an index", c.get("/log/proof/inclusion"), 400, "index parameter is required")
	expectProblem(t, "inclusion with a bad index", c.get("/log/proof/inclusion?index=-3"), 400, "non-negative")

	old := cp
	appendReceipts(t, n, 20)
	r = c.get("/log/proof/consistency?old=300")
	expect(t, "consistency", r, 200)
	var cons struct {
		Old, New int64
		Proof    []string
	}
	r.json(t, &cons)
	_, newCP, _ := n.tlog.Latest(context.Background())
	tp := xtlog.TreeProof(decodeProof(t, cons.Proof))
	if err := xtlog.CheckTree(tp, newCP.Size, newCP.Root, old.Size, old.Root); err != nil {
		t.Fatalf("consistency proof: %v", err)
	}
	expectProblem(t, "consistency backwards", c.get("/log/proof/consistency?old=400"), 400, "")

	page := c.get("/log")
	expect(t, "log page", page, 200, "320</strong> entries", ">payment document</a></td><td>320</td>", "<td>payment document</td>", "civstack log verify", vkeyHTML)
	expect(t, "log page by type", c.get("/log?kind=2"), 200, "Recent entries: payment document", `aria-current="true">payment document</a>`)
	expect(t, "log page, empty type", c.get("/log?kind=4"), 200, "No entries yet")
	expect(t, "log page, unknown type", c.get("/log?kind=99"), 400, "no entry type")
	expect(t, "log page, a type past a byte", c.get("/log?kind=258"), 400, "no entry type")
	expect(t, "log page, a negative type", c.get("/log?kind=-254"), 400, "no entry type")

	// A declared rewind is named among the recent entries.
	if _, err := n.tlog.DeclareRewind(context.Background(), tlog.Checkpoint{Origin: n.tlog.Origin(), Size: 5000, Root: [32]byte{9}}); err != nil {
		t.Fatal(err)
	}
	integrate(t, n)
	expect(t, "log page with a rewind", c.get("/log"), 200, "operator event: log rewound (it replaces a history of 5000 entries)")
}

func decodeProof(t *testing.T, in []string) xtlog.RecordProof {
	var out xtlog.RecordProof
	for _, s := range in {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != 32 {
			t.Fatalf("proof hash %q", s)
		}
		var h xtlog.Hash
		copy(h[:], b)
		out = append(out, h)
	}
	return out
}
