package server

import (
	"encoding/json"
	"net"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the zones, whatever the machine has

	"github.com/civstack/civstack/internal/exchange"
)

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"display_name":"A"}`, `{`, `{"x":1}`, `{"display_name":"A"} {}`, `null`, `[]`, strings.Repeat("[", 10000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var v struct {
			DisplayName string `json:"display_name"`
		}
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		err := decodeJSON(httptest.NewRecorder(), r, &v)
		if err == nil && strings.Contains(body, `"x"`) && !strings.Contains(body, `display_name`) {
			t.Fatalf("accepted an unknown field in %q", body)
		}
	})
}

func FuzzParsePasskeyID(f *testing.F) {
	for _, s := range []string{"AAEC", "", "%%", "not*base64", strings.Repeat("A", 2000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := parsePasskeyID(s)
		if err == nil && passkeyIDText(b) != s {
			t.Fatalf("round trip %q -> %q", s, passkeyIDText(b))
		}
	})
}

func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/", "/account", "//evil.example", "/\\evil", "https://evil.example", "", "account"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := safeNext(s)
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.HasPrefix(got, "/\\") {
			t.Fatalf("safeNext(%q) = %q leaves the site", s, got)
		}
	})
}

// FuzzParseDPAFilter: any query of the DPA's access lists is a filter or
// one readable sentence, never a panic; a filter accepted is one its own
// links (query, older) give back unchanged.
func FuzzParseDPAFilter(f *testing.F) {
	for _, s := range []string{"", "agency=tax&purpose=TAX-AUDIT", "deferred=1&n=3&before=12", "deferred=yes", "n=0", "before=-1",
		"agency=%3Cscript%3E", "purpose=tax", "n=99999999999999999999", "agency=a&agency=b", "%zz",
		"from=2026-11-01&to=2026-11-30", "from=2026-03-29&to=2026-03-29", "to=2026-02-30", "from=0001-01-01", "from=2026-12-01&to=2026-11-01"} {
		f.Add(s)
	}
	rome, err := time.LoadLocation("Europe/Rome") // the days' zone
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest("GET", "/dpa/exchange/accesses", nil)
		r.URL.RawQuery = raw
		got, bad := parseDPAFilter(r, rome)
		if bad != "" {
			if strings.Contains(bad, "\n") {
				t.Fatalf("%q: a message of more than one line: %q", raw, bad)
			}
			return
		}
		if got.N < 1 || got.N > dpaMaxPage || got.Before < 0 || (got.From != "" && got.To != "" && !got.to.After(got.from)) ||
			(got.From != "" && got.from.Format(time.DateOnly) != got.From) {
			t.Fatalf("%q: accepted %+v", raw, got)
		}
		link := got.query()
		if got.Before > 0 {
			link = got.older("", "before", strconv.FormatInt(got.Before, 10))[1:]
		}
		r.URL.RawQuery = link
		again, bad := parseDPAFilter(r, rome)
		if bad != "" || again != got {
			t.Fatalf("%q: %+v, its link %q gives %+v %q", raw, got, link, again, bad)
		}
	})
}

// FuzzFormDays: a form's number of days is a whole number of days from 0
// to the limit, or refused; never one that wrapped around on the way to a
// duration.
func FuzzFormDays(f *testing.F) {
	for _, s := range []string{"0", "30", " 7 ", "1095", "1096", "-1", "soon", "", "1e3", "0x10", "+5", strconv.FormatInt(1<<48+1, 10), "99999999999999999999"} {
		f.Add(s, int64(exchange.DeferralLimit/exchange.Day))
	}
	f.Fuzz(func(t *testing.T, s string, limitDays int64) {
		limitDays = max(0, min(limitDays, int64(exchange.RetentionLimit/exchange.Day)))
		limit := time.Duration(limitDays) * exchange.Day
		d, ok := formDays(s, limit)
		if !ok {
			if d != 0 {
				t.Fatalf("%q refused with %v", s, d)
			}
			return
		}
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || n < 0 || n > limitDays || d != time.Duration(n)*exchange.Day {
			t.Fatalf("%q (limit %d days) read as %v", s, limitDays, d)
		}
	})
}

// TestCells: what could run as a formula gets an apostrophe; a plain
// negative amount stays a number.
func TestCells(t *testing.T) {
	for in, want := range map[string]string{
		"-12.50": "-12.50", "-3": "-3", "12.50": "12.50", "": "",
		"-1+1": "'-1+1", "-": "'-", "-12.": "'-12.", "-cmd|' /C calc'!A0": "'-cmd|' /C calc'!A0",
		"=HYPERLINK(1)": "'=HYPERLINK(1)", "+1": "'+1", "@SUM(1)": "'@SUM(1)", "\t1": "'\t1",
	} {
		if got := cells(in)[0]; got != want {
			t.Errorf("cells(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzExportDays: a download's days from a query never panic, and what is
// accepted is a range of whole days, forwards, of at most maxExportDays.
func FuzzExportDays(f *testing.F) {
	for _, s := range [][2]string{{"", ""}, {"2026-12-01", "2026-12-31"}, {"2026-12-31", "2026-12-01"}, {"yesterday", ""}, {"0001-01-01", "9999-12-31"}, {"2026-02-30", ""}} {
		f.Add(s[0], s[1])
	}
	rome, err := time.LoadLocation("Europe/Rome") // daylight saving time: days of 23 and 25 hours
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, from, to string) {
		for _, zone := range []*time.Location{time.UTC, rome} {
			today := time.Date(2026, 12, 6, 0, 0, 0, 0, zone)
			a, b, msg := exportDays(url.Values{"from": {from}, "to": {to}}, today)
			if msg != "" {
				continue
			}
			if !a.Before(b) || b.After(a.AddDate(0, 0, maxExportDays)) || a.Hour() != 0 || b.Hour() != 0 || a.Location() != zone {
				t.Fatalf("from=%q to=%q in %s: accepted %v to %v", from, to, zone, a, b)
			}
		}
	})
}

// FuzzStatementDays: the statement's days and the place a page goes on
// from never panic; days accepted are whole days (by default the 30 up to
// the last asked) within the limit; a place accepted lies in those days,
// wherever in the years they are.
func FuzzStatementDays(f *testing.F) {
	for _, s := range [][3]string{{"", "", ""}, {"", "2020-01-31", ""}, {"2026-11-01", "", "1796000000000000000"}, {"", "0000-01-05", "0"},
		{"1000-01-01", "1000-12-31", "-9223372036854775808"}, {"1000-01-01", "1000-12-31", "6283264147419103232"}, {"9999-01-01", "9999-12-31", "9223372036854775807"}, {"", "", "soon"}} {
		f.Add(s[0], s[1], s[2])
	}
	rome, err := time.LoadLocation("Europe/Rome")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, from, to, after string) {
		for _, zone := range []*time.Location{time.UTC, rome} {
			today := time.Date(2026, 12, 6, 0, 0, 0, 0, zone)
			a, b, msg := statementRange(url.Values{"from": {from}, "to": {to}}, today)
			if msg != "" {
				continue
			}
			if !a.Before(b) || b.After(a.AddDate(0, 0, maxExportDays)) || a.Hour() != 0 || b.Hour() != 0 || a.Location() != zone ||
				from == "" && !a.Equal(b.AddDate(0, 0, -statementDays)) {
				t.Fatalf("from=%q to=%q in %s: accepted %v to %v", from, to, zone, a, b)
			}
			m, ok := statementAfter(after, a, b)
			switch {
			case after == "" && (!ok || m != nil):
				t.Fatalf("no place to go on from read as %v, %v", m, ok)
			case ok && m != nil && (m.Time.Before(a) || !m.Time.Before(b)):
				t.Fatalf("after=%q accepted as %v, outside %v to %v", after, m.Time, a, b)
			}
		}
	})
}

// FuzzClientAddr: any X-Forwarded-For never panics; from a peer that is no
// trusted proxy the header is ignored; and what is returned is the peer or
// an address the header holds that no trusted proxy owns.
func FuzzClientAddr(f *testing.F) {
	for _, s := range []string{"", "198.51.100.7", "203.0.113.1, 198.51.100.7", "10.0.0.2, 10.0.0.3", "::ffff:198.51.100.7", "bogus, 198.51.100.7", ",,,"} {
		f.Add(s, "10.0.0.1:443")
		f.Add(s, "192.0.2.9:80")
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	f.Fuzz(func(t *testing.T, xff, peer string) {
		r := httptest.NewRequest("POST", "/auth/login/begin", nil)
		r.RemoteAddr = peer
		r.Header.Set("X-Forwarded-For", xff)
		got := clientAddr(r, trusted)
		host, _, err := net.SplitHostPort(peer)
		if err != nil {
			host = peer
		}
		if got == host {
			return
		}
		if p, err := netip.ParseAddr(host); err != nil || !isTrusted(p, trusted) {
			t.Fatalf("peer %q is no trusted proxy, yet the client is %q", peer, got)
		}
		a, err := netip.ParseAddr(got)
		inHeader := false
		for _, hop := range strings.Split(xff, ",") {
			if h, err := netip.ParseAddr(strings.TrimSpace(hop)); err == nil && h.Unmap() == a {
				inHeader = true
			}
		}
		if err != nil || isTrusted(a, trusted) || !inHeader {
			t.Fatalf("X-Forwarded-For %q from %q gave %q", xff, peer, got)
		}
	})
}

// FuzzJSONHasNUL: on any JSON text, jsonHasNUL agrees with decoding it
// (a NUL in any string, key or value, at any depth).
func FuzzJSONHasNUL(f *testing.F) {
	for _, s := range []string{`{"a":"b"}`, `{"a":"\u0000"}`, `{"a":"\\u0000"}`, `{"a":"\\\u0000"}`, `["x\\\\u0000"]`, `{"\u0000":1}`, `"u0000"`, `[]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		got := jsonHasNUL([]byte(body)) // never panics, on JSON or not
		var v any
		if json.Unmarshal([]byte(body), &v) != nil {
			return
		}
		if want := holdsNUL(v); got != want {
			t.Fatalf("jsonHasNUL(%q) = %v, decoded it holds a NUL: %v", body, got, want)
		}
	})
}

func holdsNUL(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.IndexByte(v, 0) >= 0
	case []any:
		return slices.ContainsFunc(v, holdsNUL)
	case map[string]any:
		for k, x := range v {
			if strings.IndexByte(k, 0) >= 0 || holdsNUL(x) {
				return true
			}
		}
	}
	return false
}
