package server

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
)

// What civstack takes as text from outside is UTF-8 without NUL bytes:
// what both engines store as text alike. PostgreSQL refuses the rest
// (SQLSTATE 22021) where SQLite would keep it, so a NUL in a form, a
// query or a JSON body is refused at the door, on either engine, with
// one answer, instead of failing deep inside a transaction on one.
var (
	errNotText = errors.New("the request holds a character that is not text (a NUL byte, or bytes that are not UTF-8)")
	notText    = sentence(errNotText)
)

// isText reports whether s is UTF-8 without NUL bytes.
func isText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// valuesText reports whether every key and value of v is text.
func valuesText(v url.Values) bool {
	for k, vs := range v {
		if !isText(k) {
			return false
		}
		for _, s := range vs {
			if !isText(s) {
				return false
			}
		}
	}
	return true
}

// jsonHasNUL reports whether the JSON text b holds the escape \u0000,
// a NUL once decoded (a raw NUL, or any control byte, is not JSON at all,
// and bytes that are not UTF-8 decode as U+FFFD). An escaped backslash
// before "u0000" is text: only an odd run of backslashes escapes.
func jsonHasNUL(b []byte) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(`u0000`))
		if j < 0 {
			return false
		}
		j += i
		n := 0
		for k := j - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 1 {
			return true
		}
		i = j + 1
	}
}

// textOnly refuses, before any handler, a request whose path or query
// holds what is not text. Bodies are checked where they are read, within
// each endpoint's size limit and after its authentication: forms by
// parseForm and the OpenID4VC endpoints, JSON by decodeJSON, the
// credential endpoint and the API's apiText.
func (s *Server) textOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isText(r.URL.Path) || !valuesText(r.URL.Query()) {
			s.fail(w, r, http.StatusBadRequest, notText)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// apiText refuses an API request whose JSON body holds \u0000. It runs
// after apiAuth, and reads no more than the operation takes (huma then
// reads the same bytes again and enforces the limit).
func apiText(api huma.API) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		r, _ := humago.Unwrap(ctx)
		if r.Body == nil || r.Body == http.NoBody {
			next(ctx)
			return
		}
		limit := ctx.Operation().MaxBodyBytes
		if limit <= 0 {
			limit = 1 << 20 // huma's default
		}
		head, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
		if err != nil {
			huma.WriteErr(api, ctx, http.StatusBadRequest, "The request's body could not be read.")
			return
		}
		if jsonHasNUL(head) {
			huma.WriteErr(api, ctx, http.StatusBadRequest, notText)
			return
		}
		r.Body = readCloser{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
		next(ctx)
	}
}

// apiBodies checks the bodies of api's operations for text (apiText, after
// the middlewares already in use). apiText reads a body before huma does,
// and Go's server clears the connection's read deadline once a body is
// read, to watch for the client going away while the handler runs; huma
// would then set its body deadline (5 s by default) on that watch, and
// cancel the context of any handler slower than that. So its operations
// set none: a body's time is the server's ReadTimeout.
func apiBodies(api huma.API) {
	api.UseMiddleware(apiText(api))
	api.OpenAPI().OnAddOperation = append(api.OpenAPI().OnAddOperation, func(_ *huma.OpenAPI, op *huma.Operation) {
		op.BodyReadTimeout = -1
	})
}

// readJSONText reads a JSON body of at most limit bytes and refuses one
// that holds \u0000 (errNotText) or is longer (an *http.MaxBytesError).
func readJSONText(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return nil, err
	}
	if jsonHasNUL(b) {
		return nil, errNotText
	}
	return b, nil
}

// readCloser reads from one reader and closes another (the original body).
type readCloser struct {
	io.Reader
	io.Closer
}
