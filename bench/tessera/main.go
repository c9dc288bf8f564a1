// Command tessera is civstack's baseline for `civstack bench log`: it drives
// Tessera v1.0.4 with POSIX storage with the same load civstack's benchmark
// uses (W concurrent writers for a duration, then inclusion proofs built
// with golang.org/x/mod/sumdb/tlog over the log's tiles and verified), and
// prints the figures as JSON. It is its own Go module so that civstack does
// not depend on Tessera.
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"k8s.io/klog/v2"
)

type result struct {
	Name          string  `json:"name"`
	Appends       int64   `json:"appends"`
	Seconds       float64 `json:"seconds"`
	AppendsPerSec float64 `json:"appends_per_sec"`
	P50ms         float64 `json:"p50_ms"`
	P99ms         float64 `json:"p99_ms"`
	Proofs        int64   `json:"proofs"`
	ProofsPerSec  float64 `json:"proofs_per_sec"`
	Cores         int     `json:"cores"`
}

func main() {
	writers := flag.Int("writers", 1024, "concurrent writers")
	duration := flag.Duration("duration", 10*time.Second, "how long writers append")
	proofs := flag.Int("proofs", 20000, "inclusion proofs")
	dir := flag.String("dir", "", "storage directory (empty: a temporary one)")
	klog.InitFlags(nil)
	flag.Set("logtostderr", "false")
	flag.Set("stderrthreshold", "FATAL")
	flag.Parse()
	if err := run(*writers, *duration, *proofs, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "tessera bench:", err)
		os.Exit(1)
	}
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return float64(sorted[max(i, 0)]) / float64(time.Millisecond)
}

func run(writers int, duration time.Duration, proofs int, dir string) error {
	ctx := context.Background()
	if dir == "" {
		d, err := os.MkdirTemp("", "tessera-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, "bench.tessera/log")
	if err != nil {
		return err
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	driver, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		return err
	}
	// The settings of Tessera's own POSIX conformance server.
	appender, shutdown, reader, err := tessera.NewAppender(ctx, driver, tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithCheckpointInterval(time.Second).
		WithBatching(256, time.Second))
	if err != nil {
		return err
	}
	defer shutdown(ctx)

	// Watch checkpoints to time append-to-checkpoint.
	type cpTime struct {
		size uint64
		at   time.Time
	}
	var mu sync.Mutex
	var cps []cpTime
	started := map[uint64]time.Time{}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		var last uint64
		for watchCtx.Err() == nil {
			if raw, err := reader.ReadCheckpoint(watchCtx); err == nil {
				if n, err := note.Open(raw, note.VerifierList(verifier)); err == nil {
					var origin string
					var size uint64
					fmt.Sscanf(n.Text, "%s\n%d\n", &origin, &size)
					if size > last {
						last = size
						mu.Lock()
						cps = append(cps, cpTime{size, time.Now()})
						mu.Unlock()
					}
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	var count atomic.Int64
	var firstErr atomic.Pointer[error]
	start := time.Now()
	deadline := start.Add(duration)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(0); time.Now().Before(deadline); i++ {
				data := make([]byte, 42) // the size of a civstack receipt entry
				binary.BigEndian.PutUint64(data, uint64(w)<<32|i)
				rand.Read(data[8:])
				t0 := time.Now()
				idx, err := appender.Add(ctx, tessera.NewEntry(data))()
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				if count.Add(1)%16 == 0 {
					mu.Lock()
					started[idx.Index] = t0
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	res := result{Name: "Tessera v1.0.4 (POSIX)", Seconds: time.Since(start).Seconds(), Cores: runtime.GOMAXPROCS(0)}
	if p := firstErr.Load(); p != nil {
		return *p
	}
	res.Appends = count.Load()
	res.AppendsPerSec = float64(res.Appends) / res.Seconds
	// Wait until a checkpoint covers every append.
	for {
		mu.Lock()
		done := len(cps) > 0 && cps[len(cps)-1].size >= uint64(res.Appends)
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopWatch()
	var lat []time.Duration
	for idx, t0 := range started {
		i, _ := slices.BinarySearchFunc(cps, idx+1, func(c cpTime, size uint64) int {
			switch {
			case c.size < size:
				return -1
			case c.size > size:
				return 1
			}
			return 0
		})
		if i < len(cps) {
			lat = append(lat, cps[i].at.Sub(t0))
		}
	}
	slices.Sort(lat)
	res.P50ms, res.P99ms = percentile(lat, 50), percentile(lat, 99)

	// Proofs over Tessera's tiles, one worker per core.
	raw, err := reader.ReadCheckpoint(ctx)
	if err != nil {
		return err
	}
	n, err := note.Open(raw, note.VerifierList(verifier))
	if err != nil {
		return err
	}
	var origin, root64 string
	var size int64
	fmt.Sscanf(n.Text, "%s\n%d\n%s\n", &origin, &size, &root64)
	root, err := tlog.ParseHash(root64)
	if err != nil {
		return err
	}
	tree := tlog.Tree{N: size, Hash: root}
	tr := tileReader{ctx: ctx, r: reader}
	var done atomic.Int64
	var proofErr atomic.Pointer[error]
	pStart := time.Now()
	for w := 0; w < res.Cores; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			thr := tlog.TileHashReader(tree, tr)
			for done.Add(1) <= int64(proofs) {
				idx := mrand.Int64N(size)
				p, err := tlog.ProveRecord(size, idx, thr)
				if err == nil {
					var leaf []tlog.Hash
					leaf, err = thr.ReadHashes([]int64{tlog.StoredHashIndex(0, idx)})
					if err == nil {
						err = tlog.CheckRecord(p, size, root, idx, leaf[0])
					}
				}
				if err != nil {
					proofErr.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if p := proofErr.Load(); p != nil {
		return *p
	}
	res.Proofs = int64(proofs)
	res.ProofsPerSec = float64(proofs) / time.Since(pStart).Seconds()
	return json.NewEncoder(os.Stdout).Encode(res)
}

// tileReader reads Tessera's tiles for x/mod's TileHashReader.
type tileReader struct {
	ctx context.Context
	r   tessera.LogReader
}

func (t tileReader) Height() int { return 8 }

func (t tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, tile := range tiles {
		p := uint8(0)
		if tile.W < 256 {
			p = uint8(tile.W)
		}
		b, err := t.r.ReadTile(t.ctx, uint64(tile.L), uint64(tile.N), p)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (t tileReader) SaveTiles([]tlog.Tile, [][]byte) {}
