package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
)

// selfTransport carries the node's own outgoing protocol calls (the
// hosted wallet talking OpenID4VCI to issuers and OpenID4VP to verifiers,
// verifiers fetching status lists) to its own handler in process: the same
// HTTP messages, without a network round trip, and never to another host.
type selfTransport struct {
	origin  string
	handler atomic.Pointer[http.Handler]
}

func (t *selfTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme+"://"+req.URL.Host != t.origin {
		return nil, fmt.Errorf("this node only calls itself (%s), not %s", t.origin, req.URL.Host)
	}
	h := t.handler.Load()
	if h == nil {
		return nil, fmt.Errorf("the node is not serving yet")
	}
	in := req.Clone(context.WithValue(req.Context(), selfCall{}, true))
	in.Host, in.RemoteAddr, in.RequestURI = req.URL.Host, "127.0.0.1:0", req.URL.RequestURI()
	if in.Body == nil {
		in.Body = http.NoBody
	}
	w := &bufferedResponse{header: http.Header{}}
	(*h).ServeHTTP(w, in)
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return &http.Response{Status: fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)), StatusCode: w.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: w.header, Body: io.NopCloser(&w.body),
		ContentLength: int64(w.body.Len()), Request: req}, nil
}

// selfCall marks, in a request's context, a call the node made to itself
// (which no client can send): per-client limits do not count those.
type selfCall struct{}

func isSelfCall(r *http.Request) bool { v, _ := r.Context().Value(selfCall{}).(bool); return v }

type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *bufferedResponse) Header() http.Header { return w.header }
func (w *bufferedResponse) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *bufferedResponse) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}
