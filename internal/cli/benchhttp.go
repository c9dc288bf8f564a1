package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/civstack/civstack/internal/keyring"
	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/server"
	"github.com/civstack/civstack/internal/store"
)

// benchLedgerHTTP serves the real API on a loopback port and drives
// /api/v1/ledger/transfers with batches of 8,189 and with single transfers.
func benchLedgerHTTP(ctx context.Context, e *env, st *store.DB, eng *ledger.Engine, d time.Duration, clients int,
	transfers func(r *mrand.Rand, n int) []map[string]any) ([]ledgerFigure, error) {
	reg := registry.New(st, time.Now, rand.Reader)
	org, err := reg.CreateOrganisation(ctx, "bench back office "+fmt.Sprint(time.Now().UnixNano()), []registry.Role{registry.Operator}, false)
	if err != nil {
		return nil, err
	}
	secret, _, err := reg.CreateToken(ctx, org.ID, registry.Operator, "bench", "")
	if err != nil {
		return nil, err
	}
	base, closeServer, err := benchServer(st, reg, server.Deps{Ledger: eng})
	if err != nil {
		return nil, err
	}
	defer closeServer()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients + 8}}
	post := func(body []byte) (int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/ledger/transfers", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer res.Body.Close()
		var out struct{ Results []string }
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("HTTP %d: %.200s", res.StatusCode, b)
		}
		if err := json.Unmarshal(b, &out); err != nil {
			return 0, err
		}
		for _, r := range out.Results {
			if r != "ok" {
				return 0, fmt.Errorf("a benchmark transfer failed over HTTP: %s", r)
			}
		}
		return len(out.Results), nil
	}
	load := func(name string, n, clients int) (ledgerFigure, error) {
		fmt.Fprintf(e.stderr, "  %s…\n", name)
		return drive(name, d, clients, func(r *mrand.Rand) (int, error) {
			body, err := json.Marshal(map[string]any{"transfers": transfers(r, n)})
			if err != nil {
				return 0, err
			}
			return post(body)
		})
	}
	batched, err := load("HTTP, batches of 8,189, spread", ledger.MaxBatch, 4)
	if err != nil {
		return nil, err
	}
	single, err := load(fmt.Sprintf("HTTP, 1 transfer/request, %d clients", clients), 1, clients)
	if err != nil {
		return nil, err
	}
	return []ledgerFigure{batched, single}, nil
}

// benchServer serves the real handler on a loopback port with fresh keys;
// d supplies the services under test (Ledger, Log, Payments). It returns the
// base URL and a function that stops the server.
func benchServer(st *store.DB, reg *registry.Registry, d server.Deps) (string, func(), error) {
	// The keys go one level down: the keyring locks a file beside its
	// directory, which must go when the temporary directory does.
	keyDir, err := os.MkdirTemp("", "civstack-bench-keys-")
	if err != nil {
		return "", nil, err
	}
	keys, err := keyring.Open(filepath.Join(keyDir, "keys"), time.Now, rand.Reader)
	if err != nil {
		os.RemoveAll(keyDir)
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(keyDir)
		return "", nil, err
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	pub, _ := url.Parse("http://localhost:" + port)
	d.DB, d.Registry, d.Keys, d.Logger, d.Now = st, reg, keys, slog.New(slog.DiscardHandler), time.Now
	srv, err := server.New(server.Config{PublicURL: pub, Version: Version}, d)
	if err != nil {
		ln.Close()
		os.RemoveAll(keyDir)
		return "", nil, err
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	return pub.String(), func() { hs.Close(); os.RemoveAll(keyDir) }, nil
}
