package web_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/civstack/civstack/internal/web"
)

// Each vendored file must be the one docs/vendored.md names, byte for
// byte, and the files the pages load must be among them.
func TestVendoredChecksums(t *testing.T) {
	doc, err := os.ReadFile("../../docs/vendored.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `internal/web/static/([^`]+)` \\|.*sha256 ([0-9a-f]{64}) \\|$").FindAllSubmatch(doc, -1)
	named := map[string]bool{}
	for _, m := range rows {
		name := string(m[1])
		named[name] = true
		b, err := web.StaticFile(name)
		if err != nil {
			t.Fatalf("docs/vendored.md names %s: %v", name, err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != string(m[2]) {
			t.Errorf("%s: sha256 %s, docs/vendored.md says %s", name, got, m[2])
		}
	}
	for _, f := range []string{web.HTMXFile, web.QRReaderFile} {
		if !named[f] {
			t.Errorf("docs/vendored.md has no checksum for %s", f)
		}
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

// TestStaticVersions: pages name assets with their content's digest; that
// address is cached for good, any other is checked again.
func TestStaticVersions(t *testing.T) {
	b, err := web.StaticFile("live.js")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	u := web.StaticURL("live.js")
	if want := "/static/live.js?v=" + hex.EncodeToString(sum[:6]); u != want {
		t.Fatalf("StaticURL = %q, want %q", u, want)
	}
	h := web.Static()
	for path, want := range map[string]string{
		u:                          "public, max-age=31536000, immutable",
		"/static/live.js":          "no-cache",
		"/static/live.js?v=0ld0ld": "no-cache",
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != 200 || w.Header().Get("Cache-Control") != want || w.Body.String() != string(b) {
			t.Errorf("%s: %d, Cache-Control %q, want %q", path, w.Code, w.Header().Get("Cache-Control"), want)
		}
	}
	r, err := web.New()
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	if err := r.Render(w, 200, "error", web.Page{Title: "x"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(w.Body.String(), web.StaticURL("civstack.css")) || !strings.Contains(w.Body.String(), web.StaticURL(web.HTMXFile)) {
		t.Fatal("the layout does not load its assets by their versioned addresses")
	}
}

// TestZone: pages show times in the renderer's zone, with its abbreviation.
func TestZone(t *testing.T) {
	rome, err := time.LoadLocation("Europe/Rome")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 6, 14, 5, 0, 0, time.UTC)
	summer := time.Date(2026, 7, 1, 14, 5, 0, 0, time.UTC)
	r, err := web.NewIn(rome)
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		r.Date(at): "6 Dec 2026 15:05 CET", r.Date(summer): "1 Jul 2026 16:05 CEST",
		web.Date(at): "6 Dec 2026 14:05 UTC", web.DateIn(at, rome): "6 Dec 2026 15:05 CET",
	} {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
	if r.Zone() != rome {
		t.Fatal("the renderer's zone")
	}
}

func TestLawLink(t *testing.T) {
	for basis, want := range map[string]bool{
		"https://eur-lex.europa.eu/eli/reg/2016/679/oj":       true,
		"http://www.gesetze-im-internet.de/ao_1977/__93.html": true,
		"Tax Code §93":                 false,
		"javascript:alert(1)":          false,
		"https://":                     false,
		"https:///path":                false,
		"//eur-lex.europa.eu/x":        false,
		"https://user:pw@example.org/": false,
		"https://example.org/a b":      false,
		"see https://example.org/":     false,
		"ftp://example.org/law":        false,
		"":                             false,
	} {
		if got := web.LawLink(basis); got != want {
			t.Errorf("LawLink(%q) = %v, want %v", basis, got, want)
		}
	}
}
