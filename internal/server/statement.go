package server

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/web"
)

// The merchant's account statement: every movement of its account over
// days it chooses, with the balance after each, so that a balance that
// moved outside the point of sale (a payout or a correction the back
// office made through the ledger's API) is explained where the merchant
// looks, and a CSV of the same for its bookkeeping.

// statementDays is the range the statement shows when none is asked.
const statementDays = 30

// statementRange reads the statement's days (from, to: YYYY-MM-DD in
// today's zone, both included; by default the statementDays days up to the
// last day asked, or up to today) as the instants they start and end at.
func statementRange(q url.Values, today time.Time) (from, to time.Time, msg string) {
	if q.Get("from") != "" {
		return exportDays(q, today)
	}
	last := q.Get("to")
	if _, to, msg = exportDays(url.Values{"from": {last}, "to": {last}}, today); msg != "" {
		return from, to, msg
	}
	return to.AddDate(0, 0, -statementDays), to, ""
}

func (s *Server) posStatement(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	ctx := r.Context()
	prof, err := s.pay.Merchant(ctx, org)
	if err != nil {
		s.posError(w, r, v, org, err)
		return
	}
	q := r.URL.Query()
	from, to, msg := statementRange(q, s.startOfDay())
	after, ok := statementAfter(q.Get("after"), from, to)
	if !ok && msg == "" {
		msg = "The place to list later movements from is not one this page made."
	}
	if msg != "" {
		s.renderPOS(w, r, v, org, http.StatusBadRequest, web.Page{Error: msg})
		return
	}
	shown := posShown()
	ms, err := s.pay.Statement(ctx, org, from, to, after, shown+1)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	later := ""
	if len(ms) > shown {
		ms, later = ms[:shown], strconv.FormatInt(ms[shown-1].Time.UnixNano(), 10)
	}
	opening, err := s.pay.MerchantBalanceAt(ctx, org, from.Add(-time.Nanosecond))
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	closing, err := s.pay.MerchantBalanceAt(ctx, org, to.Add(-time.Nanosecond))
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	last := to.AddDate(0, 0, -1)
	s.render(w, r, v, http.StatusOK, "posstatement", web.Page{Title: "Account statement · " + prof.Name, Data: map[string]any{
		"Org": org, "OrgName": prof.Name, "From": from.Format(time.DateOnly), "To": last.Format(time.DateOnly),
		"Movements": ms, "Later": later, "Paged": after != nil, "Opening": opening, "Closing": closing,
		"Today": s.startOfDay().Format(time.DateOnly), "ExportDays": maxExportDays}})
}

// statementAfter reads the place a page of the statement goes on from (the
// instant of the last movement listed, in nanoseconds; "" for the first
// page), which must lie within from and to.
func statementAfter(a string, from, to time.Time) (after *payment.Movement, ok bool) {
	if a == "" {
		return nil, true
	}
	ns, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return nil, false
	}
	at := time.Unix(0, ns) // compared as times: from and to may lie beyond what nanoseconds hold
	if at.Before(from) || !at.Before(to) {
		return nil, false
	}
	return &payment.Movement{Time: at}, true
}

// posStatementCSV is the statement's days as a spreadsheet, every movement.
func (s *Server) posStatementCSV(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	if _, err := s.pay.Merchant(r.Context(), org); err != nil {
		s.posError(w, r, v, org, err)
		return
	}
	from, to, msg := statementRange(r.URL.Query(), s.startOfDay())
	if msg != "" {
		s.renderPOS(w, r, v, org, http.StatusBadRequest, web.Page{Error: msg})
		return
	}
	cur := s.pay.Config().CurrencyCode
	writeCSVPages(s, w, r, "civstack-account-"+from.Format(time.DateOnly)+"-to-"+to.AddDate(0, 0, -1).Format(time.DateOnly)+".csv",
		s.zoned("time", "kind", "amount ("+cur+")", "balance ("+cur+")", "what", "payment", "refund of", "transfer"),
		func(after *payment.Movement, limit int) ([]*payment.Movement, error) {
			return s.pay.Statement(r.Context(), org, from, to, after, limit)
		},
		func(m *payment.Movement) []string {
			return cells(s.csvTime(m.Time.UnixMilli()), m.Kind, payment.Money(m.Amount), payment.Money(m.Balance), m.What, m.Payment, m.Original, m.Transfer)
		})
}
