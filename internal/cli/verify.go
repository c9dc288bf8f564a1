package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/payment"
	civtlog "github.com/civstack/civstack/internal/tlog"
)

const verifySynopsis = `verify [flags] HC1:…|FILE|-

An SD-JWT or SD-JWT VC (FILE or -, issued or presented, from any RFC 9901
implementation) is checked offline with --issuer-key: the issuer's
signature, every disclosure, and the key binding JWT when present (its
nonce and audience against --nonce and --aud when given). The disclosed
claims are printed as JSON.

A health pass or EU Digital COVID Certificate ("HC1:…", or - to read one
from standard input) is checked offline against the node's cached trust
list and rules (DATA/health/trust-list.json and rules.json) or the --trust
file: prefix, base45, zlib, COSE, CBOR, signature, key usage, expiry,
schema and rules, one line each. It exits 0 only when every check passes.
Nothing is recorded anywhere.

Checks a receipt, e-invoice or cancellation downloaded from civstack (the
JSON file behind "Download" on a receipt page, or GET /api/v1/documents/{id}),
or a merchant's cash-flow report a lender downloaded through the merchant's
share link (its figures are printed once it verifies), offline: the
merchant's ES256 signature, that the readable copy is what was signed and
its sums add up, and, with --log-key, that the document and the merchant's
key are both included in a checkpoint signed by the transparency log. FILE
"-" reads standard input. It prints one line per check and exits 1 when any
check fails (without --log-key the log checks count as failed).

A citizen's export of "Who looked at my data" (civstack-data-accesses.json)
is checked offline the same way, one line per access: that the readable copy
is what the record says, that the record opens the commitment in its log
entry, and, with --log-key, that the entry is in a checkpoint signed by the
log. (Whether the entries are about the person the file names cannot be
checked offline: the pseudonyms' key stays with the node.) With --earlier
OLD.json, an export of hers made before, it also checks that nothing the
node showed her then has gone or changed (every access OLD proves is in
FILE at the same log entry; the log did not shrink and never signed two
trees of one size) and that nothing was kept from her then (an access FILE
proves that was made before OLD and not hidden by a deferral is in OLD).
Keep your exports: each one is evidence the next is checked against.`

func runVerify(_ context.Context, e *env, args []string) error {
	f := newFlags(e, verifySynopsis, "")
	logKey := f.String("log-key", "", "receipts, reports and data-access exports: the transparency log's verifier key (C2SP vkey, shown on the node's /log page)")
	asJSON := f.Bool("json", false, "print the report as JSON")
	trustFile := f.String("trust", "", "HC1: a PEM or DER X.509 document signing certificate, or a trust-list file, instead of the node's")
	at := f.String("at", "", "HC1: the validation clock, RFC 3339 (default: now)")
	decodeOnly := f.Bool("decode-only", false, "HC1: stop after prefix, base45, zlib, COSE and CBOR decoding")
	dataDir := f.String("data", "./civstack-data", "HC1: the node's data directory, for its trust list and rules")
	issuerKey := f.String("issuer-key", "", "SD-JWT: the issuer's public key: a JWK, a JWK set or jwt-vc-issuer metadata with one key, or a PEM file")
	nonce := f.String("nonce", "", "SD-JWT: the key binding JWT's nonce must be this")
	aud := f.String("aud", "", "SD-JWT: the key binding JWT's audience must be this")
	earlier := f.String("earlier", "", "data-access export: an export of the same citizen made before, to check that nothing in it has gone or changed")
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
	if *logKey != "" {
		if err := civtlog.CheckVerifierKey(*logKey); err != nil {
			return fmt.Errorf("%w: --log-key: %v", errUsage, err)
		}
	}
	if isHC(rest[0]) {
		return verifyHC(e, strings.TrimSpace(rest[0]), hcOptions{*trustFile, *at, *decodeOnly, *dataDir, *asJSON})
	}
	var src io.Reader = e.stdin()
	if rest[0] != "-" {
		file, err := os.Open(rest[0])
		if err != nil {
			return fmt.Errorf("open %s: %w", rest[0], errors.Unwrap(err))
		}
		defer file.Close()
		src = file
	}
	// The largest file verify takes is a citizen's export of many accesses.
	raw, err := io.ReadAll(io.LimitReader(src, exchange.MaxExport+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", rest[0], err)
	}
	if len(raw) > exchange.MaxExport {
		return fmt.Errorf("%s is larger than %d MiB: not a file civstack verify checks", rest[0], exchange.MaxExport>>20)
	}
	text := strings.TrimSpace(string(raw))
	switch {
	case isHC(text):
		return verifyHC(e, text, hcOptions{*trustFile, *at, *decodeOnly, *dataDir, *asJSON})
	case isSDJWT(text):
		return verifySDJWT(e, text, sdOptions{*issuerKey, *nonce, *aud, *at})
	}
	if exchange.IsExport(raw) {
		return verifyExport(e, raw, *logKey, *earlier, *asJSON)
	}
	if *earlier != "" {
		what := rest[0]
		if what == "-" {
			what = "the input"
		}
		return fmt.Errorf("%w: --earlier compares two exports of \"Who looked at my data\", and %s is not one", errUsage, what)
	}
	in := bytes.NewReader(raw)
	rep, err := payment.Verify(in, *logKey)
	if errors.Is(err, payment.ErrBadBundle) {
		// Say what verify reads, not only the last kind it tried.
		what := rest[0]
		if what == "-" {
			what = "the input"
		}
		return fmt.Errorf("%s is none of the files verify checks (a receipt, invoice or cash-flow report, a data-access export, an HC1: health pass or an SD-JWT): %w", what, err)
	}
	if err != nil {
		return err
	}
	lines := make([]checkLine, len(rep.Checks))
	for i, c := range rep.Checks {
		lines[i] = checkLine{c.OK, c.Name, c.Detail}
	}
	if err := printChecks(e, *asJSON, rep, lines); err != nil {
		return err
	}
	if !*asJSON {
		d := rep.Document
		if cf := d.CashFlow; cf != nil {
			e.say("verified: cash-flow report of %s (tax id %s) for %s, issued %s", d.Merchant.Name, d.Merchant.TaxID, cf.Recipient, d.IssuedAt)
			printCashFlow(e, cf, d.Currency)
			return nil
		}
		e.say("verified: %s %s from %s (tax id %s), %s %s, issued %s",
			d.Type, d.ID, d.Merchant.Name, d.Merchant.TaxID, payment.Money(d.Total), d.Currency, d.IssuedAt)
	}
	return nil
}

// printCashFlow shows a verified report's figures for the lender.
func printCashFlow(e *env, cf *payment.CashFlow, currency string) {
	currency = printable(currency) // the document's, as the period below
	pct := func(bp *int64) string {
		if bp == nil {
			return "not enough data"
		}
		return fmt.Sprintf("%+.2f%%", float64(*bp)/100)
	}
	period := "no complete month yet"
	if cf.From != "" {
		period = printable(cf.From + " to " + cf.To + " (months of " + cmp.Or(cf.TimeZone, "UTC") + ")")
	}
	refund := cf.RefundRateBP
	fmt.Fprintf(e.stdout, "  period          %s\n  revenue         %s %s (monthly average %s)\n  growth          %s\n  volatility      %s\n  refund rate     %s\n  customers       %d\n  months active   %d\n  month to date   %s %s\n",
		period, payment.Money(cf.Revenue), currency, payment.Money(cf.Average), pct(cf.GrowthBP), pct(cf.VolatilityBP), pct(&refund), cf.Customers, cf.MonthsActive,
		payment.Money(cf.MonthToDate), currency)
	for _, m := range cf.Months {
		e.say("  %s  sales %s  refunds %s  revenue %s  payments %d  customers %d", m.Month, payment.Money(m.Sales), payment.Money(m.Refunds),
			payment.Money(m.Revenue), m.Payments, m.Customers)
	}
}

// verifyExport checks a citizen's export of their data accesses, against
// the export named earlier when it is not "".
func verifyExport(e *env, raw []byte, logKey, earlier string, asJSON bool) error {
	var rep *exchange.ExportReport
	var err error
	if earlier == "" {
		rep, err = exchange.VerifyExport(bytes.NewReader(raw), logKey)
	} else {
		if logKey == "" {
			return fmt.Errorf("%w: --earlier needs --log-key (only accesses proved in the log can be compared)", errUsage)
		}
		old, oerr := os.Open(earlier)
		if oerr != nil {
			return fmt.Errorf("open %s: %w", earlier, errors.Unwrap(oerr))
		}
		defer old.Close()
		rep, err = exchange.CompareExports(old, bytes.NewReader(raw), logKey)
	}
	if err != nil {
		return err
	}
	lines := make([]checkLine, len(rep.Checks))
	for i, c := range rep.Checks {
		lines[i] = checkLine{c.OK, c.Name, c.Detail}
	}
	if err := printChecks(e, asJSON, rep, lines); err != nil {
		return err
	}
	if !asJSON {
		line := fmt.Sprintf("verified: %s to the data of %s", exchange.Accesses(rep.Accesses), rep.Person)
		if rep.Origin != "" {
			line += ", each in a checkpoint signed by " + rep.Origin
		}
		if earlier != "" {
			line += "; nothing of " + earlier + " has gone or changed, and nothing was kept from it"
		}
		e.say("%s", line)
	}
	return nil
}

// checkLine is one verification step as verify prints it.
type checkLine struct {
	ok           bool
	name, detail string
}

// printChecks writes a verification report, as indented JSON or one line
// per check, and fails with the first failed check's sentence.
func printChecks(e *env, asJSON bool, rep any, lines []checkLine) error {
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		for _, l := range lines {
			mark := "ok  "
			if !l.ok {
				mark = "FAIL"
			}
			e.say("%s %s: %s", mark, l.name, l.detail)
		}
	}
	for _, l := range lines {
		if !l.ok {
			return fmt.Errorf("not verified: %s: %s", l.name, l.detail)
		}
	}
	if len(lines) == 0 {
		return errors.New("not verified: nothing was checked")
	}
	return nil
}
