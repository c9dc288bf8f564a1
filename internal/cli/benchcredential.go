package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/civstack/civstack/internal/sdjwt"
	"github.com/civstack/civstack/internal/statuslist"
)

const benchCredentialSynopsis = `bench credential [--presentations N] [--duration D] [--rounds N]

Presentation verification throughput on one core (one goroutine): SD-JWT
VC presentations with 10 disclosures and a key binding JWT, each checked
fully (issuer signature, disclosures, key binding with nonce and audience,
expiry) and looked up in a cached, already verified status list. Baseline
in the same run: the two bare ES256 verifications each presentation needs
(issuer JWT and key binding JWT). Targets: at least 1,000 per second per
core and at least 70% of the baseline.`

func runBenchCredential(_ context.Context, e *env, args []string) error {
	f := newFlags(e, benchCredentialSynopsis, "")
	n := f.Int("presentations", 200, "distinct presentations (each its own holder key and salts), used in turn")
	duration := f.Duration("duration", 3*time.Second, "how long each workload runs per round")
	rounds := f.Int("rounds", 3, "rounds of both workloads; the order alternates each round")
	if err := f.parse(args[1:], false); err != nil {
		return err
	}
	if *n < 1 || *duration <= 0 || *rounds < 1 {
		return fmt.Errorf("%w: --presentations, --duration and --rounds must be positive", errUsage)
	}
	now := time.Now()
	issuer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const statusURI = "https://registry.example/status/1"
	list, _ := statuslist.New(1, 1<<17)
	tok, err := statuslist.Sign(list, statusURI, issuer, jose.ES256, "", now, time.Hour)
	if err != nil {
		return err
	}
	cached, err := statuslist.Parse(tok, statusURI, &issuer.PublicKey, now)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "issuing and presenting %d credentials…\n", *n)
	pres := make([]string, *n)
	type bare struct {
		input [2][]byte
		r, s  [2]*big.Int
		pub   *ecdsa.PublicKey
	}
	bares := make([]bare, *n)
	names := []string{"given_name", "family_name", "birthdate", "nationality", "street_address", "locality", "postal_code", "country", "age_over_18", "age_over_65"}
	for i := range pres {
		holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		hj, _ := jose.JSONWebKey{Key: &holder.PublicKey}.MarshalJSON()
		var jwk any
		json.Unmarshal(hj, &jwk)
		claims := map[string]any{"iss": "https://registry.example", "vct": "urn:eudi:pid:1", "iat": float64(now.Unix()), "exp": float64(now.Add(24 * time.Hour).Unix()),
			"cnf": map[string]any{"jwk": jwk}, "status": map[string]any{"status_list": map[string]any{"idx": float64(i * 613 % (1 << 17)), "uri": statusURI}}}
		for j, name := range names {
			claims[name] = sdjwt.SD{Value: fmt.Sprintf("value %d of person %d", j, i)}
		}
		payload, ds, err := sdjwt.Conceal(claims, sdjwt.RandomSalts(nil))
		if err != nil {
			return err
		}
		issued, err := sdjwt.Issue(issuer, jose.ES256, "dc+sd-jwt", payload, ds)
		if err != nil {
			return err
		}
		if pres[i], err = sdjwt.Present(issued, func(*sdjwt.Disclosure) bool { return true }, holder, jose.ES256, "bench-nonce", "https://verifier.example", now); err != nil {
			return err
		}
		p, _ := sdjwt.Parse(pres[i])
		for k, jws := range []string{p.JWT, p.KB} {
			dot := strings.LastIndexByte(jws, '.')
			sig, _ := base64.RawURLEncoding.DecodeString(jws[dot+1:])
			bares[i].input[k] = []byte(jws[:dot])
			bares[i].r[k], bares[i].s[k] = new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		}
		bares[i].pub = &holder.PublicKey
	}
	opts := sdjwt.Options{Now: now, RequireKeyBinding: true, Nonce: "bench-nonce", Audience: "https://verifier.example"}
	full := func(i int) error {
		res, err := sdjwt.Verify(pres[i%len(pres)], &issuer.PublicKey, opts)
		if err != nil {
			return fmt.Errorf("bench: presentation %d: %w", i%len(pres), err)
		}
		st := res.Claims["status"].(map[string]any)["status_list"].(map[string]any)
		if v, err := cached.List.Get(int(st["idx"].(float64))); err != nil || v != statuslist.Valid {
			return fmt.Errorf("bench: presentation %d has status %d (%v)", i%len(pres), v, err)
		}
		if len(res.Claims) != 16 {
			return fmt.Errorf("bench: presentation %d disclosed %d claims", i%len(pres), len(res.Claims))
		}
		return nil
	}
	sigs := func(i int) error {
		b := &bares[i%len(bares)]
		for k, pub := range []*ecdsa.PublicKey{&issuer.PublicKey, b.pub} {
			d := sha256.Sum256(b.input[k])
			if !ecdsa.Verify(pub, d[:], b.r[k], b.s[k]) {
				return fmt.Errorf("bench: bare signature %d/%d did not verify", i%len(bares), k)
			}
		}
		return nil
	}
	rates, err := oneCoreRounds(e, *rounds, *duration, []workload{{"full presentation check", full}, {"two bare ES256 verifications", sigs}})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\ncivstack credential presentations on one core (%d presentations, 10 disclosures + key binding, %d rounds of %s each)\n", *n, *rounds, *duration)
	fmt.Fprintf(e.stdout, "%-48s %10.0f\n", "presentations verified per second", rates[0])
	fmt.Fprintf(e.stdout, "%-48s %10.0f\n", "pairs of bare ES256 verifications per second", rates[1])
	fmt.Fprintf(e.stdout, "%-48s %9.0f%%\n", "presentations / bare pairs:", 100*rates[0]/rates[1])
	fmt.Fprintf(e.stdout, "targets: ≥1000/s per core (%s), ≥70%% of the baseline (%s)\n", pass(rates[0] >= 1000), pass(rates[0] >= 0.7*rates[1]))
	return nil
}
