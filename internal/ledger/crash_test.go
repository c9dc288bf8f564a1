package ledger_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

func TestMain(m *testing.M) {
	if os.Getenv("LEDGER_CRASH_HELPER") != "" {
		crashHelper()
		return
	}
	os.Exit(m.Run())
}

// crashHelper submits transfers between the given wallets from many
// goroutines and prints every acknowledged one, until it is killed.
func crashHelper() {
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{DataDir: os.Getenv("LEDGER_DATA"), URL: os.Getenv("LEDGER_DB")})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	e := ledger.New(db, time.Now, nil)
	go e.Run(ctx)
	var wallets []ledger.ID
	for _, s := range strings.Split(os.Getenv("LEDGER_WALLETS"), ",") {
		id, _ := ledger.ParseID(s)
		wallets = append(wallets, id)
	}
	round, _ := strconv.Atoi(os.Getenv("LEDGER_ROUND"))
	out := make(chan string, 1<<16)
	for g := 0; g < 32; g++ {
		go func() {
			r := rand.New(rand.NewPCG(uint64(round), uint64(g)))
			for i := 0; ; i++ {
				var id ledger.ID
				binary.BigEndian.PutUint64(id[:8], uint64(round)<<32|uint64(g))
				binary.BigEndian.PutUint64(id[8:], uint64(i)+1)
				t := ledger.Transfer{ID: id, Debit: wallets[r.IntN(len(wallets))], Credit: wallets[r.IntN(len(wallets))], Amount: int64(1 + r.IntN(50))}
				rs, err := e.Submit(ctx, []ledger.Transfer{t})
				if err != nil {
					out <- "error " + err.Error()
					return
				}
				if rs[0] == ledger.OK {
					out <- fmt.Sprintf("ack %s %d", id, t.Amount)
				}
			}
		}()
	}
	w := bufio.NewWriter(os.Stdout)
	for line := range out {
		w.WriteString(line + "\n")
		if len(out) == 0 {
			w.Flush()
		}
	}
}

// TestCrashSafety kills -9 a process submitting transfers, twice, and finds
// every acknowledged transfer exactly once, nothing half-applied, and every
// balance equal to the sum of its transfers.
func TestCrashSafety(t *testing.T) {
	for _, eng := range storetest.Engines(t) {
		t.Run(eng.Name, func(t *testing.T) {
			opts := eng.Open(t)
			if opts.DataDir == "" {
				opts.DataDir = t.TempDir()
			}
			db := storetest.OpenMigrated(t, opts)
			e, _ := start(t, db)
			issuer := account(t, e, ledger.KindIssuer, 0, "")
			var wallets []string
			var ids []ledger.ID
			for i := 0; i < 8; i++ {
				w := account(t, e, ledger.KindWallet, ledger.DebitsMustNotExceedCredits, "")
				want(t, "fund", submit(t, e, ledger.Transfer{ID: newID(), Debit: issuer, Credit: w, Amount: 500, Code: ledger.CodeIssuance}), ledger.OK)
				wallets, ids = append(wallets, w.String()), append(ids, w)
			}
			acked := map[string]int64{}
			for round := 1; round <= 2; round++ {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), "LEDGER_CRASH_HELPER=1", "LEDGER_DATA="+opts.DataDir, "LEDGER_DB="+opts.URL,
					"LEDGER_WALLETS="+strings.Join(wallets, ","), "LEDGER_ROUND="+strconv.Itoa(round))
				stdout, _ := cmd.StdoutPipe()
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				sc := bufio.NewScanner(stdout)
				n := 0
				for sc.Scan() {
					f := strings.Fields(sc.Text())
					if f[0] == "error" {
						t.Fatalf("helper: %s", sc.Text())
					}
					amount, _ := strconv.ParseInt(f[2], 10, 64)
					acked[f[1]] = amount
					if n++; n >= 1500 {
						break
					}
				}
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
			}
			ctx := context.Background()
			for id, amount := range acked {
				tid, _ := ledger.ParseID(id)
				got, err := e.Transfer(ctx, tid)
				if err != nil || got.Amount != amount {
					t.Fatalf("acknowledged transfer %s of %d: %+v, %v", id, amount, got, err)
				}
			}
			// Every balance equals its transfers, links and batch roots hold,
			// and nothing acknowledged is missing or counted twice.
			audit, err := e.Check(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(audit.Problems) > 0 {
				t.Fatalf("ledger check after the crashes: %v", audit.Problems)
			}
			if audit.Transfers < int64(len(acked)+len(ids)) {
				t.Fatalf("%d transfers stored, %d acknowledged", audit.Transfers, len(acked)+len(ids))
			}
			var sum int64
			for _, w := range ids {
				a := balance(t, e, w)
				if a.Balance() < 0 {
					t.Fatalf("wallet %s overdrawn: %+v", w, a)
				}
				sum += a.Balance()
			}
			if sum != 8*500 {
				t.Fatalf("wallets hold %d after the crashes, want %d", sum, 8*500)
			}
			t.Logf("%s: %d acknowledged transfers survived two kill -9s; balances equal their transfers", eng.Name, len(acked))
		})
	}
}
