package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/civstack/civstack/internal/demo"
	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/rewards"
	"github.com/civstack/civstack/internal/store/storetest"
)

// operator is an API client with an operator token of the demo's
// operations organisation, labelled label.
func (w *demoWorld) operator(t *testing.T, label string) *client {
	t.Helper()
	ops, err := w.n.reg.OrganisationByName(context.Background(), "City Operations (demo)")
	if err != nil {
		t.Fatal(err)
	}
	return w.apiClient(t, ops.ID, registry.Operator, label)
}

// TestTopUpAPI: the operator's system credits a citizen's wallet through
// POST /api/v1/top-ups; the wallet lists it with its reference, so that
// the history still adds up to the balance. A retry credits nothing more,
// a reused id, an unknown person and a top-up over the cap are refused with
// nothing credited, and no other role may top up.
func TestTopUpAPI(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			ctx := context.Background()
			op := w.operator(t, "bank gateway")
			amira, jonas := w.people["Amira Haddad"], w.people["Jonas Weber"]
			balance := func(person string) int64 {
				t.Helper()
				a, err := w.n.pay.Wallet(ctx, person)
				if err != nil {
					t.Fatal(err)
				}
				return a.Balance()
			}
			before := balance(amira)
			body := map[string]any{"request_id": "sepa-2026-0001", "person": amira, "amount": 75_50, "reference": "Bank transfer"}

			// Sent three times at once (a gateway retrying): credited once,
			// each answer the same top-up.
			var wg sync.WaitGroup
			answers := make([]struct {
				status int
				top    struct {
					ID, Person, Reference string
					RequestID             string `json:"request_id"`
					CreatedAt             string `json:"created_at"`
					Amount                int64
				}
			}, 3)
			for i := range answers {
				wg.Go(func() {
					r := op.postJSON("/api/v1/top-ups", body)
					answers[i].status = r.status
					if r.status == http.StatusCreated {
						r.json(t, &answers[i].top)
					} else {
						t.Errorf("top-up %d: %d %s", i, r.status, r.body)
					}
				})
			}
			wg.Wait()
			first := answers[0].top
			for _, a := range answers {
				if a.top != first {
					t.Fatalf("the same top-up sent at once answered %+v and %+v", a.top, first)
				}
			}
			if first.Amount != 75_50 || first.Person != amira || first.Reference != "Bank transfer" || first.RequestID != "sepa-2026-0001" || len(first.ID) != 32 || first.CreatedAt == "" {
				t.Fatalf("the top-up as answered: %+v", first)
			}
			if got := balance(amira); got != before+75_50 {
				t.Fatalf("balance %d after the top-up, want %d", got, before+75_50)
			}

			// The wallet lists it, and the list adds up to the balance.
			page := w.as(t, "Amira Haddad").get("/wallet")
			expect(t, "the wallet after the top-up", page, http.StatusOK, "Top-up: Bank transfer", "75.50", "275.50")
			hist, err := w.n.pay.History(ctx, amira, 100)
			if err != nil {
				t.Fatal(err)
			}
			var sum int64
			for _, p := range hist {
				if p.Kind == payment.KindTopUp {
					sum += p.Amount
				}
			}
			if len(hist) != 2 || sum != balance(amira) {
				t.Fatalf("the history lists %d payments adding up to %d; the balance is %d", len(hist), sum, balance(amira))
			}

			// Refused, with nothing credited.
			for _, c := range []struct {
				what   string
				body   map[string]any
				status int
				text   string
			}{
				{"the same id for another amount", map[string]any{"request_id": "sepa-2026-0001", "person": amira, "amount": 80_00, "reference": "Bank transfer"}, 422, "id_reused"},
				{"the same id for another person", map[string]any{"request_id": "sepa-2026-0001", "person": jonas, "amount": 75_50, "reference": "Bank transfer"}, 422, "another wallet, amount or reference"},
				{"over the basic tier's cap", map[string]any{"request_id": "sepa-2026-0002", "person": jonas, "amount": 10_000_00}, 422, "over its balance cap of 10000.00"},
				{"a person the node does not know", map[string]any{"request_id": "sepa-2026-0003", "person": "00000000-0000-0000-0000-000000000000", "amount": 1_00}, 404, "no person with that account number"},
				{"no amount", map[string]any{"request_id": "sepa-2026-0004", "person": jonas, "amount": 0}, 422, "body.amount"},
				{"no request id", map[string]any{"person": jonas, "amount": 1_00}, 422, "required property request_id"},
				{"a reference too long", map[string]any{"request_id": "sepa-2026-0005", "person": jonas, "amount": 1_00, "reference": strings.Repeat("r", 65)}, 422, "body.reference"},
			} {
				r := op.postJSON("/api/v1/top-ups", c.body)
				expect(t, c.what, r, c.status, c.text)
				if !strings.Contains(r.header.Get("Content-Type"), "application/problem+json") {
					t.Fatalf("%s: answered as %s", c.what, r.header.Get("Content-Type"))
				}
			}
			if a, j := balance(amira), balance(jonas); a != before+75_50 || j != 200_00 {
				t.Fatalf("after the refusals: Amira %d, Jonas %d", a, j)
			}

			// Another operator organisation's request ids are its own.
			bank, err := w.n.reg.CreateOrganisation(ctx, "Savings bank gateway", []registry.Role{registry.Operator}, true)
			if err != nil {
				t.Fatal(err)
			}
			other := w.apiClient(t, bank.ID, registry.Operator, "gateway")
			r := other.postJSON("/api/v1/top-ups", map[string]any{"request_id": "sepa-2026-0001", "person": jonas, "amount": 10_00})
			expect(t, "the same request id from another operator", r, http.StatusCreated, `"amount":1000`)
			if j := balance(jonas); j != 210_00 {
				t.Fatalf("Jonas's balance after the other operator's top-up: %d", j)
			}

			// Only an operator's token may top up.
			tax, err := w.n.reg.OrganisationByName(ctx, "City Tax Office")
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []*client{w.token(t, "Rossi Groceries"), w.apiClient(t, tax.ID, registry.Agency, "system"), newClient(t, w.n.URL)} {
				r := c.postJSON("/api/v1/top-ups", map[string]any{"request_id": "mine", "person": jonas, "amount": 1_00})
				if r.status != http.StatusForbidden && r.status != http.StatusUnauthorized {
					t.Fatalf("a top-up by another role: %d %s", r.status, r.body)
				}
			}
			if j := balance(jonas); j != 210_00 {
				t.Fatalf("Jonas's balance after others tried to top it up: %d", j)
			}
		})
	}
}

// olderSeed is the payment service as an older release's demo seeding
// used it: its top-ups said "demo top-up".
type olderSeed struct{ *payment.Service }

func (o olderSeed) TopUp(ctx context.Context, id ledger.ID, person string, amount int64, _ string) (*payment.Payment, error) {
	return o.Service.TopUp(ctx, id, person, amount, "demo top-up")
}

// TestDemoTopUpsOnce: seeding the demo again (each start of serve --demo)
// credits nothing more, also where an older release made the starting
// balances under another reference (it would otherwise refuse to start).
func TestDemoTopUpsOnce(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			ctx := context.Background()
			for _, seed := range []demo.Payments{w.n.pay, olderSeed{w.n.pay}} {
				if err := demo.SeedPayments(ctx, w.n.reg, seed); err != nil {
					t.Fatal(err)
				}
			}
			a, err := w.n.pay.Wallet(ctx, w.people["Amira Haddad"])
			if err != nil {
				t.Fatal(err)
			}
			if a.Balance() != demo.TopUp {
				t.Fatalf("Amira's balance after seeding three times: %d", a.Balance())
			}
			expect(t, "the starting balance", w.as(t, "Amira Haddad").get("/wallet"), http.StatusOK, "Top-up: starting balance")
		})
	}
}

// TestBackOfficeLeavesPeoplesAccounts: the ledger's back-office API cannot
// move a person's wallet or points account (their lists would no longer add
// up to their balances), nor open or read one, while it still moves and
// reads its own accounts; and an
// account the back office opens under a person's wallet id is never taken
// for the person's wallet.
func TestBackOfficeLeavesPeoplesAccounts(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			ctx := context.Background()
			op := w.operator(t, "back office")
			amiraC := w.as(t, "Amira Haddad")
			expect(t, "Amira joins the rewards", amiraC.postForm("/wallet/rewards/join", nil), http.StatusOK, "Your member card")
			amira := w.people["Amira Haddad"]
			wallet, points := payment.WalletAccount(amira).String(), rewards.PointsAccount(amira).String()
			id := func(n int) string { return fmt.Sprintf("%032x", n) }
			for _, a := range []map[string]any{
				{"id": id(1), "ledger": 1, "kind": 1, "owner": "bank", "flags": 0},
				{"id": id(2), "ledger": 2, "kind": 1, "owner": "bank", "flags": 0},
				{"id": id(3), "ledger": 1, "kind": 2, "owner": "float", "flags": 0},
			} {
				expect(t, "a back-office account", op.postJSON("/api/v1/ledger/accounts", a), http.StatusCreated)
			}
			r := op.postJSON("/api/v1/ledger/transfers", map[string]any{"transfers": []map[string]any{
				{"id": id(100), "debit": id(1), "credit": wallet, "amount": 5_00, "code": 3},
				{"id": id(101), "debit": wallet, "credit": id(1), "amount": 1_00, "code": 4},
				{"id": id(102), "debit": id(2), "credit": points, "amount": 50, "code": 3},
				{"id": id(103), "debit": id(1), "credit": id(3), "amount": 7_00, "code": 3},
			}})
			expect(t, "transfers", r, http.StatusOK, `"results":["account_reserved","account_reserved","account_reserved","ok"]`)
			expect(t, "Amira's wallet", amiraC.get("/wallet"), http.StatusOK, `<strong id="balance">200.00</strong>`)
			defer func() { // and what the operator tops up is hers
				expect(t, "Amira's wallet at the end", amiraC.get("/wallet"), http.StatusOK, `<strong id="balance">201.00</strong>`)
			}()
			expect(t, "the back office's own account", op.get("/api/v1/ledger/accounts/"+id(3)), http.StatusOK, `"balance":700`)
			// Nor read them: a person's account, its history, a transfer of it.
			top := op.postJSON("/api/v1/top-ups", map[string]any{"request_id": "read-me", "person": amira, "amount": 1_00})
			expect(t, "a top-up", top, http.StatusCreated)
			var topped struct{ ID string }
			top.json(t, &topped)
			for _, path := range []string{"/api/v1/ledger/accounts/" + wallet, "/api/v1/ledger/accounts/" + points,
				"/api/v1/ledger/accounts/" + wallet + "/history", "/api/v1/ledger/accounts/" + points + "/history", "/api/v1/ledger/transfers/" + topped.ID,
				"/api/v1/ledger/transfers/" + topped.ID + "/proof"} {
				expectProblem(t, "the back office reads "+path, op.get(path), http.StatusForbidden, "That is a person's wallet or points account, or a transfer of one: only they read those. The back office reads its own accounts.")
			}
			expect(t, "its own account's history", op.get("/api/v1/ledger/accounts/"+id(3)+"/history"), http.StatusOK, `"delta":700`)
			expect(t, "its own transfer", op.get("/api/v1/ledger/transfers/"+id(103)), http.StatusOK, `"amount":700`)

			// The same transfer is refused again (never remembered as taken).
			expect(t, "again", op.postJSON("/api/v1/ledger/transfers", map[string]any{"transfers": []map[string]any{
				{"id": id(100), "debit": id(1), "credit": wallet, "amount": 5_00, "code": 3}}}), http.StatusOK, `"results":["account_reserved"]`)

			// The back office cannot open a person's wallet or points
			// account itself (it would choose its rules and tier) ...
			newcomer, err := w.n.reg.NewPerson("Newcomer")
			if err != nil {
				t.Fatal(err)
			}
			if err := w.n.reg.CreatePerson(ctx, newcomer, nil, ""); err != nil {
				t.Fatal(err)
			}
			for _, a := range []map[string]any{
				{"id": payment.WalletAccount(newcomer.ID).String(), "ledger": 1, "kind": 2, "owner": newcomer.ID, "flags": 1},
				{"id": rewards.PointsAccount(newcomer.ID).String(), "ledger": 2, "kind": 2, "owner": newcomer.ID, "flags": 1},
			} {
				expectProblem(t, "a person's account opened by the back office", op.postJSON("/api/v1/ledger/accounts", a), http.StatusConflict, "That id is a person's wallet or points account: the payments and rewards services open those.")
			}
			// ... and one it opens under a person's wallet id for another
			// owner is not the person's wallet.
			squat := payment.WalletAccount(newcomer.ID).String()
			expect(t, "an account under the newcomer's wallet id", op.postJSON("/api/v1/ledger/accounts",
				map[string]any{"id": squat, "ledger": 1, "kind": 2, "owner": "float", "flags": 0}), http.StatusCreated)
			expect(t, "moved by the back office", op.postJSON("/api/v1/ledger/transfers", map[string]any{"transfers": []map[string]any{
				{"id": id(104), "debit": id(1), "credit": squat, "amount": 1_00, "code": 3}}}), http.StatusOK, `"results":["ok"]`)
			if _, err := w.n.pay.Wallet(ctx, newcomer.ID); !errors.Is(err, ledger.ErrExists) {
				t.Fatalf("the newcomer's wallet: %v", err)
			}
			expectProblem(t, "a top-up into it", op.postJSON("/api/v1/top-ups", map[string]any{"request_id": "squat", "person": newcomer.ID, "amount": 1_00}),
				http.StatusConflict, "An account this needs was opened by other means under its id, so nothing was done.")
			expect(t, "the account under the id", op.get("/api/v1/ledger/accounts/"+squat), http.StatusOK, `"balance":100`)
		})
	}
}
