package ledger

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
	PerDay     int64 // the most the account may be debited per UTC day (pending included)
	BalanceCap int64 // the most the account may hold (pending credits included)
}

// DefaultProfiles are the e-CNY-style wallet tiers, in cents: a wallet
// opened with a phone number only, and one tied to an identity credential and
// a bank account.
var DefaultProfiles = map[string]Limits{
	"basic":    {PerPayment: 2_000_00, PerDay: 5_000_00, BalanceCap: 10_000_00},
	"verified": {PerPayment: 50_000_00, PerDay: 100_000_00, BalanceCap: 500_000_00},
}
