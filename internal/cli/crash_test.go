package cli

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	xtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
	"github.com/civstack/civstack/internal/tlog"
)

// crashHelper is the process the crash test kills: it appends from many
// goroutines, integrates, and reports every acknowledged append and every
// checkpoint on stdout until it is killed.
func crashHelper() {
	ctx := context.Background()
	opts := store.Options{DataDir: os.Getenv("CRASH_DATA"), URL: os.Getenv("CRASH_DB")}
	db, err := store.Open(ctx, opts)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	if err := db.Migrate(ctx); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	seed, _ := hex.DecodeString(os.Getenv("CRASH_KEY"))
	signer, _ := tlog.NewEd25519Signer("crash.test/log", ed25519.NewKeyFromSeed(seed))
	l, _ := tlog.New(db, signer.Name(), signer, time.Now)
	out := make(chan string, 1<<16)
	in := tlog.NewIntegrator(l, db, 20*time.Millisecond, slog.New(slog.DiscardHandler))
	in.OnCheckpoint = func(cp tlog.Checkpoint) { out <- fmt.Sprintf("cp %d %s", cp.Size, cp.Root) }
	app := tlog.NewAppender(db, time.Now, in.Wake)
	go in.Run(ctx)
	go app.Run(ctx)
	for w := 0; w < 64; w++ {
		go func() {
			for {
				e := benchEntry(0)
				idx, err := app.Append(ctx, e)
				if err != nil {
					out <- "error " + err.Error()
					return
				}
				out <- fmt.Sprintf("ack %d %x", idx, e)
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

func TestMain(m *testing.M) {
	if os.Getenv("CRASH_HELPER") != "" {
		crashHelper()
		return
	}
	os.Exit(m.Run())
}

// TestCrashSafety kills -9 a process in the middle of sustained appends,
// restarts, and checks that every acknowledged entry is in the log exactly
// once, and that the next checkpoint is consistent with every earlier one.
func TestCrashSafety(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			opts := e.Open(t)
			if opts.DataDir == "" {
				opts.DataDir = t.TempDir()
			}
			seed := make([]byte, ed25519.SeedSize)
			rand.Read(seed)
			acked := map[int64]string{}
			var cps []tlog.Checkpoint
			for round := 0; round < 2; round++ {
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), "CRASH_HELPER=1", "CRASH_DATA="+opts.DataDir, "CRASH_DB="+opts.URL, "CRASH_KEY="+hex.EncodeToString(seed))
				stdout, _ := cmd.StdoutPipe()
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				sc := bufio.NewScanner(stdout)
				sc.Buffer(make([]byte, 1<<20), 1<<20)
				n := 0
				for sc.Scan() {
					f := strings.Fields(sc.Text())
					switch f[0] {
					case "ack":
						var idx int64
						fmt.Sscan(f[1], &idx)
						if prev, ok := acked[idx]; ok && prev != f[2] {
							t.Fatalf("index %d acknowledged twice for different entries", idx)
						}
						acked[idx] = f[2]
						n++
					case "cp":
						var cp tlog.Checkpoint
						fmt.Sscan(f[1], &cp.Size)
						cp.Root, _ = xtlog.ParseHash(f[2])
						cps = append(cps, cp)
					case "error":
						t.Fatalf("helper: %s", sc.Text())
					}
					if n >= 3000*(round+1) && len(cps) > 2 {
						break
					}
				}
				cmd.Process.Signal(syscall.SIGKILL)
				cmd.Wait()
			}
			// Restart: open the database again and integrate what is left.
			ctx := context.Background()
			db := storetest.OpenMigrated(t, opts)
			signer, _ := tlog.NewEd25519Signer("crash.test/log", ed25519.NewKeyFromSeed(seed))
			l, _ := tlog.New(db, signer.Name(), signer, time.Now)
			var final tlog.Checkpoint
			for {
				cp, made, err := l.Integrate(ctx)
				if err != nil {
					t.Fatal(err)
				}
				final = cp
				if !made {
					break
				}
			}
			var rows, distinct int64
			db.Reader().QueryRow("SELECT COUNT(*), COUNT(DISTINCT data) FROM tlog_entries").Scan(&rows, &distinct)
			if rows != distinct || final.Size != rows {
				t.Fatalf("%d entries, %d distinct, checkpoint of %d: an entry was written twice or lost", rows, distinct, final.Size)
			}
			for idx, want := range acked {
				var data []byte
				if err := db.Reader().QueryRow("SELECT data FROM tlog_entries WHERE idx = $1", idx).Scan(&data); err != nil {
					t.Fatalf("acknowledged entry %d is missing: %v", idx, err)
				}
				if hex.EncodeToString(data) != want {
					t.Fatalf("acknowledged entry %d changed", idx)
				}
			}
			for _, cp := range cps {
				p, err := l.ConsistencyProof(ctx, cp.Size, final.Size, final.Size)
				if err != nil {
					t.Fatal(err)
				}
				if cp.Size > 0 {
					if err := xtlog.CheckTree(p, final.Size, final.Root, cp.Size, cp.Root); err != nil {
						t.Fatalf("checkpoint of %d entries from before the crash is inconsistent with the one after: %v", cp.Size, err)
					}
				}
			}
			t.Logf("%s: %d acknowledged entries survived two kill -9s; %d entries in all; %d earlier checkpoints consistent with the final one of %d",
				e.Name, len(acked), rows, len(cps), final.Size)
		})
	}
}
