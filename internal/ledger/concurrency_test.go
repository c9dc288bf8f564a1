package ledger_test

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/store/storetest"
)

// Two processes (two engines, each with its own pool) on one database
// hammer the same accounts; the invariants hold and nothing is lost.
func TestTwoProcesses(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			ctx := context.Background()
			opts := e.Open(t)
			var engines []*ledger.Engine
			for i := 0; i < 2; i++ {
				db := storetest.OpenMigrated(t, opts)
				en, _ := start(t, db)
				engines = append(engines, en)
			}
			issuer := account(t, engines[0], ledger.KindIssuer, 0, "")
			var wallets []ledger.ID
			for i := 0; i < 6; i++ {
				w := account(t, engines[0], ledger.KindWallet, ledger.DebitsMustNotExceedCredits, "")
				wallets = append(wallets, w)
				want(t, "fund", submit(t, engines[0], ledger.Transfer{ID: newID(), Debit: issuer, Credit: w, Amount: 1000, Code: ledger.CodeIssuance}), ledger.OK)
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok := map[ledger.ID]int64{}
			errs := make(chan error, 16)
			for p, en := range engines {
				for g := 0; g < 4; g++ {
					wg.Go(func() {
						r := rand.New(rand.NewPCG(uint64(p), uint64(g)))
						for i := 0; i < 60; i++ {
							var batch []ledger.Transfer
							for k := 0; k < 1+r.IntN(4); k++ {
								a, b := wallets[r.IntN(len(wallets))], wallets[r.IntN(len(wallets))]
								var id ledger.ID
								binary.BigEndian.PutUint64(id[:], uint64(p)<<56|uint64(g)<<48|uint64(i)<<8|uint64(k))
								id[15] = 1
								batch = append(batch, ledger.Transfer{ID: id, Debit: a, Credit: b, Amount: int64(1 + r.IntN(400))})
							}
							rs, err := en.Submit(ctx, batch)
							if err != nil {
								errs <- err
								return
							}
							mu.Lock()
							for k, res := range rs {
								if res == ledger.OK {
									ok[batch[k].ID] = batch[k].Amount
								}
							}
							mu.Unlock()
						}
					})
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			for id, amount := range ok {
				got, err := engines[1].Transfer(ctx, id)
				if err != nil || got.Amount != amount {
					t.Fatalf("acknowledged transfer %s of %d: %+v, %v", id, amount, got, err)
				}
			}
			audit, err := engines[1].Check(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(audit.Problems) > 0 || audit.Transfers != int64(len(ok)+len(wallets)) {
				t.Fatalf("ledger check: %d transfers for %d acknowledged and %d fundings; %v", audit.Transfers, len(ok), len(wallets), audit.Problems)
			}
			var sum int64
			for _, w := range wallets {
				a := balance(t, engines[1], w)
				if a.Balance() < 0 {
					t.Fatalf("wallet overdrawn: %+v", a)
				}
				sum += a.Balance()
			}
			if sum != 6000 {
				t.Fatalf("wallets hold %d, want 6000", sum)
			}
			t.Logf("%s: %d transfers applied by two processes", e.Name, len(ok))
		})
	}
}
