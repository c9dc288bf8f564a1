package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/civstack/civstack/internal/healthpass"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/web"
)

// The health pass surfaces: the citizen's health page (questionnaire,
// code and pass, check-ins, appeal, certificates), the health authority's
// console (appeals, issuing certificates), and the public verifier (page
// and API) that checks a pass against the cached trust list and rules and
// writes nothing anywhere.

func (s *Server) healthRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /health", s.signedIn(s.healthPage))
	mux.HandleFunc("POST /health/questionnaire", s.signedIn(s.healthQuestionnaire))
	mux.HandleFunc("POST /health/checkin", s.signedIn(s.healthCheckIn))
	mux.HandleFunc("POST /health/appeal", s.signedIn(s.healthAppeal))
	mux.HandleFunc("GET /health/authority", s.signedIn(s.authorityPage))
	mux.HandleFunc("POST /health/authority/appeals/{id}", s.signedIn(s.authorityDecide))
	mux.HandleFunc("POST /health/authority/certificates", s.signedIn(s.authorityIssue))
	mux.HandleFunc("GET /health/trust-list.json", s.healthFile(func() []byte { return s.hnode.TrustList }))
	mux.HandleFunc("GET /health/rules.json", s.healthFile(func() []byte { return s.hnode.Rules.Raw() }))
	mux.HandleFunc("GET /verify", s.verifyPage)
	mux.HandleFunc("POST /verify", s.verifyPost)
	mux.HandleFunc("POST /api/v1/health/verify", s.verifyAPI)
}

// healthStatus maps health errors to a status and a sentence.
func healthStatus(err error) (int, string) {
	switch {
	case errors.Is(err, healthpass.ErrNoStatus):
		return http.StatusConflict, "You have no health code yet: answer the questionnaire first."
	case errors.Is(err, healthpass.ErrInvalid):
		return http.StatusBadRequest, sentence(err)
	case errors.Is(err, healthpass.ErrNotFound):
		return http.StatusNotFound, "There is no such appeal."
	case errors.Is(err, healthpass.ErrAlreadyOpen):
		return http.StatusConflict, "Your appeal is already with a health officer."
	case errors.Is(err, healthpass.ErrAlreadyDone):
		return http.StatusConflict, "That appeal has already been decided."
	case errors.Is(err, healthpass.ErrClosed):
		return http.StatusConflict, "That appeal was closed before a decision: the citizen's code was replaced (new answers, or green after check-ins). If they still think it wrong, they appeal the new code."
	case errors.Is(err, healthpass.ErrNothingToAsk):
		return http.StatusConflict, "Your code is green: there is nothing to appeal."
	}
	return classify(err)
}

type certView struct {
	*healthpass.Certificate
	KindName string
	QR       template.HTML
}

func (s *Server) healthPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderHealth(w, r, v, http.StatusOK, web.Page{})
}

func (s *Server) renderHealth(w http.ResponseWriter, r *http.Request, v *viewer, status int, p web.Page) {
	ctx := r.Context()
	data := map[string]any{"Rules": s.health.Rules(), "PersonID": v.person.ID,
		"Today": healthpass.LatestDay(s.now())}
	qr, st, err := s.health.Pass(ctx, v.person.ID, v.person.DisplayName)
	switch {
	case errors.Is(err, healthpass.ErrNoStatus):
	case err != nil:
		s.failErr(w, r, err)
		return
	default:
		svg, err := qrSVG(qr, "Health pass")
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		data["Status"], data["Pass"], data["PassQR"] = st, qr, svg
		data["NextSteps"] = st.NextSteps(s.health.Rules())
	}
	certs, err := s.health.Certificates(ctx, v.person.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	var views []certView
	for _, c := range certs {
		svg, err := qrSVG(c.HC1, healthpass.KindName(c.Kind)+" certificate")
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		views = append(views, certView{c, healthpass.KindName(c.Kind), svg})
	}
	data["Certificates"] = views
	p.Title, p.Data = "Health", data
	s.render(w, r, v, status, "health", p)
}

func (s *Server) healthError(w http.ResponseWriter, r *http.Request, v *viewer, err error) {
	status, msg := healthStatus(err)
	if status >= 500 {
		s.log.Error("health request failed", "route", r.Pattern, "err", err)
		s.fail(w, r, status, msg)
		return
	}
	s.renderHealth(w, r, v, status, web.Page{Error: msg})
}

// questionnaireAnswers reads the questionnaire: each question answered,
// none taken as "no" for being left out.
func questionnaireAnswers(r *http.Request) (healthpass.Answers, error) {
	a := healthpass.Answers{Test: r.PostFormValue("test")}
	for _, q := range []struct {
		name, about string
		yes         *bool
	}{{"symptoms", "symptoms", &a.Symptoms}, {"contact", "contact with a confirmed case", &a.Contact}, {"travel", "travel", &a.Travel}} {
		switch r.PostFormValue(q.name) {
		case "yes":
			*q.yes = true
		case "no":
		default:
			return a, fmt.Errorf("%w: answer the question about %s with yes or no", healthpass.ErrInvalid, q.about)
		}
	}
	if a.Test == "" {
		return a, fmt.Errorf("%w: answer the question about your latest test", healthpass.ErrInvalid)
	}
	return a, nil
}

func (s *Server) healthQuestionnaire(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	a, err := questionnaireAnswers(r)
	if err != nil {
		s.healthError(w, r, v, err)
		return
	}
	st, err := s.health.Submit(r.Context(), v.person.ID, r.PostFormValue("dob"), a)
	if err != nil {
		s.healthError(w, r, v, err)
		return
	}
	s.renderHealth(w, r, v, http.StatusOK, web.Page{Notice: "Your health code is " + string(st.Colour) + "."})
}

func (s *Server) healthCheckIn(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	normal := r.PostFormValue("feeling") == "normal"
	if f := r.PostFormValue("feeling"); f != "normal" && f != "symptoms" {
		s.healthError(w, r, v, fmt.Errorf("%w: say how you are today: normal, or with symptoms", healthpass.ErrInvalid))
		return
	}
	st, err := s.health.CheckIn(r.Context(), v.person.ID, normal)
	if err != nil {
		s.healthError(w, r, v, err)
		return
	}
	msg := "Checked in for today."
	if st.Colour == healthpass.Green {
		msg += " Your code is green."
	} else {
		msg += " " + strconv.Itoa(st.DaysLeft) + " more days of normal check-ins to green."
	}
	s.renderHealth(w, r, v, http.StatusOK, web.Page{Notice: msg})
}

func (s *Server) healthAppeal(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	if _, err := s.health.Appeal(r.Context(), v.person.ID, r.PostFormValue("message")); err != nil {
		s.healthError(w, r, v, err)
		return
	}
	s.renderHealth(w, r, v, http.StatusOK, web.Page{Notice: "Your appeal is with a health officer. You will see the decision here."})
}

// healthOfficer returns the id of the health authority organisation the
// viewer is an issuer of, or "".
func (s *Server) healthOfficer(v *viewer) string {
	name := s.cfg.HealthAuthority
	if name == "" {
		name = "Health Authority"
	}
	for _, m := range v.memberships {
		if m.Role == registry.Issuer && m.OrgName == name {
			return m.OrgID
		}
	}
	return ""
}

func (s *Server) authorityPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderAuthority(w, r, v, http.StatusOK, web.Page{})
}

func (s *Server) renderAuthority(w http.ResponseWriter, r *http.Request, v *viewer, status int, p web.Page) {
	if s.healthOfficer(v) == "" {
		s.fail(w, r, http.StatusForbidden, "Only the health authority's officers can open this page.")
		return
	}
	appeals, err := s.health.PendingAppeals(r.Context())
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	type appealView struct {
		*healthpass.Appeal
		Name string
	}
	var views []appealView
	for _, a := range appeals {
		views = append(views, appealView{a, s.personName(r, a.PersonID)})
	}
	p.Title = "Health authority"
	// A fresh key each time the form is shown: sent twice, it issues once.
	p.Data = map[string]any{"Appeals": views, "Rules": s.health.Rules(), "IssueKey": "form-" + newNonce()}
	s.render(w, r, v, status, "healthauthority", p)
}

func (s *Server) authorityDecide(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	if s.healthOfficer(v) == "" {
		s.fail(w, r, http.StatusForbidden, "Only the health authority's officers can decide appeals.")
		return
	}
	outcome := r.PostFormValue("outcome")
	if outcome != "grant" && outcome != "refuse" {
		s.renderAuthority(w, r, v, http.StatusBadRequest, web.Page{Error: "Choose to grant or refuse the appeal."})
		return
	}
	a, err := s.health.Decide(r.Context(), r.PathValue("id"), v.person.ID, outcome == "grant", r.PostFormValue("explanation"))
	if err != nil {
		status, msg := healthStatus(err)
		s.renderAuthority(w, r, v, status, web.Page{Error: msg})
		return
	}
	s.renderAuthority(w, r, v, http.StatusOK, web.Page{Notice: "Decision recorded (" + a.State + "); its digest is log entry " + strconv.FormatInt(a.LogIndex, 10) + "."})
}

func (s *Server) authorityIssue(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	org := s.healthOfficer(v)
	if org == "" {
		s.fail(w, r, http.StatusForbidden, "Only the health authority's officers can issue certificates.")
		return
	}
	ctx := r.Context()
	holder, err := s.citizen(ctx, strings.TrimSpace(r.PostFormValue("person")))
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	if holder == nil {
		s.renderAuthority(w, r, v, http.StatusNotFound, web.Page{Error: "No citizen has that health id (they find it on their Health page)."})
		return
	}
	fam, giv := healthpass.SplitName(holder.DisplayName)
	doses, _ := strconv.Atoi(r.PostFormValue("dose"))
	series, _ := strconv.Atoi(r.PostFormValue("series"))
	req := healthpass.CertificateRequest{Kind: r.PostFormValue("kind"), Holder: healthpass.Holder{FamilyName: fam, GivenName: giv, DOB: r.PostFormValue("dob")},
		Date: strings.TrimSpace(r.PostFormValue("date")), Doses: doses, Series: series, Result: r.PostFormValue("result"),
		Country: s.hnode.Issuer.Country, Issuer: s.orgName(r, org), Key: r.PostFormValue("key")}
	c, err := s.health.Issue(ctx, holder.ID, req)
	if err != nil {
		status, msg := healthStatus(err)
		s.renderAuthority(w, r, v, status, web.Page{Error: msg})
		return
	}
	if c.Again {
		s.renderAuthority(w, r, v, http.StatusOK, web.Page{Notice: "This form was sent already (reloaded, or sent twice): " + c.Summary + " is in " + holder.DisplayName + "'s wallet once; nothing was issued again."})
		return
	}
	s.renderAuthority(w, r, v, http.StatusOK, web.Page{Notice: c.Summary + " issued to " + holder.DisplayName + "'s wallet."})
}

func (s *Server) healthFile(body func() []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(body())
	}
}

// The verifier: nothing it does is stored, logged or counted per holder.

func (s *Server) verifyData(verdict *healthpass.Verdict) map[string]any {
	v := s.hnode.Verifier
	return map[string]any{"Verdict": verdict, "TrustInfo": v.TrustInfo, "Rules": s.hnode.Rules}
}

func (s *Server) verifyPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, nil, http.StatusOK, "verify", web.Page{Title: "Verify a health pass", Data: s.verifyData(nil)})
}

func (s *Server) verifyPost(w http.ResponseWriter, r *http.Request) {
	if !s.parseForm(w, r) {
		return
	}
	payload := strings.TrimSpace(r.PostFormValue("payload"))
	if payload == "" {
		s.render(w, r, nil, http.StatusBadRequest, "verify", web.Page{Title: "Verify a health pass", Error: "Scan a pass or paste its text (it starts with HC1:).", Data: s.verifyData(nil)})
		return
	}
	verdict, _ := s.hnode.Verifier.Verify(payload, s.now(), false)
	status := http.StatusOK
	if !verdict.Valid {
		status = http.StatusUnprocessableEntity
	}
	s.render(w, r, nil, status, "verify", web.Page{Title: "Verify a health pass", Data: s.verifyData(verdict)})
}

func (s *Server) verifyAPI(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Payload string `json:"payload"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&in); err != nil || strings.TrimSpace(in.Payload) == "" {
		writeProblem(w, http.StatusBadRequest, `Send {"payload": "HC1:…"}.`)
		return
	}
	verdict, _ := s.hnode.Verifier.Verify(strings.TrimSpace(in.Payload), s.now(), false)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(verdict)
}
