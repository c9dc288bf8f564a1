// Package web owns civstack's pages: html/template files and static assets
// (CSS, the scripts, and the vendored htmx and jsQR) embedded in the binary, and
// the Renderer that turns a page name and its data into HTML. It knows nothing
// about storage or sign-in; internal/server fills the data.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

//go:embed templates static
var files embed.FS

// HTMXFile is the vendored htmx build under /static/ (see docs/vendored.md).
const HTMXFile = "htmx-2.0.11.min.js"

// QRReaderFile is the vendored jsQR build under /static/ (docs/vendored.md),
// which the camera scanner loads where the browser has no BarcodeDetector.
const QRReaderFile = "jsQR-1.4.0.js"

// Persona is a demo person the switcher offers.
type Persona struct {
	ID    string
	Name  string
	Roles string
}

// Nav is one link in the header.
type Nav struct {
	Href, Label string
	Current     bool
	Note        string // what the page is for, where a tile shows it (the menu does not)
}

// Page is what every template receives.
type Page struct {
	Title    string
	Path     string
	Signed   bool
	Name     string // the signed-in person's display name
	Nav      []Nav
	Demo     bool
	Personas []Persona
	Notice   string // a success message
	Error    string // a readable error message
	Data     any
}

// Renderer renders the embedded templates. Safe for concurrent use.
type Renderer struct {
	pages map[string]*template.Template
	zone  *time.Location
}

// Date is how pages show a time in UTC.
func Date(t time.Time) string { return DateIn(t, time.UTC) }

// DateIn is how pages show a time in a zone: "6 Dec 2026 14:05 CET".
func DateIn(t time.Time, zone *time.Location) string {
	return t.In(zone).Format("2 Jan 2006 15:04 MST")
}

// Date is how this renderer's pages show a time (in its zone), and how
// messages built for them do.
func (r *Renderer) Date(t time.Time) string { return DateIn(t, r.zone) }

// Zone is the time zone the pages show times in.
func (r *Renderer) Zone() *time.Location { return r.zone }

// zoned are the functions that show times, in zone.
func zoned(zone *time.Location) template.FuncMap {
	return template.FuncMap{
		"date": func(t time.Time) string { return DateIn(t, zone) },
		"datep": func(t *time.Time) string {
			if t == nil {
				return "never"
			}
			return DateIn(*t, zone)
		},
		"clock":  func(t time.Time) string { return t.In(zone).Format("15:04:05") },
		"clockz": func(t time.Time) string { return t.In(zone).Format("15:04:05 MST") },
		"zone":   func() string { return zone.String() },
	}
}

var funcs = template.FuncMap{
	"static": StaticURL,
	"has":    func(list []string, s string) bool { return slices.Contains(list, s) },
	"days":   func(d time.Duration) int { return int(d / (24 * time.Hour)) },
	// fieldnames lists a request's or an access's fields by their labels,
	// or by their names when it has no labels for them.
	"fieldnames": func(labels, names []string) string {
		if len(labels) == len(names) {
			return strings.Join(labels, ", ")
		}
		return strings.Join(names, ", ")
	},
	// pct shows basis points as a percentage; nil is "not enough data".
	"pct": func(bp *int64) string {
		if bp == nil {
			return "not enough data yet"
		}
		sign := ""
		if *bp > 0 {
			sign = "+"
		}
		return sign + strconv.FormatFloat(float64(*bp)/100, 'f', 2, 64) + "%"
	},
	"bp": func(bp int64) *int64 { return &bp },
	"money": func(cents int64) string {
		sign := ""
		if cents < 0 {
			sign, cents = "-", -cents
		}
		return fmt.Sprintf("%s%d.%02d", sign, cents/100, cents%100)
	},
	// dict gives a partial more than one value: dict "Key" value "Key2" value2.
	"dict": func(kv ...any) (map[string]any, error) {
		if len(kv)%2 != 0 {
			return nil, errors.New("dict: a key without a value")
		}
		m := make(map[string]any, len(kv)/2)
		for i := 0; i < len(kv); i += 2 {
			k, ok := kv[i].(string)
			if !ok {
				return nil, fmt.Errorf("dict: key %v is not a string", kv[i])
			}
			m[k] = kv[i+1]
		}
		return m, nil
	},
	"htmx":     func() string { return StaticURL(HTMXFile) },
	"qrReader": func() string { return StaticURL(QRReaderFile) },
	// method names how a payment was made.
	"method": MethodName,
	// lawlink tells a legal basis that is the web address of the law.
	"lawlink": LawLink,
}

// LawLink reports whether a legal basis is the address of the law, one an
// http or https link with a host and nothing but the address.
func LawLink(basis string) bool {
	u, err := url.Parse(basis)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.User == nil &&
		!strings.ContainsFunc(basis, unicode.IsSpace)
}

// MethodName is how people call a payment method ("qr" is a wallet scan of
// a shop's QR code).
func MethodName(m string) string {
	if n, ok := methodNames[m]; ok {
		return n
	}
	return m
}

var methodNames = map[string]string{"qr": "wallet scan (shop QR)", "sale": "wallet scan (sale QR)", "code": "payment code",
	"p2p": "person to person", "refund": "refund", "top-up": "top-up"}

// New parses every page template together with the layout and the
// partials (tables more than one page shows); its pages show times in UTC.
func New() (*Renderer, error) { return NewIn(time.UTC) }

// NewIn is New with pages that show times in zone.
func NewIn(zone *time.Location) (*Renderer, error) {
	layout, err := template.New("layout.html").Funcs(funcs).Funcs(zoned(zone)).ParseFS(files, "templates/layout.html", "templates/partials/*.html")
	if err != nil {
		return nil, fmt.Errorf("parse layout: %w", err)
	}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	r := &Renderer{pages: map[string]*template.Template{}, zone: zone}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(files, n)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", base, err)
		}
		r.pages[strings.TrimSuffix(base, ".html")] = t
	}
	return r, nil
}

// Render writes page name with status. Rendering happens into a buffer first,
// so a template error never leaves half a page.
func (r *Renderer) Render(w http.ResponseWriter, status int, name string, p Page) error {
	t, ok := r.pages[name]
	if !ok {
		return fmt.Errorf("no page %q", name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", p); err != nil {
		return fmt.Errorf("render %s: %w", name, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// Fragment writes only the "fragment" template of page name (what an htmx
// request swaps in), without the layout.
func (r *Renderer) Fragment(w http.ResponseWriter, status int, name string, p Page) error {
	t, ok := r.pages[name]
	if !ok {
		return fmt.Errorf("no page %q", name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "fragment", p); err != nil {
		return fmt.Errorf("render %s fragment: %w", name, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// asset is what the pages and Static need of one embedded file: its
// content's digest (12 hex digits) and, for scripts and styles, its bytes
// gzipped.
type asset struct {
	version string
	gz      []byte
}

// staticAssets reads the embedded assets once, by file name.
var staticAssets = sync.OnceValue(func() map[string]asset {
	out := map[string]asset{}
	entries, _ := fs.ReadDir(files, "static")
	for _, e := range entries {
		b, err := files.ReadFile("static/" + e.Name())
		if err != nil {
			continue
		}
		sum := sha256.Sum256(b)
		a := asset{version: hex.EncodeToString(sum[:6])}
		if ext := path.Ext(e.Name()); ext == ".js" || ext == ".css" {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
			zw.Write(b)
			zw.Close()
			a.gz = buf.Bytes()
		}
		out[e.Name()] = a
	}
	return out
})

// StaticURL is the address pages load an embedded asset from: its name and
// its content's digest, so that a browser that cached an older build's file
// fetches the new one as soon as the pages name it.
func StaticURL(name string) string {
	if a, ok := staticAssets()[name]; ok {
		return "/static/" + name + "?v=" + a.version
	}
	return "/static/" + name
}

// Static serves the embedded assets under /static/. An address with the
// file's current digest (StaticURL) never changes what it serves, so it is
// cached for a year; any other is checked again on each use. Scripts and
// styles go gzipped to a browser that accepts it (jsQR: 257 kB, 57 kB so).
func Static() http.Handler {
	sub, _ := fs.Sub(files, "static")
	fsrv := http.FileServerFS(sub)
	return http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, known := staticAssets()[r.URL.Path]
		if v := r.URL.Query().Get("v"); known && v == a.version {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		if a.gz == nil {
			fsrv.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Accept-Encoding")
		if !acceptsGzip(r.Header.Get("Accept-Encoding")) {
			fsrv.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Type", mime.TypeByExtension(path.Ext(r.URL.Path)))
		http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(a.gz))
	}))
}

// acceptsGzip reports whether an Accept-Encoding header (RFC 9110, 12.5.3)
// takes gzip: named with a q above 0, or not named and "*" is.
func acceptsGzip(header string) bool {
	named, star := -1.0, -1.0
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		q := 1.0
		for p := range strings.SplitSeq(params, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f >= 0 && f <= 1 {
					q = f
				} else {
					q = 0 // a weight that is none is no consent
				}
			}
		}
		switch strings.ToLower(strings.TrimSpace(coding)) {
		case "gzip", "x-gzip":
			named = max(named, q)
		case "*":
			star = max(star, q)
		}
	}
	if named >= 0 {
		return named > 0
	}
	return star > 0
}

// StaticFile returns one embedded asset, for tests and checksums.
func StaticFile(name string) ([]byte, error) { return files.ReadFile("static/" + name) }
