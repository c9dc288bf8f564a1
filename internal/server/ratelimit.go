package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter bounds how often one client address may start passkey ceremonies,
// so that nobody can fill the ceremony table or hammer sign-in. Addresses are
// kept in memory only, never logged, and forgotten after ten idle minutes.
type limiter struct {
	mu      sync.Mutex
	every   rate.Limit
	burst   int
	clients map[string]*client
	swept   time.Time
	// max bounds how many clients are kept. When that many were seen in
	// the last ten minutes (an attack from very many addresses), the
	// clients not yet kept share overflow, one limit for them all, so
	// that memory stays bounded and the attack is still slowed.
	max      int
	overflow *rate.Limiter
}

// limiterClients is how many clients a limiter keeps (about 200 bytes each).
const limiterClients = 100_000

type client struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(perMinute, burst int) *limiter {
	every := rate.Limit(float64(perMinute) / 60)
	return &limiter{every: every, burst: burst, clients: map[string]*client{}, max: limiterClients, overflow: rate.NewLimiter(every, burst)}
}

func (l *limiter) allow(addr string, now time.Time) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	host = clientKey(host)
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for h, c := range l.clients {
			if now.Sub(c.seen) > 10*time.Minute {
				delete(l.clients, h)
			}
		}
		l.swept = now
	}
	c, ok := l.clients[host]
	if !ok && len(l.clients) >= l.max {
		return l.overflow.AllowN(now, 1)
	}
	if !ok {
		c = &client{lim: rate.NewLimiter(l.every, l.burst)}
		l.clients[host] = c
	}
	c.seen = now
	return c.lim.AllowN(now, 1)
}

// clientKey is what the limits count one client by: an IPv4 address, or
// the /64 an IPv6 address lies in. A home line or a phone is given a whole
// /64 (RFC 7934) and may take a new address in it for every request, so
// counting IPv6 addresses one by one would limit nobody.
func clientKey(host string) string {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if a = a.Unmap().WithZone(""); a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// limited wraps a handler with the ceremony rate limit.
func (s *Server) limited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.ceremonies.allow(clientAddr(r, s.cfg.TrustedProxies), s.now()) {
			w.Header().Set("Retry-After", "60")
			writeProblem(w, http.StatusTooManyRequests, "Too many passkey requests from your address. Wait a minute and try again.")
			return
		}
		h(w, r)
	}
}

// protocolPerMinute is how many nonces one client may ask for a minute
// (twice that in a burst): a wallet asks for one per issuance.
const protocolPerMinute = 60

// protocolLimited bounds how often one client may call an anonymous
// protocol endpoint that writes (the OpenID4VCI nonce endpoint stores each
// nonce), so that nobody can fill the table. The node's own calls (its
// hosted wallet) are not counted: they come from every citizen at once.
func (s *Server) protocolLimited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !isSelfCall(r) && !s.protocol.allow(clientAddr(r, s.cfg.TrustedProxies), s.now()) {
			w.Header().Set("Retry-After", "60")
			oauthError(w, http.StatusTooManyRequests, "too_many_requests", "Too many requests from your address. Wait a minute and try again.")
			return
		}
		h(w, r)
	}
}

// clientAddr is the address a request came from: its peer, or, when the
// peer is a trusted proxy, the nearest address in X-Forwarded-For (read
// from the right, as each proxy appends) that is not a trusted proxy. A
// header a client wrote itself sits to the left of what the trusted proxies
// appended, so it is never reached unless all of those are trusted.
func clientAddr(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !isTrusted(peer, trusted) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return host // a hop no proxy would write: count the request as the proxy's
		}
		if a = a.Unmap(); !isTrusted(a, trusted) {
			return a.String()
		}
	}
	return host
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
