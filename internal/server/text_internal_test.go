package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
)

// TestAPIBodiesSlowHandler: once apiText has read a body, a handler that
// runs past its operation's body deadline keeps its context (the deadline
// would have fallen on the server's watch for the client going away), and
// a body with \u0000 is refused before the handler.
func TestAPIBodiesSlowHandler(t *testing.T) {
	mux := http.NewServeMux()
	api := humago.New(mux, huma.DefaultConfig("test", "1"))
	apiBodies(api)
	type in struct{ Body struct{ Name string } }
	type out struct{ Body struct{ Context string } }
	huma.Register(api, huma.Operation{OperationID: "slow", Method: http.MethodPost, Path: "/slow", BodyReadTimeout: 100 * time.Millisecond},
		func(ctx context.Context, i *in) (*out, error) {
			time.Sleep(400 * time.Millisecond)
			o := &out{}
			o.Body.Context = "live"
			if ctx.Err() != nil {
				o.Body.Context = ctx.Err().Error()
			}
			return o, nil
		})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, c := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"Name":"Amira"}`, http.StatusOK, `"Context":"live"`},
		{`{"Name":"Ami\u0000ra"}`, http.StatusBadRequest, "not text"},
	} {
		res, err := http.Post(srv.URL+"/slow", "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		_, _ = io.Copy(&b, res.Body)
		res.Body.Close()
		if res.StatusCode != c.status || !strings.Contains(b.String(), c.want) {
			t.Fatalf("%s: %d %s, want %d and %q", c.body, res.StatusCode, b.String(), c.status, c.want)
		}
	}
}
