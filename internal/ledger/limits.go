package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Asset describes what a ledger holds.
type Asset struct {
	Name      string
	Precision int // digits after the decimal point of the minor unit
}

// The ledgers civstack keeps.
const (
	LedgerCash   uint32 = 1 // digital cash, in cents
	LedgerPoints uint32 = 2 // civic points, whole points
)

// Assets names every ledger.
var Assets = map[uint32]Asset{
	LedgerCash:   {Name: "digital cash", Precision: 2},
	LedgerPoints: {Name: "civic points", Precision: 0},
}

// Limits are a wallet tier, enforced atomically with each transfer. Zero
// means no limit. Amounts are minor units of the account's ledger.
type Limits struct {
	PerPayment int64 // the most one transfer may debit
	PerDay     int64 // the most the account may be debited per calendar day (UTC, or the engine's zone: SetZone; pending included)
	BalanceCap int64 // the most the account may hold (pending credits included)
}

// DefaultProfiles are the e-CNY-style wallet tiers, in cents: a wallet
// opened with a phone number only, and one tied to an identity credential and
// a bank account.
var DefaultProfiles = map[string]Limits{
	"basic":    {PerPayment: 2_000_00, PerDay: 5_000_00, BalanceCap: 10_000_00},
	"verified": {PerPayment: 50_000_00, PerDay: 100_000_00, BalanceCap: 500_000_00},
}

// profileLimits is the JSON an operator writes: profile name to limits.
type profileLimits struct {
	PerPayment int64 `json:"per_payment"`
	PerDay     int64 `json:"per_day"`
	BalanceCap int64 `json:"balance_cap"`
}

// ParseProfiles reads limit profiles from JSON, e.g.
//
//	{"basic": {"per_payment": 200000, "per_day": 500000, "balance_cap": 1000000}}
//
// Amounts are minor units; zero means no limit. Names are 1 to 32 lower-case
// letters, digits or hyphens. Unknown fields are errors, so that a typo does
// not silently lift a limit.
func ParseProfiles(r io.Reader) (map[string]Limits, error) {
	dec := json.NewDecoder(io.LimitReader(r, 1<<20))
	dec.DisallowUnknownFields()
	var raw map[string]profileLimits
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: limit profiles: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: limit profiles: text after the JSON object", ErrInvalid)
	}
	out := make(map[string]Limits, len(raw))
	for name, l := range raw {
		if !validProfileName(name) {
			return nil, fmt.Errorf("%w: limit profile name %q: use 1 to 32 lower-case letters, digits or hyphens", ErrInvalid, name)
		}
		if l.PerPayment < 0 || l.PerDay < 0 || l.BalanceCap < 0 {
			return nil, fmt.Errorf("%w: limit profile %q: limits cannot be negative", ErrInvalid, name)
		}
		out[name] = Limits(l)
	}
	return out, nil
}

func validProfileName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// CheckProfiles fails when an account names a limit profile the engine does
// not know: starting with a profile dropped from the configuration would
// otherwise lift that tier's limits.
func (e *Engine) CheckProfiles(ctx context.Context) error {
	rows, err := e.db.Reader().QueryContext(ctx, "SELECT DISTINCT profile FROM ledger_accounts")
	if err != nil {
		return fmt.Errorf("limit profiles in use: %w", err)
	}
	defer rows.Close()
	var missing []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return err
		}
		if _, ok := e.profiles[p]; p != "" && !ok {
			missing = append(missing, strconv.Quote(p))
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("%w: accounts use limit profiles that are not configured: %s", ErrInvalid, strings.Join(missing, ", "))
	}
	return nil
}
