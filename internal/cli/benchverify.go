package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/civstack/civstack/internal/dcc"
	"github.com/civstack/civstack/internal/healthpass"
	"github.com/civstack/civstack/internal/keyring"
)

const benchVerifySynopsis = `bench verify [--passes N] [--duration D] [--rounds N]

Verification throughput on one core (one goroutine): full checks of HC1
passes and certificates (prefix, base45, zlib, COSE, CBOR, ES256 signature
against the trust list, key usage, expiry, schema and the CertLogic rules),
against the bare ES256 signature verification of the same messages
(SHA-256 of each Sig_structure, then ECDSA P-256) in the same run.
Rounds alternate the order. Targets: at least 5,000 full checks per second
per core and at least 60% of the bare signature rate.`

func runBenchVerify(_ context.Context, e *env, args []string) error {
	f := newFlags(e, benchVerifySynopsis, "")
	n := f.Int("passes", 300, "distinct signed passes and certificates, used in turn")
	duration := f.Duration("duration", 3*time.Second, "how long each workload runs per round")
	rounds := f.Int("rounds", 3, "rounds of both workloads; the order alternates each round")
	if err := f.parse(args[1:], false); err != nil {
		return err
	}
	if *n < 1 || *duration <= 0 || *rounds < 1 {
		return fmt.Errorf("%w: --passes, --duration and --rounds must be positive", errUsage)
	}
	now := time.Now()
	dir, err := os.MkdirTemp("", "civstack-bench-verify-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	keys, err := keyring.Open(filepath.Join(dir, "keys"), time.Now, rand.Reader)
	if err != nil {
		return err
	}
	hn, err := healthpass.Setup(filepath.Join(dir, "health"), keys, "IT", now)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "signing %d passes and certificates…\n", *n)
	payloads := make([]string, *n)
	type bare struct {
		tbs  []byte // the Sig_structure
		r, s *big.Int
	}
	sigs := make([]bare, *n)
	for i := range payloads {
		h := healthpass.Holder{FamilyName: fmt.Sprintf("Rossi%d", i), GivenName: "Giulia", DOB: "1990-04-01"}
		var qr string
		if i%2 == 0 {
			qr, err = hn.Issuer.IssueHealthCode(map[string]any{"ver": dcc.HealthCodeVersion, "nam": h.Name(), "dob": h.DOB, "st": "green", "rv": hn.Rules.Version, "since": "2026-12-01"}, now, now.Add(time.Hour))
		} else {
			qr, err = hn.Issuer.Issue(map[string]any{"ver": "1.3.0", "nam": h.Name(), "dob": h.DOB, "v": []any{map[string]any{"tg": "840539006", "vp": "J07BX03",
				"mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 2, "sd": 2, "dt": "2026-06-01", "co": "IT", "is": "Health Authority", "ci": fmt.Sprintf("URN:UVCI:01:IT:%08d#1", i)}}}, now, now.Add(24*time.Hour))
		}
		if err != nil {
			return err
		}
		payloads[i] = qr
		rep := dcc.Verify(qr, dcc.Options{DecodeOnly: true})
		if rep.Sign1 == nil || len(rep.Sign1.Signature) != 64 {
			return fmt.Errorf("bench: payload %d did not decode", i)
		}
		sigs[i] = bare{rep.Sign1.ToBeSigned(), new(big.Int).SetBytes(rep.Sign1.Signature[:32]), new(big.Int).SetBytes(rep.Sign1.Signature[32:])}
	}
	pub := hn.Issuer.Key.Public().(*ecdsa.PublicKey)
	v := hn.Verifier
	full := func(i int) error {
		verdict, _ := v.Verify(payloads[i%len(payloads)], now, false)
		if !verdict.Valid {
			return fmt.Errorf("bench: payload %d did not verify: %s", i%len(payloads), verdict.Problem)
		}
		return nil
	}
	sig := func(i int) error {
		b := &sigs[i%len(sigs)]
		digest := sha256.Sum256(b.tbs) // hashing the message is part of checking its signature
		if !ecdsa.Verify(pub, digest[:], b.r, b.s) {
			return fmt.Errorf("bench: bare signature %d did not verify", i%len(sigs))
		}
		return nil
	}
	rates, err := oneCoreRounds(e, *rounds, *duration, []workload{{"full verification", full}, {"bare ES256 signature", sig}})
	if err != nil {
		return err
	}
	fullRate, sigRate := rates[0], rates[1]
	fmt.Fprintf(e.stdout, "\ncivstack verify on one core (%d passes and certificates, %d rounds of %s each)\n", *n, *rounds, *duration)
	fmt.Fprintf(e.stdout, "%-48s %10.0f\n", "full decode, verify and rules per second", fullRate)
	fmt.Fprintf(e.stdout, "%-48s %10.0f\n", "bare ES256 signature verifications per second", sigRate)
	fmt.Fprintf(e.stdout, "%-48s %9.0f%%\n", "full / bare signature:", 100*fullRate/sigRate)
	fmt.Fprintf(e.stdout, "targets: ≥5000/s per core (%s), ≥60%% of the bare rate (%s)\n", pass(fullRate >= 5000), pass(fullRate >= 0.6*sigRate))
	return nil
}

func pass(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

type workload struct {
	name string
	op   func(i int) error
}

// oneCoreRounds runs each workload on one goroutine with GOMAXPROCS 1 for
// d per round, reversing the order every other round, and returns each
// one's mean rate per second.
func oneCoreRounds(e *env, rounds int, d time.Duration, ws []workload) ([]float64, error) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	sums := make([]float64, len(ws))
	for round := 0; round < rounds; round++ {
		for j := range ws {
			k := j
			if round%2 == 1 {
				k = len(ws) - 1 - j
			}
			start := time.Now()
			count := 0
			for time.Since(start) < d {
				for b := 0; b < 64; b++ {
					if err := ws[k].op(count); err != nil {
						return nil, err
					}
					count++
				}
			}
			r := float64(count) / time.Since(start).Seconds()
			sums[k] += r
			fmt.Fprintf(e.stdout, "round %d: %-30s %8.0f/s\n", round+1, ws[k].name, r)
		}
	}
	for i := range sums {
		sums[i] /= float64(rounds)
	}
	return sums, nil
}
