package server_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// client is a cookie-keeping HTTP client that does not follow redirects, so
// tests see them. It sends Secure cookies over http://localhost, as browsers do.
type client struct {
	t       testing.TB
	base    string
	cookies map[string]*http.Cookie
	header  http.Header
	auth    *softAuthenticator
}

func newClient(t testing.TB, base string) *client {
	u, _ := url.Parse(base)
	return &client{t: t, base: base, cookies: map[string]*http.Cookie{}, header: http.Header{},
		auth: &softAuthenticator{rpID: u.Hostname(), origin: base}}
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r *response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

func (c *client) do(method, path string, body io.Reader, contentType string) *response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for _, ck := range c.cookies {
		req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, ck := range res.Cookies() {
		if ck.MaxAge < 0 {
			delete(c.cookies, ck.Name)
		} else {
			c.cookies[ck.Name] = ck
		}
	}
	return &response{status: res.StatusCode, header: res.Header, body: string(b)}
}

func (c *client) get(path string) *response { return c.do(http.MethodGet, path, nil, "") }

func (c *client) postJSON(path string, v any) *response { return c.sendJSON(http.MethodPost, path, v) }

func (c *client) putJSON(path string, v any) *response { return c.sendJSON(http.MethodPut, path, v) }

func (c *client) sendJSON(method, path string, v any) *response {
	var body []byte
	switch v := v.(type) {
	case string:
		body = []byte(v)
	case []byte:
		body = v
	default:
		body, _ = json.Marshal(v)
	}
	return c.do(method, path, bytes.NewReader(body), "application/json")
}

func (c *client) postForm(path string, form url.Values) *response {
	return c.do(http.MethodPost, path, strings.NewReader(form.Encode()), "application/x-www-form-urlencoded")
}

type beginOut struct {
	Ceremony string          `json:"ceremony"`
	Options  json.RawMessage `json:"options"`
}

// register creates an account with a new soft passkey and signs in.
func (c *client) register(name string) {
	c.t.Helper()
	r := c.postJSON("/auth/register/begin", map[string]string{"display_name": name})
	if r.status != 200 {
		c.t.Fatalf("register begin: %d %s", r.status, r.body)
	}
	var b beginOut
	r.json(c.t, &b)
	cred, err := c.auth.create(b.Options)
	if err != nil {
		c.t.Fatal(err)
	}
	r = c.postJSON("/auth/register/finish?ceremony="+url.QueryEscape(b.Ceremony), cred)
	if r.status != 200 {
		c.t.Fatalf("register finish: %d %s", r.status, r.body)
	}
}

// signin signs in with the client's newest passkey and returns the finish response.
func (c *client) signin() *response {
	c.t.Helper()
	r := c.postJSON("/auth/login/begin", map[string]string{})
	if r.status != 200 {
		c.t.Fatalf("login begin: %d %s", r.status, r.body)
	}
	var b beginOut
	r.json(c.t, &b)
	cred, err := c.auth.get(b.Options)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.postJSON("/auth/login/finish?ceremony="+url.QueryEscape(b.Ceremony), cred)
}

// csvBody reads a CSV download: it must start with UTF-8's byte order mark
// (for spreadsheets), which the reader is given without.
func csvBody(t testing.TB, body string) *csv.Reader {
	t.Helper()
	rest, ok := strings.CutPrefix(body, "\ufeff")
	if !ok {
		t.Fatalf("a CSV file without a byte order mark: %.40q", body)
	}
	return csv.NewReader(strings.NewReader(rest))
}
