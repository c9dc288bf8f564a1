package server

import (
	"fmt"
	"testing"
	"time"
)

// TestClientKey: IPv4 clients by address (mapped or not), IPv6 clients by
// their /64, zones dropped; what is no address stays as it is.
func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.7":              "198.51.100.7",
		"::ffff:198.51.100.7":       "198.51.100.7",
		"2001:db8:1:2:3:4:5:6":      "2001:db8:1:2::/64",
		"2001:db8:1:2::ffff":        "2001:db8:1:2::/64",
		"fe80::1%eth0":              "fe80::/64",
		"pipe":                      "pipe",
		"2001:db8:1:3:ffff:ffff::1": "2001:db8:1:3::/64",
	} {
		if got := clientKey(in); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLimiterBounded: a limiter keeps at most max clients; the ones past
// that share one limit (so an attack from very many addresses is still
// slowed and memory stays bounded), the ones kept keep theirs, and a
// client idle for ten minutes makes room again.
func TestLimiterBounded(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	l := newLimiter(1, 2) // one a minute, bursts of two
	l.max = 3
	for i := range 3 {
		if !l.allow(fmt.Sprintf("198.51.100.%d:1", i), now) {
			t.Fatalf("client %d refused at once", i)
		}
	}
	allowed := 0
	for i := range 50 { // fifty new addresses: the overflow's burst of two passes
		if l.allow(fmt.Sprintf("203.0.113.%d:1", i), now) {
			allowed++
		}
	}
	if allowed != 2 || len(l.clients) != 3 {
		t.Fatalf("%d of 50 new clients allowed with %d kept; want 2 with 3", allowed, len(l.clients))
	}
	if second, third := l.allow("198.51.100.0:1", now), l.allow("198.51.100.0:1", now); !second || third {
		t.Fatal("a kept client lost its own burst of two")
	}
	later := now.Add(11 * time.Minute)
	first, second := l.allow("203.0.113.77:1", later), l.allow("203.0.113.77:1", later)
	if !first || !second || len(l.clients) != 1 {
		t.Fatalf("after ten idle minutes a new client has no room: %d kept", len(l.clients))
	}
}
