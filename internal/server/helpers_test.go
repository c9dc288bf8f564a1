package server_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

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
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

// clock is a settable clock that starts at the real time (the WebAuthn
// library checks its own timeouts against the wall clock).
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.offset) }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.offset += d; c.mu.Unlock() }

// node is a running civstack server for tests, on a real listener.
type node struct {
	URL   string // http://localhost:PORT
	db    *store.DB
	reg   *registry.Registry
	clock *clock
	logs  *syncBuffer
	tlog  *tlog.Log
	vkey  string
	pay   *payment.Service
	eng   *ledger.Engine
	hnode *healthpass.Node
	id    *identity.Service
	ex    *exchange.Exchange
	exKey []byte // the exchange's secret (pseudonyms)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return string(b.buf) }

type nodeOptions struct {
	demo    bool
	store   *store.Options           // nil: a fresh SQLite database
	fault   func(point string) error // the exchange's injected failure, if any
	proxies []netip.Prefix           // the reverse proxies the node trusts
	zone    *time.Location           // the pages' time zone (nil: UTC)
}

func startNode(t testing.TB, o nodeOptions) *node {
	t.Helper()
	ctx := context.Background()
	so := store.Options{DataDir: t.TempDir()}
	if o.store != nil {
		so = *o.store
	}
	db := storetest.OpenMigrated(t, so)
	c := &clock{}
	reg := registry.New(db, c.now, rand.Reader)
	if o.demo {
		if err := reg.EnsureMode(ctx, registry.ModeDemo); err != nil {
			t.Fatal(err)
		}
		if err := demo.Seed(ctx, reg); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := keyring.Open(t.TempDir(), c.now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	pub, _ := url.Parse("http://localhost:" + port)
	logs := &syncBuffer{}
	signer, err := tlog.NewEd25519Signer(pub.Host+"/log", keys.Active(keyring.Log).Signer)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tlog.New(db, signer.Name(), signer, c.now)
	if err != nil {
		t.Fatal(err)
	}
	eng := ledger.New(db, c.now, nil)
	eng.SetZone(o.zone)
	engCtx, stopEng := context.WithCancel(context.Background())
	engDone := make(chan struct{})
	go func() { eng.Run(engCtx); close(engDone) }()
	t.Cleanup(func() { stopEng(); <-engDone })
	seal, err := keys.Secret("payment")
	if err != nil {
		t.Fatal(err)
	}
	payCfg := payment.DefaultConfig
	payCfg.Zone = o.zone
	pay, err := payment.New(payCfg, payment.Deps{DB: db, Ledger: eng, Log: tl, SealKey: seal, Now: c.now, Rand: rand.Reader})
	if err != nil {
		t.Fatal(err)
	}
	if o.demo {
		if err := demo.SeedPayments(ctx, reg, pay); err != nil {
			t.Fatal(err)
		}
	}
	hnode, err := healthpass.Setup(t.TempDir(), keys, "IT", c.now())
	if err != nil {
		t.Fatal(err)
	}
	health := healthpass.New(healthpass.Deps{DB: db, Rules: hnode.Rules, Issuer: hnode.Issuer, Now: c.now, Rand: rand.Reader, Zone: o.zone})
	idKey, err := keys.Secret("identity")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := identity.New(identity.Deps{DB: db, SealKey: idKey, Now: c.now, Rand: rand.Reader, BaseURL: pub.String(), Country: "IT"})
	if err != nil {
		t.Fatal(err)
	}
	if o.demo {
		if err := demo.SeedIdentity(ctx, reg, ids); err != nil {
			t.Fatal(err)
		}
	}
	exKey, err := keys.Secret("exchange")
	if err != nil {
		t.Fatal(err)
	}
	app := tlog.NewAppender(db, c.now, nil)
	appCtx, stopApp := context.WithCancel(context.Background())
	appDone := make(chan struct{})
	go func() { app.Run(appCtx); close(appDone) }()
	t.Cleanup(func() { stopApp(); <-appDone })
	ex, err := exchange.New(exchange.Deps{DB: db, Appender: app, Log: tl, LogKey: signer.VerifierKey(), Secret: exKey, Now: c.now, Rand: rand.Reader,
		Fault: o.fault, IndexBatch: 1, OrgName: func(ctx context.Context, id string) string {
			if org, err := reg.Organisation(ctx, id); err == nil {
				return org.Name
			}
			return id
		}})
	if err != nil {
		t.Fatal(err)
	}
	docKey, docKID, err := keys.ECDSA()
	if err != nil {
		t.Fatal(err)
	}
	rw, err := rewards.New(ctx, rewards.DefaultConfig, rewards.Deps{DB: db, Ledger: eng, Key: docKey, KeyID: docKID, Now: c.now, PublicKey: keys.ECDSAPublic,
		OrgName: func(ctx context.Context, id string) string {
			if org, err := reg.Organisation(ctx, id); err == nil {
				return org.Name
			}
			return id
		}})
	if err != nil {
		t.Fatal(err)
	}
	if o.demo {
		if err := demo.SeedRewards(ctx, reg, rw); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := server.New(server.Config{PublicURL: pub, Demo: o.demo, SessionTTL: time.Hour, Version: "test", Build: "test (commit 0123456789ab; go1.26)", LogKey: signer.VerifierKey(), TrustedProxies: o.proxies, Zone: o.zone},
		server.Deps{DB: db, Registry: reg, Keys: keys, Logger: slog.New(slog.NewTextHandler(logs, nil)), Now: c.now, Log: tl, Ledger: eng, Payments: pay,
			Health: health, HealthNode: hnode, Identity: ids, Exchange: ex, Rewards: rw})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler(), ErrorLog: slog.NewLogLogger(slog.NewTextHandler(io.Discard, nil), slog.LevelError)}
	go hs.Serve(ln)
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	})
	return &node{URL: pub.String(), db: db, reg: reg, clock: c, logs: logs, tlog: tl, vkey: signer.VerifierKey(), pay: pay, eng: eng, hnode: hnode, id: ids, ex: ex, exKey: exKey}
}
