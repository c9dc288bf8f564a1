package payment_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestCashFlowReport: the figures on known sales, worked out by hand.
//
//	September 2026: Amira pays 10.00, Jonas 20.00    sales 30.00, revenue 30.00
//	October 2026:   Amira pays 15.00 twice, 5.00 of the first refunded
//	                                                 sales 30.00, revenue 25.00
//	November 2026:  nothing                          revenue 0
//	December 2026 (under way): Jonas pays 8.00       month to date 8.00
//
// Revenue 55.00; average 5500/3 = 1833.33 → 1833; growth (0 − 2500)/2500 =
// −100.00%; mean 1833.33, deviations 1166.67, 666.67, −1833.33, variance
// (1361111.1 + 444444.4 + 3361111.1)/3 = 1722222.2, deviation 1312.33,
// volatility 1312.33/1833.33 = 71.58%; refunds 5.00 of sales 60.00 = 8.33%;
// 2 customers; 2 active months.
func TestCashFlowReport(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := setupAt(t, db, time.Date(2026, 9, 1, 9, 0, 0, 0, time.UTC))
		static, err := w.svc.StaticCode(w.vendor)
		if err != nil {
			t.Fatal(err)
		}
		at := func(month time.Month, day int) {
			w.clock.mu.Lock()
			w.clock.t = time.Date(2026, month, day, 12, 0, 0, 0, time.UTC)
			w.clock.mu.Unlock()
		}
		pay := func(who string, amount int64) *payment.Payment {
			p, err := w.svc.Pay(ctx, payment.PayRequest{Payer: who, Payload: static, Amount: amount, Nonce: nonce()})
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		at(9, 5)
		pay("amira", 10_00)
		at(9, 20)
		pay("jonas", 20_00)
		at(10, 3)
		first := pay("amira", 15_00)
		at(10, 4)
		pay("amira", 15_00)
		at(10, 10)
		if _, err := w.svc.Refund(ctx, w.vendor.OrgID, first.ID, 5_00, "r1"); err != nil {
			t.Fatal(err)
		}
		at(12, 15)
		pay("jonas", 8_00)

		cf, err := w.svc.Report(ctx, w.vendor.OrgID)
		if err != nil {
			t.Fatal(err)
		}
		if cf.From != "2026-09" || cf.To != "2026-11" || len(cf.Months) != 3 {
			t.Fatalf("period %s..%s, %d months; want 2026-09..2026-11, 3", cf.From, cf.To, len(cf.Months))
		}
		for i, want := range []payment.MonthFlow{
			{Month: "2026-09", Sales: 30_00, Revenue: 30_00, Payments: 2, Customers: 2},
			{Month: "2026-10", Sales: 30_00, Refunds: 5_00, Revenue: 25_00, Payments: 2, Customers: 1},
			{Month: "2026-11"},
		} {
			if cf.Months[i] != want {
				t.Errorf("month %d: %+v, want %+v", i, cf.Months[i], want)
			}
		}
		check := func(name string, got, want int64) {
			if got != want {
				t.Errorf("%s = %d, want %d", name, got, want)
			}
		}
		check("revenue", cf.Revenue, 55_00)
		check("monthly average", cf.Average, 18_33)
		if cf.GrowthBP == nil || cf.VolatilityBP == nil {
			t.Fatalf("growth %v, volatility %v", cf.GrowthBP, cf.VolatilityBP)
		}
		check("growth (bp)", *cf.GrowthBP, -10000)
		check("volatility (bp)", *cf.VolatilityBP, 7158)
		check("refund rate (bp)", cf.RefundRateBP, 833)
		check("customers", cf.Customers, 2)
		check("months active", int64(cf.MonthsActive), 2)
		check("month to date", cf.MonthToDate, 8_00)

		// A merchant with no sales gets an empty report; nobody computed one
		// for it (no signed report exists for a merchant that did not share).
		if empty, err := w.svc.Report(ctx, w.shop.OrgID); err != nil || len(empty.Months) != 0 || empty.GrowthBP != nil {
			t.Fatalf("empty report: %v %+v", err, empty)
		}

		// The lender is named in the signed report: one line of text of up
		// to 100 characters, refused before anything is made.
		for _, bad := range []string{"Emilia\nCredit Union", "Emilia \u202enoinU", strings.Repeat("Ж", 101)} {
			if _, _, err := w.svc.CreateShare(ctx, w.vendor.OrgID, bad, ""); !errors.Is(err, payment.ErrInvalid) {
				t.Fatalf("lender %.20q: %v", bad, err)
			}
		}
		sh, secret, err := w.svc.CreateShare(ctx, w.vendor.OrgID, "Emilia Credit Union", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := w.log.Integrate(ctx); err != nil {
			t.Fatal(err)
		}
		b, err := w.svc.SharedReport(ctx, secret)
		if err != nil {
			t.Fatal(err)
		}
		rep := verify(t, b, w.vkey)
		if !rep.OK() || rep.Document.CashFlow == nil || rep.Document.CashFlow.Revenue != 55_00 || rep.Document.CashFlow.Recipient != "Emilia Credit Union" {
			t.Fatalf("the lender's copy: %s %+v", rep.Failed(), rep.Checks)
		}
		b.Document.CashFlow.Revenue = 99_00 // the readable copy, changed
		if verify(t, b, w.vkey).OK() {
			t.Fatal("a changed report verified")
		}
		if _, err := w.svc.SharedReport(ctx, secret+"x"); !errors.Is(err, payment.ErrNotFound) {
			t.Fatalf("a wrong link: %v", err)
		}
		shares, err := w.svc.Shares(ctx, w.vendor.OrgID)
		if err != nil || len(shares) != 1 || shares[0].Sent != 1 || shares[0].Lender != "Emilia Credit Union" {
			t.Fatalf("shares: %v %+v", err, shares)
		}
		if err := w.svc.StopShare(ctx, w.shop.OrgID, sh.ID); !errors.Is(err, payment.ErrNotFound) {
			t.Fatalf("another merchant stopped the share: %v", err)
		}
		if err := w.svc.StopShare(ctx, w.vendor.OrgID, sh.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := w.svc.SharedReport(ctx, secret); !errors.Is(err, payment.ErrStopped) {
			t.Fatalf("after stopping: %v", err)
		}
		var n int
		if err := db.Reader().QueryRow(`SELECT COUNT(*) FROM payment_documents WHERE kind = 'cashflow' AND org_id <> $1`, w.vendor.OrgID).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%d reports about merchants that did not ask (%v)", n, err)
		}

		// The share form sent twice (its key): one share; the second send
		// gets the first without its link.
		made, link, err := w.svc.CreateShare(ctx, w.vendor.OrgID, "Bologna Microcredit", "form-1")
		if err != nil || link == "" {
			t.Fatal(err)
		}
		again, link2, err := w.svc.CreateShare(ctx, w.vendor.OrgID, "Bologna Microcredit", "form-1")
		if !errors.Is(err, payment.ErrSharedBefore) || link2 != "" || again == nil || again.ID != made.ID || again.Lender != "Bologna Microcredit" {
			t.Fatalf("the form sent twice: %+v %q %v", again, link2, err)
		}
		if shares, _ := w.svc.Shares(ctx, w.vendor.OrgID); len(shares) != 2 {
			t.Fatalf("%d shares after the form was sent twice, want 2 (one stopped before)", len(shares))
		}
		if other, _, err := w.svc.CreateShare(ctx, w.shop.OrgID, "Bologna Microcredit", "form-1"); err != nil || other.ID == made.ID {
			t.Fatalf("another merchant's form with the same key: %v", err)
		}
	})
}

// TestCashFlowMonthsOfTheCity: the report's months are the node's zone's,
// as the merchant's books and the point of sale's days are. In Rome, 23:30
// UTC on 31 October is already November, and 23:30 UTC on 30 November is
// December, so November is complete.
func TestCashFlowMonthsOfTheCity(t *testing.T) {
	rome, err := time.LoadLocation("Europe/Rome")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		zone           *time.Location
		name, from, to string
		months         []int64 // revenue per month
	}{
		{rome, "Europe/Rome", "2026-10", "2026-11", []int64{5_00, 10_00}},
		{nil, "UTC", "2026-10", "2026-10", []int64{15_00}}, // November under way
	} {
		t.Run(c.name, func(t *testing.T) {
			storetest.Each(t, func(t *testing.T, db *store.DB) {
				ctx := context.Background()
				cfg := payment.DefaultConfig
				cfg.Zone = c.zone
				w := setupWith(t, db, time.Date(2026, 10, 31, 22, 30, 0, 0, time.UTC), cfg)
				static, err := w.svc.StaticCode(w.vendor)
				if err != nil {
					t.Fatal(err)
				}
				at := func(t time.Time) {
					w.clock.mu.Lock()
					w.clock.t = t
					w.clock.mu.Unlock()
				}
				pay := func(amount int64) {
					if _, err := w.svc.Pay(ctx, payment.PayRequest{Payer: "amira", Payload: static, Amount: amount, Nonce: nonce()}); err != nil {
						t.Fatal(err)
					}
				}
				at(time.Date(2026, 10, 31, 22, 30, 0, 0, time.UTC)) // 23:30 in Rome, 31 October
				pay(5_00)
				at(time.Date(2026, 10, 31, 23, 30, 0, 0, time.UTC)) // 00:30 in Rome, 1 November
				pay(10_00)
				at(time.Date(2026, 11, 30, 23, 30, 0, 0, time.UTC)) // 00:30 in Rome, 1 December
				cf, err := w.svc.Report(ctx, w.vendor.OrgID)
				if err != nil {
					t.Fatal(err)
				}
				var got []int64
				for _, m := range cf.Months {
					got = append(got, m.Revenue)
				}
				if cf.TimeZone != c.name || cf.From != c.from || cf.To != c.to || !slices.Equal(got, c.months) || cf.MonthToDate != 0 {
					t.Errorf("%s: zone %q, %s..%s, revenue %v, month to date %d; want %q, %s..%s, %v, 0",
						c.name, cf.TimeZone, cf.From, cf.To, got, cf.MonthToDate, c.name, c.from, c.to, c.months)
				}
			})
		})
	}
}
