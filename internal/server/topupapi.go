package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/registry"
)

// Top-ups: how cash gets into wallets. The operator's system (an operator
// token) credits a citizen's wallet when money for it arrives, e.g. their
// bank transfer to the node's account; the top-up is on the wallet's history
// and CSV. (The back office's /ledger/transfers cannot move a person's
// wallet: peoplesAccount.)

func (s *Server) topUpRoutes(api huma.API) {
	huma.Register(api, huma.Operation{OperationID: "top-up-wallet", Method: http.MethodPost, Path: "/top-ups",
		Summary:       "Credit a citizen's wallet with new cash; request_id makes it idempotent",
		Description:   "The top-up is listed in the citizen's wallet history (\"Top-up: reference\") and payments CSV. Sending the same request_id again credits nothing more and answers with the first top-up; the same request_id with another person, amount or reference is refused (422, id_reused). A top-up that would take the wallet over its tier's balance cap is refused (422, over_limit).",
		DefaultStatus: http.StatusCreated, MaxBodyBytes: maxAPIBody, Tags: []string{"payments"},
		Metadata: map[string]any{metaRole: registry.Operator}}, s.apiTopUp)
}

type topUpIn struct {
	Body struct {
		RequestID string `json:"request_id" minLength:"1" maxLength:"64" doc:"your organisation's id for this top-up (the bank transfer's, say): sending it again credits nothing more"`
		Person    string `json:"person" minLength:"1" maxLength:"64" doc:"the citizen's account number (on their /account page)"`
		Amount    int64  `json:"amount" minimum:"1" doc:"minor units (cents)"`
		Reference string `json:"reference,omitempty" maxLength:"64" doc:"what the citizen reads in their history, e.g. where the money came from"`
	}
}

// TopUpBody is a top-up as the API shows it.
type TopUpBody struct {
	ID        string    `json:"id" doc:"the ledger transfer's id, which the citizen's history and CSV name as the payment"`
	RequestID string    `json:"request_id"`
	Person    string    `json:"person"`
	Amount    int64     `json:"amount" doc:"minor units (cents)"`
	Reference string    `json:"reference,omitempty"`
	CreatedAt time.Time `json:"created_at" doc:"when the first send of this request_id was credited"`
}

type topUpOut struct{ Body TopUpBody }

func (s *Server) apiTopUp(ctx context.Context, in *topUpIn) (*topUpOut, error) {
	b := in.Body
	if _, err := s.reg.Person(ctx, b.Person); errors.Is(err, registry.ErrNotFound) {
		return nil, huma.Error404NotFound("There is no person with that account number on this node.")
	} else if err != nil {
		return nil, s.apiError(err)
	}
	// Each operator organisation's request ids are its own.
	p, err := s.pay.TopUp(ctx, ledger.DeriveID("civstack top-up", principalFrom(ctx).org.ID, b.RequestID), b.Person, b.Amount, b.Reference)
	if err != nil {
		return nil, s.paymentErr(err)
	}
	return &topUpOut{Body: TopUpBody{ID: p.ID, RequestID: b.RequestID, Person: p.PayeePerson, Amount: p.Amount,
		Reference: p.Reference, CreatedAt: p.CreatedAt.UTC()}}, nil
}
