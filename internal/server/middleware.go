package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/store"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "civstack_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "civstack_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe logs and counts every request by its route pattern. Paths, query
// strings, addresses and headers are never logged or used as labels: they can
// carry personal data.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r) // r is passed on unchanged so the mux's Pattern is visible here
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		d := time.Since(start)
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		s.metrics.duration.WithLabelValues(route).Observe(d.Seconds())
		if route == "GET /healthz" || route == "GET /readyz" || route == "GET /metrics" {
			return
		}
		s.log.Info("request", "route", route, "status", sw.status, "ms", d.Milliseconds())
	})
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("panic in handler", "route", r.Pattern, "panic", p)
				s.fail(w, r, http.StatusInternalServerError, "Something went wrong on our side.")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"

// imageCSP is the policy of an image opened on its own (posQRImage's PNG):
// the browser's viewer may style itself; nothing else loads or runs, and
// no other site may frame it.
const imageCSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"

func (s *Server) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", csp)
		// No page may ask for the location or the microphone, or put its
		// visitor in an advertising topic (the Topics API, which replaced
		// FLoC's interest-cohort); the camera stays for scanning codes.
		h.Set("Permissions-Policy", "geolocation=(), microphone=(), browsing-topics=()")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		// Behind a TLS-terminating proxy (the usual deployment) the request
		// itself is plain HTTP, but the public URL says https: browsers
		// should come back over https only. Over plain HTTP they ignore it.
		if r.TLS != nil || s.cfg.PublicURL != nil && s.cfg.PublicURL.Scheme == "https" {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// formAnswers keeps a boosted form's answer out of the browser's history.
// The answer is a page for that moment at the address of the form's action,
// which serves no GET; pushed into the history, a reload or a bookmark would
// open that address (405). Told not to push it, htmx leaves the address of
// the page the form was on, which a reload opens again. An answer that
// redirects is unaffected: its new page has an address of its own.
func formAnswers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Header.Get("HX-Request") == "true" {
			w.Header().Set("HX-Push-Url", "false")
		}
		next.ServeHTTP(w, r)
	})
}

// canonicalHost sends people who opened the node by a loopback IP address
// (http://127.0.0.1:8080) to its public URL (http://localhost:8080): browsers
// refuse passkeys on IP addresses. Machine and operational paths are left
// alone.
func (s *Server) canonicalHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.Host != s.cfg.PublicURL.Host && !machinePath(r.URL.Path) {
			host := r.Host
			if h, _, err := net.SplitHostPort(r.Host); err == nil {
				host = h
			}
			if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
				http.Redirect(w, r, s.cfg.PublicURL.String()+r.URL.RequestURI(), http.StatusTemporaryRedirect)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func machinePath(p string) bool {
	switch p {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/log/")
}

// counter is one of a domain's counters, read from its Stats at scrape
// time; labels, if any, are fixed words, never whose or whom.
type counter[S any] struct {
	name, help string
	labels     prometheus.Labels
	get        func(S) int64
}

// registerCounters exports counters read through stats.
func registerCounters[S any](reg prometheus.Registerer, stats func() S, cs []counter[S]) error {
	for _, c := range cs {
		get := c.get
		if err := reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help, ConstLabels: c.labels},
			func() float64 { return float64(get(stats())) })); err != nil {
			return err
		}
	}
	return nil
}

// registerLedgerMetrics exports the ledger engine's counters (no labels: they
// say how much was written, never by whom).
func registerLedgerMetrics(reg prometheus.Registerer, eng *ledger.Engine) error {
	return registerCounters(reg, eng.Stats, []counter[ledger.Stats]{
		{"civstack_ledger_transactions_total", "Ledger groups written, one transaction and disk sync each.", nil, func(s ledger.Stats) int64 { return s.Groups }},
		{"civstack_ledger_requests_total", "Ledger requests those transactions carried.", nil, func(s ledger.Stats) int64 { return s.Requests }},
		{"civstack_ledger_transfers_applied_total", "Transfers applied.", nil, func(s ledger.Stats) int64 { return s.Applied }},
		{"civstack_ledger_transfers_refused_total", "Transfers refused and remembered (a retry gets the same result).", nil, func(s ledger.Stats) int64 { return s.Refused }},
		{"civstack_ledger_redone_total", "Groups run again because a transfer id assumed new was taken.", nil, func(s ledger.Stats) int64 { return s.Redone }},
	})
}

// registerExchangeMetrics exports what the data exchange decided: how
// many, with no agency, citizen or purpose in a label (the DPA's page is
// where accesses are read by agency and purpose).
func registerExchangeMetrics(reg prometheus.Registerer, ex *exchange.Exchange) error {
	const consents = "civstack_exchange_consent_answers_total"
	consentHelp := "Citizens' answers to requests that needed their consent."
	return registerCounters(reg, ex.Stats, []counter[exchange.Stats]{
		{"civstack_exchange_releases_total", "Releases committed, each with its access record and log entry (direct, or collected after consent).", nil, func(s exchange.Stats) int64 { return s.Released }},
		{"civstack_exchange_denied_total", "Requests no policy allowed; each is recorded with the reason shown to the agency.", nil, func(s exchange.Stats) int64 { return s.Denied }},
		{"civstack_exchange_consent_requests_total", "Requests that went to the citizen for consent.", nil, func(s exchange.Stats) int64 { return s.Asked }},
		{consents, consentHelp, prometheus.Labels{"answer": "given"}, func(s exchange.Stats) int64 { return s.Given }},
		{consents, consentHelp, prometheus.Labels{"answer": "refused"}, func(s exchange.Stats) int64 { return s.Refused }},
		{consents, consentHelp, prometheus.Labels{"answer": "withdrawn"}, func(s exchange.Stats) int64 { return s.Withdrawn }},
	})
}

// logCollector exports how far the transparency log and the access index
// have come, from one read per scrape: sequenced minus integrated growing is
// a log nobody integrates (no node holds the lease), and the entries past the
// access index's cursor are what every citizen's page reads directly.
type logCollector struct {
	db                               *store.DB
	sequenced, integrated, unindexed *prometheus.Desc
}

func newLogCollector(db *store.DB) *logCollector {
	return &logCollector{db: db,
		sequenced:  prometheus.NewDesc("civstack_log_sequenced_entries", "Entries sequenced into the transparency log.", nil, nil),
		integrated: prometheus.NewDesc("civstack_log_integrated_entries", "Entries covered by the log's latest signed checkpoint.", nil, nil),
		unindexed:  prometheus.NewDesc("civstack_exchange_unindexed_entries", "Log entries past the access index's cursor (read directly by the citizens' and the DPA's pages).", nil, nil),
	}
}

func (c *logCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sequenced
	ch <- c.integrated
	ch <- c.unindexed
}

func (c *logCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var next, done, indexed int64
	err := c.db.Reader().QueryRowContext(ctx, `SELECT n.value, i.value, COALESCE((SELECT value FROM ex_index_state WHERE name = 'indexed'), 0)
		FROM tlog_counters n, tlog_counters i WHERE n.name = 'next' AND i.name = 'integrated'`).Scan(&next, &done, &indexed)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.sequenced, fmt.Errorf("log counters: %w", err))
		return
	}
	ch <- prometheus.MustNewConstMetric(c.sequenced, prometheus.GaugeValue, float64(next))
	ch <- prometheus.MustNewConstMetric(c.integrated, prometheus.GaugeValue, float64(done))
	ch <- prometheus.MustNewConstMetric(c.unindexed, prometheus.GaugeValue, float64(max(0, next-indexed)))
}
