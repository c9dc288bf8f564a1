package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/web"
)

// Complaints to the data-protection authority about accesses (see
// internal/exchange/complaint.go): the citizen's page for one access, with
// her complaint and the DPA's answer or the form to complain, and the
// DPA's list of complaints, with the form to answer each.

// complaintsShown is how many open complaints a page of the DPA's lists,
// and how many of the latest answered ones it shows.
const complaintsShown = 50

// complaintsListed is how many of her complaints the citizen's page lists
// (the others are on their accesses' cards).
const complaintsListed = 20

func (s *Server) complaintRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /wallet/access/complaints/{idx}", s.signedIn(s.complaintPage))
	mux.HandleFunc("POST /wallet/access/complaints/{idx}", s.signedIn(s.complain))
	mux.HandleFunc("GET /dpa/exchange/complaints", s.withRole(registry.DPA, s.dpaComplaints))
	mux.HandleFunc("POST /dpa/exchange/complaints/{id}/answer", s.withRole(registry.DPA, s.dpaAnswer))
	mux.HandleFunc("GET /dpa/exchange/complaints.csv", s.withRole(registry.DPA, s.dpaComplaintsCSV))
}

// accessEntry reads the log entry in the path of a complaint's page; one
// that is no number is a 404, as an access that is not hers.
func (s *Server) accessEntry(w http.ResponseWriter, r *http.Request) (int64, bool) {
	idx, err := strconv.ParseInt(r.PathValue("idx"), 10, 64)
	if err != nil {
		s.fail(w, r, http.StatusNotFound, "None of the accesses to your data is at that log entry.")
		return 0, false
	}
	return idx, true
}

func (s *Server) complaintPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderComplaint(w, r, v, http.StatusOK, web.Page{}, "")
}

// renderComplaint shows the citizen one of her accesses, verified, with her
// complaint about it and the DPA's answer, or the form to complain (holding
// words, as she wrote them when they were refused). An access that is not
// one she can see is a 404 that says no more.
func (s *Server) renderComplaint(w http.ResponseWriter, r *http.Request, v *viewer, status int, p web.Page, words string) {
	ctx := r.Context()
	idx, ok := s.accessEntry(w, r)
	if !ok {
		return
	}
	acc, err := s.ex.CitizenAccess(ctx, v.person.ID, idx)
	if err != nil {
		s.exchangeFail(w, r, err, func(status int, msg string) { s.fail(w, r, status, msg) })
		return
	}
	cs, err := s.ex.ComplaintsOf(ctx, v.person.ID, idx, idx)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	recs := []*exchange.Verified{acc}
	keep := s.ex.ComplaintsKept()
	var until time.Time
	if c := cs[idx]; c != nil && !c.Open() {
		until = c.Answered.Add(keep)
	}
	p.Title = "Ask the data-protection authority"
	p.Data = map[string]any{"Records": recs, "FieldList": s.fieldList(ctx, recs, nil), "Complaint": cs[idx], "Index": idx,
		"Words": words, "Max": exchange.ComplaintMax, "Kept": keep, "KeptUntil": until}
	s.render(w, r, v, status, "complaint", p)
}

// complain takes the citizen's complaint about one of her accesses.
func (s *Server) complain(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	idx, ok := s.accessEntry(w, r)
	if !ok {
		return
	}
	words := r.PostFormValue("message")
	c, err := s.ex.Complain(r.Context(), v.person.ID, idx, words)
	switch {
	case errors.Is(err, exchange.ErrDecided) && c != nil:
		// A form sent twice, or from a page left open: the first stands.
		s.renderComplaint(w, r, v, http.StatusOK, web.Page{Notice: "You asked the data-protection authority about this access already, on " + s.pages.Date(c.Created) + "; nothing changed."}, "")
	case err != nil:
		s.exchangeFail(w, r, err, func(status int, msg string) {
			if status == http.StatusNotFound {
				s.fail(w, r, status, msg)
				return
			}
			s.renderComplaint(w, r, v, status, web.Page{Error: msg}, words)
		})
	default:
		s.renderComplaint(w, r, v, http.StatusOK, web.Page{Notice: "Sent. The data-protection authority will look into this access and answer here."}, "")
	}
}

// fieldList is the function pages call to name an access's or a request's
// fields as their service labels them now (by their names when it no
// longer has them).
func (s *Server) fieldList(ctx context.Context, recs []*exchange.Verified, reqs []*exchange.Request) func(service string, fields []string) string {
	labels := map[string]*exchange.Service{}
	for _, rec := range recs {
		labels[rec.Service] = s.serviceOf(ctx, rec.Service)
	}
	for _, q := range reqs {
		labels[q.Service] = s.serviceOf(ctx, q.Service)
	}
	return func(service string, fields []string) string {
		names := slices.Clone(fields)
		if svc := labels[service]; svc != nil {
			for i, f := range names {
				names[i] = svc.Label(f)
			}
		}
		return strings.Join(names, ", ")
	}
}

// complaintsAbout are the citizen's complaints about the accesses a page
// lists, by log entry.
func (s *Server) complaintsAbout(ctx context.Context, personID string, lists ...[]*exchange.Verified) (map[int64]*exchange.Complaint, error) {
	var lo, hi int64 = -1, -1
	for _, l := range lists {
		for _, a := range l {
			if lo < 0 || a.LogIndex < lo {
				lo = a.LogIndex
			}
			hi = max(hi, a.LogIndex)
		}
	}
	if hi < 0 {
		return map[int64]*exchange.Complaint{}, nil
	}
	return s.ex.ComplaintsOf(ctx, personID, lo, hi)
}

func (s *Server) dpaComplaints(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderDPAComplaints(w, r, v, http.StatusOK, web.Page{}, nil)
}

// renderDPAComplaints shows the DPA the open complaints, the oldest first,
// complaintsShown at a time from after the one ?after= names, each with
// its access and a form to answer it, and the latest answered ones.
// drafts holds an answer refused, by complaint, to be shown again.
func (s *Server) renderDPAComplaints(w http.ResponseWriter, r *http.Request, v *viewer, status int, p web.Page, drafts map[string]string) {
	ctx := r.Context()
	after := r.URL.Query().Get("after")
	open, err := s.ex.Complaints(ctx, exchange.ComplaintQuery{After: after, Limit: complaintsShown + 1})
	if errors.Is(err, exchange.ErrInvalid) && after != "" {
		_, msg := exchangeStatus(err)
		status, p.Error, after = http.StatusBadRequest, msg+" Here are the oldest.", ""
		open, err = s.ex.Complaints(ctx, exchange.ComplaintQuery{Limit: complaintsShown + 1})
	}
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	later := ""
	if len(open) > complaintsShown {
		open = open[:complaintsShown]
		later = "/dpa/exchange/complaints?after=" + url.QueryEscape(open[complaintsShown-1].ID) + "#open-h"
	}
	answered, err := s.ex.Complaints(ctx, exchange.ComplaintQuery{Answered: true, Limit: complaintsShown})
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	count, err := s.ex.OpenComplaints(ctx)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	p.Title = "Complaints about accesses"
	by, name := map[string]string{}, s.personNames(ctx)
	for _, c := range answered {
		by[c.ID] = name(c.AnsweredBy)
	}
	p.Data = map[string]any{"Open": open, "Answered": answered, "By": by, "Count": count, "After": after, "Later": later, "Drafts": drafts,
		"Now": s.now(), "Max": exchange.ComplaintMax, "Shown": complaintsShown}
	s.render(w, r, v, status, "dpa_complaints", p)
}

// dpaAnswer takes the DPA's answer to one complaint.
func (s *Server) dpaAnswer(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	id, answer := r.PathValue("id"), r.PostFormValue("answer")
	_, err := s.ex.AnswerComplaint(r.Context(), id, v.person.ID, answer)
	if err != nil {
		s.exchangeFail(w, r, err, func(status int, msg string) {
			s.renderDPAComplaints(w, r, v, status, web.Page{Error: msg}, map[string]string{id: answer})
		})
		return
	}
	s.renderDPAComplaints(w, r, v, http.StatusOK, web.Page{Notice: "Answered. The citizen reads your answer beside the access."}, nil)
}

// dpaComplaintsCSV streams every complaint, open or answered, by the log
// entry of its access (the oldest first), as CSV: each with its access as
// the agency recorded it, the citizen's words, the answer and who at the
// DPA gave it, and never who the citizen is.
func (s *Server) dpaComplaintsCSV(w http.ResponseWriter, r *http.Request, v *viewer) {
	answeredBy := s.personNames(r.Context())
	writeCSVPages(s, w, r, csvName("civstack-complaints", s.now()),
		s.zoned("sent", "log entry", "access time", "agency", "agency id", "officer", "service", "fields", "purpose", "legal basis",
			"record", "citizen's words", "answer", "answered", "answered by"),
		func(after *exchange.Complaint, limit int) ([]*exchange.Complaint, error) {
			from := int64(-1)
			if after != nil {
				from = after.LogIndex
			}
			return s.ex.ComplaintsByEntry(r.Context(), from, limit)
		},
		func(c *exchange.Complaint) []string {
			access := []string{"", "", "", "", "", "", "", "", "cannot be read (the audit reports it)"}
			if a := c.Access; a != nil {
				access = []string{s.csvTime(a.Time), a.AgencyName, a.Agency, a.Officer, a.ServiceName, strings.Join(a.Fields, " "), a.Purpose, a.LegalBasis, "kept"}
			}
			answered := ""
			if !c.Open() {
				answered = s.csvTime(c.Answered.UnixMilli())
			}
			row := append([]string{s.csvTime(c.Created.UnixMilli()), strconv.FormatInt(c.LogIndex, 10)}, access...)
			return append(row, c.Message, c.Answer, answered, answeredBy(c.AnsweredBy))
		})
}

// personNames names people by id (who at the DPA answered a complaint,
// which is kept by id), each looked up once; one no longer registered
// stays an id, and no id is "".
func (s *Server) personNames(ctx context.Context) func(id string) string {
	names := map[string]string{"": ""}
	return func(id string) string {
		if n, ok := names[id]; ok {
			return n
		}
		names[id] = id
		if p, err := s.reg.Person(ctx, id); err == nil {
			names[id] = p.DisplayName
		}
		return names[id]
	}
}
