package server

import (
	"net/http"
	"time"
)

// longWrite keeps a long download going. The server's write timeout counts
// from the request's start, and a large export (the DPA's every access, a
// merchant's year of sales) can pass it while still sending. A write that
// comes `every` or more after the last extension moves the deadline to `by`
// from now, so a download that progresses is never cut, and one whose
// reader stalls still is. It is wall-clock time, as the server's timeouts
// are.
type longWrite struct {
	http.ResponseWriter
	rc        *http.ResponseController
	every, by time.Duration
	at        time.Time
}

// writeTimeoutStep is how far each extension of a download's write
// deadline reaches.
const writeTimeoutStep = time.Minute

func newLongWrite(w http.ResponseWriter) *longWrite {
	return &longWrite{ResponseWriter: w, rc: http.NewResponseController(w), every: 10 * time.Second, by: writeTimeoutStep}
}

func (l *longWrite) Write(b []byte) (int, error) {
	if now := time.Now(); now.Sub(l.at) >= l.every {
		// Not every writer supports deadlines (a test's recorder); a
		// download there has no timeout to outlive.
		_ = l.rc.SetWriteDeadline(now.Add(l.by))
		l.at = now
	}
	return l.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (l *longWrite) Unwrap() http.ResponseWriter { return l.ResponseWriter }
