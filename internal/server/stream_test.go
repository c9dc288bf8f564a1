package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestLongWrite: a download that keeps sending outlives the server's write
// timeout; without the extension the same download is cut.
func TestLongWrite(t *testing.T) {
	const chunks = 30 // 30 × 50 ms: three times the write timeout
	serve := func(extend bool) (int, error) {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var out io.Writer = w
			if extend {
				out = &longWrite{ResponseWriter: w, rc: http.NewResponseController(w), every: 0, by: time.Second}
			}
			for range chunks {
				if _, err := io.WriteString(out, strings.Repeat("x", 1000)+"\n"); err != nil {
					return
				}
				http.NewResponseController(w).Flush()
				time.Sleep(50 * time.Millisecond)
			}
		}))
		srv.Config.WriteTimeout = 500 * time.Millisecond
		srv.Start()
		defer srv.Close()
		res, err := http.Get(srv.URL)
		if err != nil {
			return 0, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return strings.Count(string(b), "\n"), err
	}
	if n, err := serve(true); n != chunks || err != nil {
		t.Fatalf("with the extension: %d of %d lines, %v", n, chunks, err)
	}
	if n, _ := serve(false); n == chunks {
		t.Fatal("without the extension the download was not cut: the test shows nothing")
	}
}
