package web_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/civstack/civstack/internal/web"
)

// The vendored htmx must be the file docs/vendored.md names, byte for byte.
func TestVendoredHTMXChecksum(t *testing.T) {
	b, err := web.StaticFile(web.HTMXFile)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	doc, err := os.ReadFile("../../docs/vendored.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`sha256 ([0-9a-f]{64})`).FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/vendored.md names no sha256")
	}
	if got := hex.EncodeToString(sum[:]); got != string(m[1]) {
		t.Fatalf("htmx sha256 %s, docs/vendored.md says %s", got, m[1])
	}
}

func TestPagesRender(t *testing.T) {
	r, err := web.New()
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	if err := r.Render(w, 418, "error", web.Page{Title: "Teapot", Error: "<script>alert(1)</script>"}); err != nil {
		t.Fatal(err)
	}
	body := w.Body.String()
	if w.Code != 418 || !strings.Contains(body, "Teapot") || strings.Contains(body, "<script>alert") {
		t.Fatalf("error page: %d\n%s", w.Code, body)
	}
	if !strings.Contains(body, `name="viewport"`) || !strings.Contains(body, `lang="en"`) {
		t.Fatal("layout lacks viewport or language")
	}
	if err := r.Render(httptest.NewRecorder(), 200, "no-such-page", web.Page{}); err == nil {
		t.Fatal("rendered a page that does not exist")
	}
}
