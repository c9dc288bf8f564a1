package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/civstack/civstack/internal/emv"
)

const qrSynopsis = `qr decode PAYLOAD     print the fields of an EMV merchant QR
                                     payload as JSON (PAYLOAD "-" reads it
                                     from standard input)`

// qrDecoded is what qr decode prints.
type qrDecoded struct {
	Valid    bool          `json:"valid"`
	Schemes  []string      `json:"schemes"`
	Civstack *emv.Civstack `json:"civstack,omitempty"`
	Foreign  string        `json:"foreign,omitempty"`
	Notes    []string      `json:"notes,omitempty"`
	Fields   []emv.Field   `json:"fields"`
}

func runQR(_ context.Context, e *env, args []string) error {
	f := newFlags(e, qrSynopsis, "Reads any EMVCo merchant-presented payload (civstack, Pix, PromptPay, PayNow,\n"+
		"UnionPay…): checks its lengths (in characters), field formats and\n"+
		"CRC-16/CCITT-FALSE, and prints every field, nested templates included, in the\n"+
		"payload's order. An invalid payload exits with status 1 and the reason.")
	if err := f.parse(args, true); err != nil {
		return err
	}
	rest := f.Args()
	if len(rest) != 2 || rest[0] != "decode" {
		return fmt.Errorf("%w: say qr decode PAYLOAD (see civstack qr --help)", errUsage)
	}
	payload := rest[1]
	if payload == "-" {
		b, err := io.ReadAll(io.LimitReader(e.stdin(), emv.MaxLen+2))
		if err != nil {
			return fmt.Errorf("read standard input: %w", err)
		}
		payload = strings.TrimRight(string(b), "\r\n")
	}
	p, err := emv.Parse(payload)
	if err != nil {
		return err
	}
	out := qrDecoded{Valid: true, Schemes: p.Schemes(), Notes: p.Notes(), Fields: p.Fields}
	c, err := p.Civstack()
	switch {
	case err == nil:
		out.Civstack = c
	case errors.Is(err, emv.ErrForeign):
		out.Foreign = err.Error()
	default:
		return err
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}
