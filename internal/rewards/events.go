package rewards

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/store"
)

// RecordIn is a partner's reward event: the member card it scanned, the
// event type, and the partner's own id for the event (a retry with the
// same id returns the first award).
type RecordIn struct {
	Card    string
	Type    string
	EventID string
}

// Award is what an event earned.
type Award struct {
	EventID string    `json:"event_id"`
	Type    string    `json:"type"`
	Label   string    `json:"label"`
	Points  int64     `json:"points"`
	At      time.Time `json:"at"`
	// Replayed: this event id was recorded before; this is its first
	// award, and nothing was minted now.
	Replayed bool `json:"replayed,omitempty"`
}

// Event is one of a citizen's reward events, as their wallet shows it.
type Event struct {
	Type        string
	Label       string
	PartnerName string
	Points      int64
	At          time.Time
}

var eventIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// claimTimeout is how long an event's claim may stay unminted (its
// recorder crashed) before a retry takes it over.
const claimTimeout = time.Minute

// Record mints the points an event earns under its rule. The event is
// first claimed: its row is inserted with 0 points, unique per partner and
// event id, so that retries, in this process or another, never mint twice
// (a retry gets the first award, or ErrBusy while the first is under way);
// the claim is then filled in the ledger's transaction that mints.
//
// Caps hold across processes: each citizen has, per event type and UTC
// day, as many ledger transfer ids as the cap allows events (derived from
// citizen, type, day and slot), and a transfer id can be used once; an
// event takes the first free slot. The last slot gives what is left under
// the cap; past it, ErrCap (and the claim is removed).
func (s *Service) Record(ctx context.Context, partnerOrg string, in RecordIn) (*Award, error) {
	if !eventIDRE.MatchString(in.EventID) {
		return nil, fmt.Errorf("%w: an event id is 1 to 64 letters, digits or . _ : -", ErrInvalid)
	}
	if strings.TrimSpace(in.Card) == "" {
		return nil, fmt.Errorf("%w: enter the member's card number (it is on their Rewards page)", ErrInvalid)
	}
	m, err := s.member(ctx, `card = $1`, in.Card)
	if errors.Is(err, ErrNotMember) {
		return nil, fmt.Errorf("%w: no member of the rewards programme has that card", ErrNotMember)
	}
	if err != nil {
		return nil, err
	}
	rule, err := s.rule(ctx, in.Type)
	if err != nil {
		return nil, err
	}
	if rule.Partner != partnerOrg {
		return nil, fmt.Errorf("%w: you do not record %q events; the published rules say who does", ErrInvalid, in.Type)
	}
	now := s.Now().UTC()
	day := now.In(cmp.Or(s.cfg.Zone, time.UTC)).Format(time.DateOnly) // the city's day, for the daily cap
	claim, prior, err := s.claim(ctx, partnerOrg, in.EventID, m.Person, rule, day, now)
	if prior != nil || err != nil {
		return prior, err
	}
	if s.afterClaim != nil {
		s.afterClaim() // tests: a recorder that stalls here
	}
	release := func() { _, _ = s.exec(ctx, `DELETE FROM rw_events WHERE id = $1 AND points = 0`, claim) }
	var taken int
	if err := s.DB.QueryRowRead(ctx, `SELECT COUNT(*) FROM rw_events WHERE person_id = $1 AND event_type = $2 AND day = $3 AND points > 0`, m.Person, rule.Type, day).Scan(&taken); err != nil {
		release()
		return nil, fmt.Errorf("record: %w", err)
	}
	// The claim's marker: a pending transfer of one point, its id derived
	// from the claim, voided in the same chain by a void of this attempt's
	// own id. A second mint under the same claim (a recorder that stalled
	// past claimTimeout, whose claim a retry took over and minted) finds the
	// marker voided already, and its whole chain, points included, fails.
	// The claim's id is random, so nothing about the event reaches the
	// ledger; the reference tells one claim's slot from another's.
	marker := derive("reward-claim", claim)
	attempt := uuid.Must(uuid.NewV7())
	ref := fmt.Sprintf("reward %x", marker[:8])
	slots := int((rule.DailyCap + rule.Points - 1) / rule.Points)
	for k := taken; k < slots; k++ {
		amount := min(rule.Points, rule.DailyCap-int64(k)*rule.Points)
		chain := []ledger.Transfer{
			{ID: derive("reward", m.Person, rule.Type, day, strconv.Itoa(k)), Debit: ProgrammeAccount, Credit: PointsAccount(m.Person),
				Amount: amount, Ledger: ledger.LedgerPoints, Code: ledger.CodeReward, Flags: ledger.Linked, Reference: ref},
			{ID: marker, Debit: ProgrammeAccount, Credit: ClaimsAccount, Amount: 1, Ledger: ledger.LedgerPoints, Code: ledger.CodeReward,
				Flags: ledger.Linked | ledger.Pending, Reference: ref},
			{ID: derive("reward-event-void", attempt.String()), PendingID: marker, Ledger: ledger.LedgerPoints, Code: ledger.CodeReward,
				Flags: ledger.VoidPending, Reference: ref},
		}
		rs, err := s.Ledger.SubmitThen(ctx, chain, func(ctx context.Context, tx *store.Tx, rs []ledger.Result) error {
			if rs[0] != ledger.OK || rs[2] != ledger.OK {
				return nil
			}
			_, err := tx.ExecContext(ctx, `UPDATE rw_events SET points = $1, day = $2, created_at = $3 WHERE id = $4`, amount, day, now.UnixMilli(), claim)
			return err
		})
		if err != nil {
			release()
			return nil, fmt.Errorf("record: %w", err)
		}
		switch {
		case rs[0] == ledger.OK && rs[2] == ledger.OK:
			return &Award{EventID: in.EventID, Type: rule.Type, Label: rule.Label, Points: amount, At: now}, nil
		case rs[2] == ledger.PendingAlreadyVoided:
			// Minted before, by the recorder that took this claim over.
			return s.mintedBefore(ctx, claim, in.EventID, rule)
		case slotTaken(rs[0]):
			continue // the slot went to another event (another process, or before the citizen left and rejoined)
		default:
			release()
			return nil, fmt.Errorf("record: the ledger refused the points: %s, %s, %s", rs[0], rs[1], rs[2])
		}
	}
	release()
	return nil, fmt.Errorf("%w: %s earns at most %d points a day", ErrCap, rule.Label, rule.DailyCap)
}

// slotTaken reports whether a slot's transfer failed because the slot's id
// is another event's (an earlier mint names another event, or predates
// the markers).
func slotTaken(r ledger.Result) bool {
	switch r {
	case ledger.ExistsWithDifferentDebit, ledger.ExistsWithDifferentCredit, ledger.ExistsWithDifferentAmount, ledger.ExistsWithDifferentPendingID,
		ledger.ExistsWithDifferentLedger, ledger.ExistsWithDifferentCode, ledger.ExistsWithDifferentFlags, ledger.ExistsWithDifferentTimeout,
		ledger.ExistsWithDifferentReference:
		return true
	}
	return false
}

// mintedBefore answers a claim whose points another recorder minted: its
// award, as a replay; or, if the citizen has left since (their events are
// deleted), that the event was recorded.
func (s *Service) mintedBefore(ctx context.Context, claim, eventID string, rule *Rule) (*Award, error) {
	var points, at int64
	err := s.DB.QueryRowRead(ctx, `SELECT points, created_at FROM rw_events WHERE id = $1 AND points > 0`, claim).Scan(&points, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: event id %q was recorded already", ErrInvalid, eventID)
	}
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	return &Award{EventID: eventID, Type: rule.Type, Label: rule.Label, Points: points, At: time.UnixMilli(at).UTC(), Replayed: true}, nil
}

// claim inserts an event's claim and returns its id; or, for an event id
// recorded before, its award (or an error if it was another citizen's or
// type's, or ErrBusy while its first recording is under way).
func (s *Service) claim(ctx context.Context, partnerOrg, eventID, person string, rule *Rule, day string, now time.Time) (string, *Award, error) {
	busy := fmt.Errorf("%w: this event is being recorded; retry in a moment", ErrBusy)
	for attempt := 0; attempt < 2; attempt++ {
		id, ok, err := s.insertClaim(ctx, partnerOrg, eventID, person, rule.Type, day, now)
		if err != nil || ok {
			return id, nil, err
		}
		var prior, p, typ string
		var points, at int64
		err = s.DB.QueryRowRead(ctx, `SELECT id, person_id, event_type, points, created_at FROM rw_events WHERE partner_org = $1 AND partner_event = $2`,
			partnerOrg, eventID).Scan(&prior, &p, &typ, &points, &at)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			continue // the claim was just released: claim again
		case err != nil:
			return "", nil, fmt.Errorf("record: %w", err)
		case p != person || typ != rule.Type:
			return "", nil, fmt.Errorf("%w: event id %q was already used for another event", ErrInvalid, eventID)
		case points > 0:
			return "", &Award{EventID: eventID, Type: typ, Label: rule.Label, Points: points, At: time.UnixMilli(at).UTC(), Replayed: true}, nil
		case now.Sub(time.UnixMilli(at)) < claimTimeout:
			return "", nil, busy
		}
		// A claim its recorder never filled (it stopped): take it over.
		took, err := s.exec(ctx, `UPDATE rw_events SET created_at = $1 WHERE id = $2 AND points = 0 AND created_at = $3`, now.UnixMilli(), prior, at)
		if err != nil || took != 1 {
			return "", nil, cmp.Or(err, busy)
		}
		return prior, nil, nil
	}
	return "", nil, busy
}

// insertClaim inserts an event's claim; ok is false if the event id has
// a row already.
func (s *Service) insertClaim(ctx context.Context, partnerOrg, eventID, person, typ, day string, now time.Time) (string, bool, error) {
	id := uuid.Must(uuid.NewV7()).String()
	n, err := s.exec(ctx, `INSERT INTO rw_events (id, person_id, partner_org, partner_event, event_type, points, day, created_at)
		VALUES ($1, $2, $3, $4, $5, 0, $6, $7) ON CONFLICT (partner_org, partner_event) DO NOTHING`, id, person, partnerOrg, eventID, typ, day, now.UnixMilli())
	return id, n == 1, err
}

// exec runs one statement in a transaction of its own and returns how
// many rows it changed.
func (s *Service) exec(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := s.DB.Tx(ctx, func(tx *store.Tx) error {
		r, err := tx.ExecContext(ctx, query, args...)
		if err == nil {
			n, _ = r.RowsAffected()
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("record: %w", err)
	}
	return n, nil
}

func (s *Service) rule(ctx context.Context, typ string) (*Rule, error) {
	r := &Rule{}
	err := s.DB.QueryRowRead(ctx, `SELECT event_type, label, partner_org, points, daily_cap FROM rw_rules WHERE event_type = $1`, typ).
		Scan(&r.Type, &r.Label, &r.Partner, &r.Points, &r.DailyCap)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no published rule for %q events", ErrNotFound, typ)
	}
	if err != nil {
		return nil, fmt.Errorf("rule: %w", err)
	}
	return r, nil
}

// Events lists a member's reward events, newest first.
func (s *Service) Events(ctx context.Context, personID string, limit int) ([]*Event, error) {
	rows, err := s.DB.QueryRead(ctx, `SELECT e.event_type, COALESCE(r.label, e.event_type), e.partner_org, e.points, e.created_at
		FROM rw_events e LEFT JOIN rw_rules r ON r.event_type = e.event_type WHERE e.person_id = $1 AND e.points > 0 ORDER BY e.created_at DESC LIMIT $2`, personID, limit)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	defer rows.Close()
	var out []*Event
	var orgs []string
	for rows.Next() {
		e := &Event{}
		var org string
		var at int64
		if err := rows.Scan(&e.Type, &e.Label, &org, &e.Points, &at); err != nil {
			return nil, err
		}
		e.At = time.UnixMilli(at).UTC()
		out = append(out, e)
		orgs = append(orgs, org)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i, e := range out {
		e.PartnerName = s.OrgName(ctx, orgs[i])
	}
	return out, nil
}
