package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/rewards"
	"github.com/civstack/civstack/internal/web"
)

// The civic rewards programme's surfaces: the public terms (/rewards: the
// earning rules, the catalogue, expiry), the citizen's page (join, the
// member card, points, events, vouchers, leave), each voucher's QR page,
// the partner console (record an event by member card, scan a voucher),
// and the API for partners' systems and operators.

func (s *Server) rewardsRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /rewards", s.rewardsInfo)
	mux.HandleFunc("GET /wallet/rewards", s.signedIn(s.rewardsPage))
	mux.HandleFunc("POST /wallet/rewards/join", s.signedIn(s.rewardsJoin))
	mux.HandleFunc("POST /wallet/rewards/leave", s.signedIn(s.rewardsLeave))
	mux.HandleFunc("POST /wallet/rewards/vouchers", s.signedIn(s.rewardsBuy))
	mux.HandleFunc("GET /wallet/rewards/vouchers/{id}", s.signedIn(s.voucherPage))
	mux.HandleFunc("GET /rewards/manage", s.withRole(registry.Operator, s.manageRewards))
	mux.HandleFunc("POST /rewards/manage/rules", s.withRole(registry.Operator, s.manageRule))
	mux.HandleFunc("POST /rewards/manage/items", s.withRole(registry.Operator, s.manageItem))
	mux.HandleFunc("GET /rewards/{org}", s.orgRole(registry.Partner, s.partnerPage))
	mux.HandleFunc("POST /rewards/{org}/events", s.orgRole(registry.Partner, s.partnerRecord))
	mux.HandleFunc("POST /rewards/{org}/vouchers", s.orgRole(registry.Partner, s.partnerRedeem))
	mux.HandleFunc("GET /rewards/{org}/vouchers.csv", s.orgRole(registry.Partner, s.partnerVouchersCSV))
}

var rewardsSentinels = []sentinel{{rewards.ErrInvalid, 400}, {rewards.ErrNotFound, 404}, {rewards.ErrNotMember, 404}, {rewards.ErrCap, 409},
	{rewards.ErrPoints, 409}, {rewards.ErrUsed, 409}, {rewards.ErrBusy, 409}, {rewards.ErrExpired, 410}, {rewards.ErrOther, 403}}

// rewardsStatus maps rewards errors to a status and a sentence.
func rewardsStatus(err error) (int, string) {
	if status, msg, ok := sentinelStatus(err, rewardsSentinels); ok {
		return status, msg
	}
	return classify(err)
}

// rewardsFail renders page with the error, or the error page for 5xx.
func (s *Server) rewardsFail(w http.ResponseWriter, r *http.Request, err error, page func(status int, msg string)) {
	s.failWith(w, r, err, rewardsStatus, page)
}

func (s *Server) rewardsInfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rules, err := s.rw.Rules(ctx)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	items, err := s.rw.Catalogue(ctx, false)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	s.render(w, r, nil, http.StatusOK, "rewardsinfo", web.Page{Title: "Civic rewards: the rules", Data: map[string]any{
		"Rules": rules, "Items": items, "ExpireDays": int(s.rw.Config().PointsExpire.Hours() / 24)}})
}

func (s *Server) rewardsPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderRewards(w, r, v, http.StatusOK, web.Page{})
}

func (s *Server) renderRewards(w http.ResponseWriter, r *http.Request, v *viewer, status int, p web.Page) {
	ctx := r.Context()
	data := map[string]any{"ExpireDays": int(s.rw.Config().PointsExpire.Hours() / 24)}
	bal, err := s.rw.Balance(ctx, v.person.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	data["Balance"] = bal
	vouchers, err := s.rw.Vouchers(ctx, v.person.ID)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	data["Vouchers"] = vouchers
	items, err := s.rw.Catalogue(ctx, false)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	data["Items"] = items
	data["BuyKey"] = "form-" + newNonce() // one per page shown: a second send of its form buys nothing more
	m, err := s.rw.Member(ctx, v.person.ID)
	if err != nil && !errors.Is(err, rewards.ErrNotMember) {
		s.failErr(w, r, err) // not "join": they may be a member already
		return
	}
	if m != nil {
		data["Member"] = m
		card, err := qrSVG(m.Card, "Member card")
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		data["Card"] = card
		if data["Events"], err = s.rw.Events(ctx, v.person.ID, 50); err != nil {
			s.failErr(w, r, err)
			return
		}
	} else {
		if data["Rules"], err = s.rw.Rules(ctx); err != nil {
			s.failErr(w, r, err)
			return
		}
	}
	p.Title, p.Data = "Civic rewards", data
	s.render(w, r, v, status, "rewards", p)
}

func (s *Server) rewardsJoin(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	if _, err := s.rw.Join(r.Context(), v.person.ID); err != nil {
		s.failErr(w, r, err)
		return
	}
	s.renderRewards(w, r, v, http.StatusOK, web.Page{Notice: "Welcome to the programme. Show your member card at partners to earn points."})
}

func (s *Server) rewardsLeave(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	if err := s.rw.Leave(r.Context(), v.person.ID); err != nil {
		s.rewardsFail(w, r, err, func(status int, msg string) { s.renderRewards(w, r, v, status, web.Page{Error: msg}) })
		return
	}
	s.renderRewards(w, r, v, http.StatusOK, web.Page{Notice: "You left the programme and your reward events are deleted. Your points and vouchers stay yours."})
}

func (s *Server) rewardsBuy(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	vo, err := s.rw.Buy(r.Context(), v.person.ID, r.PostFormValue("item"), r.PostFormValue("key"))
	if err != nil {
		s.rewardsFail(w, r, err, func(status int, msg string) { s.renderRewards(w, r, v, status, web.Page{Error: msg}) })
		return
	}
	to := "/wallet/rewards/vouchers/" + vo.ID
	if vo.Again {
		to += "?again=1"
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (s *Server) voucherPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	vo, err := s.rw.VoucherOf(r.Context(), v.person.ID, r.PathValue("id"))
	if err != nil {
		s.rewardsFail(w, r, err, func(status int, msg string) { s.fail(w, r, status, msg) })
		return
	}
	data := map[string]any{"Voucher": vo}
	if vo.State == rewards.Valid {
		code, err := s.rw.Code(vo)
		if err == nil {
			data["Code"] = code
			data["QR"], err = qrSVG(code, "Voucher: "+vo.Name)
		}
		if err != nil {
			s.failErr(w, r, err)
			return
		}
	}
	p := web.Page{Title: vo.Name, Data: data}
	if r.URL.Query().Get("again") == "1" {
		p.Notice = "You bought this voucher with that button already: here it is. No points were spent a second time."
	}
	s.render(w, r, v, http.StatusOK, "voucher", p)
}

// honouredShown is how many of the vouchers it honoured the partner's page
// lists; the CSV has them all.
const honouredShown = 20

// partnerVouchersCSV is every voucher the partner honoured, the latest
// first, for its accounts (no citizen named).
func (s *Server) partnerVouchersCSV(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	writeCSVPages(s, w, r, csvName("civstack-vouchers-honoured", s.now(), m.OrgID), s.zoned("honoured", "voucher", "item", "points"),
		func(after *rewards.Voucher, limit int) ([]*rewards.Voucher, error) {
			if after == nil {
				return s.rw.Honoured(r.Context(), m.OrgID, time.Time{}, "", limit)
			}
			return s.rw.Honoured(r.Context(), m.OrgID, after.Used, after.ID, limit)
		},
		func(x *rewards.Voucher) []string {
			return []string{s.csvTime(x.Used.UnixMilli()), x.ID, x.Name, strconv.FormatInt(x.Price, 10)}
		})
}

func (s *Server) partnerPage(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	s.renderPartner(w, r, v, m, http.StatusOK, web.Page{})
}

func (s *Server) renderPartner(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership, status int, p web.Page) {
	rules, err := s.rw.Rules(r.Context())
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	var mine []*rewards.Rule
	for _, rule := range rules {
		if rule.Partner == m.OrgID {
			mine = append(mine, rule)
		}
	}
	items, err := s.rw.Catalogue(r.Context(), false)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	var honoured []*rewards.Item
	for _, it := range items {
		if it.Partner == m.OrgID {
			honoured = append(honoured, it)
		}
	}
	used, err := s.rw.Honoured(r.Context(), m.OrgID, time.Time{}, "", honouredShown)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	p.Title = "Rewards · " + m.OrgName
	p.Data = map[string]any{"Org": m.OrgID, "OrgName": m.OrgName, "Rules": mine, "Items": honoured, "EventID": "console-" + newNonce(),
		"Used": used, "UsedShown": honouredShown}
	s.render(w, r, v, status, "partner", p)
}

func (s *Server) partnerRecord(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	if !s.parseForm(w, r) {
		return
	}
	// The form's event id, fresh each time the form is shown: sent twice
	// (a double click, a reload), it gives the points once.
	event := r.PostFormValue("event_id")
	if event == "" {
		event = "console-" + uuid.NewString()
	}
	a, err := s.rw.Record(r.Context(), m.OrgID, rewards.RecordIn{Card: strings.ToUpper(strings.TrimSpace(r.PostFormValue("card"))),
		Type: r.PostFormValue("type"), EventID: event})
	if err != nil {
		s.rewardsFail(w, r, err, func(status int, msg string) { s.renderPartner(w, r, v, m, status, web.Page{Error: msg}) })
		return
	}
	if a.Replayed {
		s.renderPartner(w, r, v, m, http.StatusOK, web.Page{Notice: "This form was sent already: " + a.Label + ", " + strconv.FormatInt(a.Points, 10) + " points, were given once; nothing more was given."})
		return
	}
	s.renderPartner(w, r, v, m, http.StatusOK, web.Page{Notice: a.Label + ": " + strconv.FormatInt(a.Points, 10) + " points given."})
}

func (s *Server) partnerRedeem(w http.ResponseWriter, r *http.Request, v *viewer, m registry.Membership) {
	if !s.parseForm(w, r) {
		return
	}
	vo, err := s.rw.Redeem(r.Context(), m.OrgID, r.PostFormValue("code"))
	if err != nil {
		s.rewardsFail(w, r, err, func(status int, msg string) { s.renderPartner(w, r, v, m, status, web.Page{Error: "Refused: " + msg}) })
		return
	}
	s.renderPartner(w, r, v, m, http.StatusOK, web.Page{Notice: "Accepted: " + vo.Name + ". The voucher is now used."})
}

// The operator's page: publish earning rules and the catalogue.

func (s *Server) manageRewards(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.renderManage(w, r, v, http.StatusOK, web.Page{})
}

func (s *Server) renderManage(w http.ResponseWriter, r *http.Request, v *viewer, status int, p web.Page) {
	ctx := r.Context()
	rules, err := s.rw.Rules(ctx)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	items, err := s.rw.Catalogue(ctx, true)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	partners, err := s.organisations(ctx, registry.Partner)
	if err != nil {
		s.failErr(w, r, err)
		return
	}
	p.Title = "Rewards programme"
	p.Data = map[string]any{"Rules": rules, "Items": items, "Partners": partners}
	s.render(w, r, v, status, "rewardsadmin", p)
}

func (s *Server) manageRule(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	points, _ := strconv.ParseInt(r.PostFormValue("points"), 10, 64)
	capPts, _ := strconv.ParseInt(r.PostFormValue("daily_cap"), 10, 64)
	rule := rewards.Rule{Type: strings.TrimSpace(r.PostFormValue("type")), Label: r.PostFormValue("label"), Partner: r.PostFormValue("partner"), Points: points, DailyCap: capPts}
	if ok, err := s.orgWith(r.Context(), rule.Partner, registry.Partner); !ok {
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		s.renderManage(w, r, v, http.StatusBadRequest, web.Page{Error: "Choose a partner organisation."})
		return
	}
	if err := s.rw.SetRule(r.Context(), rule); err != nil {
		s.rewardsFail(w, r, err, func(status int, msg string) { s.renderManage(w, r, v, status, web.Page{Error: msg}) })
		return
	}
	s.renderManage(w, r, v, http.StatusOK, web.Page{Notice: "Published: " + rule.Label + "."})
}

func (s *Server) manageItem(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !s.parseForm(w, r) {
		return
	}
	price, _ := strconv.ParseInt(r.PostFormValue("price"), 10, 64)
	days, _ := strconv.Atoi(r.PostFormValue("valid_days"))
	it := rewards.Item{ID: strings.TrimSpace(r.PostFormValue("id")), Name: r.PostFormValue("name"), Partner: r.PostFormValue("partner"), Price: price, ValidDays: days,
		Active: r.PostFormValue("active") != ""}
	if ok, err := s.orgWith(r.Context(), it.Partner, registry.Partner); !ok {
		if err != nil {
			s.failErr(w, r, err)
			return
		}
		s.renderManage(w, r, v, http.StatusBadRequest, web.Page{Error: "Choose a partner organisation."})
		return
	}
	if err := s.rw.SetItem(r.Context(), it); err != nil {
		s.rewardsFail(w, r, err, func(status int, msg string) { s.renderManage(w, r, v, status, web.Page{Error: msg}) })
		return
	}
	s.renderManage(w, r, v, http.StatusOK, web.Page{Notice: "Saved: " + it.Name + "."})
}

// The API: partners' systems record events and redeem vouchers; any token
// reads the rules and the catalogue; operators publish them.

func (s *Server) rewardsAPIRoutes(api huma.API) {
	op := func(id, method, path, summary string, role registry.Role) huma.Operation {
		o := huma.Operation{OperationID: id, Method: method, Path: path, Summary: summary, MaxBodyBytes: maxAPIBody, Tags: []string{"rewards"}}
		if role != "" {
			o.Metadata = map[string]any{metaRole: role}
		}
		return o
	}
	huma.Register(api, op("reward-rules", http.MethodGet, "/rewards/rules", "The published earning rules", ""), s.apiRewardRules)
	huma.Register(api, op("reward-catalogue", http.MethodGet, "/rewards/catalogue", "The vouchers on offer", ""), s.apiCatalogue)
	huma.Register(api, op("record-reward-event", http.MethodPost, "/rewards/events", "Give a member points for an event (by their member card)", registry.Partner), s.apiRecord)
	huma.Register(api, op("redeem-voucher", http.MethodPost, "/rewards/vouchers/redeem", "Honour a voucher (its QR code's text); once", registry.Partner), s.apiRedeem)
	huma.Register(api, op("put-reward-rule", http.MethodPut, "/rewards/rules/{type}", "Publish or change an earning rule", registry.Operator), s.apiPutRule)
	huma.Register(api, op("put-catalogue-item", http.MethodPut, "/rewards/catalogue/{id}", "Put or change a voucher in the catalogue", registry.Operator), s.apiPutItem)
}

func (s *Server) rewardsErr(err error) error { return s.apiErrorWith(err, rewardsStatus) }

type rulesOut struct {
	Body struct {
		Rules       []*rewards.Rule `json:"rules"`
		ExpireDays  int             `json:"points_expire_after_days" doc:"unspent points expire this long after they were earned, oldest first; 0: never"`
		NoPenalties bool            `json:"no_penalties" doc:"always true: rewards never subtract"`
	}
}

func (s *Server) apiRewardRules(ctx context.Context, _ *struct{}) (*rulesOut, error) {
	rules, err := s.rw.Rules(ctx)
	if err != nil {
		return nil, s.apiError(err)
	}
	out := &rulesOut{}
	out.Body.Rules, out.Body.ExpireDays, out.Body.NoPenalties = append([]*rewards.Rule{}, rules...), int(s.rw.Config().PointsExpire.Hours()/24), true
	return out, nil
}

type catalogueOut struct {
	Body struct {
		Items []*rewards.Item `json:"items"`
	}
}

func (s *Server) apiCatalogue(ctx context.Context, _ *struct{}) (*catalogueOut, error) {
	items, err := s.rw.Catalogue(ctx, false)
	if err != nil {
		return nil, s.apiError(err)
	}
	out := &catalogueOut{}
	out.Body.Items = append([]*rewards.Item{}, items...)
	return out, nil
}

type recordIn struct {
	Body struct {
		Card    string `json:"card" minLength:"1" maxLength:"64" doc:"the member card's code (what its QR holds)"`
		Type    string `json:"type" minLength:"1" maxLength:"64" doc:"an event type of a published rule you record"`
		EventID string `json:"event_id" minLength:"1" maxLength:"64" doc:"your id for the event: a retry with it returns the first award"`
	}
}

type awardOut struct{ Body *rewards.Award }

func (s *Server) apiRecord(ctx context.Context, in *recordIn) (*awardOut, error) {
	a, err := s.rw.Record(ctx, principalFrom(ctx).org.ID, rewards.RecordIn{Card: strings.ToUpper(strings.TrimSpace(in.Body.Card)), Type: in.Body.Type, EventID: in.Body.EventID})
	if err != nil {
		return nil, s.rewardsErr(err)
	}
	return &awardOut{Body: a}, nil
}

type redeemIn struct {
	Body struct {
		Code string `json:"code" minLength:"1" maxLength:"2048" doc:"the voucher's QR code text"`
	}
}

type voucherView struct {
	ID    string `json:"id"`
	Item  string `json:"item"`
	Name  string `json:"name"`
	State string `json:"state"`
}

type redeemOut struct{ Body voucherView }

func (s *Server) apiRedeem(ctx context.Context, in *redeemIn) (*redeemOut, error) {
	vo, err := s.rw.Redeem(ctx, principalFrom(ctx).org.ID, in.Body.Code)
	if err != nil {
		return nil, s.rewardsErr(err)
	}
	return &redeemOut{Body: voucherView{ID: vo.ID, Item: vo.Item, Name: vo.Name, State: vo.State}}, nil
}

type putRuleIn struct {
	Type string `path:"type"`
	Body struct {
		Label    string `json:"label" maxLength:"100"`
		Partner  string `json:"partner" maxLength:"64" doc:"the partner organisation's id"`
		Points   int64  `json:"points" minimum:"1" maximum:"10000"`
		DailyCap int64  `json:"daily_cap" minimum:"1" maximum:"100000"`
	}
}

func (s *Server) apiPutRule(ctx context.Context, in *putRuleIn) (*struct{}, error) {
	if err := s.partnerOrg(ctx, in.Body.Partner); err != nil {
		return nil, err
	}
	if err := s.rw.SetRule(ctx, rewards.Rule{Type: in.Type, Label: in.Body.Label, Partner: in.Body.Partner, Points: in.Body.Points, DailyCap: in.Body.DailyCap}); err != nil {
		return nil, s.rewardsErr(err)
	}
	return nil, nil
}

type putItemIn struct {
	ID   string `path:"id"`
	Body struct {
		Name      string `json:"name" maxLength:"100"`
		Partner   string `json:"partner" maxLength:"64"`
		Price     int64  `json:"price" minimum:"1" maximum:"1000000"`
		ValidDays int    `json:"valid_days" minimum:"1" maximum:"3650"`
		Active    bool   `json:"active"`
	}
}

func (s *Server) apiPutItem(ctx context.Context, in *putItemIn) (*struct{}, error) {
	if err := s.partnerOrg(ctx, in.Body.Partner); err != nil {
		return nil, err
	}
	if err := s.rw.SetItem(ctx, rewards.Item{ID: in.ID, Name: in.Body.Name, Partner: in.Body.Partner, Price: in.Body.Price, ValidDays: in.Body.ValidDays, Active: in.Body.Active}); err != nil {
		return nil, s.rewardsErr(err)
	}
	return nil, nil
}

// partnerOrg checks that id is an organisation holding the partner role.
func (s *Server) partnerOrg(ctx context.Context, id string) error {
	ok, err := s.orgWith(ctx, id, registry.Partner)
	switch {
	case err != nil:
		return s.apiError(err)
	case !ok:
		return huma.Error400BadRequest("The partner must be an organisation with the partner role.")
	}
	return nil
}
