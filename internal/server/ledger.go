package server

import (
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/rewards"
)

// The ledger's machine API: the node's back office (operator tokens). The
// payments surfaces that citizens and merchants use come with the payments
// issue; they build on the same engine.

func (s *Server) ledgerRoutes(api huma.API) {
	op := func(id, method, path, summary string, status int) huma.Operation {
		return huma.Operation{OperationID: id, Method: method, Path: path, Summary: summary, DefaultStatus: status,
			MaxBodyBytes: 4 << 20, Tags: []string{"ledger"}, Metadata: map[string]any{metaRole: registry.Operator}}
	}
	huma.Register(api, op("create-ledger-account", http.MethodPost, "/ledger/accounts", "Open a ledger account", http.StatusCreated), s.apiCreateAccount)
	huma.Register(api, op("get-ledger-account", http.MethodGet, "/ledger/accounts/{id}", "An account and its balances", 0), s.apiGetAccount)
	huma.Register(api, op("ledger-history", http.MethodGet, "/ledger/accounts/{id}/history", "An account's transfers with the balance after each", 0), s.apiHistory)
	huma.Register(api, op("create-transfers", http.MethodPost, "/ledger/transfers", "Submit up to 8,189 transfers; one result each", 0), s.apiTransfers)
	huma.Register(api, op("ledger-profiles", http.MethodGet, "/ledger/profiles", "The wallet limit profiles in force", 0), s.apiProfiles)
	huma.Register(api, op("get-transfer", http.MethodGet, "/ledger/transfers/{id}", "A stored transfer", 0), s.apiGetTransfer)
	huma.Register(api, op("prove-transfer", http.MethodGet, "/ledger/transfers/{id}/proof", "A transfer's inclusion proof: batch, root, log entry", 0), s.apiProveTransfer)
}

// AccountBody is a ledger account as the API shows it.
type AccountBody struct {
	ID             string `json:"id" pattern:"^[0-9a-f]{32}$"`
	Ledger         uint32 `json:"ledger" doc:"1 digital cash (cents), 2 civic points"`
	Kind           uint8  `json:"kind" doc:"1 issuer, 2 wallet, 3 merchant, 4 fee, 5 suspense"`
	Owner          string `json:"owner" maxLength:"64"`
	Flags          uint16 `json:"flags" doc:"1 debits must not exceed credits, 2 credits must not exceed debits, 4 closed"`
	Profile        string `json:"profile,omitempty" maxLength:"32" doc:"limit profile: basic or verified"`
	DebitsPending  int64  `json:"debits_pending" readOnly:"true"`
	DebitsPosted   int64  `json:"debits_posted" readOnly:"true"`
	CreditsPending int64  `json:"credits_pending" readOnly:"true"`
	CreditsPosted  int64  `json:"credits_posted" readOnly:"true"`
	Balance        int64  `json:"balance" readOnly:"true"`
}

func accountBody(a *ledger.Account) AccountBody {
	return AccountBody{ID: a.ID.String(), Ledger: a.Ledger, Kind: uint8(a.Kind), Owner: a.Owner, Flags: uint16(a.Flags), Profile: a.Profile,
		DebitsPending: a.DebitsPending, DebitsPosted: a.DebitsPosted, CreditsPending: a.CreditsPending, CreditsPosted: a.CreditsPosted, Balance: a.Balance()}
}

func (s *Server) ledgerErr(err error) error {
	switch {
	case errors.Is(err, ledger.ErrInvalid), errors.Is(err, ledger.ErrTooMany):
		return huma.Error400BadRequest(sentence(err))
	case errors.Is(err, ledger.ErrNotFound):
		return huma.Error404NotFound(sentence(err))
	case errors.Is(err, ledger.ErrExists):
		return huma.Error409Conflict(sentence(err))
	}
	return s.apiError(err)
}

func parseLedgerID(s string) (ledger.ID, error) {
	id, err := ledger.ParseID(s)
	if err != nil {
		return id, huma.Error400BadRequest(sentence(err))
	}
	return id, nil
}

type createAccountIn struct{ Body AccountBody }
type accountOut struct{ Body AccountBody }

func (s *Server) apiCreateAccount(ctx context.Context, in *createAccountIn) (*accountOut, error) {
	id, err := parseLedgerID(in.Body.ID)
	if err != nil {
		return nil, err
	}
	a := ledger.Account{ID: id, Ledger: in.Body.Ledger, Kind: ledger.Kind(in.Body.Kind), Owner: in.Body.Owner,
		Flags: ledger.AccountFlags(in.Body.Flags), Profile: in.Body.Profile}
	if peoplesAccount(&a) {
		return nil, huma.Error409Conflict("That id is a person's wallet or points account: the payments and rewards services open those.")
	}
	if err := s.ledger.CreateAccount(ctx, a); err != nil {
		return nil, s.ledgerErr(err)
	}
	got, err := s.ledger.Account(ctx, id)
	if err != nil {
		return nil, s.ledgerErr(err)
	}
	return &accountOut{Body: accountBody(got)}, nil
}

type ledgerIDPath struct {
	ID string `path:"id" pattern:"^[0-9a-f]{32}$"`
}

func (s *Server) apiGetAccount(ctx context.Context, in *ledgerIDPath) (*accountOut, error) {
	id, err := parseLedgerID(in.ID)
	if err != nil {
		return nil, err
	}
	a, err := s.ledger.Account(ctx, id)
	if err != nil {
		return nil, s.ledgerErr(err)
	}
	if peoplesAccount(a) {
		return nil, errPeoplesAccount
	}
	return &accountOut{Body: accountBody(a)}, nil
}

// TransferBody is a transfer as the API takes and shows it.
type TransferBody struct {
	ID        string `json:"id" pattern:"^[0-9a-f]{32}$"`
	Debit     string `json:"debit,omitempty" pattern:"^([0-9a-f]{32})?$"`
	Credit    string `json:"credit,omitempty" pattern:"^([0-9a-f]{32})?$"`
	Amount    int64  `json:"amount" minimum:"0"`
	PendingID string `json:"pending_id,omitempty" pattern:"^([0-9a-f]{32})?$"`
	Ledger    uint32 `json:"ledger,omitempty"`
	Code      uint16 `json:"code,omitempty"`
	Flags     uint16 `json:"flags,omitempty" doc:"1 linked, 2 pending, 4 post pending, 8 void pending"`
	Timeout   int64  `json:"timeout,omitempty" minimum:"0" doc:"seconds, pending transfers only; at most 4294967295 (longer: timeout_too_long)"`
	Reference string `json:"reference,omitempty" maxLength:"64"`
}

// peoplesAccount reports whether a is a person's cash wallet or points
// account. Those move only through the payments and rewards services, whose
// lists the person reads (money in by POST /top-ups), so that what they
// list adds up to the balance: the back office's transfers are refused
// (account_reserved). The services never take an account of another kind
// or owner under those ids for a person's (ledger.Account.Same).
func peoplesAccount(a *ledger.Account) bool {
	return a.Kind == ledger.KindWallet && (a.ID == payment.WalletAccount(a.Owner) || a.ID == rewards.PointsAccount(a.Owner))
}

// errPeoplesAccount answers the back office's reads of a person's account
// or of a transfer that touches one: a person's payments are theirs to
// read (their wallet's history and CSV), as agencies read people's data
// only through the exchange.
var errPeoplesAccount = huma.Error403Forbidden("That is a person's wallet or points account, or a transfer of one: only they read those. The back office reads its own accounts.")

// notPeoples is errPeoplesAccount if any of the accounts is a person's
// (an account that does not exist is not).
func (s *Server) notPeoples(ctx context.Context, ids ...ledger.ID) error {
	for _, id := range ids {
		a, err := s.ledger.Account(ctx, id)
		switch {
		case errors.Is(err, ledger.ErrNotFound):
		case err != nil:
			return s.ledgerErr(err)
		case peoplesAccount(a):
			return errPeoplesAccount
		}
	}
	return nil
}

func optionalID(s string) (ledger.ID, error) {
	if s == "" {
		return ledger.ID{}, nil
	}
	return parseLedgerID(s)
}

type transfersIn struct {
	Body struct {
		Transfers []TransferBody `json:"transfers" minItems:"1" maxItems:"8189"`
	}
}

type transfersOut struct {
	Body struct {
		Results []string `json:"results" doc:"one per transfer, in order: ok, exists, or the reason it was refused; account_reserved for a person's wallet or points account, which move only through payments, top-ups and rewards"`
	}
}

// seconds is a transfer's timeout of n seconds; more than a Duration holds
// is the longest whole number of seconds it does, which the ledger refuses
// as timeout_too_long, never a product wrapped around to a short timeout.
func seconds(n int64) time.Duration {
	if n > int64(math.MaxInt64/time.Second) {
		return math.MaxInt64 / time.Second * time.Second
	}
	return time.Duration(n) * time.Second
}

func (s *Server) apiTransfers(ctx context.Context, in *transfersIn) (*transfersOut, error) {
	ts := make([]ledger.Transfer, len(in.Body.Transfers))
	for i, b := range in.Body.Transfers {
		var err error
		t := ledger.Transfer{Amount: b.Amount, Ledger: b.Ledger, Code: b.Code, Flags: ledger.TransferFlags(b.Flags),
			Timeout: seconds(b.Timeout), Reference: b.Reference}
		if t.ID, err = parseLedgerID(b.ID); err != nil {
			return nil, err
		}
		if t.Debit, err = optionalID(b.Debit); err != nil {
			return nil, err
		}
		if t.Credit, err = optionalID(b.Credit); err != nil {
			return nil, err
		}
		if t.PendingID, err = optionalID(b.PendingID); err != nil {
			return nil, err
		}
		ts[i] = t
	}
	rs, err := s.ledger.SubmitExcept(ctx, ts)
	if err != nil {
		return nil, s.ledgerErr(err)
	}
	out := &transfersOut{}
	out.Body.Results = make([]string, len(rs))
	for i, r := range rs {
		out.Body.Results[i] = r.String()
	}
	return out, nil
}

type historyIn struct {
	ID    string    `path:"id" pattern:"^[0-9a-f]{32}$"`
	From  time.Time `query:"from" doc:"RFC 3339; default 30 days ago"`
	To    time.Time `query:"to" doc:"RFC 3339; default now"`
	Limit int       `query:"limit" minimum:"1" maximum:"1000" default:"100"`
}

// HistoryEntry is one line of an account statement.
type HistoryEntry struct {
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Amount    int64     `json:"amount"`
	Delta     int64     `json:"delta" doc:"effect on the posted balance"`
	Balance   int64     `json:"balance" doc:"posted balance after the transfer"`
	Pending   bool      `json:"pending"`
	Code      uint16    `json:"code"`
	Reference string    `json:"reference,omitempty"`
}

type historyOut struct {
	Body struct {
		Entries []HistoryEntry `json:"entries"`
	}
}

func (s *Server) apiHistory(ctx context.Context, in *historyIn) (*historyOut, error) {
	id, err := parseLedgerID(in.ID)
	if err != nil {
		return nil, err
	}
	to, from := in.To, in.From
	if to.IsZero() {
		to = s.now().Add(time.Second)
	}
	if from.IsZero() {
		from = to.Add(-30 * 24 * time.Hour)
	}
	if err := s.notPeoples(ctx, id); err != nil {
		return nil, err
	}
	es, err := s.ledger.History(ctx, id, from, to, in.Limit)
	if err != nil {
		return nil, s.ledgerErr(err)
	}
	out := &historyOut{}
	out.Body.Entries = []HistoryEntry{}
	for _, e := range es {
		out.Body.Entries = append(out.Body.Entries, HistoryEntry{ID: e.ID.String(), Time: e.Timestamp, Amount: e.Amount, Delta: e.Delta,
			Balance: e.Balance, Pending: e.Pending, Code: e.Code, Reference: e.Reference})
	}
	return out, nil
}

type proofOut struct {
	Body struct {
		Batch    int64    `json:"batch"`
		Position int64    `json:"position"`
		Count    int64    `json:"count"`
		Leaf     string   `json:"leaf_hash"`
		Path     []string `json:"path"`
		Root     string   `json:"root"`
		LogIndex int64    `json:"log_index" doc:"the transparency-log entry holding root: /log/proof/inclusion?index=…"`
	}
}

func (s *Server) apiProveTransfer(ctx context.Context, in *ledgerIDPath) (*proofOut, error) {
	id, err := parseLedgerID(in.ID)
	if err != nil {
		return nil, err
	}
	if t, err := s.ledger.Transfer(ctx, id); err == nil {
		if err := s.notPeoples(ctx, t.Debit, t.Credit); err != nil {
			return nil, err
		}
	}
	p, err := s.ledger.ProveTransfer(ctx, id)
	if err != nil {
		return nil, s.ledgerErr(err)
	}
	out := &proofOut{}
	out.Body.Batch, out.Body.Position, out.Body.Count, out.Body.LogIndex = p.Batch, p.Position, p.Count, p.LogIndex
	out.Body.Leaf, out.Body.Root, out.Body.Path = p.Leaf.String(), p.Root.String(), b64s(p.Path)
	return out, nil
}

// ProfileBody is a wallet limit profile; zero means no limit.
type ProfileBody struct {
	Name       string `json:"name"`
	PerPayment int64  `json:"per_payment" doc:"the most one transfer may debit, minor units"`
	PerDay     int64  `json:"per_day" doc:"the most the account may be debited per day (the node's time zone, UTC unless set), pending included"`
	BalanceCap int64  `json:"balance_cap" doc:"the most the account may hold, pending credits included"`
}

type profilesOut struct {
	Body struct {
		Profiles []ProfileBody `json:"profiles"`
	}
}

func (s *Server) apiProfiles(ctx context.Context, _ *struct{}) (*profilesOut, error) {
	out := &profilesOut{}
	out.Body.Profiles = []ProfileBody{}
	for name, l := range s.ledger.Profiles() {
		out.Body.Profiles = append(out.Body.Profiles, ProfileBody{Name: name, PerPayment: l.PerPayment, PerDay: l.PerDay, BalanceCap: l.BalanceCap})
	}
	slices.SortFunc(out.Body.Profiles, func(a, b ProfileBody) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// StoredTransferBody is a transfer as stored, with its timestamp.
type StoredTransferBody struct {
	TransferBody
	Time time.Time `json:"time"`
}

type transferOut struct{ Body StoredTransferBody }

func (s *Server) apiGetTransfer(ctx context.Context, in *ledgerIDPath) (*transferOut, error) {
	id, err := parseLedgerID(in.ID)
	if err != nil {
		return nil, err
	}
	t, err := s.ledger.Transfer(ctx, id)
	if err != nil {
		return nil, s.ledgerErr(err)
	}
	if err := s.notPeoples(ctx, t.Debit, t.Credit); err != nil {
		return nil, err
	}
	b := TransferBody{ID: t.ID.String(), Debit: t.Debit.String(), Credit: t.Credit.String(), Amount: t.Amount, Ledger: t.Ledger,
		Code: t.Code, Flags: uint16(t.Flags), Timeout: int64(t.Timeout / time.Second), Reference: t.Reference}
	if t.PendingID != (ledger.ID{}) {
		b.PendingID = t.PendingID.String()
	}
	return &transferOut{Body: StoredTransferBody{TransferBody: b, Time: t.Timestamp}}, nil
}
