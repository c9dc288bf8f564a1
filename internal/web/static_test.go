package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"":                         false,
		"gzip":                     true,
		"gzip, deflate, br, zstd":  true,
		"br;q=1.0, GZip;q=0.5":     true,
		"x-gzip":                   true,
		"*":                        true,
		"identity":                 false,
		"gzip;q=0":                 false,
		"gzip;q=0.000":             false,
		"gzip;q=0, *":              false, // named wins over *
		"*;q=0":                    false,
		"deflate, *;q=0.1":         true,
		"gzip;q=nonsense":          false,
		"gzip;q=2":                 false,
		"gzip;level=1":             true,
		" gzip ; q=0.8 , identity": true,
		"gzipx":                    false,
	} {
		if got := acceptsGzip(header); got != want {
			t.Errorf("Accept-Encoding %q: %v, want %v", header, got, want)
		}
	}
}

// FuzzAcceptsGzip: any header, never a panic; gzip only where the header
// names it or "*".
func FuzzAcceptsGzip(f *testing.F) {
	for _, s := range []string{"", "gzip", "gzip;q=0, *", "*;q=0.5", "br;q=1;q=0", ";;,,=;q", "GZIP;Q=0.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		l := strings.ToLower(header)
		if acceptsGzip(header) && !strings.Contains(l, "gzip") && !strings.Contains(l, "*") {
			t.Fatalf("%q read as taking gzip", header)
		}
	})
}

// TestStaticGzip: scripts and styles go gzipped to a browser that takes it,
// as they are to one that does not, and both are told the answer varies.
func TestStaticGzip(t *testing.T) {
	for _, name := range []string{QRReaderFile, HTMXFile, "civstack.css", "wallet.js"} {
		want, err := StaticFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, enc := range []string{"gzip, deflate, br", ""} {
			r := httptest.NewRequest("GET", StaticURL(name), nil)
			r.Header.Set("Accept-Encoding", enc)
			w := httptest.NewRecorder()
			Static().ServeHTTP(w, r)
			body := w.Body.Bytes()
			if w.Code != 200 || w.Header().Get("Vary") != "Accept-Encoding" || !strings.Contains(w.Header().Get("Cache-Control"), "immutable") {
				t.Fatalf("%s (%q): %d, %v", name, enc, w.Code, w.Header())
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") && !strings.HasPrefix(ct, "text/css") {
				t.Fatalf("%s: Content-Type %q", name, ct)
			}
			if enc != "" {
				if w.Header().Get("Content-Encoding") != "gzip" {
					t.Fatalf("%s: not gzipped for %q", name, enc)
				}
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
				if name == QRReaderFile && w.Body.Len() > len(want)/3 {
					t.Errorf("%s: %d bytes gzipped of %d", name, w.Body.Len(), len(want))
				}
			} else if w.Header().Get("Content-Encoding") != "" {
				t.Fatalf("%s: encoded for a browser that takes none", name)
			}
			if !bytes.Equal(body, want) {
				t.Fatalf("%s (%q): the body is not the file", name, enc)
			}
		}
	}
}
