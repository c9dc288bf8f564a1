package ledger

// Result is the outcome of one transfer. Every rejection has its own code;
// a request never half-applies a linked chain.
type Result uint8

// Results. Their numbers are stable (the API returns their names).
const (
	OK Result = iota
	Exists
	LinkedEventFailed
	LinkedEventChainOpen
	IDMustNotBeZero
	AccountsMustBeDifferent
	AmountMustBePositive
	AmountTooLarge // not produced: amounts are int64; kept so that the numbers stay stable
	ReferenceTooLong
	TimeoutReservedForPending
	FlagsAreMutuallyExclusive
	PendingIDMustBeZero
	PendingIDRequired
	DebitAccountNotFound
	CreditAccountNotFound
	LedgerMismatch
	DebitAccountClosed
	CreditAccountClosed
	ExceedsCredits
	ExceedsDebits
	Overflow
	PendingNotFound
	PendingNotPending
	PendingAlreadyPosted
	PendingAlreadyVoided
	PendingExpired
	ExceedsPendingAmount
	PendingHasDifferentAccounts
	PendingHasDifferentLedger
	ExistsWithDifferentDebit
	ExistsWithDifferentCredit
	ExistsWithDifferentAmount
	ExistsWithDifferentPendingID
	ExistsWithDifferentLedger
	ExistsWithDifferentCode
	ExistsWithDifferentFlags
	ExistsWithDifferentTimeout
	ExistsWithDifferentReference
	ExceedsPerPaymentLimit
	ExceedsDailyLimit
	ExceedsBalanceCap
	ReservedFlag
	TimeoutTooLong
	AccountReserved // the caller may not move this account (Engine.SubmitExcept)
)

var resultNames = [...]string{
	"ok", "exists", "linked_event_failed", "linked_event_chain_open", "id_must_not_be_zero",
	"accounts_must_be_different", "amount_must_be_positive", "amount_too_large", "reference_too_long",
	"timeout_reserved_for_pending", "flags_are_mutually_exclusive", "pending_id_must_be_zero",
	"pending_id_required", "debit_account_not_found", "credit_account_not_found", "ledger_mismatch",
	"debit_account_closed", "credit_account_closed", "exceeds_credits", "exceeds_debits", "overflow",
	"pending_transfer_not_found", "pending_transfer_not_pending", "pending_transfer_already_posted",
	"pending_transfer_already_voided", "pending_transfer_expired", "exceeds_pending_transfer_amount",
	"pending_transfer_has_different_accounts", "pending_transfer_has_different_ledger",
	"exists_with_different_debit", "exists_with_different_credit", "exists_with_different_amount",
	"exists_with_different_pending_id", "exists_with_different_ledger", "exists_with_different_code",
	"exists_with_different_flags", "exists_with_different_timeout", "exists_with_different_reference",
	"exceeds_per_payment_limit", "exceeds_daily_limit", "exceeds_balance_cap", "reserved_flag", "timeout_too_long",
	"account_reserved",
}

// String is the result's stable name, e.g. "exceeds_credits".
func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return "unknown"
}

// Applied reports whether the transfer is in the ledger (new or replayed).
func (r Result) Applied() bool { return r == OK || r == Exists }
