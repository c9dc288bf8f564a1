package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/civstack/civstack/internal/registry"
)

func TestLedgerAPI(t *testing.T) {
	n := startNode(t, nodeOptions{})
	ctx := context.Background()
	ops, _ := n.reg.CreateOrganisation(ctx, "Central issuer", []registry.Role{registry.Operator, registry.Merchant}, false)
	opSecret, _, _ := n.reg.CreateToken(ctx, ops.ID, registry.Operator, "back office", "")
	shopSecret, _, _ := n.reg.CreateToken(ctx, ops.ID, registry.Merchant, "till", "")
	op := newClient(t, n.URL)
	op.header.Set("Authorization", "Bearer "+opSecret)
	shop := newClient(t, n.URL)
	shop.header.Set("Authorization", "Bearer "+shopSecret)

	id := func(n int) string { return fmt.Sprintf("%032x", n) }
	expectProblem(t, "merchant token", shop.postJSON("/api/v1/ledger/accounts", map[string]any{"id": id(1), "ledger": 1, "kind": 1, "owner": "bank", "flags": 0}), 403, "Operator")
	expect(t, "issuer account", op.postJSON("/api/v1/ledger/accounts", map[string]any{"id": id(1), "ledger": 1, "kind": 1, "owner": "bank", "flags": 0}), 201, `"balance":0`)
	expect(t, "wallet", op.postJSON("/api/v1/ledger/accounts", map[string]any{"id": id(2), "ledger": 1, "kind": 2, "owner": "amira", "flags": 1, "profile": "basic"}), 201)
	expectProblem(t, "duplicate account", op.postJSON("/api/v1/ledger/accounts", map[string]any{"id": id(2), "ledger": 1, "kind": 2, "owner": "x", "flags": 1}), 409, "")
	expectProblem(t, "unknown ledger", op.postJSON("/api/v1/ledger/accounts", map[string]any{"id": id(3), "ledger": 9, "kind": 2, "owner": "x", "flags": 0}), 400, "Unknown ledger 9.")
	expectProblem(t, "bad id", op.postJSON("/api/v1/ledger/accounts", map[string]any{"id": "xyz", "ledger": 1, "kind": 2, "owner": "x", "flags": 0}), 422, "")

	r := op.postJSON("/api/v1/ledger/transfers", map[string]any{"transfers": []map[string]any{
		{"id": id(100), "debit": id(1), "credit": id(2), "amount": 50000, "code": 3},
		{"id": id(101), "debit": id(2), "credit": id(1), "amount": 999999, "code": 4},
		{"id": id(100), "debit": id(1), "credit": id(2), "amount": 50000, "code": 3},
		{"id": id(102), "debit": id(1), "credit": id(2), "amount": 0},
	}})
	expect(t, "transfers", r, 200, `"results":["ok","exceeds_per_payment_limit","exists","amount_must_be_positive"]`)
	// A timeout longer than the ledger keeps is refused as such, however
	// long: 2^55+60 seconds once wrapped around to 60 seconds.
	expect(t, "too long a timeout", op.postJSON("/api/v1/ledger/transfers", map[string]any{"transfers": []map[string]any{
		{"id": id(104), "debit": id(1), "credit": id(2), "amount": 1, "flags": 2, "timeout": 1<<55 + 60},
		{"id": id(105), "debit": id(1), "credit": id(2), "amount": 1, "flags": 2, "timeout": 1 << 32},
		{"id": id(106), "debit": id(1), "credit": id(2), "amount": 1, "flags": 2, "timeout": 1<<63 - 1},
	}}), 200, `"results":["timeout_too_long","timeout_too_long","timeout_too_long"]`)
	expectProblem(t, "negative amount", op.postJSON("/api/v1/ledger/transfers", map[string]any{"transfers": []map[string]any{
		{"id": id(103), "debit": id(1), "credit": id(2), "amount": -1}}}), 422, "")
	expect(t, "balance", op.get("/api/v1/ledger/accounts/"+id(2)), 200, `"balance":50000`)
	expect(t, "history", op.get("/api/v1/ledger/accounts/"+id(2)+"/history"), 200, `"delta":50000`, `"balance":50000`)
	r = op.get("/api/v1/ledger/transfers/" + id(100) + "/proof")
	expect(t, "proof", r, 200, `"log_index"`, `"root"`)
	expectProblem(t, "proof of nothing", op.get("/api/v1/ledger/transfers/"+id(999)+"/proof"), 404, "")
	expectProblem(t, "unknown account", op.get("/api/v1/ledger/accounts/"+id(77)), 404, "")
	expect(t, "a stored transfer", op.get("/api/v1/ledger/transfers/"+id(100)), 200, `"amount":50000`, `"time"`)
	expectProblem(t, "a refused transfer is not stored as one", op.get("/api/v1/ledger/transfers/"+id(101)), 404, "")
	expect(t, "a refused transfer's retry gets its first result", op.postJSON("/api/v1/ledger/transfers", map[string]any{"transfers": []map[string]any{
		{"id": id(101), "debit": id(2), "credit": id(1), "amount": 999999, "code": 4}}}), 200, `"results":["exceeds_per_payment_limit"]`)
	expect(t, "profiles", op.get("/api/v1/ledger/profiles"), 200, `"name":"basic","per_payment":200000,"per_day":500000,"balance_cap":1000000`)
	var many []map[string]any
	for i := 0; i < 8190; i++ {
		many = append(many, map[string]any{"id": id(1000 + i), "debit": id(1), "credit": id(2), "amount": 1})
	}
	expectProblem(t, "too many", op.postJSON("/api/v1/ledger/transfers", map[string]any{"transfers": many}), 422, "")
	if strings.Contains(op.get("/api/v1/openapi.json").body, "create-transfers") == false {
		t.Fatal("the ledger API is not described")
	}
}
