package server_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/civstack/civstack/internal/exchange"
	"github.com/civstack/civstack/internal/registry"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestRewardsOverHTTP: joining from the wallet, partners' tokens giving
// points and honouring vouchers (only their own), what others may not do,
// and that no reward data can reach the data exchange.
func TestRewardsOverHTTP(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			w := startDemo(t, e)
			ctx := context.Background()
			org := func(name string) string {
				o, err := w.n.reg.OrganisationByName(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				return o.ID
			}
			transit, museum, tax := org("Metro Transit"), org("City Museum"), org("City Tax Office")
			token := func(orgID string, role registry.Role) *client { return w.apiClient(t, orgID, role, "system") }
			gates, museumDesk, agency := token(transit, registry.Partner), token(museum, registry.Partner), token(tax, registry.Agency)

			amira := w.as(t, "Amira Haddad")
			expect(t, "rewards page before joining", amira.get("/wallet/rewards"), http.StatusOK, "Join the city's rewards programme")
			r := amira.postForm("/wallet/rewards/join", nil)
			expect(t, "join", r, http.StatusOK, "Your member card")
			card := regexp.MustCompile(`id="card-code">(RW[A-Z0-9]+)<`).FindStringSubmatch(r.body)
			if card == nil {
				t.Fatalf("no member card on the page: %s", clip(r.body))
			}
			ride := func(c *client, id string) *response {
				return c.postJSON("/api/v1/rewards/events", map[string]string{"card": card[1], "type": "transit_ride", "event_id": id})
			}
			// The partner's console: its form carries an event id, so a
			// second send gives nothing more.
			ben := w.as(t, "Ben Carter")
			event := regexp.MustCompile(`name="event_id" value="([^"]+)"`).FindStringSubmatch(ben.get("/rewards/" + transit).body)
			if event == nil {
				t.Fatal("no event id in the console's form")
			}
			give := url.Values{"card": {card[1]}, "type": {"transit_ride"}, "event_id": {event[1]}}
			expect(t, "a ride at the console", ben.postForm("/rewards/"+transit+"/events", give), http.StatusOK, "Ride on public transport: 10 points given.")
			expect(t, "the console's form sent twice", ben.postForm("/rewards/"+transit+"/events", give), http.StatusOK, "This form was sent already", "nothing more was given")
			expect(t, "a second ride", ride(gates, "g2"), http.StatusOK, `"points":10`)
			expect(t, "the same ride again", ride(gates, "g2"), http.StatusOK, `"points":10`, `"replayed":true`)
			expect(t, "a third ride", ride(gates, "g3"), http.StatusOK, `"points":10`)
			expect(t, "over the daily cap", ride(gates, "g4"), http.StatusConflict, "at most 30 points a day")
			expect(t, "the museum gives ride points", ride(museumDesk, "m1"), http.StatusBadRequest, "You do not record")
			expect(t, "an agency token", ride(agency, "a1"), http.StatusForbidden)
			expect(t, "no card", gates.postJSON("/api/v1/rewards/events", map[string]string{"card": " ", "type": "transit_ride", "event_id": "g5"}),
				http.StatusBadRequest, "Enter the member's card number (it is on their Rewards page).")
			expect(t, "an unknown card", gates.postJSON("/api/v1/rewards/events", map[string]string{"card": "RWNOBODY", "type": "transit_ride", "event_id": "g5"}),
				http.StatusNotFound, "No member of the rewards programme has that card")
			expect(t, "points on the page", amira.get("/wallet/rewards"), http.StatusOK, "30 points", "Ride on public transport")
			// A membership that cannot be read is not an invitation to join.
			execSQL(t, w.n.db, `ALTER TABLE rw_members RENAME TO rw_members_away`)
			r = amira.get("/wallet/rewards")
			expect(t, "the page while members cannot be read", r, http.StatusInternalServerError)
			if strings.Contains(r.body, "Join the city's rewards programme") {
				t.Fatalf("a member was asked to join while the members could not be read: %s", clip(r.body))
			}
			execSQL(t, w.n.db, `ALTER TABLE rw_members_away RENAME TO rw_members`)

			// The page's form carries a key: sent twice, it buys once.
			key := regexp.MustCompile(`name="key" value="([^"]+)"`).FindStringSubmatch(amira.get("/wallet/rewards").body)
			if key == nil {
				t.Fatal("no purchase key in the voucher form")
			}
			buy := url.Values{"item": {"museum-entry"}, "key": {key[1]}}
			r = amira.postForm("/wallet/rewards/vouchers", buy)
			expect(t, "buy a museum entry", r, http.StatusSeeOther)
			first := r.header.Get("Location")
			r = amira.postForm("/wallet/rewards/vouchers", buy)
			expect(t, "the form sent twice", r, http.StatusSeeOther)
			if again := r.header.Get("Location"); again != first+"?again=1" {
				t.Fatalf("the form sent twice went to %q, the first to %q", again, first)
			}
			expect(t, "the second send says so", amira.get(r.header.Get("Location")), http.StatusOK, "No points were spent a second time", "Show this code at City Museum")
			expect(t, "points spent once", amira.get("/wallet/rewards"), http.StatusOK, "<strong>0 points</strong>")
			r = amira.get(first)
			expect(t, "the voucher", r, http.StatusOK, "Show this code at City Museum")
			code := regexp.MustCompile(`id="voucher-code"[^>]*>([^<]+)<`).FindStringSubmatch(r.body)
			if code == nil {
				t.Fatalf("no voucher code: %s", clip(r.body))
			}
			expect(t, "another partner scans it", gates.postJSON("/api/v1/rewards/vouchers/redeem", map[string]string{"code": code[1]}), http.StatusForbidden, "honoured by City Museum")
			expect(t, "the museum scans it", museumDesk.postJSON("/api/v1/rewards/vouchers/redeem", map[string]string{"code": code[1]}), http.StatusOK, `"state":"used"`)
			expect(t, "a second scan", museumDesk.postJSON("/api/v1/rewards/vouchers/redeem", map[string]string{"code": code[1]}), http.StatusConflict, "was used")

			// The museum's accounts: what it honoured, naming no citizen.
			lena := w.as(t, "Lena Fischer")
			expect(t, "the museum's console lists it", lena.get("/rewards/"+museum), http.StatusOK, "Vouchers honoured", "Museum entry", "Every voucher honoured, as CSV")
			honoured := lena.get("/rewards/" + museum + "/vouchers.csv")
			expect(t, "the museum's CSV", honoured, http.StatusOK, "honoured (UTC),voucher,item,points", "Museum entry")
			if strings.Count(honoured.body, "\n") != 2 || strings.Contains(honoured.body, w.people["Amira Haddad"]) || strings.Contains(honoured.body, "Amira") {
				t.Fatalf("the museum's CSV: want one voucher and no citizen:\n%s", honoured.body)
			}
			if theirs := ben.get("/rewards/" + transit + "/vouchers.csv"); strings.Count(theirs.body, "\n") != 1 {
				t.Fatalf("the transit company honoured nothing, yet:\n%s", theirs.body)
			}
			expect(t, "another partner's CSV", ben.get("/rewards/"+museum+"/vouchers.csv"), http.StatusNotFound)
			expect(t, "buying without points", amira.postForm("/wallet/rewards/vouchers", map[string][]string{"item": {"transit-day-pass"}}), http.StatusConflict, "nothing was spent")

			jonas := w.as(t, "Jonas Weber")
			vid := regexp.MustCompile(`/wallet/rewards/vouchers/([0-9a-f-]+)"`).FindStringSubmatch(amira.get("/wallet/rewards").body)
			if vid == nil {
				t.Fatal("no voucher link on the citizen's page")
			}
			expect(t, "another citizen's voucher", jonas.get("/wallet/rewards/vouchers/"+vid[1]), http.StatusNotFound)
			expect(t, "a citizen on the partner console", amira.get("/rewards/"+museum), http.StatusForbidden)
			expect(t, "the public rules", newClient(t, w.n.URL).get("/rewards"), http.StatusOK, "Ride on public transport", "no penalties")
			expect(t, "an operator's rule needs an operator", gates.putJSON("/api/v1/rewards/rules/bike_share", map[string]any{
				"label": "Bike share", "partner": transit, "points": 5, "daily_cap": 10}), http.StatusForbidden)

			ops := w.as(t, "Olu Adeyemi")
			expect(t, "a citizen on the programme page", amira.get("/rewards/manage"), http.StatusForbidden)
			expect(t, "the operator's page", ops.get("/rewards/manage"), http.StatusOK, "Earning rules", "Museum entry")
			rule := func(points string) *response {
				return ops.postForm("/rewards/manage/rules", map[string][]string{"type": {"bike_share"}, "label": {"Bike share"}, "partner": {transit},
					"points": {points}, "daily_cap": {"10"}})
			}
			expect(t, "a rule that subtracts", rule("-5"), http.StatusBadRequest, "rewards never subtract")
			expect(t, "a rule for a non-partner", ops.postForm("/rewards/manage/rules", map[string][]string{"type": {"bike_share"}, "label": {"Bike share"},
				"partner": {tax}, "points": {"5"}, "daily_cap": {"10"}}), http.StatusBadRequest, "Choose a partner")
			expect(t, "publish a rule", rule("5"), http.StatusOK, "Published: Bike share.")
			expect(t, "the rule is public", newClient(t, w.n.URL).get("/rewards"), http.StatusOK, "Bike share")

			// Reward data is used for nothing else: the exchange offers none
			// and refuses any service that would.
			svcs, err := w.n.ex.Services(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range svcs {
				for _, f := range s.Fields {
					if regexp.MustCompile(`(?i)reward|point|voucher|ride|recycl|card`).MatchString(s.ID + " " + s.Name + " " + f.Name + " " + f.Label) {
						t.Errorf("the exchange offers %s/%s", s.ID, f.Name)
					}
				}
			}
			expect(t, "publishing reward data", agency.putJSON("/api/v1/exchange/services/transit-rewards", map[string]any{
				"name": "Rides", "fields": []exchange.Field{{Name: "reward_points", Label: "Points", Type: "number"}}}), http.StatusBadRequest, "not shared through the exchange")
			if _, err := w.n.ex.PublishService(ctx, tax, exchange.Service{ID: "habits", Name: "Habits", Fields: []exchange.Field{{Name: "vouchers_bought", Label: "Vouchers", Type: "number"}}}); err == nil {
				t.Fatal("the exchange accepted a voucher field")
			}

			expect(t, "leave", amira.postForm("/wallet/rewards/leave", nil), http.StatusOK, "your reward events are deleted")
			if n := countRows(t, w.n.db, `SELECT COUNT(*) FROM rw_events`); n != 0 {
				t.Fatalf("%d reward events left after leaving", n)
			}
			expect(t, "the card after leaving", ride(gates, "g6"), http.StatusNotFound)
			if !strings.Contains(amira.get("/wallet/rewards").body, "Museum entry") {
				t.Fatal("the voucher is gone after leaving")
			}
		})
	}
}
