package server

import (
	"fmt"
	"net/netip"
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

// FuzzClientKey: any host, never a panic; an IPv4 address (mapped or not)
// is its own key, an IPv6 address the /64 that holds it, and two addresses
// share a key exactly when they share that.
func FuzzClientKey(f *testing.F) {
	for _, s := range []string{"198.51.100.7", "::ffff:198.51.100.7", "2001:db8::1", "fe80::1%eth0", "", "pipe", "::", "1.2.3.4%x"} {
		f.Add(s, "2001:db8::2")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ka, kb := clientKey(a), clientKey(b)
		pa, errA := netip.ParseAddr(a)
		pb, errB := netip.ParseAddr(b)
		if errA != nil {
			if ka != a {
				t.Fatalf("clientKey(%q) = %q: what is no address stays as it is", a, ka)
			}
			return
		}
		pa = pa.Unmap().WithZone("")
		if pa.Is4() {
			if ka != pa.String() {
				t.Fatalf("clientKey(%q) = %q, want %q", a, ka, pa)
			}
		} else if p, err := netip.ParsePrefix(ka); err != nil || p.Bits() != 64 || !p.Contains(pa) {
			t.Fatalf("clientKey(%q) = %q: not the /64 that holds it", a, ka)
		}
		if errB == nil {
			pb = pb.Unmap().WithZone("")
			same := pa.Is4() && pb.Is4() && pa == pb
			if pa.Is6() && pb.Is6() {
				p, _ := pa.Prefix(64)
				same = p.Contains(pb)
			}
			if (ka == kb) != same {
				t.Fatalf("%q and %q: keys %q and %q", a, b, ka, kb)
			}
		}
	})
}
