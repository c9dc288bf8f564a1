package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/web"
)

// The data exchange's surfaces: the agency console (ask for fields about a
// citizen with a purpose and legal basis; collect what a citizen consented
// to), the citizen's "Who looked at my data" (consent requests, every
// access verified against the log, JSON export) and "Who may read my data"
// (the policies in force, in plain words), the policies (operators write
// them, operators and the DPA read them, also as JSON), the DPA's page,
// and the API for agencies' systems.

func (s *Server) exchangeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /exchange/{org}", s.orgRole(registry.Agency, s.agencyPage))
	mux.HandleFunc("POST /exchange/{org}/requests", s.orgRole(registry.Agency, s.agencyAsk))
	mux.HandleFunc("POST /exchange/{org}/requests/{id}/collect", s.orgRole(registry.Agency, s.agencyCollect))
	mux.HandleFunc("POST /exchange/{org}/requests/{id}/cancel", s.orgRole(registry.Agency, s.agencyCancel))
	mux.HandleFunc("GET /exchange/{org}/requests", s.orgRole(registry.Agency, s.agencyHistory))
	mux.HandleFunc("GET /exchange/{org}/releases.csv", s.orgRole(registry.Agency, s.agencyReleasesCSV))
	mux.HandleFunc("GET /wallet/access", s.signedIn(s.accessPage))
	mux.HandleFunc("GET /wallet/access.json", s.signedIn(s.accessJSON))
	mux.HandleFunc("GET /wallet/access/rules", s.signedIn(s.accessRules))
	mux.HandleFunc("POST /wallet/access/requests/{id}", s.signedIn(s.accessDecide))
	mux.HandleFunc("GET /exchange/policies", s.signedIn(s.policiesPage))
	mux.HandleFunc("GET /exchange/policies.json", s.signedIn(s.policiesJSON))
	mux.HandleFunc("POST /exchange/policies", s.withRole(registry.Operator, s.policyCreate))
	mux.HandleFunc("GET /exchange/policies/{id}/retire", s.withRole(registry.Operator, s.policyRetireConfirm))
	mux.HandleFunc("POST /exchange/policies/{id}/retire", s.withRole(registry.Operator, s.policyRetire))
	mux.HandleFunc("GET /dpa/exchange", s.withRole(registry.DPA, s.dpaPage))
	mux.HandleFunc("GET /dpa/exchange/accesses", s.withRole(registry.DPA, s.dpaAccesses))
	mux.HandleFunc("GET /dpa/exchange/accesses.csv", s.withRole(registry.DPA, s.dpaAccessesCSV))
	mux.HandleFunc("GET /dpa/exchange/denied", s.withRole(registry.DPA, s.dpaDenied))
	mux.HandleFunc("GET /dpa/exchange/denied.csv", s.withRole(registry.DPA, s.dpaDeniedCSV))
	s.complaintRoutes(mux)
}

// exchangeStatus maps exchange errors to a status and a sentence.
func exchangeStatus(err error) (int, string) {
	if status, msg, ok := sentinelStatus(err, []sentinel{{exchange.ErrInvalid, 400}, {exchange.ErrKeyReused, 422}, {exchange.ErrNotFound, 404}, {exchange.ErrDecided, 409}, {exchange.ErrInUse, 409}, {exchange.ErrPolicyInForce, 409}, {exchange.ErrLapsed, 410}}); ok {
		return status, msg
	}
	return classify(err)
}

func (s *Server) agencyPage(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	s.renderAgency(w, r, v, m, http.StatusOK, web.Page{Data: map[string]any{"WaitingAfter": r.URL.Query().Get("waiting_after")}})
}

// openShown is how many of its open requests an agency's page lists
// (the oldest asked first); recentShown how many of its latest requests,
// and historyShown how many a page of its older ones.
const (
	openShown    = 100
	recentShown  = 30
	historyShown = 50
)

// requestPage reads one page of a list of requests that goes on from
// cursor (the id of the last one shown before; "" from the start), at most
// shown of them, through read (which takes the cursor and how many to read).
// next is the cursor of the page after ("" at the end). A cursor the list
// refuses (exchange.ErrInvalid) gets the first page instead, with the
// reason as refused; used is the cursor the page was read from.
func requestPage(cursor string, shown int, read func(cursor string, limit int) ([]*exchange.Request, error)) (rs []*exchange.Request, used, next, refused string, err error) {
	rs, err = read(cursor, shown+1)
	if errors.Is(err, exchange.ErrInvalid) && cursor != "" {
		refused, cursor = sentence(err), ""
		rs, err = read("", shown+1)
	}
	if err != nil {
		return nil, "", "", "", err
	}
	if len(rs) > shown {
		rs = rs[:shown]
		next = rs[shown-1].ID
	}
	return rs, cursor, next, refused, nil
}

// olderRequests is the link to the page of an agency's requests after
// the cursor next (none when empty).
func olderRequests(org, next string) string {
	if next == "" {
		return ""
	}
	return "/exchange/" + url.PathEscape(org) + "/requests?before=" + url.QueryEscape(next)
}

// agencyHistory is every request of the agency, newest first, page by page.
func (s *Server) agencyHistory(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	before := r.URL.Query().Get("before")
	hist, err := s.ex.History(r.Context(), m.OrgID, before, historyShown)
	if err != nil {
		s.failExchange(w, r, err)
		return
	}
	s.render(w, r, v, http.StatusOK, "agency_requests", web.Page{Title: "All requests · " + m.OrgName, Data: map[string]any{
		"Org": m.OrgID, "OrgName": m.OrgName, "Requests": hist.Requests, "Older": olderRequests(m.OrgID, hist.Next),
		"Paged": before != "", "Now": s.now(),
	}})
}

func (s *Server) renderAgency(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership, status int, p web.Page) {
	ctx := r.Context()
	svcs, err := s.ex.Services(ctx)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	hist, err := s.ex.History(ctx, m.OrgID, "", recentShown)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	d, _ := p.Data.(map[string]any)
	if d == nil {
		d = map[string]any{}
	}
	// The waiting requests, openShown at a time from the oldest, or from
	// after the one the link names.
	after, _ := d["WaitingAfter"].(string)
	open, after, next, refused, err := requestPage(after, openShown, func(after string, limit int) ([]*exchange.Request, error) {
		return s.ex.OpenFor(ctx, m.OrgID, after, limit)
	})
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	if refused != "" {
		status, p.Error = http.StatusBadRequest, refused
	}
	d["WaitingAfter"] = after
	if next != "" {
		d["LaterOpen"] = "/exchange/" + url.PathEscape(m.OrgID) + "?waiting_after=" + url.QueryEscape(next) + "#open-h"
	}
	mine, err := s.ex.PoliciesFor(ctx, m.OrgID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	var purposes, bases []string // the form's suggestions, from the agency's policies
	for _, pol := range mine {
		purposes, bases = append(purposes, pol.Purpose), append(bases, pol.LegalBasis)
	}
	slices.Sort(purposes)
	slices.Sort(bases)
	d["Org"], d["OrgName"], d["Services"], d["Requests"], d["Open"], d["OpenShown"], d["Policies"] = m.OrgID, m.OrgName, svcs, hist.Requests, open, openShown, mine
	d["Older"] = olderRequests(m.OrgID, hist.Next)
	d["Purposes"], d["LegalBases"] = slices.Compact(purposes), slices.Compact(bases)
	names := map[string]string{}
	for _, svc := range svcs {
		names[svc.ID] = svc.Name
	}
	// The form's idempotency key: the same form sent twice (a reload, a
	// double click) answers with the first request instead of asking again.
	d["ServiceNames"], d["Now"], d["AskKey"] = names, s.now(), "form-"+newNonce()
	p.Title, p.Data = "Data requests · "+m.OrgName, d
	s.render(w, r, v, status, "agency", p)
}

func (s *Server) exchangeFail(w http.ResponseWriter, r *http.Request, err error, page func(status int, msg string)) {
	s.failWith(w, r, err, exchangeStatus, page)
}

// askFromForm reads an officer's request.
func askFromForm(r *http.Request, v *viewer, m registry.Membership) (exchange.Ask, error) {
	a := exchange.Ask{Requester: m.OrgID, Officer: v.person.DisplayName, Citizen: strings.TrimSpace(r.PostFormValue("citizen")),
		Service: r.PostFormValue("service"), Fields: r.PostForm["field"], Purpose: r.PostFormValue("purpose"), LegalBasis: r.PostFormValue("legal_basis"),
		Key: r.PostFormValue("key")}
	if a.Citizen == "" {
		return a, errors.New("enter the citizen's id")
	}
	if d := strings.TrimSpace(r.PostFormValue("defer_days")); d != "" {
		var ok bool
		if a.Defer, ok = formDays(d, exchange.DeferralLimit); !ok {
			return a, fmt.Errorf("the deferral is a whole number of days from 0 to %d", exchange.DeferralLimit/exchange.Day)
		}
	}
	return a, nil
}

// formDays reads a form's whole number of days from 0 to limit; a number
// past limit is refused here, before it could overflow a time.Duration and
// come back as a small one.
func formDays(s string, limit time.Duration) (time.Duration, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 || n > int64(limit/exchange.Day) {
		return 0, false
	}
	return time.Duration(n) * exchange.Day, true
}

func (s *Server) agencyAsk(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	if !s.parseForm(w, r) {
		return
	}
	a, err := askFromForm(r, v, m)
	if err != nil {
		s.renderAgency(w, r, v, m, http.StatusBadRequest, web.Page{Error: sentence(err)})
		return
	}
	if found, err := s.citizen(r.Context(), a.Citizen); found == nil {
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		s.renderAgency(w, r, v, m, http.StatusBadRequest, web.Page{Error: "There is no citizen with that id."})
		return
	}
	req, err := s.ex.Submit(r.Context(), a)
	if err != nil {
		s.exchangeFail(w, r, err, func(status int, msg string) { s.renderAgency(w, r, v, m, status, web.Page{Error: msg}) })
		return
	}
	s.agencyOutcome(w, r, v, m, req)
}

func (s *Server) agencyOutcome(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership, req *exchange.Request) {
	p := web.Page{Data: map[string]any{"Outcome": req, "OutcomeService": s.serviceOf(r.Context(), req.Service)}}
	status := http.StatusOK
	switch req.State {
	case exchange.Denied:
		p.Error, status = "Denied: "+req.Reason, http.StatusForbidden
	case exchange.AwaitConsent:
		p.Notice = "The policy needs the citizen's consent: the request is waiting in their wallet. It lapses if they do not answer by " +
			s.pages.Date(req.Lapses) + "."
	case exchange.Released:
		p.Notice = "Released. The access is recorded and the citizen can see it."
		if req.Defer > 0 {
			p.Notice = "Released. The access is recorded; the citizen sees it when the deferral ends."
		}
	}
	if req.Replayed && req.State != exchange.Denied {
		p.Notice = "This form was sent already (reloaded, or sent twice): nothing was asked or released again. The request is shown as it stands."
	}
	s.renderAgency(w, r, v, m, status, p)
}

func (s *Server) serviceOf(ctx context.Context, id string) *exchange.Service {
	svc, _ := s.ex.Service(ctx, id)
	return svc
}

func (s *Server) agencyCollect(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	req, err := s.ex.Collect(r.Context(), m.OrgID, r.PathValue("id"))
	if err != nil {
		s.exchangeFail(w, r, err, func(status int, msg string) { s.renderAgency(w, r, v, m, status, web.Page{Error: msg}) })
		return
	}
	s.agencyOutcome(w, r, v, m, req)
}

func (s *Server) agencyCancel(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	if _, err := s.ex.Cancel(r.Context(), m.OrgID, r.PathValue("id")); err != nil {
		s.exchangeFail(w, r, err, func(status int, msg string) { s.renderAgency(w, r, v, m, status, web.Page{Error: msg}) })
		return
	}
	s.renderAgency(w, r, v, m, http.StatusOK, web.Page{Notice: "Cancelled. The citizen is no longer asked, and nothing is released for it."})
}

func (s *Server) accessPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderAccess(w, r, v, http.StatusOK, web.Page{})
}

// catalog reads every policy (in force first) and the published services.
func (s *Server) catalog(ctx context.Context) ([]*exchange.Policy, []*exchange.Service, error) {
	pols, err := s.ex.Policies(ctx)
	if err != nil {
		return nil, nil, err
	}
	svcs, err := s.ex.Services(ctx)
	return pols, svcs, err
}

// A rule is a policy in force as the citizen's "Who may read my data"
// shows it: its service and fields by their labels.
type rule struct {
	*exchange.Policy
	ServiceName, Holder, Fields string
}

// agencyRules are the rules one agency may read under.
type agencyRules struct {
	ID, Agency string
	Rules      []rule
}

// accessRules shows a citizen the policies in force: which agency may read
// which of their data, why, on which legal basis, whether they are asked
// first, how long the access may be hidden from them and how long the
// agency may keep what it read. Policies hold nothing about any one
// person, so every signed-in person reads the same page. (A service is
// withdrawn only once no policy in force names it; should one still, it
// lets nobody ask, so it is left out.)
func (s *Server) accessRules(w http.ResponseWriter, r *http.Request, v *viewer) {
	ctx := r.Context()
	pols, svcs, err := s.catalog(ctx)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	published := make(map[string]*exchange.Service, len(svcs))
	for _, svc := range svcs {
		published[svc.ID] = svc
	}
	byAgency := map[string]*agencyRules{}
	for _, p := range pols {
		svc := published[p.Service]
		if !p.Active || svc == nil {
			continue
		}
		a := byAgency[p.Requester]
		if a == nil {
			a = &agencyRules{ID: p.Requester, Agency: p.RequesterName}
			byAgency[p.Requester] = a
		}
		a.Rules = append(a.Rules, rule{Policy: p, ServiceName: svc.Name, Holder: svc.HolderName, Fields: strings.Join(svc.Labels(p.Fields), ", ")})
	}
	agencies := slices.SortedFunc(maps.Values(byAgency), func(a, b *agencyRules) int {
		return cmp.Or(cmp.Compare(a.Agency, b.Agency), cmp.Compare(a.ID, b.ID))
	})
	for _, a := range agencies {
		slices.SortStableFunc(a.Rules, func(x, y rule) int {
			return cmp.Or(cmp.Compare(x.ServiceName, y.ServiceName), cmp.Compare(x.Purpose, y.Purpose))
		})
	}
	s.render(w, r, v, http.StatusOK, "accessrules", web.Page{Title: "Who may read my data", Data: map[string]any{"Agencies": agencies}})
}

// agencyReleasesCSV streams every release the agency got, newest first,
// with the request it answered and until when the agency may keep what
// it got (and whether that has passed): the list its deletion duty works
// from, beyond the page's recent requests. Like the page, it names no
// citizen; the request id links each row to the agency's own case file.
func (s *Server) agencyReleasesCSV(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	chunk := dpaExportChunk()
	last, err := s.ex.Accesses(r.Context(), exchange.AccessQuery{Agency: m.OrgID, Limit: chunk})
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	now := s.now()
	rows := func(as []*exchange.Access) [][]string {
		var out [][]string
		for _, a := range as {
			retention := "running"
			switch {
			case a.Missing: // the log's audit reports it
				retention = "record missing from the database"
			case !now.Before(a.Retain()):
				retention = "passed: delete it"
			}
			out = append(out, []string{s.csvTime(a.Time), a.Request, strconv.FormatInt(a.LogIndex, 10), a.Officer, a.ServiceName,
				strings.Join(a.Fields, " "), a.Purpose, a.LegalBasis, a.Consent, s.csvVisible(a), s.csvTime(a.RetainUntil), retention})
		}
		return out
	}
	s.writeCSV(w, csvName("civstack-releases", now, m.OrgID),
		s.zoned("time", "request", "log entry", "officer", "service", "fields", "purpose", "legal basis", "consent", "visible to the citizen from", "keep until", "retention"),
		rows(last), func() ([][]string, error) {
			if len(last) < chunk {
				return nil, nil
			}
			var err error
			last, err = s.ex.Accesses(r.Context(), exchange.AccessQuery{Agency: m.OrgID, Before: last[len(last)-1].LogIndex, Limit: chunk})
			return rows(last), err
		})
}

// An agencyChoice is an agency the citizen may filter her accesses by.
type agencyChoice struct{ ID, Name string }

// policyAgencies are the agencies the policies let read (retired policies
// too: what was read under them stays on the citizen's page), by name.
func policyAgencies(pols []*exchange.Policy) []agencyChoice {
	seen := map[string]bool{}
	var out []agencyChoice
	for _, p := range pols {
		if !seen[p.Requester] {
			seen[p.Requester] = true
			out = append(out, agencyChoice{ID: p.Requester, Name: p.RequesterName})
		}
	}
	slices.SortFunc(out, func(a, b agencyChoice) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	return out
}

// pastRequests is how many of the requests that ended without a release
// the citizen's page lists at a time.
const pastRequests = 20

// accessesShown is how many accesses the citizen's page lists at a time
// (each with its inclusion proof checked); the JSON export has them all.
const accessesShown = 50

// pendingShown is how many requests waiting for the citizen her page
// lists at a time.
const pendingShown = 20

func (s *Server) renderAccess(w http.ResponseWriter, r *http.Request, v *viewer, status int, p web.Page) {
	ctx := r.Context()
	// The accesses, accessesShown at a time from the newest, or from below
	// the log entry the link to older ones names.
	var accBefore int64
	if q := r.URL.Query().Get("before"); q != "" {
		n, err := strconv.ParseInt(q, 10, 64)
		if err != nil || n < 1 {
			status, p.Error = http.StatusBadRequest, "The place to list older accesses from is not a log entry number; here are the newest."
		} else {
			accBefore = n
		}
	}
	// Every policy, retired ones too: the agencies she may filter her
	// accesses by are those that may read or have read under one, and the
	// requests waiting for her name theirs.
	pols, err := s.ex.Policies(ctx)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	agencies := policyAgencies(pols)
	agency, agencyName := r.URL.Query().Get("agency"), ""
	if agency != "" {
		if i := slices.IndexFunc(agencies, func(a agencyChoice) bool { return a.ID == agency }); i >= 0 {
			agencyName = agencies[i].Name
		} else {
			status, p.Error = http.StatusBadRequest, "No agency by that id reads data through the exchange; here are the accesses of every agency."
			agency = ""
		}
	}
	accessesURL := func(before int64) string {
		q := url.Values{}
		if agency != "" {
			q.Set("agency", agency)
		}
		if before > 0 {
			q.Set("before", strconv.FormatInt(before, 10))
		}
		if len(q) == 0 {
			return "/wallet/access#acc-h"
		}
		return "/wallet/access?" + q.Encode() + "#acc-h"
	}
	// Deferred accesses disclosed lately, on top: listed by when they
	// happened, they may sit below newer ones. On the first page of every
	// agency's only, read with it.
	var recs, disclosed []*exchange.Verified
	if accBefore == 0 && agency == "" {
		recs, disclosed, err = s.ex.FirstPage(ctx, v.person.ID, accessesShown+1, s.now().Add(-exchange.DisclosedWithin), accessesShown+1)
	} else {
		recs, err = s.ex.ForCitizenBy(ctx, v.person.ID, agency, accBefore, accessesShown+1)
	}
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	olderAcc := ""
	if len(recs) > accessesShown {
		recs = recs[:accessesShown]
		olderAcc = accessesURL(recs[accessesShown-1].LogIndex)
	}
	moreDisclosed := len(disclosed) > accessesShown
	if moreDisclosed {
		disclosed = disclosed[:accessesShown]
	}
	// The requests waiting for her, pendingShown at a time from the
	// oldest, or from after the one the link to later ones names.
	pending, pendingAfter, next, refused, err := requestPage(r.URL.Query().Get("pending_after"), pendingShown, func(after string, limit int) ([]*exchange.Request, error) {
		return s.ex.Pending(ctx, v.person.ID, after, limit)
	})
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	if refused != "" {
		status, p.Error = http.StatusBadRequest, refused
	}
	// The rule each waiting request asks under, while in force: how long
	// the agency may keep what it reads is part of what she consents to.
	rules := map[string]*exchange.Policy{}
	if len(pending) > 0 {
		byID := make(map[string]*exchange.Policy, len(pols))
		for _, p := range pols {
			if p.Active {
				byID[p.ID] = p
			}
		}
		for _, q := range pending {
			if p := byID[q.PolicyID]; p != nil {
				rules[q.ID] = p
			}
		}
	}
	laterPending := ""
	if next != "" {
		laterPending = "/wallet/access?pending_after=" + url.QueryEscape(next) + "#pending-h"
	}
	// The past requests, pastRequests at a time from the newest, or from
	// the one the link to older ones names.
	past, before, next, refused, err := requestPage(r.URL.Query().Get("past_before"), pastRequests, func(before string, limit int) ([]*exchange.Request, error) {
		return s.ex.Past(ctx, v.person.ID, before, limit)
	})
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	if refused != "" {
		status, p.Error = http.StatusBadRequest, refused
	}
	older := ""
	if next != "" {
		older = "/wallet/access?past_before=" + url.QueryEscape(next) + "#past-h"
	}
	complaints, err := s.complaintsAbout(ctx, v.person.ID, recs, disclosed)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	// Her complaints, on the first page of every agency's accesses.
	var mine []*exchange.Complaint
	if accBefore == 0 && agency == "" {
		if mine, err = s.ex.ComplaintsBy(ctx, v.person.ID, complaintsListed+1); err != nil {
			s.failErr(w, r, err)
			return
		}
	}
	fieldList := s.fieldList(ctx, slices.Concat(recs, disclosed), slices.Concat(pending, past))
	p.Title, p.Data = "Who looked at my data", map[string]any{"Records": recs, "AccessesShown": accessesShown, "AccessesBefore": accBefore, "OlderAccesses": olderAcc, "NewestAccesses": accessesURL(0), "Agencies": agencies, "Agency": agency, "AgencyName": agencyName, "Disclosed": disclosed, "MoreDisclosed": moreDisclosed, "DisclosedDays": int(exchange.DisclosedWithin / exchange.Day), "Pending": pending, "Rules": rules, "PendingShown": pendingShown, "PendingAfter": pendingAfter, "LaterPending": laterPending, "Past": past, "PastShown": pastRequests, "PastBefore": before, "OlderPast": older, "FieldList": fieldList, "Complaints": complaints, "Mine": mine, "MineShown": complaintsListed, "PersonID": v.person.ID,
		"AnswerDays": int(exchange.AnswerWithin / exchange.Day), "CollectDays": int(exchange.CollectWithin / exchange.Day)}
	s.render(w, r, v, status, "access", p)
}

func (s *Server) accessDecide(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	var req *exchange.Request
	var err error
	var notice string
	switch decision := r.PostFormValue("decision"); decision {
	case "approve", "refuse":
		req, err = s.ex.Decide(r.Context(), v.person.ID, r.PathValue("id"), decision == "approve")
		if err == nil {
			notice = "Refused. " + req.RequesterName + " is told, and gets nothing."
			if req.State == exchange.Consented {
				notice = "Approved. " + req.RequesterName + " may collect the data once, until " + s.pages.Date(req.Lapses) +
					"; then the access appears below. Until then you can still withdraw your consent."
			}
		}
	case "withdraw":
		req, err = s.ex.Withdraw(r.Context(), v.person.ID, r.PathValue("id"))
		if err == nil {
			notice = "Consent withdrawn. " + req.RequesterName + " is told, and gets nothing."
		}
	default:
		s.renderAccess(w, r, v, http.StatusBadRequest, web.Page{Error: "Choose approve, refuse or withdraw."})
		return
	}
	if errors.Is(err, exchange.ErrSameAnswer) {
		// The form sent twice: the first send's answer stands.
		answer := "approved it"
		switch {
		case req.Withdrawn():
			answer = "withdrew your consent"
		case req.State == exchange.RefusedConsent:
			answer = "refused it"
		}
		s.renderAccess(w, r, v, http.StatusOK, web.Page{Notice: "You " + answer + " already, on " + s.pages.Date(req.Decided) + "; nothing changed."})
		return
	}
	if err != nil {
		s.exchangeFail(w, r, err, func(status int, msg string) { s.renderAccess(w, r, v, status, web.Page{Error: msg}) })
		return
	}
	s.renderAccess(w, r, v, http.StatusOK, web.Page{Notice: notice})
}

// accessJSON streams the citizen's export, verified a page at a time.
func (s *Server) accessJSON(w http.ResponseWriter, r *http.Request, v *viewer) {
	started, at := false, s.now()
	// Dated, so that her exports do not overwrite one another: she
	// compares a later one with an earlier (civstack verify --earlier).
	name := "civstack-data-accesses-" + at.In(s.cfg.Zone).Format(time.DateOnly) + ".json"
	err := s.ex.WriteExport(r.Context(), newLongWrite(w), func() {
		started = true
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	}, v.person.ID, at, s.cfg.LogKey)
	switch {
	case err != nil && !started:
		s.failErr(w, r, err)
	case err != nil:
		// Cut short: no JSON reader accepts the file; the log says why.
		s.log.Error("export failed", "route", r.Pattern, "err", err)
	}
}

// mayReadPolicies: operators and the data-protection authority.
func mayReadPolicies(v *viewer) bool { return v.has(registry.Operator) || v.has(registry.DPA) }

// policiesDone is what the policies page says after a change, which
// redirects there (so reloading the page does not repeat it).
var policiesDone = map[string]string{
	"created": "Policy in force.",
	"retired": "Policy retired: requests under it are refused from now on.",
}

func (s *Server) policiesPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderPolicies(w, r, v, http.StatusOK, web.Page{Notice: policiesDone[r.URL.Query().Get("done")]})
}

func (s *Server) renderPolicies(w http.ResponseWriter, r *http.Request, v *viewer, status int, p web.Page) {
	if !mayReadPolicies(v) {
		s.fail(w, r, http.StatusForbidden, "The exchange's policies are for operators and the data-protection authority.")
		return
	}
	ctx := r.Context()
	pols, svcs, err := s.catalog(ctx)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	agencies, err := s.organisations(ctx, registry.Agency)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	// The policies name services and fields as the operator wrote them;
	// the page shows what they are beside (the JSON keeps the names).
	svcNames, labels := map[string]string{}, map[string]map[string]string{}
	for _, svc := range svcs {
		svcNames[svc.ID], labels[svc.ID] = svc.Name, fieldLabels(svc)
	}
	p.Title, p.Data = "Exchange policies", map[string]any{"Policies": pols, "Services": svcs, "ServiceNames": svcNames, "Labels": labels, "Agencies": agencies, "Operator": v.has(registry.Operator)}
	s.render(w, r, v, status, "policies", p)
}

// fieldLabels maps a service's field names to their labels, for the
// policies' pages ("policy-fields").
func fieldLabels(svc *exchange.Service) map[string]string {
	m := make(map[string]string, len(svc.Fields))
	for _, f := range svc.Fields {
		m[f.Name] = f.Label
	}
	return m
}

func (s *Server) policiesJSON(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !mayReadPolicies(v) {
		s.fail(w, r, http.StatusForbidden, "The exchange's policies are for operators and the data-protection authority.")
		return
	}
	pols, svcs, err := s.catalog(r.Context())
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"services": svcs, "policies": pols})
}

func (s *Server) policyCreate(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	// A deferral left empty is none: the access shows at once.
	var deferral time.Duration
	ok := true
	if d := strings.TrimSpace(r.PostFormValue("max_deferral_days")); d != "" {
		deferral, ok = formDays(d, exchange.DeferralLimit)
	}
	if !ok {
		s.renderPolicies(w, r, v, http.StatusBadRequest, web.Page{Error: fmt.Sprintf("The deferral is a whole number of days from 0 to %d.", exchange.DeferralLimit/exchange.Day)})
		return
	}
	retention, ok := formDays(r.PostFormValue("retention_days"), exchange.RetentionLimit)
	if !ok {
		s.renderPolicies(w, r, v, http.StatusBadRequest, web.Page{Error: fmt.Sprintf("The retention is a whole number of days from 1 to %d.", exchange.RetentionLimit/exchange.Day)})
		return
	}
	p := exchange.Policy{Requester: r.PostFormValue("requester"), Service: r.PostFormValue("service"), Fields: r.PostForm["field"],
		Purpose: r.PostFormValue("purpose"), LegalBasis: r.PostFormValue("legal_basis"), Consent: r.PostFormValue("consent") == "yes",
		MaxDeferral: deferral, Retention: retention}
	if ok, err := s.orgWith(r.Context(), p.Requester, registry.Agency); !ok {
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		s.renderPolicies(w, r, v, http.StatusBadRequest, web.Page{Error: "Choose an agency."})
		return
	}
	if _, err := s.ex.CreatePolicy(r.Context(), p, v.person.ID); err != nil {
		s.exchangeFail(w, r, err, func(status int, msg string) { s.renderPolicies(w, r, v, status, web.Page{Error: msg}) })
		return
	}
	http.Redirect(w, r, "/exchange/policies?done=created", http.StatusSeeOther)
}

// policyRetireConfirm asks the operator to confirm a retirement, which
// cannot be undone (a new policy can be put in force instead), and says
// what it does to the requests still open under the policy.
func (s *Server) policyRetireConfirm(w http.ResponseWriter, r *http.Request, v *viewer) {
	ctx := r.Context()
	p, err := s.ex.Policy(ctx, r.PathValue("id"))
	if err == nil && !p.Active {
		err = exchange.ErrAlreadyRetired
	}
	if err != nil {
		s.exchangeFail(w, r, err, func(status int, msg string) { s.renderPolicies(w, r, v, status, web.Page{Error: msg}) })
		return
	}
	open, err := s.ex.OpenUnder(ctx, p.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	service, labels := p.Service, map[string]string(nil)
	if svc, err := s.ex.Service(ctx, p.Service); err == nil {
		service, labels = svc.Name, fieldLabels(svc)
	}
	s.render(w, r, v, http.StatusOK, "policyretire", web.Page{Title: "Retire a policy",
		Data: map[string]any{"Policy": p, "ServiceName": service, "Labels": labels, "Open": open}})
}

func (s *Server) policyRetire(w http.ResponseWriter, r *http.Request, v *viewer) {
	if err := s.ex.RetirePolicy(r.Context(), r.PathValue("id"), v.person.ID); err != nil {
		s.exchangeFail(w, r, err, func(status int, msg string) { s.renderPolicies(w, r, v, status, web.Page{Error: msg}) })
		return
	}
	http.Redirect(w, r, "/exchange/policies?done=retired", http.StatusSeeOther)
}

func (s *Server) dpaPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	view, err := s.ex.DPA(r.Context())
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	s.render(w, r, v, http.StatusOK, "dpa", web.Page{Title: "Data protection: the exchange", Data: map[string]any{"View": view, "Now": s.now()}})
}

// The API for agencies' systems (agency tokens).

func (s *Server) exchangeAPIRoutes(api huma.API) {
	op := func(id, method, path, summary string, status int) huma.Operation {
		return huma.Operation{OperationID: id, Method: method, Path: path, Summary: summary, DefaultStatus: status,
			MaxBodyBytes: maxAPIBody, Tags: []string{"exchange"}, Metadata: map[string]any{metaRole: registry.Agency}}
	}
	huma.Register(api, op("list-services", http.MethodGet, "/exchange/services", "The published data services and their fields", 0), s.apiServices)
	huma.Register(api, op("list-policies", http.MethodGet, "/exchange/policies", "The policies in force that let your organisation ask: which fields of which service, for which purpose and legal basis", 0), s.apiPolicies)
	huma.Register(api, op("publish-service", http.MethodPut, "/exchange/services/{id}", "Publish (or change the fields of) a data service you hold", 0), s.apiPublish)
	huma.Register(api, op("withdraw-service", http.MethodDelete, "/exchange/services/{id}", "Withdraw a data service you hold: its values are deleted and nobody may ask for it (no policy in force may name it)", http.StatusNoContent), s.apiWithdraw)
	huma.Register(api, op("set-values", http.MethodPut, "/exchange/services/{id}/values/{person}", "Set what your service holds about a citizen", http.StatusNoContent), s.apiSetValues)
	huma.Register(api, op("remove-values", http.MethodDelete, "/exchange/services/{id}/values/{person}", "Remove what your service holds about a citizen: the fields named, or all of them", http.StatusNoContent), s.apiRemoveValues)
	huma.Register(api, op("request-data", http.MethodPost, "/exchange/requests", "Ask for fields about a citizen with a purpose and legal basis", 0), s.apiAsk)
	huma.Register(api, op("get-request", http.MethodGet, "/exchange/requests/{id}", "A request's state (values are released once, by collect)", 0), s.apiGetRequest)
	huma.Register(api, op("collect-request", http.MethodPost, "/exchange/requests/{id}/collect", "Collect what the citizen consented to (once)", 0), s.apiCollect)
	huma.Register(api, op("list-requests", http.MethodGet, "/exchange/requests", "All your requests, newest first, page by page", 0), s.apiRequests)
	huma.Register(api, op("list-open-requests", http.MethodGet, "/exchange/open-requests", "Your requests still waiting for the citizen or for you to collect, the oldest asked first", 0), s.apiOpenRequests)
	huma.Register(api, op("cancel-request", http.MethodPost, "/exchange/requests/{id}/cancel", "Cancel a request still waiting for the citizen or for collection", 0), s.apiCancelRequest)
}

func (s *Server) exchangeErr(err error) error { return s.apiErrorWith(err, exchangeStatus) }

type servicesOut struct {
	Body struct {
		Services []*exchange.Service `json:"services"`
	}
}

func (s *Server) apiServices(ctx context.Context, _ *struct{}) (*servicesOut, error) {
	svcs, err := s.ex.Services(ctx)
	if err != nil {
		return nil, s.apiError(err)
	}
	out := &servicesOut{}
	out.Body.Services = append([]*exchange.Service{}, svcs...)
	return out, nil
}

// PolicyBody is a policy in force, as the agency it lets ask reads it.
type PolicyBody struct {
	ID              string    `json:"id"`
	Service         string    `json:"service" doc:"the data service's id"`
	Fields          []string  `json:"fields" doc:"the fields it lets you ask for"`
	Purpose         string    `json:"purpose" doc:"the purpose code a request must give"`
	LegalBasis      string    `json:"legal_basis" doc:"the legal basis a request must give"`
	ConsentRequired bool      `json:"consent_required" doc:"whether the citizen must approve each request first"`
	MaxDeferralDays int       `json:"max_deferral_days" doc:"how long a request may hide the access from the citizen (0: never)"`
	RetentionDays   int       `json:"retention_days" doc:"how long you may keep what was released"`
	InForceSince    time.Time `json:"in_force_since"`
}

type policiesOut struct {
	Body struct {
		Policies []PolicyBody `json:"policies" doc:"the oldest first; an empty list when no policy lets you ask"`
	}
}

func (s *Server) apiPolicies(ctx context.Context, _ *struct{}) (*policiesOut, error) {
	pols, err := s.ex.PoliciesFor(ctx, principalFrom(ctx).org.ID)
	if err != nil {
		return nil, s.apiError(err)
	}
	out := &policiesOut{}
	out.Body.Policies = []PolicyBody{}
	for _, p := range pols {
		out.Body.Policies = append(out.Body.Policies, PolicyBody{ID: p.ID, Service: p.Service, Fields: p.Fields, Purpose: p.Purpose, LegalBasis: p.LegalBasis,
			ConsentRequired: p.Consent, MaxDeferralDays: int(p.MaxDeferral / exchange.Day), RetentionDays: int(p.Retention / exchange.Day), InForceSince: p.CreatedAt})
	}
	return out, nil
}

type publishIn struct {
	ID   string `path:"id"`
	Body struct {
		Name   string           `json:"name" maxLength:"100"`
		Fields []exchange.Field `json:"fields" maxItems:"100"`
	}
}

type serviceOut struct{ Body *exchange.Service }

func (s *Server) apiPublish(ctx context.Context, in *publishIn) (*serviceOut, error) {
	svc, err := s.ex.PublishService(ctx, principalFrom(ctx).org.ID, exchange.Service{ID: in.ID, Name: in.Body.Name, Fields: in.Body.Fields})
	if err != nil {
		return nil, s.exchangeErr(err)
	}
	return &serviceOut{Body: svc}, nil
}

type serviceIDIn struct {
	ID string `path:"id" maxLength:"64"`
}

func (s *Server) apiWithdraw(ctx context.Context, in *serviceIDIn) (*struct{}, error) {
	if err := s.ex.WithdrawService(ctx, principalFrom(ctx).org.ID, in.ID); err != nil {
		return nil, s.exchangeErr(err)
	}
	return nil, nil
}

type valuesIn struct {
	ID     string            `path:"id"`
	Person string            `path:"person"`
	Body   map[string]string `doc:"field name to value, as the field's type says: a number in decimal digits (41250, -3.5, 1e6), a date as YYYY-MM-DD, a bool as true or false, or text; at most 1,000 characters each"`
}

func (s *Server) apiSetValues(ctx context.Context, in *valuesIn) (*struct{}, error) {
	if found, err := s.citizen(ctx, in.Person); found == nil {
		if err != nil {
			return nil, s.apiError(err)
		}
		return nil, huma.Error404NotFound("There is no citizen with that id.")
	}
	if err := s.ex.SetValues(ctx, principalFrom(ctx).org.ID, in.ID, in.Person, in.Body); err != nil {
		return nil, s.exchangeErr(err)
	}
	return nil, nil
}

type removeValuesIn struct {
	ID     string   `path:"id"`
	Person string   `path:"person" maxLength:"64"`
	Fields []string `query:"fields" maxItems:"100" doc:"the fields to remove, comma-separated (empty: every field); the citizen need not be registered any more"`
}

func (s *Server) apiRemoveValues(ctx context.Context, in *removeValuesIn) (*struct{}, error) {
	if err := s.ex.RemoveValues(ctx, principalFrom(ctx).org.ID, in.ID, in.Person, in.Fields); err != nil {
		return nil, s.exchangeErr(err)
	}
	return nil, nil
}

type askIn struct {
	Body struct {
		Citizen    string   `json:"citizen" minLength:"1" maxLength:"64" doc:"the citizen's civstack id"`
		Service    string   `json:"service" minLength:"1" maxLength:"64"`
		Fields     []string `json:"fields" minItems:"1" maxItems:"100" doc:"field names as the service lists them (lower-case letters, digits and _); a name the service lacks, or outside your policy, is a denial, recorded"`
		Purpose    string   `json:"purpose" minLength:"1" maxLength:"40" doc:"a purpose code, e.g. TAX-AUDIT"`
		LegalBasis string   `json:"legal_basis" minLength:"1" maxLength:"200"`
		DeferDays  int      `json:"defer_days,omitempty" minimum:"0" maximum:"1095" doc:"hide the access from the citizen this many days (only where the policy allows)"`
		Officer    string   `json:"officer,omitempty" maxLength:"100" doc:"the officer behind the request; the token's label when empty"`
	}
	Key string `header:"Idempotency-Key" maxLength:"255" doc:"your own id for this request (e.g. a UUID): a retry with the same key and the same body answers with the first request as it stands, marked replayed and without values, and never releases, records or asks the citizen again; the same key with another body is refused (422). A key is remembered for 90 days, longer than a request stays open; after that it may be used again"`
}

type requestOut struct{ Body *exchange.Request }

func (s *Server) apiAsk(ctx context.Context, in *askIn) (*requestOut, error) {
	p := principalFrom(ctx)
	if found, err := s.citizen(ctx, in.Body.Citizen); found == nil {
		if err != nil {
			return nil, s.apiError(err)
		}
		return nil, huma.Error404NotFound("There is no citizen with that id.")
	}
	officer := in.Body.Officer
	if officer == "" {
		officer = "system: " + p.token.Label
	}
	req, err := s.ex.Submit(ctx, exchange.Ask{Requester: p.org.ID, Officer: officer, Citizen: in.Body.Citizen, Service: in.Body.Service, Fields: in.Body.Fields,
		Purpose: in.Body.Purpose, LegalBasis: in.Body.LegalBasis, Defer: time.Duration(in.Body.DeferDays) * exchange.Day, Key: in.Key})
	if err != nil {
		return nil, s.exchangeErr(err)
	}
	if req.State == exchange.Denied {
		return nil, huma.NewError(http.StatusForbidden, "Denied: "+req.Reason, &huma.ErrorDetail{Message: req.ID, Location: "request_id"})
	}
	return &requestOut{Body: req}, nil
}

type requestsIn struct {
	Before string `query:"before" maxLength:"160" doc:"the next of the page before (empty: from the newest)"`
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"at most this many; a page may hold fewer and still have a next"`
}

type requestsOut struct {
	Body struct {
		Requests []*exchange.Request `json:"requests" doc:"newest first: released, waiting, and those that released nothing with the reason"`
		Next     string              `json:"next,omitempty" doc:"give it as before for the older requests; absent on the last page"`
	}
}

func (s *Server) apiRequests(ctx context.Context, in *requestsIn) (*requestsOut, error) {
	p, err := s.ex.History(ctx, principalFrom(ctx).org.ID, in.Before, in.Limit)
	if err != nil {
		return nil, s.exchangeErr(err)
	}
	out := &requestsOut{}
	out.Body.Requests, out.Body.Next = append([]*exchange.Request{}, p.Requests...), p.Next
	return out, nil
}

type openRequestsIn struct {
	After string `query:"after" maxLength:"100" doc:"the next of the list before: only requests asked after that one (empty: from the oldest)"`
	Limit int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"at most this many, the oldest first"`
}

type openRequestsOut struct {
	Body struct {
		Requests []*exchange.Request `json:"requests" doc:"oldest first; each open until its lapses_at"`
		Next     string              `json:"next,omitempty" doc:"give it as after for the later ones; absent when there are no more"`
	}
}

func (s *Server) apiOpenRequests(ctx context.Context, in *openRequestsIn) (*openRequestsOut, error) {
	rs, err := s.ex.OpenFor(ctx, principalFrom(ctx).org.ID, in.After, in.Limit+1)
	if err != nil {
		return nil, s.exchangeErr(err)
	}
	out := &openRequestsOut{}
	if len(rs) > in.Limit {
		rs = rs[:in.Limit]
		out.Body.Next = rs[len(rs)-1].ID
	}
	out.Body.Requests = append([]*exchange.Request{}, rs...)
	return out, nil
}

type requestIDIn struct {
	ID string `path:"id"`
}

func (s *Server) apiGetRequest(ctx context.Context, in *requestIDIn) (*requestOut, error) {
	req, err := s.ex.RequestFor(ctx, principalFrom(ctx).org.ID, in.ID)
	if err != nil {
		return nil, s.exchangeErr(err)
	}
	return &requestOut{Body: req}, nil
}

func (s *Server) apiCollect(ctx context.Context, in *requestIDIn) (*requestOut, error) {
	req, err := s.ex.Collect(ctx, principalFrom(ctx).org.ID, in.ID)
	if err != nil {
		return nil, s.exchangeErr(err)
	}
	return &requestOut{Body: req}, nil
}

func (s *Server) apiCancelRequest(ctx context.Context, in *requestIDIn) (*requestOut, error) {
	req, err := s.ex.Cancel(ctx, principalFrom(ctx).org.ID, in.ID)
	if err != nil {
		return nil, s.exchangeErr(err)
	}
	return &requestOut{Body: req}, nil
}
