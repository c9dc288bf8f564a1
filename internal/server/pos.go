package server

import (
	"cmp"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/civstack/civstack/internal/barcode"
	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/web"
)

// The merchant's point of sale: take a payment (charge a customer's payment
// code, or show a QR code for one sale), today's sales as they arrive,
// refunds, invoices, and the printable static QR code.

func (s *Server) posRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /pos/{org}", s.pos(s.posPage))
	mux.HandleFunc("GET /pos/{org}/sales", s.pos(s.posSales))
	mux.HandleFunc("GET /pos/{org}/sales.csv", s.pos(s.posSalesCSV))
	mux.HandleFunc("GET /pos/{org}/days", s.pos(s.posDay))
	mux.HandleFunc("GET /pos/{org}/account", s.pos(s.posStatement))
	mux.HandleFunc("GET /pos/{org}/account.csv", s.pos(s.posStatementCSV))
	mux.HandleFunc("POST /pos/{org}/setup", s.pos(s.posSetup))
	mux.HandleFunc("POST /pos/{org}/charge", s.pos(s.posCharge))
	mux.HandleFunc("POST /pos/{org}/sale", s.pos(s.posSale))
	mux.HandleFunc("GET /pos/{org}/sale/{sale}/status", s.pos(s.posSaleStatus))
	mux.HandleFunc("POST /pos/{org}/payments/{id}/refund", s.pos(s.posRefund))
	mux.HandleFunc("POST /pos/{org}/invoices/{id}/cancel", s.pos(s.posCancelInvoice))
	mux.HandleFunc("GET /pos/{org}/qr", s.pos(s.posQRPage))
	mux.HandleFunc("GET /pos/{org}/qr.svg", s.pos(s.posQRImage))
	mux.HandleFunc("GET /pos/{org}/qr.png", s.pos(s.posQRImage))
}

// pos wraps a handler for people with the merchant role in the org.
func (s *Server) pos(h func(http.ResponseWriter, *http.Request, *viewer, string)) http.HandlerFunc {
	return s.withRole(registry.Merchant, func(w http.ResponseWriter, r *http.Request, v *viewer) {
		if org := r.PathValue("org"); v.hasMerchantRole(org) {
			h(w, r, v, org)
			return
		}
		s.fail(w, r, http.StatusNotFound, "You take no payments for such an organisation.")
	})
}

// startOfDay is midnight of now, in the node's zone.
func (s *Server) startOfDay() time.Time {
	n := s.now().In(s.cfg.Zone)
	return time.Date(n.Year(), n.Month(), n.Day(), 0, 0, 0, 0, s.cfg.Zone)
}

// posDay is one day's sales, page by page from its first, with the day's
// figures: to find an earlier day's sale (and refund it from its receipt).
func (s *Server) posDay(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	prof, err := s.pay.Merchant(r.Context(), org)
	if err != nil {
		s.posError(w, r, v, org, err)
		return
	}
	q := r.URL.Query()
	from, to, msg := exportDays(url.Values{"from": {q.Get("day")}, "to": {q.Get("day")}}, s.startOfDay())
	after, err := payment.ParseCursor(q.Get("after"))
	if msg == "" && err != nil {
		msg = "The place to list later sales from is not one this page made."
	}
	if msg != "" {
		s.renderPOS(w, r, v, org, http.StatusBadRequest, web.Page{Error: msg})
		return
	}
	shown := posShown()
	sales, err := s.pay.SalesBetween(r.Context(), org, from, to, after, shown+1)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	sales, later := pageOf(sales, shown)
	totals, err := s.pay.SalesSummary(r.Context(), org, from, to)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	day := from.Format(time.DateOnly)
	s.render(w, r, v, http.StatusOK, "posday", web.Page{Title: "Sales of " + day + " · " + prof.Name, Data: map[string]any{
		"Org": org, "OrgName": prof.Name, "Day": day, "Sales": sales, "Totals": totals, "Later": later, "Paged": !after.IsZero(),
		"Before": from.AddDate(0, 0, -1).Format(time.DateOnly), "After": from.AddDate(0, 0, 1).Format(time.DateOnly),
		"IsToday": from.Equal(s.startOfDay()), "Future": !from.Before(s.startOfDay())}})
}

// pageOf cuts a list read with one more than shown to shown, and gives the
// place the next page starts from ("" if the list ended).
func pageOf(ps []*payment.Payment, shown int) ([]*payment.Payment, string) {
	if len(ps) <= shown {
		return ps, ""
	}
	return ps[:shown], payment.Of(ps[shown-1]).String()
}

// posShownDefault is how many of the day's payments the point of sale
// lists; the CSV download has them all.
const posShownDefault = 200

func posShown() int { return int(cmp.Or(shownPOS.Load(), posShownDefault)) }

// maxExportDays bounds the days one sales download covers.
const maxExportDays = 366

// posSalesCSV is the merchant's payments and refunds from one day to
// another (both included, in the node's zone), oldest first, as a
// spreadsheet.
func (s *Server) posSalesCSV(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	if _, err := s.pay.Merchant(r.Context(), org); err != nil {
		s.posError(w, r, v, org, err)
		return
	}
	from, to, msg := exportDays(r.URL.Query(), s.startOfDay())
	if msg != "" {
		s.renderPOS(w, r, v, org, http.StatusBadRequest, web.Page{Error: msg})
		return
	}
	cur := s.pay.Config().CurrencyCode
	writeCSVPages(s, w, r, "civstack-sales-"+from.Format(time.DateOnly)+"-to-"+to.AddDate(0, 0, -1).Format(time.DateOnly)+".csv",
		s.zoned("time", "kind", "amount ("+cur+")", "not refunded ("+cur+")", "how", "reference", "payment", "refund of", "receipt"),
		func(after *payment.Payment, limit int) ([]*payment.Payment, error) {
			return s.pay.SalesBetween(r.Context(), org, from, to, payment.Of(after), limit)
		},
		func(p *payment.Payment) []string {
			kind, amount, left := "sale", p.Amount, payment.Money(p.Refundable())
			if p.Kind == payment.KindRefund {
				kind, amount, left = "refund", -p.Amount, ""
			}
			return []string{s.csvTime(p.CreatedAt.UnixMilli()), kind, payment.Money(amount), left, web.MethodName(p.Method),
				p.Reference, p.ID, p.Original, s.cfg.PublicURL.String() + "/receipts/" + p.ID}
		})
}

// exportDays reads a download's first and last day (YYYY-MM-DD in the
// node's zone; both default to today) as the times from the first's start
// until the last's end, or says what is wrong with them.
func exportDays(q url.Values, today time.Time) (from, to time.Time, msg string) {
	zone := today.Location()
	day := func(name string) (time.Time, bool) {
		v := q.Get(name)
		if v == "" {
			return today, true
		}
		d, err := time.ParseInLocation(time.DateOnly, v, zone)
		return d, err == nil
	}
	from, ok1 := day("from")
	last, ok2 := day("to")
	switch {
	case !ok1 || !ok2:
		return from, last, "Give the days as dates (YYYY-MM-DD)."
	case last.Before(from):
		return from, last, "The last day is before the first."
	case !last.Before(from.AddDate(0, 0, maxExportDays)):
		return from, last, "One download covers at most " + strconv.Itoa(maxExportDays) + " days."
	}
	return from, last.AddDate(0, 0, 1), ""
}

func (s *Server) posData(r *http.Request, org string) (map[string]any, error) {
	ctx := r.Context()
	prof, err := s.pay.Merchant(ctx, org)
	if errors.Is(err, payment.ErrNotFound) {
		o, err := s.reg.Organisation(ctx, org)
		if err != nil {
			return nil, err
		}
		return map[string]any{"Org": org, "OrgName": o.Name, "Setup": true, "City": s.pay.Config().City}, nil
	}
	if err != nil {
		return nil, err
	}
	sales, err := s.pay.Sales(ctx, org, s.startOfDay(), payment.Cursor{}, posShown())
	if err != nil {
		return nil, err
	}
	// The day's figures count every payment, however many the page lists.
	day, err := s.pay.SalesSummary(ctx, org, s.startOfDay(), s.startOfDay().AddDate(0, 0, 1))
	if err != nil {
		return nil, err
	}
	invoices, err := s.pay.Invoices(ctx, org, 50)
	if err != nil {
		return nil, err
	}
	acct, err := s.ledger.Account(ctx, payment.MerchantAccount(org))
	if err != nil {
		return nil, err
	}
	return map[string]any{"Org": org, "OrgName": prof.Name, "Profile": prof, "Sales": sales, "Total": day.Taken, "Refunds": day.Refunded,
		"Net": day.Taken - day.Refunded, "Count": day.Payments, "Invoices": invoices, "Balance": acct.Balance(), "Request": newNonce(),
		"CodeLimit": s.pay.Config().StepUp, "Today": s.startOfDay().Format(time.DateOnly), "ExportDays": maxExportDays}, nil
}

func (s *Server) renderPOS(w http.ResponseWriter, r *http.Request, v *viewer, org string, status int, p web.Page) {
	data, err := s.posData(r, org)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	if p.Notice == "" {
		switch q := r.URL.Query(); {
		case q.Get("paid") != "":
			p.Notice = "Payment received: " + q.Get("amount") + "."
		case q.Get("refunded") != "":
			p.Notice = "Refund sent."
		case q.Get("cancelled") != "":
			p.Notice = "The invoice is cancelled."
		}
	}
	p.Title = "Point of sale"
	p.Data = data
	s.render(w, r, v, status, "pos", p)
}

func (s *Server) posPage(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	s.renderPOS(w, r, v, org, http.StatusOK, web.Page{})
}

// posSales is the sales list alone, which the page polls.
func (s *Server) posSales(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	data, err := s.posData(r, org)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if err := s.pages.Fragment(w, http.StatusOK, "pos", web.Page{Data: data}); err != nil {
		s.log.Error("render fragment", "err", err)
	}
}

func (s *Server) posError(w http.ResponseWriter, r *http.Request, v *viewer, org string, err error) {
	status, msg := paymentStatus(err)
	if status >= 500 {
		s.failErr(w, r, err)
		return
	}
	s.renderPOS(w, r, v, org, status, web.Page{Error: msg})
}

func (s *Server) posSetup(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	if !s.parseForm(w, r) {
		return
	}
	vat, err := formAmount(r, "vat_rate") // percent with two decimals = basis points
	if err != nil {
		s.posError(w, r, v, org, err)
		return
	}
	f := r.PostForm
	if _, err := s.pay.SetupMerchant(r.Context(), payment.Profile{OrgID: org, Name: f.Get("name"), City: f.Get("city"), MCC: f.Get("mcc"), TaxID: f.Get("tax_id"), VATRate: vat}); err != nil {
		s.posError(w, r, v, org, err)
		return
	}
	http.Redirect(w, r, "/pos/"+org, http.StatusSeeOther)
}

func (s *Server) posCharge(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	if !s.parseForm(w, r) {
		return
	}
	amount, err := formAmount(r, "amount")
	if err != nil {
		s.posError(w, r, v, org, err)
		return
	}
	p, err := s.pay.Charge(r.Context(), payment.ChargeRequest{OrgID: org, Code: r.PostForm.Get("code"), Amount: amount,
		Reference: r.PostForm.Get("reference"), Request: r.PostForm.Get("request")})
	if err != nil {
		s.posError(w, r, v, org, err)
		return
	}
	http.Redirect(w, r, "/pos/"+org+"?paid="+p.ID+"&amount="+payment.Money(p.Amount), http.StatusSeeOther)
}

func (s *Server) posSale(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	if !s.parseForm(w, r) {
		return
	}
	amount, err := formAmount(r, "amount")
	if err != nil {
		s.posError(w, r, v, org, err)
		return
	}
	sale, err := s.pay.NewSale(r.Context(), org, amount, r.PostForm.Get("reference"), nil, 10*time.Minute)
	if err != nil {
		s.posError(w, r, v, org, err)
		return
	}
	svg, err := qrSVG(sale.Payload, "QR code for this sale")
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	s.render(w, r, v, http.StatusOK, "possale", web.Page{Title: "Sale", Data: map[string]any{"Org": org, "Sale": sale, "QR": svg}})
}

// lateSale is how long after a sale's code expires its page still asks
// for its payment: a customer who confirmed just in time is paid within it.
const lateSale = 30 * time.Second

// stopPolling is the status that tells htmx to stop polling: the answer
// is final (the sale is paid, expired, or there is none).
const stopPolling = 286

// posSaleStatus is what the sale's page polls: paid, still waiting, or
// expired (then it stops asking), or no such sale.
func (s *Server) posSaleStatus(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	ctx := r.Context()
	w.Header().Set("Cache-Control", "no-store")
	data := map[string]any{"Org": org}
	status := http.StatusOK
	p, err := s.pay.SalePayment(ctx, org, r.PathValue("sale"))
	if err == nil {
		data["Paid"], data["Payment"], status = true, p, stopPolling
	} else if errors.Is(err, payment.ErrNotFound) {
		var sale *payment.Sale
		sale, err = s.pay.Sale(ctx, org, r.PathValue("sale"))
		switch {
		case errors.Is(err, payment.ErrNotFound):
			data["Unknown"], status, err = true, stopPolling, nil
		case err == nil && !s.now().Before(sale.ExpiresAt):
			data["Expired"] = sale.ExpiresAt
			if s.now().After(sale.ExpiresAt.Add(lateSale)) {
				status = stopPolling
			}
		}
	}
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	if err := s.pages.Fragment(w, status, "possale", web.Page{Data: data}); err != nil {
		s.log.Error("render fragment", "err", err)
	}
}

func (s *Server) posRefund(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	if !s.parseForm(w, r) {
		return
	}
	amount, err := formAmount(r, "amount")
	fromReceipt := r.PostForm.Get("back") == "receipt" // the form on the sale's receipt
	if err == nil {
		_, err = s.pay.Refund(r.Context(), org, r.PathValue("id"), amount, r.PostForm.Get("refund"))
	}
	if err != nil {
		if status, msg := paymentStatus(err); fromReceipt && status < 500 {
			s.renderReceipt(w, r, v, status, web.Page{Error: msg})
			return
		}
		s.posError(w, r, v, org, err)
		return
	}
	if fromReceipt {
		http.Redirect(w, r, "/receipts/"+r.PathValue("id")+"?refunded=1", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/pos/"+org+"?refunded=1", http.StatusSeeOther)
}

func (s *Server) posCancelInvoice(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	if !s.parseForm(w, r) {
		return
	}
	if _, err := s.pay.CancelInvoice(r.Context(), org, r.PathValue("id"), r.PostForm.Get("reason")); err != nil {
		s.posError(w, r, v, org, err)
		return
	}
	http.Redirect(w, r, "/pos/"+org+"?cancelled=1", http.StatusSeeOther)
}

// staticCode is the merchant's printed code; false when a page was written.
func (s *Server) staticCode(w http.ResponseWriter, r *http.Request, v *viewer, org string) (*payment.Profile, string, bool) {
	prof, err := s.pay.Merchant(r.Context(), org)
	if err != nil {
		s.posError(w, r, v, org, err)
		return nil, "", false
	}
	code, err := s.pay.StaticCode(prof)
	if err != nil {
		s.failErr(w, r, err)
		return nil, "", false
	}
	return prof, code, true
}

func (s *Server) posQRPage(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	prof, code, ok := s.staticCode(w, r, v, org)
	if !ok {
		return
	}
	svg, err := qrSVG(code, "Pay "+prof.Name)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	s.render(w, r, v, http.StatusOK, "posqr", web.Page{Title: "Print my QR code", Data: map[string]any{"Org": org, "Profile": prof, "Payload": code, "QR": svg}})
}

func (s *Server) posQRImage(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	prof, code, ok := s.staticCode(w, r, v, org)
	if !ok {
		return
	}
	sym, err := barcode.QR(code)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	name := "civstack-qr-" + org[:min(8, len(org))]
	if r.URL.Path[len(r.URL.Path)-3:] == "png" {
		scale, _ := strconv.Atoi(r.URL.Query().Get("scale"))
		b, err := sym.PNG(min(max(scale, 8), 40))
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Content-Disposition", `inline; filename="`+name+`.png"`)
		// Opened on its own, a PNG is shown in the browser's image viewer,
		// which styles itself inline: the pages' policy would block that
		// (an error in the console, the image left unstyled). A PNG runs
		// no script, so this one only keeps frames out.
		w.Header().Set("Content-Security-Policy", imageCSP)
		w.Write(b)
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Content-Disposition", `inline; filename="`+name+`.svg"`)
	w.Write([]byte(sym.SVG("Pay " + prof.Name)))
}
