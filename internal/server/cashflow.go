package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/civstack/civstack/internal/payment"
	"github.com/civstack/civstack/internal/web"
)

// The merchant's cash-flow report: the page with every figure explained and
// the lenders it shares with (share, stop), and the lender's link, which
// answers with the signed report to check offline with `civstack verify`.

func (s *Server) cashflowRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /pos/{org}/report", s.pos(s.reportPage))
	mux.HandleFunc("POST /pos/{org}/report/shares", s.pos(s.reportShare))
	mux.HandleFunc("POST /pos/{org}/report/shares/{id}/stop", s.pos(s.reportStop))
	mux.HandleFunc("GET /reports/{token}", s.sharedReport)
}

func (s *Server) reportPage(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	s.renderReport(w, r, v, org, http.StatusOK, web.Page{}, "")
}

func (s *Server) renderReport(w http.ResponseWriter, r *http.Request, v *viewer, org string, status int, p web.Page, link string) {
	ctx := r.Context()
	m, err := s.pay.Merchant(ctx, org)
	if errors.Is(err, payment.ErrNotFound) {
		s.fail(w, r, http.StatusNotFound, "Set up payments at the point of sale first: the report is built from your civstack sales.")
		return
	}
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	cf, err := s.pay.Report(ctx, org)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	shares, err := s.pay.Shares(ctx, org)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	p.Title = "Cash-flow report · " + m.Name
	p.Data = map[string]any{"Org": org, "OrgName": m.Name, "Report": cf, "Explain": payment.Explanations, "Shares": shares, "Link": link,
		"ShareKey": "form-" + newNonce()} // a fresh key each time the form is shown
	s.render(w, r, v, status, "report", p)
}

func (s *Server) reportShare(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	if !s.parseForm(w, r) {
		return
	}
	sh, secret, err := s.pay.CreateShare(r.Context(), org, r.PostFormValue("lender"), r.PostFormValue("key"))
	if errors.Is(err, payment.ErrSharedBefore) {
		s.renderReport(w, r, v, org, http.StatusOK, web.Page{Notice: "This form was sent already: it shared the report with " + sh.Lender + ", and the link was shown once, in the first answer. If you did not copy it, stop that share below and share again."}, "")
		return
	}
	if errors.Is(err, payment.ErrInvalid) || errors.Is(err, payment.ErrNotFound) {
		s.renderReport(w, r, v, org, http.StatusBadRequest, web.Page{Error: payment.Explain(err)}, "")
		return
	}
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	s.renderReport(w, r, v, org, http.StatusOK, web.Page{Notice: "Shared with " + sh.Lender + ". Give them the link below; it is shown only now."},
		s.cfg.PublicURL.String()+"/reports/"+secret)
}

func (s *Server) reportStop(w http.ResponseWriter, r *http.Request, v *viewer, org string) {
	if !s.parseForm(w, r) {
		return
	}
	if err := s.pay.StopShare(r.Context(), org, r.PathValue("id")); err != nil {
		if !errors.Is(err, payment.ErrNotFound) {
			s.failErr(w, r, err)
			return
		}
		s.renderReport(w, r, v, org, http.StatusNotFound, web.Page{Error: "No such active share."}, "")
		return
	}
	s.renderReport(w, r, v, org, http.StatusOK, web.Page{Notice: "Stopped. The lender keeps what it already has and gets no further updates."}, "")
}

// sharedReport is the lender's link: the signed report as a JSON file.
func (s *Server) sharedReport(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	if len(token) != 43 || strings.Trim(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		s.fail(w, r, http.StatusNotFound, "This report link is unknown.")
		return
	}
	b, err := s.pay.SharedReport(r.Context(), token)
	switch {
	case errors.Is(err, payment.ErrStopped):
		s.fail(w, r, http.StatusGone, "The merchant stopped sharing this report.")
		return
	case errors.Is(err, payment.ErrNotFound):
		s.fail(w, r, http.StatusNotFound, "This report link is unknown.")
		return
	case err != nil:
		s.failErr(w, r, err)
		return
	}
	// A report signed just now is in the log within moments: wait for it
	// (up to 3 s), so that the lender's copy carries its inclusion proof.
	for i := 0; b.Log == nil && i < 30 && r.Context().Err() == nil; i++ {
		time.Sleep(100 * time.Millisecond)
		if nb, err := s.pay.Bundle(r.Context(), b.Document.ID); err == nil {
			b = nb
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Disposition", `attachment; filename="civstack-cashflow-report.json"`)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	enc.Encode(b)
}
