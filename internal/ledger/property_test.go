package ledger_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// world is one rapid run: a few accounts and what the model knows.
type world struct {
	prefix   [8]byte // ids are prefix ‖ counter, so that a run replays exactly
	counter  uint64
	e        *ledger.Engine
	db       *store.DB
	clk      *clock
	accounts []ledger.ID
	limited  map[ledger.ID]bool
	accepted map[ledger.ID]ledger.Transfer // as submitted
	refused  map[ledger.ID]refusal         // refused for the ledger's state
	pendings []ledger.ID
}

type refusal struct {
	t ledger.Transfer
	r ledger.Result
}

// stateful are the refusals that depend on the ledger's state: the ledger
// remembers them, so that a retry cannot succeed later.
var stateful = map[ledger.Result]bool{
	ledger.DebitAccountNotFound: true, ledger.CreditAccountNotFound: true, ledger.LedgerMismatch: true,
	ledger.DebitAccountClosed: true, ledger.CreditAccountClosed: true, ledger.ExceedsCredits: true, ledger.ExceedsDebits: true,
	ledger.Overflow: true, ledger.PendingNotFound: true, ledger.PendingNotPending: true, ledger.PendingAlreadyPosted: true,
	ledger.PendingAlreadyVoided: true, ledger.PendingExpired: true, ledger.ExceedsPendingAmount: true,
	ledger.PendingHasDifferentAccounts: true, ledger.PendingHasDifferentLedger: true, ledger.ExceedsPerPaymentLimit: true,
	ledger.ExceedsDailyLimit: true, ledger.ExceedsBalanceCap: true,
}

// TestProperties runs random operation sequences and checks the ledger's
// invariants after every step, on every engine.
func TestProperties(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		e, clk := start(t, db)
		rapid.Check(t, func(rt *rapid.T) {
			w := &world{e: e, db: db, clk: clk, limited: map[ledger.ID]bool{}, accepted: map[ledger.ID]ledger.Transfer{},
				refused: map[ledger.ID]refusal{}}
			rand.Read(w.prefix[:])
			issuer := w.newID()
			if err := e.CreateAccount(context.Background(), ledger.Account{ID: issuer, Ledger: ledger.LedgerCash, Kind: ledger.KindIssuer, Owner: "i"}); err != nil {
				rt.Fatal(err)
			}
			w.accounts = append(w.accounts, issuer)
			for i := 0; i < 4; i++ {
				id := w.newID()
				profile := rapid.SampledFrom([]string{"", "basic"}).Draw(rt, "profile")
				if err := e.CreateAccount(context.Background(), ledger.Account{ID: id, Ledger: ledger.LedgerCash, Kind: ledger.KindWallet, Owner: "w",
					Flags: ledger.DebitsMustNotExceedCredits, Profile: profile}); err != nil {
					rt.Fatal(err)
				}
				w.accounts = append(w.accounts, id)
				w.limited[id] = profile == "basic"
			}
			steps := rapid.IntRange(5, 25).Draw(rt, "steps")
			for s := 0; s < steps; s++ {
				switch rapid.IntRange(0, 9).Draw(rt, "op") {
				case 0:
					w.clk.add(time.Duration(rapid.IntRange(1, 90).Draw(rt, "secs")) * time.Second)
				case 1:
					if _, err := e.Expire(context.Background()); err != nil {
						rt.Fatal(err)
					}
				default:
					w.request(rt)
				}
				w.invariants(rt)
			}
			w.audit(rt)
		})
	})
}

func (w *world) transfer(rt *rapid.T) ledger.Transfer {
	kind := rapid.IntRange(0, 9).Draw(rt, "kind")
	if kind == 0 && len(w.accepted) > 0 { // a replay, maybe altered
		ids := make([]ledger.ID, 0, len(w.accepted))
		for id := range w.accepted {
			ids = append(ids, id)
		}
		slicesSortIDs(ids)
		t := w.accepted[rapid.SampledFrom(ids).Draw(rt, "replay")]
		if rapid.Bool().Draw(rt, "alter") {
			t.Code++ // compared strictly, unlike a post's amount of 0 ("all")
		}
		return t
	}
	if kind == 1 && len(w.refused) > 0 { // a retry of a refused transfer
		ids := make([]ledger.ID, 0, len(w.refused))
		for id := range w.refused {
			ids = append(ids, id)
		}
		slicesSortIDs(ids)
		return w.refused[rapid.SampledFrom(ids).Draw(rt, "retry")].t
	}
	if kind <= 2 && len(w.pendings) > 0 { // resolve a pending
		t := ledger.Transfer{ID: w.newID(), PendingID: rapid.SampledFrom(w.pendings).Draw(rt, "pending"), Flags: ledger.PostPending}
		if rapid.Bool().Draw(rt, "void") {
			t.Flags = ledger.VoidPending
		} else {
			t.Amount = int64(rapid.IntRange(0, 300_000).Draw(rt, "post"))
		}
		return t
	}
	t := ledger.Transfer{ID: w.newID(), Debit: rapid.SampledFrom(w.accounts).Draw(rt, "debit"), Credit: rapid.SampledFrom(w.accounts).Draw(rt, "credit"),
		Amount: int64(rapid.IntRange(-1, 400_000).Draw(rt, "amount")), Code: ledger.CodePayment}
	if kind == 3 {
		t.Flags = ledger.Pending
		t.Timeout = time.Duration(rapid.IntRange(0, 120).Draw(rt, "timeout")) * time.Second
	}
	return t
}

func (w *world) newID() ledger.ID {
	var id ledger.ID
	w.counter++
	copy(id[:8], w.prefix[:])
	binary.BigEndian.PutUint64(id[8:], w.counter)
	return id
}

func slicesSortIDs(ids []ledger.ID) {
	for i := 1; i < len(ids); i++ {
		for j := i; j > 0 && bytes.Compare(ids[j][:], ids[j-1][:]) < 0; j-- {
			ids[j], ids[j-1] = ids[j-1], ids[j]
		}
	}
}

func (w *world) request(rt *rapid.T) {
	n := rapid.IntRange(1, 5).Draw(rt, "n")
	ts := make([]ledger.Transfer, n)
	for i := range ts {
		ts[i] = w.transfer(rt)
		if i < n-1 && rapid.IntRange(0, 3).Draw(rt, "link") == 0 {
			ts[i].Flags |= ledger.Linked
		}
	}
	rs, err := w.e.Submit(context.Background(), ts)
	if err != nil {
		rt.Fatal(err)
	}
	// Chains are all or nothing.
	for i := 0; i < n; {
		end := i
		for end < n-1 && ts[end].Flags&ledger.Linked != 0 {
			end++
		}
		applied := 0
		for k := i; k <= end; k++ {
			if rs[k].Applied() {
				applied++
			}
		}
		if applied != 0 && applied != end-i+1 {
			rt.Fatalf("chain %d..%d half applied: %v", i, end, rs[i:end+1])
		}
		i = end + 1
	}
	for i, t := range ts {
		if first, ok := w.refused[t.ID]; ok && first.t == t && rs[i] != first.r && rs[i] != ledger.LinkedEventFailed && rs[i] != ledger.LinkedEventChainOpen {
			rt.Fatalf("retry of a transfer refused with %s gave %s", first.r, rs[i])
		}
		if _, ok := w.refused[t.ID]; !ok && stateful[rs[i]] {
			w.refused[t.ID] = refusal{t, rs[i]}
		}
		prev, known := w.accepted[t.ID]
		switch {
		case known && rs[i] == ledger.OK:
			rt.Fatalf("transfer %s applied twice", t.ID)
		case known && prev == t && rs[i] != ledger.Exists && rs[i] != ledger.LinkedEventFailed && rs[i] != ledger.LinkedEventChainOpen:
			rt.Fatalf("replay of an identical transfer gave %s", rs[i])
		case known && prev != t && rs[i].Applied():
			rt.Fatalf("replay with another body gave %s", rs[i])
		case rs[i] == ledger.OK:
			w.accepted[t.ID] = t
			if t.Flags&ledger.Pending != 0 {
				w.pendings = append(w.pendings, t.ID)
			}
		}
	}
}

func (w *world) invariants(rt *rapid.T) {
	ctx := context.Background()
	var dp, dP, cp, cP int64
	for _, id := range w.accounts {
		a, err := w.e.Account(ctx, id)
		if err != nil {
			rt.Fatal(err)
		}
		dp, dP, cp, cP = dp+a.DebitsPending, dP+a.DebitsPosted, cp+a.CreditsPending, cP+a.CreditsPosted
		if a.Flags&ledger.DebitsMustNotExceedCredits != 0 && a.DebitsPending+a.DebitsPosted > a.CreditsPosted {
			rt.Fatalf("account %s overdrawn: %+v", id, a)
		}
		if a.DebitsPending < 0 || a.CreditsPending < 0 {
			rt.Fatalf("negative pending: %+v", a)
		}
		if w.limited[id] && a.CreditsPosted+a.CreditsPending-a.DebitsPosted > ledger.DefaultProfiles["basic"].BalanceCap {
			rt.Fatalf("balance cap broken: %+v", a)
		}
		if w.limited[id] && a.Debited(w.clk.now()) > ledger.DefaultProfiles["basic"].PerDay {
			rt.Fatalf("daily limit broken for %s: %d debited today", id, a.Debited(w.clk.now()))
		}
	}
	if dp != cp || dP != cP {
		rt.Fatalf("the ledger does not balance: debits %d/%d, credits %d/%d", dp, dP, cp, cP)
	}
}

// audit recomputes the whole ledger from its stored transfers: posted and
// pending balances equal their sums, history links are unbroken, batch roots
// match their transfers.
func (w *world) audit(rt *rapid.T) {
	audit, err := w.e.Check(context.Background())
	if err != nil {
		rt.Fatal(err)
	}
	if len(audit.Problems) > 0 {
		rt.Fatalf("ledger check: %s", strings.Join(audit.Problems, "; "))
	}
}
