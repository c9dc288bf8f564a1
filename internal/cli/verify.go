package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/civstack/civstack/internal/payment"
)

const verifySynopsis = `verify [flags] HC1:…|FILE|-

A health pass or EU Digital COVID Certificate ("HC1:…", or - to read one
from standard input) is checked offline against the node's cached trust
list and rules (DATA/health/trust-list.json and rules.json) or the --trust
file: prefix, base45, zlib, COSE, CBOR, signature, key usage, expiry,
schema and rules, one line each. It exits 0 only when every check passes.
Nothing is recorded anywhere.

Checks a receipt, e-invoice or cancellation downloaded from civstack (the
JSON file behind "Download" on a receipt page, or GET /api/v1/documents/{id}),
offline: the merchant's ES256 signature, that the readable copy is what was
signed and its sums add up, and, with --log-key, that the document and the
merchant's key are both included in a checkpoint signed by the transparency
log. FILE "-" reads standard input. It prints one line per check and exits 1
when any check fails (without --log-key the log checks count as failed).`

func runVerify(_ context.Context, e *env, args []string) error {
	f := newFlags(e, verifySynopsis, "")
	logKey := f.String("log-key", "", "receipts: the transparency log's verifier key (C2SP vkey, shown on the node's /log page)")
	asJSON := f.Bool("json", false, "print the report as JSON")
	trustFile := f.String("trust", "", "HC1: a PEM or DER X.509 document signing certificate, or a trust-list file, instead of the node's")
	at := f.String("at", "", "HC1: the validation clock, RFC 3339 (default: now)")
	decodeOnly := f.Bool("decode-only", false, "HC1: stop after prefix, base45, zlib, COSE and CBOR decoding")
	dataDir := f.String("data", "./civstack-data", "HC1: the node's data directory, for its trust list and rules")
	if err := f.parse(args, true); err != nil {
		return err
	}
	rest := f.Args()
	if len(rest) > 1 { // flags after the file name
		if err := f.parse(rest[1:], false); err != nil {
			return err
		}
		rest = rest[:1]
	}
	if len(rest) != 1 {
		return fmt.Errorf("%w: say verify FILE (see civstack verify --help)", errUsage)
	}
	in := e.stdin()
	if isHC(rest[0]) {
		return verifyHC(e, strings.TrimSpace(rest[0]), hcOptions{*trustFile, *at, *decodeOnly, *dataDir, *asJSON})
	}
	if rest[0] == "-" {
		raw, err := io.ReadAll(io.LimitReader(in, 1<<20))
		if err != nil {
			return fmt.Errorf("read standard input: %w", err)
		}
		if text := strings.TrimSpace(string(raw)); isHC(text) {
			return verifyHC(e, text, hcOptions{*trustFile, *at, *decodeOnly, *dataDir, *asJSON})
		}
		in = bytes.NewReader(raw)
	} else {
		file, err := os.Open(rest[0])
		if err != nil {
			return fmt.Errorf("open %s: %w", rest[0], errors.Unwrap(err))
		}
		defer file.Close()
		in = file
	}
	rep, err := payment.Verify(in, *logKey)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		for _, c := range rep.Checks {
			mark := "ok  "
			if !c.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(e.stdout, "%s %s: %s\n", mark, c.Name, c.Detail)
		}
	}
	if !rep.OK() {
		return fmt.Errorf("not verified: %s", rep.Failed())
	}
	if !*asJSON {
		d := rep.Document
		fmt.Fprintf(e.stdout, "verified: %s %s from %s (tax id %s), %s %s, issued %s\n",
			d.Type, d.ID, d.Merchant.Name, d.Merchant.TaxID, payment.Money(d.Total), d.Currency, d.IssuedAt)
	}
	return nil
}
