package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/server"
	"github.com/civstack/civstack/internal/tlog"
)

const benchPaySynopsis = `bench pay [flags]

Measures payments end to end over HTTP on loopback: merchants' tills charge
customers' one-time payment codes with POST /api/v1/payments/charges, each
request resolving the code (device lookup, secret unsealed, HMAC checked),
moving the money in the ledger, and signing the receipt (ES256) and logging
its hash in the transparency log in the same transaction; the log's
integrator runs meanwhile. Baseline in the same run, on the same server,
database and merchants: the ledger's own single transfer over HTTP (POST
/api/v1/ledger/transfers with one transfer per request to a merchant, from an
account of a wallet's kind, limits and balance: the back office may not move
a person's wallet), from the same number of clients, in alternating order
over --rounds. Runs on a fresh SQLite database in a temporary directory, or
on --db, an empty throwaway PostgreSQL database.`

func runBenchPay(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, benchPaySynopsis, "")
	db := f.DB("a throwaway PostgreSQL database; empty means a fresh SQLite database in a temporary directory")
	duration := f.Duration("duration", 5*time.Second, "how long each workload runs")
	wallets := f.Int("wallets", 8000, "customers, each with one payment-code device (a device has about five usable codes a minute)")
	merchants := f.Int("merchants", 20, "merchants whose tills charge")
	clients := f.Int("clients", 64, "concurrent HTTP clients (tills) for both workloads")
	rounds := f.Int("rounds", 2, "rounds of both workloads; the order alternates each round")
	cpuProfile := f.String("cpuprofile", "", "write a CPU profile of the whole measured run to this file")
	if err := f.parse(args[1:], false); err != nil {
		return err
	}
	if *duration <= 0 || *wallets < 1 || *merchants < 1 || *clients < 1 || *rounds < 1 {
		return fmt.Errorf("%w: --duration, --wallets, --merchants, --clients and --rounds must be positive", errUsage)
	}
	st, engineName, cleanup, err := openBenchStore(ctx, *db)
	if err != nil {
		return err
	}
	defer cleanup()
	defer st.Close()

	eng := ledger.New(st, time.Now, nil)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := tlog.NewEd25519Signer("bench.civstack.invalid/log", priv)
	if err != nil {
		return err
	}
	tl, err := tlog.New(st, signer.Name(), signer, time.Now)
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); eng.Run(runCtx) }()
	go func() {
		defer bg.Done()
		tlog.NewIntegrator(tl, st, 100*time.Millisecond, slog.New(slog.DiscardHandler)).Run(runCtx)
	}()
	defer bg.Wait()
	defer stop()
	seal := make([]byte, 32)
	rand.Read(seal)
	pay, err := payment.New(payment.DefaultConfig, payment.Deps{DB: st, Ledger: eng, Log: tl, SealKey: seal, Now: time.Now, Rand: rand.Reader})
	if err != nil {
		return err
	}
	reg := registry.New(st, time.Now, rand.Reader)

	fmt.Fprintf(e.stderr, "%s: setting up %d merchants and %d wallets with devices…\n", engineName, *merchants, *wallets)
	tills := make([]string, *merchants) // merchant tokens
	shopAccounts := make([]ledger.ID, *merchants)
	for i := range tills {
		org, err := reg.CreateOrganisation(ctx, fmt.Sprintf("Bench shop %d", i), []registry.Role{registry.Merchant}, false)
		if err != nil {
			return err
		}
		if _, err := pay.SetupMerchant(ctx, payment.Profile{OrgID: org.ID, Name: fmt.Sprintf("Bench shop %d", i), City: "Bologna", MCC: "5411",
			TaxID: fmt.Sprintf("IT%011d", i), VATRate: 1000}); err != nil {
			return err
		}
		if tills[i], _, err = reg.CreateToken(ctx, org.ID, registry.Merchant, "bench till", ""); err != nil {
			return err
		}
		shopAccounts[i] = payment.MerchantAccount(org.ID)
	}
	ops, err := reg.CreateOrganisation(ctx, "Bench back office", []registry.Role{registry.Operator}, false)
	if err != nil {
		return err
	}
	backOffice, _, err := reg.CreateToken(ctx, ops.ID, registry.Operator, "bench", "")
	if err != nil {
		return err
	}
	devices := make([]*benchDevice, *wallets)
	twinIDs := make([]ledger.ID, *wallets)
	var setupErr atomic.Pointer[error]
	var wg sync.WaitGroup
	var made atomic.Int64
	work := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				person := fmt.Sprintf("bench-person-%d", i)
				_, err := pay.TopUp(ctx, benchID(9, uint64(i)), person, 1000_00, "bench")
				var d *payment.Device
				if err == nil {
					d, err = pay.ProvisionDevice(ctx, person)
				}
				// The baseline's twin of the wallet: the back office's API may
				// not move a person's wallet, so it pays from an account of the
				// same kind, rules, limits and balance that is no one's.
				twin := ledger.Account{ID: benchID(11, uint64(i)), Ledger: ledger.LedgerCash, Kind: ledger.KindWallet, Owner: "bench twin",
					Flags: ledger.DebitsMustNotExceedCredits, Profile: "basic"}
				if err == nil {
					err = eng.EnsureAccount(ctx, twin)
				}
				if err == nil {
					var rs []ledger.Result
					rs, err = eng.Submit(ctx, []ledger.Transfer{{ID: benchID(12, uint64(i)), Debit: payment.IssuerAccount, Credit: twin.ID, Amount: 1000_00, Code: ledger.CodeIssuance}})
					if err == nil && !rs[0].Applied() {
						err = fmt.Errorf("fund the baseline's account: %s", rs[0])
					}
				}
				if err != nil {
					setupErr.CompareAndSwap(nil, &err)
					continue
				}
				devices[i], twinIDs[i] = &benchDevice{handle: d.Handle, secret: d.Secret}, twin.ID
				if n := made.Add(1); n%1000 == 0 {
					fmt.Fprintf(e.stderr, "  %d wallets\n", n)
				}
			}
		}()
	}
	for i := range devices {
		work <- i
	}
	close(work)
	wg.Wait()
	if p := setupErr.Load(); p != nil {
		return fmt.Errorf("set up wallets: %w", *p)
	}

	base, closeServer, err := benchServer(st, reg, server.Deps{Ledger: eng, Log: tl, Payments: pay})
	if err != nil {
		return err
	}
	defer closeServer()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients + 8}}
	post := func(path, token string, body any) ([]byte, error) {
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(raw))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode/100 != 2 {
			return nil, fmt.Errorf("%s: HTTP %d: %.300s", path, res.StatusCode, b)
		}
		return b, nil
	}

	var cursor atomic.Uint64
	nextCode := func() (string, error) {
		for tries := 0; tries < len(devices); tries++ {
			d := devices[cursor.Add(1)%uint64(len(devices))]
			if code, ok := d.code(time.Now()); ok {
				return code, nil
			}
		}
		return "", fmt.Errorf("every device has used its valid codes: give more --wallets")
	}
	payStep := func(r *mrand.Rand) (int, error) {
		code, err := nextCode()
		if err != nil {
			return 0, err
		}
		b, err := post("/api/v1/payments/charges", tills[r.IntN(len(tills))], map[string]any{"code": code, "amount": 1 + r.Int64N(2000)})
		if err != nil {
			return 0, err
		}
		var out struct{ Receipt string }
		if err := json.Unmarshal(b, &out); err != nil || out.Receipt == "" {
			return 0, fmt.Errorf("a charge answered without a receipt: %.200s", b)
		}
		return 1, nil
	}
	var seq atomic.Uint64
	baseStep := func(r *mrand.Rand) (int, error) {
		t := map[string]any{"id": benchID(10, seq.Add(1)).String(), "debit": twinIDs[r.IntN(len(twinIDs))].String(),
			"credit": shopAccounts[r.IntN(len(shopAccounts))].String(), "amount": 1 + r.Int64N(2000), "code": ledger.CodePayment}
		b, err := post("/api/v1/ledger/transfers", backOffice, map[string]any{"transfers": []any{t}})
		if err != nil {
			return 0, err
		}
		var out struct{ Results []string }
		if err := json.Unmarshal(b, &out); err != nil || len(out.Results) != 1 || out.Results[0] != "ok" {
			return 0, fmt.Errorf("a baseline transfer failed: %.200s", b)
		}
		return 1, nil
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	// Rounds alternate the order (baseline first, then payments first), so
	// that neither side always runs on the warmer or the busier machine.
	payFig := ledgerFigure{name: fmt.Sprintf("payment code charges, %d clients", *clients)}
	baseFig := ledgerFigure{name: fmt.Sprintf("ledger, 1 transfer/request, %d clients", *clients)}
	var payLat, baseLat []float64
	runOne := func(round int, pay bool) error {
		fig, step, what, lat := &baseFig, baseStep, "baseline, ledger single transfers over HTTP", &baseLat
		if pay {
			fig, step, what, lat = &payFig, payStep, "payment codes charged over HTTP", &payLat
		}
		fmt.Fprintf(e.stderr, "%s: round %d/%d: %s, %d clients…\n", engineName, round+1, *rounds, what, *clients)
		before := eng.Stats()
		f, err := drive(fig.name, *duration, *clients, step)
		if err != nil {
			return err
		}
		if st := eng.Stats(); st.Groups > before.Groups {
			fmt.Fprintf(e.stderr, "  %.0f/s; %d ledger transactions, %.1f requests each\n", f.perSec(), st.Groups-before.Groups,
				float64(st.Requests-before.Requests)/float64(st.Groups-before.Groups))
		}
		fig.transfers += f.transfers
		fig.seconds += f.seconds
		*lat = append(*lat, f.p50, f.p99)
		return nil
	}
	for round := range *rounds {
		first := round%2 == 1 // odd rounds: payments first
		if err := runOne(round, first); err != nil {
			return err
		}
		if err := runOne(round, !first); err != nil {
			return err
		}
	}
	// Per-round percentiles are averaged: a summary, not a merged histogram.
	avg := func(lat []float64, off int) float64 {
		var sum float64
		for i := off; i < len(lat); i += 2 {
			sum += lat[i]
		}
		return sum / float64(len(lat)/2)
	}
	payFig.p50, payFig.p99, baseFig.p50, baseFig.p99 = avg(payLat, 0), avg(payLat, 1), avg(baseLat, 0), avg(baseLat, 1)
	var receipts int64
	if err := st.Reader().QueryRowContext(ctx, "SELECT COUNT(*) FROM payment_documents").Scan(&receipts); err != nil {
		return fmt.Errorf("count the signed receipts: %w", err)
	}

	w := e.stdout
	fmt.Fprintf(w, "civstack payments on %s (%d wallets, %d merchants, %d rounds of %s each)\n", engineName, *wallets, *merchants, *rounds, *duration)
	fmt.Fprintf(w, "%-44s %12s %10s %10s\n", "", "per second", "p50 ms", "p99 ms")
	for _, r := range []ledgerFigure{payFig, baseFig} {
		fmt.Fprintf(w, "%-44s %12.0f %10.1f %10.1f\n", r.name, r.perSec(), r.p50, r.p99)
	}
	fmt.Fprintf(w, "signed receipts stored: %d (payments acknowledged: %d)\n", receipts, payFig.transfers)
	if baseFig.perSec() > 0 {
		fmt.Fprintf(w, "%-44s %11.0f%%\n", "payments / ledger single transfers:", 100*payFig.perSec()/baseFig.perSec())
	}
	if receipts < payFig.transfers {
		return fmt.Errorf("%d payments were acknowledged but only %d receipts stored", payFig.transfers, receipts)
	}
	return nil
}

// benchDevice hands out a device's codes, each step at most once, keeping
// 10 s clear of the 60-s validity edge.
type benchDevice struct {
	handle string
	secret []byte
	mu     sync.Mutex
	last   int64 // the last 10-s step used
}

func (d *benchDevice) code(now time.Time) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := now.Unix() / 10
	step := max(d.last+1, cur-4)
	if step > cur {
		return "", false
	}
	d.last = step
	return payment.GenerateCode(d.handle, d.secret, time.Unix(step*10, 0)), true
}
