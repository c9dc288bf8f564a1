// Package server owns civstack's HTTP surfaces: the people's pages (passkey
// sign-in, the citizen home, role consoles, the operator's registry pages),
// the machine API under /api/v1 (huma, OpenAPI, RFC 9457 errors, API-token
// auth), the demo persona switcher when --demo is on, and the operational
// endpoints /healthz, /readyz and /metrics. Each surface has one route table;
// handlers are methods on Server.
package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/healthpass"
	"github.com/civstack/civstack/internal/identity"
	"github.com/civstack/civstack/internal/keyring"
	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/rewards"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/tlog"
	"github.com/civstack/civstack/internal/web"
)

// Config holds what the server is told at start.
type Config struct {
	// PublicURL is the origin people reach civstack at (scheme://host[:port]);
	// passkeys are bound to its host name, which must not be an IP address.
	PublicURL *url.URL
	// Demo turns on the persona switcher and accepts demo people's sessions.
	Demo bool
	// SessionTTL is how long a sign-in lasts.
	SessionTTL time.Duration
	// Version is the release, for /healthz and the API description.
	Version string
	// Build is Version with the commit and Go release that built the
	// binary, shown to operators only (empty: Version).
	Build string
	// LogKey is the transparency log's verifier key (C2SP vkey), shown to
	// auditors.
	LogKey string
	// CeremoniesPerMinute bounds passkey ceremonies one address may start
	// (twice that in a burst); default 30.
	CeremoniesPerMinute int
	// TrustedProxies are the reverse proxies in front of the node: for a
	// request from one of them, the client's address (for the limit above)
	// is the nearest one in X-Forwarded-For that is not a trusted proxy.
	// Without them, every client behind a proxy shares the proxy's limit.
	TrustedProxies []netip.Prefix
	// Zone is the time zone pages show times in and the point of sale's
	// days follow; nil is UTC. APIs answer in UTC (RFC 3339) whatever it is.
	Zone *time.Location
	// MetricsElsewhere leaves /metrics off the public handler: the
	// operator serves MetricsHandler on a listener of its own.
	MetricsElsewhere bool
	// HealthAuthority names the organisation whose issuers act as the
	// health authority (officers decide appeals and issue certificates);
	// default "Health Authority".
	HealthAuthority string
}

// Deps are the server's collaborators, injected so tests can use their own.
type Deps struct {
	DB       *store.DB
	Registry *registry.Registry
	Keys     *keyring.Ring
	Logger   *slog.Logger
	Now      func() time.Time
	Metrics  *prometheus.Registry
	Log      *tlog.Log
	Ledger   *ledger.Engine // nil: no ledger API
	// Payments needs Ledger; nil: no wallet, point of sale or payments API.
	Payments *payment.Service
	// Health is the health pass service and HealthNode its rules, issuer
	// and verifier; nil: no health pages.
	Health     *healthpass.Service
	HealthNode *healthpass.Node
	// Identity is the identity wallet (issuers, verifiers, wallets); nil:
	// none of its pages or protocol endpoints.
	Identity *identity.Service
	// Exchange is the data exchange; nil: none of its pages or API.
	Exchange *exchange.Exchange
	Rewards  *rewards.Service
}

// Server serves every HTTP surface.
type Server struct {
	cfg     Config
	db      *store.DB
	reg     *registry.Registry
	keys    *keyring.Ring
	log     *slog.Logger
	now     func() time.Time
	pages   *web.Renderer
	wa      *webauthn.WebAuthn
	metrics *metrics
	promReg *prometheus.Registry
	tlog    *tlog.Log
	ledger  *ledger.Engine
	pay     *payment.Service
	health  *healthpass.Service
	hnode   *healthpass.Node
	id      *identity.Service
	ex      *exchange.Exchange
	rw      *rewards.Service
	self    *selfTransport
	// ceremonies limits passkey ceremonies per client address.
	ceremonies *limiter
	// protocol limits anonymous protocol calls that write (nonces) per
	// client address.
	protocol *limiter
}

// New builds a Server; it fails if the public URL cannot carry passkeys.
func New(cfg Config, d Deps) (*Server, error) {
	if cfg.PublicURL == nil || cfg.PublicURL.Host == "" {
		return nil, fmt.Errorf("server: a public URL is required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.CeremoniesPerMinute <= 0 {
		cfg.CeremoniesPerMinute = 30
	}
	origin := cfg.PublicURL.Scheme + "://" + cfg.PublicURL.Host
	wa, err := webauthn.New(&webauthn.Config{
		RPID:          cfg.PublicURL.Hostname(),
		RPDisplayName: "civstack",
		RPOrigins:     []string{origin},
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification:   protocol.VerificationRequired,
		},
		AttestationPreference: protocol.PreferNoAttestation,
	})
	if err != nil {
		return nil, fmt.Errorf("passkeys for %s: %w (use a host name such as localhost, not an IP address)", origin, err)
	}
	if cfg.Zone == nil {
		cfg.Zone = time.UTC
	}
	pages, err := web.NewIn(cfg.Zone)
	if err != nil {
		return nil, err
	}
	promReg := d.Metrics
	if promReg == nil {
		promReg = prometheus.NewRegistry()
	}
	m, err := newMetrics(promReg)
	if err != nil {
		return nil, err
	}
	if err := promReg.Register(newLogCollector(d.DB)); err != nil {
		return nil, err
	}
	if d.Ledger != nil {
		if err := registerLedgerMetrics(promReg, d.Ledger); err != nil {
			return nil, err
		}
		d.Ledger.SetReserved(peoplesAccount) // the ledger API's transfers leave them alone
	}
	if d.Exchange != nil {
		if err := registerExchangeMetrics(promReg, d.Exchange); err != nil {
			return nil, err
		}
	}
	srv := &Server{cfg: cfg, db: d.DB, reg: d.Registry, keys: d.Keys, log: d.Logger, now: d.Now,
		pages: pages, wa: wa, metrics: m, promReg: promReg, tlog: d.Log, ledger: d.Ledger, pay: d.Payments, health: d.Health, hnode: d.HealthNode, id: d.Identity, ex: d.Exchange, rw: d.Rewards, ceremonies: newLimiter(cfg.CeremoniesPerMinute, 2*cfg.CeremoniesPerMinute),
		protocol: newLimiter(protocolPerMinute, 2*protocolPerMinute)}
	if d.Identity != nil {
		srv.self = &selfTransport{origin: origin}
		d.Identity.SetHTTP(&http.Client{Transport: srv.self, Timeout: 30 * time.Second})
	}
	return srv, nil
}

// Handler returns the whole HTTP handler with middleware applied.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.opsRoutes(mux)
	s.pageRoutes(mux)
	if s.pay != nil {
		s.walletRoutes(mux)
		s.posRoutes(mux)
		s.cashflowRoutes(mux)
	}
	if s.health != nil {
		s.healthRoutes(mux)
	}
	if s.id != nil {
		s.oid4vcRoutes(mux)
		s.credentialRoutes(mux)
	}
	if s.ex != nil {
		s.exchangeRoutes(mux)
	}
	if s.rw != nil {
		s.rewardsRoutes(mux)
	}
	if s.cfg.Demo {
		s.demoRoutes(mux)
	}
	s.apiRoutes(mux)
	if s.tlog != nil {
		s.logRoutes(mux)
	}
	mux.Handle("GET /static/", web.Static())
	mux.HandleFunc("GET /favicon.ico", favicon)

	cop := http.NewCrossOriginProtection()
	_ = cop.AddTrustedOrigin(s.cfg.PublicURL.Scheme + "://" + s.cfg.PublicURL.Host)
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusForbidden, "This request came from another site and was refused.")
	}))
	var h http.Handler = mux
	h = s.textOnly(h)
	h = cop.Handler(h)
	h = formAnswers(h)
	h = s.canonicalHost(h)
	h = s.securityHeaders(h)
	h = s.recoverer(h)
	h = s.observe(h)
	if s.self != nil {
		s.self.handler.Store(&h)
	}
	return h
}
