package server

import (
	"net"
	"net/http"
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
}

type client struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(perMinute, burst int) *limiter {
	return &limiter{every: rate.Limit(float64(perMinute) / 60), burst: burst, clients: map[string]*client{}}
}

func (l *limiter) allow(addr string, now time.Time) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
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
	if !ok {
		c = &client{lim: rate.NewLimiter(l.every, l.burst)}
		l.clients[host] = c
	}
	c.seen = now
	return c.lim.AllowN(now, 1)
}

// limited wraps a handler with the ceremony rate limit.
func (s *Server) limited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.ceremonies.allow(r.RemoteAddr, s.now()) {
			w.Header().Set("Retry-After", "60")
			writeProblem(w, http.StatusTooManyRequests, "Too many passkey requests from your address. Wait a minute and try again.")
			return
		}
		h(w, r)
	}
}
