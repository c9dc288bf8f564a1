package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
	_ "time/tzdata" // --time-zone works on machines without a zone database

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/civstack/civstack/internal/demo"
	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/healthpass"
	"github.com/civstack/civstack/internal/identity"
	"github.com/civstack/civstack/internal/keyring"
	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/rewards"
	"github.com/civstack/civstack/internal/server"
	"github.com/civstack/civstack/internal/tlog"
)

const serveSynopsis = `Runs the civstack server: the citizen wallet, the role consoles, the machine API
under /api/v1, and /healthz, /readyz and /metrics. On first start it creates the
data directory, its keys and the database. Without --demo it prints a one-time
link that makes the first person who opens it an operator.

Passkeys are bound to the host name in --url, which must be a name (localhost,
civstack.example.org), not an IP address. Behind a TLS-terminating proxy, set
--url to the public https:// address.`

func runServe(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "serve [flags]", serveSynopsis)
	addr := f.String("addr", "127.0.0.1:8080", "address to listen on")
	public := f.String("url", "", "public URL people open (default http://localhost:<port>, or https:// with TLS)")
	storage := addStorageFlags(f)
	certFile := f.String("tls-cert", "", "TLS certificate file (PEM); serve HTTPS when given with --tls-key")
	keyFile := f.String("tls-key", "", "TLS private key file (PEM)")
	demoMode := f.Bool("demo", false, "seed and offer demo personas; never use with real data")
	logFormat := f.String("log-format", "text", "log format on stderr: text or json")
	logLevel := f.String("log-level", "info", "log level: debug, info, warn or error")
	sessionTTL := f.Duration("session-ttl", 12*time.Hour, "how long a sign-in lasts (5m to 720h)")
	profilesFile := f.String("ledger-profiles", "", "JSON file of wallet limit profiles (default: the built-in basic and verified tiers; see docs/ledger.md)")
	logOrigin := f.String("log-origin", "", "the transparency log's origin line when it is first served (default: the --url host followed by /log); a log keeps it for life")
	stepUp := f.String("payment-stepup", payment.Money(payment.DefaultConfig.StepUp), "wallet payments above this amount need the payer's passkey; payment codes are refused above it")
	country := f.String("payment-country", payment.DefaultConfig.Country, "ISO 3166 country code printed on merchants' QR codes")
	healthAuthority := f.String("health-authority", "Health Authority", "the organisation whose issuers act as the health authority (decide appeals, issue certificates)")
	city := f.String("payment-city", payment.DefaultConfig.City, "city printed on merchants' QR codes unless a merchant sets its own")
	proxies := f.String("trusted-proxies", "", "comma-separated addresses or CIDR ranges of reverse proxies in front of the node, whose X-Forwarded-For names the client (for the per-client passkey limit)")
	zoneName := f.String("time-zone", "UTC", "IANA time zone the pages show times in and the city's days follow: the point of sale's, the wallets' daily limits, check-ins and rewards caps, the cash-flow report's months (e.g. Europe/Rome); APIs answer in UTC")
	metricsAddr := f.String("metrics-addr", "", "serve /metrics on this address only (e.g. 10.0.0.5:9100, reachable from the monitoring network), not on --addr")
	acceptRewind := f.Bool("accept-log-rewind", false, "serve a database whose transparency log is behind or other than the checkpoint this node last signed (after a restore from a backup; see docs/operations.md)")
	ceremonies := f.Int("passkey-limit", 30, "passkey ceremonies (sign-ins, registrations) one client may start a minute, twice that in a burst")
	keepPresentations := f.Duration("keep-presentations", identity.KeepPresentations, "how long a verifier's request keeps what a verified presentation disclosed (and the presentation, for re-checks) after the answer; then both are erased (1m to 720h)")
	keepComplaints := f.Int("keep-complaints", int(exchange.KeepComplaints/exchange.Day), "days an answered complaint to the data-protection authority is kept after the answer; then it is deleted, the citizen's words and the answer with it (30 to 3650)")
	if err := f.parse(args, false); err != nil {
		return err
	}
	trusted, err := parseProxies(*proxies)
	if err != nil {
		return err
	}
	zone, err := time.LoadLocation(*zoneName)
	if err != nil || *zoneName == "" || *zoneName == "Local" {
		return fmt.Errorf("%w: --time-zone %q is not an IANA time zone such as Europe/Rome or UTC", errUsage, *zoneName)
	}
	if *ceremonies < 1 {
		return fmt.Errorf("%w: --passkey-limit must be at least 1", errUsage)
	}
	if *sessionTTL < 5*time.Minute || *sessionTTL > 720*time.Hour {
		return fmt.Errorf("%w: --session-ttl must be from 5m to 720h (30 days), not %v", errUsage, *sessionTTL)
	}
	if *keepPresentations < identity.MinKeepPresentations || *keepPresentations > identity.MaxKeepPresentations {
		return fmt.Errorf("%w: --keep-presentations must be from 1m to 720h (30 days), not %v", errUsage, *keepPresentations)
	}
	if keep := time.Duration(*keepComplaints) * exchange.Day; keep < exchange.MinKeepComplaints || keep > exchange.MaxKeepComplaints {
		return fmt.Errorf("%w: --keep-complaints must be from 30 to 3650 days, not %d", errUsage, *keepComplaints)
	}
	logger, err := newLogger(e, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	if (*certFile == "") != (*keyFile == "") {
		return fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	}
	var tlsConfig *tls.Config
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if _, _, err := net.SplitHostPort(*addr); err != nil {
		return fmt.Errorf("%w: --addr %q is not host:port", errUsage, *addr)
	}
	if _, _, err := net.SplitHostPort(*metricsAddr); *metricsAddr != "" && err != nil {
		return fmt.Errorf("%w: --metrics-addr %q is not host:port", errUsage, *metricsAddr)
	}
	if _, err := publicURL(*public, *addr, tlsConfig != nil); err != nil {
		return err
	}
	profiles, err := loadProfiles(*profilesFile)
	if err != nil {
		return err
	}
	payCfg, err := paymentConfig(*stepUp, *country, *city)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", *addr, errors.Unwrap(err))
	}
	defer ln.Close()

	n, err := openNode(ctx, e, storage, logger)
	if err != nil {
		return err
	}
	defer n.close()
	mode := registry.ModeProduction
	if *demoMode {
		mode = registry.ModeDemo
	}
	if err := n.reg.EnsureMode(ctx, mode); errors.Is(err, registry.ErrModeMismatch) {
		if *demoMode {
			return fmt.Errorf("this database holds real data, so --demo is refused; use a fresh --data or --db for a demo")
		}
		return fmt.Errorf("this database holds demo data; start it with --demo, or use a fresh --data or --db for real use")
	} else if err != nil {
		return err
	}
	if *demoMode {
		if err := demo.Seed(ctx, n.reg); err != nil {
			return err
		}
	}

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewBuildInfoCollector())
	// With port 0 the system picks the port; the public URL follows it.
	pub, err := publicURL(*public, ln.Addr().String(), tlsConfig != nil)
	if err != nil {
		return err
	}
	proposed := *logOrigin
	if proposed == "" {
		proposed = pub.Host + "/log"
	}
	if err := tlog.CheckOrigin(proposed); err != nil {
		return fmt.Errorf("%w: --log-origin: %v", errUsage, err)
	}
	origin, err := tlog.KeepOrigin(ctx, n.db, proposed)
	if err != nil {
		return err
	}
	switch {
	case origin != proposed && *logOrigin != "":
		return fmt.Errorf("%w: --log-origin %s: this node's log is named %s since it was first served, and a log cannot be renamed (its checkpoints and its auditors' saved state name it); start a new log with a new data directory or database", errUsage, *logOrigin, origin)
	case origin != proposed:
		logger.Info("the log keeps the origin it was first served with", "origin", origin, "url", pub.String())
	}
	signer, err := tlog.NewEd25519Signer(origin, n.keys.Active(keyring.Log).Signer)
	if err != nil {
		return fmt.Errorf("%w: --log-origin: %v", errUsage, err)
	}
	tl, err := tlog.New(n.db, origin, signer, e.now)
	if err != nil {
		return err
	}
	if err := checkLogMark(ctx, tl, *storage.data, *acceptRewind, *demoMode, logger); err != nil {
		return err
	}
	hnode, err := healthpass.Setup(filepath.Join(*storage.data, "health"), n.keys, payCfg.Country, e.now())
	if err != nil {
		return err
	}
	if err := n.checkHealth(ctx, hnode); err != nil {
		return err
	}
	if err := n.noteRules(ctx, hnode.Rules, logger); err != nil {
		return err
	}
	eng := ledger.New(n.db, e.now, profiles)
	eng.SetZone(zone) // the wallets' daily limits count the city's days
	if err := eng.CheckProfiles(ctx); err != nil {
		return fmt.Errorf("--ledger-profiles: %w", err)
	}
	// The ledger's batcher runs before anything submits (demo top-ups, resumed refunds).
	integratorCtx, stopIntegrator := context.WithCancel(context.Background())
	integratorDone := make(chan struct{})
	ledgerDone := make(chan struct{})
	appenderDone := make(chan struct{})
	integrator := tlog.NewIntegrator(tl, n.db, 100*time.Millisecond, logger)
	var signed atomic.Pointer[tlog.Checkpoint]
	integrator.OnCheckpoint = func(cp tlog.Checkpoint) { signed.Store(&cp) }
	markDone := make(chan struct{})
	go func() {
		defer close(markDone)
		keepLogMark(*storage.data, &signed, logMarkEvery, integratorDone, logger)
	}()
	appender := tlog.NewAppender(n.db, e.now, integrator.Wake)
	go func() {
		defer close(integratorDone)
		integrator.Run(integratorCtx)
	}()
	go func() {
		defer close(appenderDone)
		appender.Run(integratorCtx)
	}()
	go func() {
		defer close(ledgerDone)
		eng.Run(integratorCtx)
	}()
	go expirePending(integratorCtx, eng, logger)
	go n.presence.hold(integratorCtx, n.db, presenceEvery, logger)
	defer func() { stopIntegrator(); <-integratorDone; <-markDone; <-ledgerDone; <-appenderDone }()
	sealKey, err := n.keys.Secret("payment")
	if err != nil {
		return err
	}
	payCfg.Zone = zone // the cash-flow report's months are the city's
	pay, err := payment.New(payCfg, payment.Deps{DB: n.db, Ledger: eng, Log: tl, SealKey: sealKey, Now: e.now, Rand: rand.Reader})
	if err != nil {
		return err
	}
	if *demoMode {
		if err := demo.SeedPayments(ctx, n.reg, pay); err != nil {
			return err
		}
	}
	if resumed, err := pay.ResumeRefunds(ctx); err != nil {
		return fmt.Errorf("resume refunds: %w", err)
	} else if resumed > 0 {
		logger.Info("resumed interrupted refunds", "count", resumed)
	}
	health := healthpass.New(healthpass.Deps{DB: n.db, Rules: hnode.Rules, Issuer: hnode.Issuer, Now: e.now, Rand: rand.Reader, Zone: zone})
	logger.Info("health pass", "rules", hnode.Rules.Version, "trust", hnode.Verifier.TrustInfo)
	idKey, err := n.keys.Secret("identity")
	if err != nil {
		return err
	}
	ids, err := identity.New(identity.Deps{DB: n.db, SealKey: idKey, Now: e.now, Rand: rand.Reader, BaseURL: pub.String(), Country: payCfg.Country,
		KeepPresentations: *keepPresentations})
	if err != nil {
		return err
	}
	if *demoMode {
		if err := demo.SeedIdentity(ctx, n.reg, ids); err != nil {
			return err
		}
	}
	exKey, err := n.keys.Secret("exchange")
	if err != nil {
		return err
	}
	ex, err := exchange.New(exchange.Deps{DB: n.db, Appender: appender, Log: tl, LogKey: signer.VerifierKey(), Secret: exKey, Now: e.now, Rand: rand.Reader,
		OrgName: func(ctx context.Context, id string) string {
			if o, err := n.reg.Organisation(ctx, id); err == nil {
				return o.Name
			}
			return id
		}, KeepComplaints: time.Duration(*keepComplaints) * exchange.Day})
	if err != nil {
		return err
	}
	if *demoMode {
		if err := demo.SeedExchange(ctx, n.reg, ex); err != nil {
			return err
		}
	}
	docKey, docKID, err := n.keys.ECDSA()
	if err != nil {
		return err
	}
	rwCfg := rewards.DefaultConfig
	rwCfg.Zone = zone
	rw, err := rewards.New(ctx, rwCfg, rewards.Deps{DB: n.db, Ledger: eng, Key: docKey, KeyID: docKID, Now: e.now, Rand: rand.Reader,
		PublicKey: n.keys.ECDSAPublic, OrgName: func(ctx context.Context, id string) string {
			if o, err := n.reg.Organisation(ctx, id); err == nil {
				return o.Name
			}
			return id
		}})
	if err != nil {
		return err
	}
	if *demoMode {
		if err := demo.SeedRewards(ctx, n.reg, rw); err != nil {
			return err
		}
	}
	go expirePoints(integratorCtx, rw, logger)
	go flushAccessIndex(integratorCtx, ex, logger)
	go forgetExchange(integratorCtx, ex, logger)
	go eraseIdentity(integratorCtx, ids, logger)
	srv, err := server.New(server.Config{PublicURL: pub, Demo: *demoMode, SessionTTL: *sessionTTL, Version: Version, Build: fullVersion(), LogKey: signer.VerifierKey(), HealthAuthority: *healthAuthority,
		CeremoniesPerMinute: *ceremonies, TrustedProxies: trusted, MetricsElsewhere: *metricsAddr != "", Zone: zone},
		server.Deps{DB: n.db, Registry: n.reg, Keys: n.keys, Logger: logger, Now: e.now, Metrics: metrics, Log: tl, Ledger: eng, Payments: pay, Health: health, HealthNode: hnode, Identity: ids, Exchange: ex, Rewards: rw})
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		TLSConfig:         tlsConfig,
	}

	// Metrics on a listener of their own, when asked: plain HTTP, for the
	// monitoring network.
	var ms *http.Server
	var mln net.Listener
	if *metricsAddr != "" {
		if mln, err = net.Listen("tcp", *metricsAddr); err != nil {
			return fmt.Errorf("cannot listen on %s for metrics: %w", *metricsAddr, errors.Unwrap(err))
		}
		defer mln.Close()
		ms = &http.Server{Handler: srv.MetricsHandler(), ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
			ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	}

	if err := banner(ctx, e, n, pub, ln.Addr().String(), storage, *demoMode, signer.VerifierKey(), mln); err != nil {
		return err
	}
	logger.Info("serving", "addr", ln.Addr().String(), "database", string(n.db.Dialect()), "demo", *demoMode, "version", fullVersion())

	errc := make(chan error, 2)
	go func() {
		if tlsConfig != nil {
			errc <- hs.ServeTLS(ln, "", "")
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	if ms != nil {
		go func() { errc <- ms.Serve(mln) }()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("server stopped: %w", err)
	case <-ctx.Done():
	}
	fmt.Fprintln(e.stdout, "Shutting down…")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ms != nil {
		ms.Shutdown(shutdownCtx) // only metrics: nothing to finish
	}
	if err := hs.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Info("stopped")
	fmt.Fprintln(e.stdout, "Stopped.")
	return nil
}

// paymentConfig reads the --payment-* flags.
func paymentConfig(stepUp, country, city string) (payment.Config, error) {
	cfg := payment.DefaultConfig
	v, err := payment.ParseMoney(stepUp)
	if err != nil || v <= 0 {
		return cfg, fmt.Errorf("%w: --payment-stepup %q is not an amount such as 100.00", errUsage, stepUp)
	}
	if len(country) != 2 || strings.ToUpper(country) != country || strings.Trim(country, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		return cfg, fmt.Errorf("%w: --payment-country %q is not a two-letter code such as IT", errUsage, country)
	}
	if city == "" || len([]rune(city)) > 15 {
		return cfg, fmt.Errorf("%w: --payment-city must be 1 to 15 characters (it is printed on QR codes)", errUsage)
	}
	cfg.StepUp, cfg.Country, cfg.City = v, country, city
	return cfg, nil
}

// loadProfiles reads --ledger-profiles; "" means the built-in tiers.
func loadProfiles(path string) (map[string]ledger.Limits, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: --ledger-profiles: %v", errUsage, err)
	}
	defer f.Close()
	ps, err := ledger.ParseProfiles(f)
	if err != nil {
		return nil, fmt.Errorf("%w: --ledger-profiles %s: %v", errUsage, path, err)
	}
	return ps, nil
}

// every runs fn each interval until ctx ends (at once first, if now).
func every(ctx context.Context, interval time.Duration, now bool, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if now {
			fn()
		}
		now = true
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweepLog reports one run of a background sweep: a failure as a warning
// (unless the node is stopping), and how many it did, if any.
func sweepLog[N int | int64](ctx context.Context, logger *slog.Logger, what, done, unit string, n N, err error) {
	if err != nil && ctx.Err() == nil {
		logger.Warn(what, "err", err)
	} else if err == nil && n > 0 {
		logger.Info(done, unit, n)
	}
}

// expirePending releases timed-out pending transfers every second.
func expirePending(ctx context.Context, eng *ledger.Engine, logger *slog.Logger) {
	every(ctx, time.Second, false, func() {
		n, err := eng.Expire(ctx)
		sweepLog(ctx, logger, "expire pending transfers", "pending transfers expired", "count", n, err)
	})
}

// flushAccessIndex indexes, once a minute, the access records the index
// has not taken yet (it takes them 512 log entries at a time; on a quiet
// node this keeps the tail that readers scan short).
func flushAccessIndex(ctx context.Context, ex *exchange.Exchange, logger *slog.Logger) {
	every(ctx, time.Minute, false, func() {
		sweepLog(ctx, logger, "access index", "", "", 0, ex.FlushIndex(ctx))
	})
}

// forgetExchange forgets, hourly, the exchange's idempotency keys older
// than exchange.KeyLife and the complaints answered longer ago than
// --keep-complaints (at once first: a node that was down catches up).
func forgetExchange(ctx context.Context, ex *exchange.Exchange, logger *slog.Logger) {
	every(ctx, time.Hour, true, func() {
		n, err := ex.ForgetKeys(ctx)
		sweepLog(ctx, logger, "forget idempotency keys", "idempotency keys forgotten", "count", n, err)
		n, err = ex.ForgetComplaints(ctx)
		sweepLog(ctx, logger, "forget answered complaints", "answered complaints forgotten", "count", n, err)
	})
}

// eraseIdentity erases, every minute, the verified presentations older
// than --keep-presentations and the lapsed credential offers' claims (at
// once first: a node that was down catches up at start).
func eraseIdentity(ctx context.Context, ids *identity.Service, logger *slog.Logger) {
	every(ctx, time.Minute, true, func() {
		n, err := ids.ErasePresentations(ctx)
		sweepLog(ctx, logger, "erase presentations", "presentations erased", "count", n, err)
		n, err = ids.EraseLapsedOffers(ctx)
		sweepLog(ctx, logger, "erase lapsed offers", "lapsed credential offers erased", "count", n, err)
	})
}

// expirePoints takes back unspent points past the programme's published
// period, hourly (one transfer per account per day at most).
func expirePoints(ctx context.Context, rw *rewards.Service, logger *slog.Logger) {
	every(ctx, time.Hour, true, func() {
		n, err := rw.ExpirePoints(ctx)
		sweepLog(ctx, logger, "expire civic points", "civic points expired", "accounts", n, err)
	})
}

// publicURL works out the origin people use, defaulting to localhost on the
// listening port.
func publicURL(raw, addr string, tlsOn bool) (*url.URL, error) {
	if raw == "" {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("%w: --addr %q is not host:port", errUsage, addr)
		}
		scheme := "http"
		if tlsOn {
			scheme = "https"
		}
		raw = scheme + "://localhost:" + port
	}
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
		return nil, fmt.Errorf("%w: --url %q must look like https://civstack.example.org", errUsage, raw)
	}
	if net.ParseIP(u.Hostname()) != nil {
		return nil, fmt.Errorf("%w: --url %q uses an IP address; passkeys need a host name (try http://localhost:PORT)", errUsage, raw)
	}
	if u.Scheme == "http" && u.Hostname() != "localhost" {
		return nil, fmt.Errorf("%w: --url %q: browsers allow passkeys over plain http only on localhost; use https", errUsage, raw)
	}
	return u, nil
}

func newLogger(e *env, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q is not debug, info, warn or error", errUsage, level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(e.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(e.stderr, opts)), nil
	}
	return nil, fmt.Errorf("%w: --log-format %q is not text or json", errUsage, format)
}

// banner tells the person who started the server where to go.
func banner(ctx context.Context, e *env, n *node, pub *url.URL, listening string, storage storageFlags, demoMode bool, logKey string, metrics net.Listener) error {
	w := e.stdout
	fmt.Fprintf(w, "civstack %s is running at %s (listening on %s)\n", Version, pub, listening)
	fmt.Fprintf(w, "  database: %s\n", storage.describe())
	fmt.Fprintf(w, "  keys:     %s/keys (log key %s, document key %s)\n", strings.TrimRight(*storage.data, "/"),
		n.keys.Active(keyring.Log).ID, n.keys.Active(keyring.Document).ID)
	fmt.Fprintf(w, "  log:      %s/log (verifier key %s)\n", pub, logKey)
	if metrics != nil {
		fmt.Fprintf(w, "  metrics:  http://%s/metrics (not on the public address)\n", metrics.Addr())
	}
	if demoMode {
		people, err := n.reg.DemoPeople(ctx)
		if err != nil {
			return err
		}
		demo.Sort(people)
		fmt.Fprintf(w, "  DEMO MODE: made-up people only. Open %s/ and pick a persona:\n", pub)
		for _, p := range people {
			ms, err := n.reg.Memberships(ctx, p.ID)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "    - %s (%s)\n", p.DisplayName, demo.Roles(ms))
		}
	} else {
		code, err := n.reg.OperatorSetup(ctx, 24*time.Hour)
		if err != nil {
			return err
		}
		if code != "" {
			fmt.Fprintf(w, "  No operator yet. Create an account, then open this one-time link (valid 24 hours):\n    %s/setup?code=%s\n", pub, code)
		}
	}
	fmt.Fprintln(w, "Press Ctrl-C to stop.")
	return nil
}

// parseProxies reads --trusted-proxies: addresses and CIDR ranges, comma
// separated ("" for none).
func parseProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if p, err := netip.ParsePrefix(part); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("%w: --trusted-proxies: %q is neither an address nor a CIDR range", errUsage, part)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
