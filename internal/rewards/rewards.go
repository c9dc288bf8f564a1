// Package rewards runs the city's civic rewards programme: opt-in points a
// citizen earns from partners (a transit ride, a recycling drop-off) under
// published earning rules with daily caps, minted on the ledger's points
// ledger from the programme's account, and spent on vouchers from a
// catalogue that the partner scans once.
//
// The programme only ever adds: there are no penalties, no ranking and no
// score, and its data serves nothing else: nothing outside this package
// reads its tables, and the data exchange refuses any service that would
// expose reward data. Leaving deletes a citizen's reward events; the points
// stay theirs (they are money-like, on the ledger).
package rewards

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/text"
)

// Errors, for the API and the pages to map.
var (
	ErrInvalid   = errors.New("invalid")
	ErrNotFound  = errors.New("not found")
	ErrNotMember = errors.New("not a member of the rewards programme")
	ErrCap       = errors.New("daily cap reached")
	ErrPoints    = errors.New("not enough points")
	ErrUsed      = errors.New("voucher already used")
	ErrExpired   = errors.New("voucher expired")
	ErrOther     = errors.New("voucher for another partner")
	ErrBusy      = errors.New("busy")
)

// Rule is a published earning rule: what one event of a type earns, who may
// record it, and the most a citizen earns from it per day.
type Rule struct {
	Type        string `json:"type"`
	Label       string `json:"label"`
	Partner     string `json:"partner"` // the organisation that records it
	PartnerName string `json:"partner_name"`
	Points      int64  `json:"points"`
	DailyCap    int64  `json:"daily_cap"`
}

// Item is a voucher in the catalogue.
type Item struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Partner     string `json:"partner"` // the organisation that honours it
	PartnerName string `json:"partner_name"`
	Price       int64  `json:"price"`
	ValidDays   int    `json:"valid_days"`
	Active      bool   `json:"active"`
}

// Member is a citizen in the programme; Card is what partners scan to
// record an event (it is not the citizen's id).
type Member struct {
	Person string
	Card   string
	Joined time.Time
}

// Config is the programme's published terms.
type Config struct {
	// PointsExpire: points not spent within this long of being earned
	// expire (oldest first). 0: never.
	PointsExpire time.Duration
	// Zone is the time zone whose days the daily caps count (the city's);
	// nil is UTC.
	Zone *time.Location
}

// DefaultConfig: points expire after a year.
var DefaultConfig = Config{PointsExpire: 365 * 24 * time.Hour}

// Deps are the service's collaborators.
type Deps struct {
	DB     *store.DB
	Ledger *ledger.Engine
	// Key signs vouchers (ES256); KeyID names it.
	Key   *ecdsa.PrivateKey
	KeyID string
	// PublicKey finds an earlier key by id (after a rotation); nil: Key only.
	PublicKey func(kid string) *ecdsa.PublicKey
	Now       func() time.Time
	Rand      io.Reader
	// OrgName names organisations; nil shows ids.
	OrgName func(ctx context.Context, id string) string
}

// Service is the programme. Its methods are safe for concurrent use.
type Service struct {
	cfg Config
	Deps
	afterClaim func() // tests: runs between an event's claim and its mint
}

// New returns the programme's service and opens its account.
func New(ctx context.Context, cfg Config, d Deps) (*Service, error) {
	if d.DB == nil || d.Ledger == nil || d.Key == nil || d.Now == nil {
		return nil, errors.New("rewards: database, ledger, key and clock are required")
	}
	if d.Rand == nil {
		d.Rand = rand.Reader
	}
	if d.OrgName == nil {
		d.OrgName = func(_ context.Context, id string) string { return id }
	}
	s := &Service{cfg: cfg, Deps: d}
	if err := s.ensure(ctx, ledger.Account{ID: ProgrammeAccount, Ledger: ledger.LedgerPoints, Kind: ledger.KindIssuer, Owner: "rewards"}); err != nil {
		return nil, fmt.Errorf("rewards: programme account: %w", err)
	}
	if err := s.ensure(ctx, ledger.Account{ID: ClaimsAccount, Ledger: ledger.LedgerPoints, Kind: ledger.KindSuspense, Owner: "rewards"}); err != nil {
		return nil, fmt.Errorf("rewards: claims account: %w", err)
	}
	return s, nil
}

// Config returns the programme's terms.
func (s *Service) Config() Config { return s.cfg }

func derive(parts ...string) ledger.ID { return ledger.DeriveID(parts...) }

// ProgrammeAccount mints points (an issuer account on the points ledger).
var ProgrammeAccount = derive("rewards", "programme")

// ClaimsAccount receives each reward event's marker: a pending point,
// voided in the chain that mints the event (see Record). Its balance stays
// zero.
var ClaimsAccount = derive("rewards", "claims")

// PointsAccount is a citizen's points account.
func PointsAccount(personID string) ledger.ID { return derive("points", personID) }

// PartnerAccount is what a partner is owed for vouchers it honoured.
func PartnerAccount(orgID string) ledger.ID { return derive("points-partner", orgID) }

func (s *Service) ensure(ctx context.Context, a ledger.Account) error {
	return s.Ledger.EnsureAccount(ctx, a)
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

func (s *Service) random(n int) string {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.Rand, b); err != nil {
		panic("rewards: no randomness: " + err.Error())
	}
	return b32.EncodeToString(b)
}

// Join puts a citizen in the programme (again: nothing changes) and opens
// their points account.
func (s *Service) Join(ctx context.Context, personID string) (*Member, error) {
	if m, err := s.Member(ctx, personID); err == nil {
		return m, nil
	}
	if err := s.ensure(ctx, ledger.Account{ID: PointsAccount(personID), Ledger: ledger.LedgerPoints, Kind: ledger.KindWallet, Owner: personID,
		Flags: ledger.DebitsMustNotExceedCredits}); err != nil {
		return nil, fmt.Errorf("join: points account: %w", err)
	}
	m := &Member{Person: personID, Card: "RW" + s.random(10), Joined: s.Now().UTC()}
	err := s.DB.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO rw_members (person_id, card, joined_at) VALUES ($1, $2, $3) ON CONFLICT (person_id) DO NOTHING`,
			m.Person, m.Card, m.Joined.UnixMilli())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	return s.Member(ctx, personID)
}

// Leave takes a citizen out of the programme and deletes their reward
// events; their points and vouchers stay theirs.
func (s *Service) Leave(ctx context.Context, personID string) error {
	return s.DB.Tx(ctx, func(tx *store.Tx) error {
		r, err := tx.ExecContext(ctx, `DELETE FROM rw_members WHERE person_id = $1`, personID)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return ErrNotMember
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM rw_events WHERE person_id = $1`, personID)
		return err
	})
}

// Member returns a citizen's membership, or ErrNotMember.
func (s *Service) Member(ctx context.Context, personID string) (*Member, error) {
	return s.member(ctx, `person_id = $1`, personID)
}

func (s *Service) member(ctx context.Context, where string, arg string) (*Member, error) {
	m := &Member{}
	var at int64
	err := s.DB.QueryRowRead(ctx, `SELECT person_id, card, joined_at FROM rw_members WHERE `+where, arg).Scan(&m.Person, &m.Card, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotMember
	}
	if err != nil {
		return nil, fmt.Errorf("member: %w", err)
	}
	m.Joined = time.UnixMilli(at).UTC()
	return m, nil
}

// Balance is a citizen's points (0 before they ever joined).
func (s *Service) Balance(ctx context.Context, personID string) (int64, error) {
	a, err := s.Ledger.Account(ctx, PointsAccount(personID))
	if errors.Is(err, ledger.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return a.Balance(), nil
}

var (
	typeRE = regexp.MustCompile(`^[a-z][a-z0-9_]{1,40}$`)
	itemRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,40}$`)
)

// SetRule publishes (or changes) an earning rule (operators; the server
// checks).
func (s *Service) SetRule(ctx context.Context, r Rule) error {
	r.Label = strings.TrimSpace(r.Label)
	switch {
	case !typeRE.MatchString(r.Type):
		return fmt.Errorf("%w: an event type is 2 to 41 lower-case letters, digits or _", ErrInvalid)
	case r.Label == "" || utf8.RuneCountInString(r.Label) > 100:
		return fmt.Errorf("%w: a rule needs a label of up to 100 characters", ErrInvalid)
	case !text.Line(r.Label):
		return fmt.Errorf("%w: a rule's label is one line of text (valid UTF-8, no control characters or bidirectional overrides)", ErrInvalid)
	case r.Partner == "":
		return fmt.Errorf("%w: a rule names the partner that records it", ErrInvalid)
	case r.Points < 1 || r.Points > 10000:
		return fmt.Errorf("%w: an event earns 1 to 10000 points (rewards never subtract)", ErrInvalid)
	case r.DailyCap < r.Points || r.DailyCap > 100000:
		return fmt.Errorf("%w: the daily cap is at least one event's points and at most 100000", ErrInvalid)
	}
	return s.DB.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO rw_rules (event_type, label, partner_org, points, daily_cap) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (event_type) DO UPDATE SET label = excluded.label, partner_org = excluded.partner_org, points = excluded.points, daily_cap = excluded.daily_cap`,
			r.Type, r.Label, r.Partner, r.Points, r.DailyCap)
		return err
	})
}

// Rules lists the published earning rules.
func (s *Service) Rules(ctx context.Context) ([]*Rule, error) {
	rows, err := s.DB.QueryRead(ctx, `SELECT event_type, label, partner_org, points, daily_cap FROM rw_rules ORDER BY label`)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	defer rows.Close()
	var out []*Rule
	for rows.Next() {
		r := &Rule{}
		if err := rows.Scan(&r.Type, &r.Label, &r.Partner, &r.Points, &r.DailyCap); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, r := range out {
		r.PartnerName = s.OrgName(ctx, r.Partner)
	}
	return out, nil
}

// SetItem puts (or changes) a voucher in the catalogue (operators).
func (s *Service) SetItem(ctx context.Context, it Item) error {
	it.Name = strings.TrimSpace(it.Name)
	switch {
	case !itemRE.MatchString(it.ID):
		return fmt.Errorf("%w: an item id is 2 to 41 lower-case letters, digits or dashes", ErrInvalid)
	case it.Name == "" || utf8.RuneCountInString(it.Name) > 100:
		return fmt.Errorf("%w: an item needs a name of up to 100 characters", ErrInvalid)
	case !text.Line(it.Name):
		return fmt.Errorf("%w: an item's name is one line of text (valid UTF-8, no control characters or bidirectional overrides)", ErrInvalid)
	case it.Partner == "":
		return fmt.Errorf("%w: an item names the partner that honours it", ErrInvalid)
	case it.Price < 1 || it.Price > 1000000:
		return fmt.Errorf("%w: a voucher costs 1 to 1000000 points", ErrInvalid)
	case it.ValidDays < 1 || it.ValidDays > 3650:
		return fmt.Errorf("%w: a voucher is valid 1 to 3650 days", ErrInvalid)
	}
	return s.DB.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO rw_items (id, name, partner_org, price, valid_days, active) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (id) DO UPDATE SET name = excluded.name, partner_org = excluded.partner_org, price = excluded.price, valid_days = excluded.valid_days, active = excluded.active`,
			it.ID, it.Name, it.Partner, it.Price, it.ValidDays, boolInt(it.Active))
		return err
	})
}

// Catalogue lists the vouchers on offer (all=false) or every item.
func (s *Service) Catalogue(ctx context.Context, all bool) ([]*Item, error) {
	q := `SELECT id, name, partner_org, price, valid_days, active FROM rw_items`
	if !all {
		q += ` WHERE active = 1`
	}
	rows, err := s.DB.QueryRead(ctx, q+` ORDER BY price, name`)
	if err != nil {
		return nil, fmt.Errorf("catalogue: %w", err)
	}
	defer rows.Close()
	var out []*Item
	for rows.Next() {
		it := &Item{}
		var active int
		if err := rows.Scan(&it.ID, &it.Name, &it.Partner, &it.Price, &it.ValidDays, &active); err != nil {
			return nil, err
		}
		it.Active = active == 1
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, it := range out {
		it.PartnerName = s.OrgName(ctx, it.Partner)
	}
	return out, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
