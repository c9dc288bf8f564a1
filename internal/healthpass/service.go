package healthpass

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
	"golang.org/x/text/unicode/norm"

	"github.com/civstack/civstack/internal/dcc"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/text"
	"github.com/civstack/civstack/internal/tlog"
)

// Errors the pages and API map to statuses.
var (
	ErrNoStatus     = errors.New("no health code yet: answer the questionnaire first")
	ErrNotFound     = errors.New("not found")
	ErrInvalid      = errors.New("invalid")
	ErrAlreadyOpen  = errors.New("an appeal is already pending")
	ErrAlreadyDone  = errors.New("the appeal has already been decided")
	ErrClosed       = errors.New("the appeal was closed: the code it was about has been replaced")
	ErrNothingToAsk = errors.New("a green code needs no appeal")
)

// PassLifetime is how long a shown health code pass stays valid: short, so
// a screenshot soon stops working.
const PassLifetime = time.Hour

// Service keeps health codes, check-ins, appeals and issued certificates.
// Its methods are safe for concurrent use; each change commits atomically
// (an appeal decision and its log entry together).
type Service struct {
	db     *store.DB
	rules  *Rules
	issuer *dcc.Issuer
	now    func() time.Time
	rand   io.Reader
	zone   *time.Location
}

// Deps are the Service's dependencies.
type Deps struct {
	DB     *store.DB
	Rules  *Rules
	Issuer *dcc.Issuer // the health authority's DSC and key
	Now    func() time.Time
	Rand   io.Reader
	// Zone is the time zone whose days the daily check-ins follow (the
	// city's); nil is UTC. Signed passes carry UTC dates whatever it is.
	Zone *time.Location
}

// New returns a Service.
func New(d Deps) *Service {
	zone := d.Zone
	if zone == nil {
		zone = time.UTC
	}
	return &Service{db: d.DB, rules: d.Rules, issuer: d.Issuer, now: d.Now, rand: d.Rand, zone: zone}
}

// checkInDay is the day, in the service's zone, a check-in at t counts for.
func (s *Service) checkInDay(t time.Time) string { return t.In(s.zone).Format(time.DateOnly) }

// Rules returns the rules in force.
func (s *Service) Rules() *Rules { return s.rules }

// Status is a citizen's health code.
type Status struct {
	Decision
	DOB       string
	Since     time.Time // when this colour was decided
	Streak    int       // consecutive days of normal check-ins, ending today or yesterday
	DaysLeft  int       // check-ins still needed before green (0 when green)
	CheckedIn bool
	Appeal    *Appeal // the latest appeal, if any
}

// NextSteps says in plain words what happens next.
func (st *Status) NextSteps(r *Rules) string {
	switch st.Colour {
	case Yellow:
		return fmt.Sprintf("Stay at home and check in every day. After %d consecutive days of normal check-ins the code turns green (%d to go).", r.Days.Yellow, st.DaysLeft)
	case Red:
		return fmt.Sprintf("Quarantine at home for %d days and check in every day. After %d consecutive days of normal check-ins the code turns green (%d to go).", r.Days.Red, r.Days.Red, st.DaysLeft)
	}
	return "Move freely. Answer the questionnaire again if anything changes."
}

// day is a UTC date, as signed passes carry it.
func day(t time.Time) string { return t.UTC().Format("2006-01-02") }

// Submit decides a new health code from the questionnaire and stores it.
func (s *Service) Submit(ctx context.Context, personID, dob string, a Answers) (*Status, error) {
	dob = strings.TrimSpace(dob)
	now := s.now()
	if err := checkDOB(dob, now); err != nil {
		return nil, err
	}
	d, err := s.rules.Decide(a, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	answers, _ := json.Marshal(a)
	err = s.db.Tx(ctx, func(tx *store.Tx) error {
		// The appeal first, then the code: Decide takes them in this order too.
		if err := closeAppeal(ctx, tx, personID, "You answered the questionnaire again, which replaced the code this appeal was about.", now); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM health_status WHERE person_id = $1`, personID)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO health_status (person_id, color, rule_id, reason, rules_version, answers, dob, since, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`, personID, string(d.Colour), d.RuleID, d.Reason, d.RulesVersion, string(answers), dob, now.UnixMilli())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("health code: %w", err)
	}
	return s.Status(ctx, personID)
}

// LatestDay is the latest date (YYYY-MM-DD) a date of birth, or a
// certificate's vaccination or test, may be at now: a day's grace, as the
// node's today may be the citizen's tomorrow. The forms offer no later day.
func LatestDay(now time.Time) string {
	return now.Add(24 * time.Hour).UTC().Format(time.DateOnly)
}

// checkDOB checks a date of birth typed by its citizen: a date, from 1900
// to the citizen's today (a day ahead of the node's, at most).
func checkDOB(dob string, now time.Time) error {
	if dob == "" {
		return fmt.Errorf("%w: enter your date of birth", ErrInvalid)
	}
	d, err := time.Parse(time.DateOnly, dob)
	switch {
	case err != nil:
		return fmt.Errorf("%w: date of birth %q is not YYYY-MM-DD", ErrInvalid, dob)
	case d.Year() < 1900:
		return fmt.Errorf("%w: date of birth %s is before 1900", ErrInvalid, dob)
	case dob > LatestDay(now):
		return fmt.Errorf("%w: date of birth %s is in the future", ErrInvalid, dob)
	}
	return nil
}

// Status returns a citizen's health code, applying check-ins: a yellow or
// red code with enough consecutive normal days turns green here.
func (s *Service) Status(ctx context.Context, personID string) (*Status, error) {
	st := &Status{}
	var since int64
	err := s.db.Reader().QueryRowContext(ctx, `SELECT color, rule_id, reason, rules_version, dob, since FROM health_status WHERE person_id = $1`, personID).
		Scan(&st.Colour, &st.RuleID, &st.Reason, &st.RulesVersion, &st.DOB, &since)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoStatus
	}
	if err != nil {
		return nil, fmt.Errorf("health code: %w", err)
	}
	st.Since = time.UnixMilli(since).UTC()
	if err := s.streak(ctx, personID, st); err != nil {
		return nil, err
	}
	if need := s.rules.DaysFor(st.Colour); need > 0 {
		if st.Streak >= need {
			reason := fmt.Sprintf("%d consecutive days of normal check-ins.", st.Streak)
			now := s.now()
			err := s.db.Tx(ctx, func(tx *store.Tx) error {
				if err := closeAppeal(ctx, tx, personID, "The code turned green after "+reason, now); err != nil {
					return err
				}
				// Only the code the streak was counted for: new answers since
				// then replaced it.
				r, err := tx.ExecContext(ctx, `UPDATE health_status SET color = $1, rule_id = '', reason = $2, since = $3, updated_at = $3 WHERE person_id = $4 AND color = $5 AND since = $6`,
					string(Green), reason, now.UnixMilli(), personID, string(st.Colour), since)
				if err != nil {
					return err
				}
				if n, err := r.RowsAffected(); err != nil || n != 1 {
					return errReplaced
				}
				return nil
			})
			if errors.Is(err, errReplaced) {
				return s.Status(ctx, personID) // read the code that replaced it
			}
			if err != nil {
				return nil, fmt.Errorf("health code: %w", err)
			}
			st.Colour, st.RuleID, st.Reason, st.Since, st.DaysLeft = Green, "", reason, now, 0
		} else {
			st.DaysLeft = need - st.Streak
		}
	}
	st.Appeal, err = s.latestAppeal(ctx, personID)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// streak counts consecutive normal check-ins since the code was decided,
// ending today or yesterday.
func (s *Service) streak(ctx context.Context, personID string, st *Status) error {
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT day, normal FROM health_checkins WHERE person_id = $1 AND day >= $2 ORDER BY day DESC`, personID, s.checkInDay(st.Since))
	if err != nil {
		return fmt.Errorf("check-ins: %w", err)
	}
	defer rows.Close()
	today := s.checkInDay(s.now())
	want := s.now().In(s.zone)
	first := true
	for rows.Next() {
		var d string
		var normal int
		if err := rows.Scan(&d, &normal); err != nil {
			return err
		}
		if d == today {
			st.CheckedIn = true
		}
		if first && d != today {
			want = want.AddDate(0, 0, -1) // the streak may end yesterday
		}
		first = false
		if d != s.checkInDay(want) || normal != 1 {
			break
		}
		st.Streak++
		want = want.AddDate(0, 0, -1)
	}
	return rows.Err()
}

// CheckIn records today's check-in (once a day; a second one replaces the
// first). Normal means no symptoms.
func (s *Service) CheckIn(ctx context.Context, personID string, normal bool) (*Status, error) {
	if _, err := s.Status(ctx, personID); err != nil {
		return nil, err
	}
	now := s.now()
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM health_checkins WHERE person_id = $1 AND day = $2`, personID, s.checkInDay(now)); err != nil {
			return err
		}
		flag := 0
		if normal {
			flag = 1
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO health_checkins (person_id, day, normal, created_at) VALUES ($1, $2, $3, $4)`, personID, s.checkInDay(now), flag, now.UnixMilli())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("check-in: %w", err)
	}
	return s.Status(ctx, personID)
}

// Appeal is a citizen's appeal against their health code.
type Appeal struct {
	ID        string
	PersonID  string
	Colour    Colour
	RuleID    string
	Message   string
	State     string // AppealPending, AppealUpheld, AppealOverruled or AppealClosed
	Decision  string // the officer's explanation
	LogIndex  int64  // the decision's log entry (-1 while pending)
	CreatedAt time.Time
	DecidedAt time.Time
}

// An appeal's states.
const (
	AppealPending   = "pending"
	AppealUpheld    = "upheld"    // an officer let the code stand
	AppealOverruled = "overruled" // an officer set the code to green
	// AppealClosed: the code the appeal was about was replaced (new
	// answers, or green by check-ins) before an officer decided. No
	// officer decided, so there is no log entry; Decision says why.
	AppealClosed = "closed"
)

// errReplaced: the code changed while a check-in streak was turning it green.
var errReplaced = errors.New("health code replaced meanwhile")

// closeAppeal closes the citizen's pending appeal, if any, because the code
// it was about has been replaced.
func closeAppeal(ctx context.Context, tx *store.Tx, personID, why string, now time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE health_appeals SET state = $1, decision = $2, decided_at = $3 WHERE person_id = $4 AND state = $5`,
		AppealClosed, why, now.UnixMilli(), personID, AppealPending); err != nil {
		return fmt.Errorf("close appeal: %w", err)
	}
	return nil
}

// Appeal files an appeal against the current (yellow or red) code.
func (s *Service) Appeal(ctx context.Context, personID, message string) (*Appeal, error) {
	message = strings.TrimSpace(text.Newlines(message))
	if message == "" || len([]rune(message)) > 1000 {
		return nil, fmt.Errorf("%w: say why the code is wrong, in up to 1000 characters", ErrInvalid)
	}
	if !text.Lines(message) {
		return nil, fmt.Errorf("%w: the appeal is text: no control characters but line breaks and tabs, and no bidirectional overrides", ErrInvalid)
	}
	st, err := s.Status(ctx, personID)
	if err != nil {
		return nil, err
	}
	if st.Colour == Green {
		return nil, ErrNothingToAsk
	}
	if st.Appeal != nil && st.Appeal.State == AppealPending {
		return nil, ErrAlreadyOpen
	}
	id, err := uuid.NewV7FromReader(s.rand)
	if err != nil {
		return nil, err
	}
	now := s.now()
	a := &Appeal{ID: id.String(), PersonID: personID, Colour: st.Colour, RuleID: st.RuleID, Message: message, State: "pending", LogIndex: -1, CreatedAt: now}
	err = s.db.Tx(ctx, func(tx *store.Tx) error {
		// Checked again inside the transaction: two requests at once file one appeal.
		var pending int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM health_appeals WHERE person_id = $1 AND state = $2`, personID, AppealPending).Scan(&pending); err != nil {
			return err
		}
		if pending > 0 {
			return ErrAlreadyOpen
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO health_appeals (id, person_id, color, rule_id, message, state, decision, decided_by, log_index, created_at, decided_at)
			VALUES ($1, $2, $3, $4, $5, 'pending', '', '', -1, $6, 0)`, a.ID, personID, string(a.Colour), a.RuleID, message, now.UnixMilli())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("appeal: %w", err)
	}
	return a, nil
}

const appealCols = `id, person_id, color, rule_id, message, state, decision, log_index, created_at, decided_at`

func scanAppeal(row interface{ Scan(...any) error }) (*Appeal, error) {
	a := &Appeal{}
	var created, decided int64
	if err := row.Scan(&a.ID, &a.PersonID, &a.Colour, &a.RuleID, &a.Message, &a.State, &a.Decision, &a.LogIndex, &created, &decided); err != nil {
		return nil, err
	}
	a.CreatedAt = time.UnixMilli(created).UTC()
	if decided > 0 {
		a.DecidedAt = time.UnixMilli(decided).UTC()
	}
	return a, nil
}

// LatestAppeal is the citizen's latest appeal, or nil if none.
func (s *Service) LatestAppeal(ctx context.Context, personID string) (*Appeal, error) {
	return s.latestAppeal(ctx, personID)
}

func (s *Service) latestAppeal(ctx context.Context, personID string) (*Appeal, error) {
	a, err := scanAppeal(s.db.Reader().QueryRowContext(ctx, `SELECT `+appealCols+` FROM health_appeals WHERE person_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1`, personID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("appeal: %w", err)
	}
	return a, nil
}

// PendingAppeals lists appeals awaiting a decision, oldest first.
func (s *Service) PendingAppeals(ctx context.Context) ([]*Appeal, error) {
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT `+appealCols+` FROM health_appeals WHERE state = $1 ORDER BY created_at`, AppealPending)
	if err != nil {
		return nil, fmt.Errorf("appeals: %w", err)
	}
	defer rows.Close()
	var out []*Appeal
	for rows.Next() {
		a, err := scanAppeal(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// decisionRecord is what the log's digest commits to: the decision, never
// the answers or the appeal's text.
type decisionRecord struct {
	Appeal       string `json:"appeal"`
	Outcome      string `json:"outcome"`
	From         Colour `json:"from"`
	To           Colour `json:"to"`
	RulesVersion string `json:"rules_version"`
	DecidedBy    string `json:"decided_by"`
	DecidedAt    int64  `json:"decided_at"`
}

// Decide records a health officer's decision on a pending appeal: grant
// sets the code to green, refuse lets it stand. The decision and its log
// entry commit together.
func (s *Service) Decide(ctx context.Context, appealID, officerID string, grant bool, explanation string) (*Appeal, error) {
	explanation = strings.TrimSpace(text.Newlines(explanation))
	if explanation == "" || len([]rune(explanation)) > 1000 {
		return nil, fmt.Errorf("%w: explain the decision to the citizen, in up to 1000 characters", ErrInvalid)
	}
	if !text.Lines(explanation) {
		return nil, fmt.Errorf("%w: the explanation is text: no control characters but line breaks and tabs, and no bidirectional overrides", ErrInvalid)
	}
	now := s.now()
	var out *Appeal
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		a, err := scanAppeal(tx.QueryRowContext(ctx, `SELECT `+appealCols+` FROM health_appeals WHERE id = $1`, appealID))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if a.State == AppealClosed {
			return ErrClosed
		}
		if a.State != AppealPending {
			return ErrAlreadyDone
		}
		rec := decisionRecord{Appeal: a.ID, Outcome: AppealUpheld, From: a.Colour, To: a.Colour, RulesVersion: s.rules.Version, DecidedBy: officerID, DecidedAt: now.UnixMilli()}
		event := tlog.EventUpheld
		if grant {
			rec.Outcome, rec.To, event = AppealOverruled, Green, tlog.EventOverruled
		}
		b, _ := json.Marshal(rec)
		entry, err := (&tlog.Entry{Kind: tlog.KindHealth, Time: now, Event: event, Subject: "health-rules " + s.rules.Version, Hash: sha256.Sum256(b)}).Marshal()
		if err != nil {
			return err
		}
		// Still pending: new answers or check-ins may have closed it since
		// it was read (on PostgreSQL a concurrent close fails this
		// serializable transaction, and store.DB.Tx runs it again). Claimed
		// before the log's entry, so a wait here holds no log lock.
		r, err := tx.ExecContext(ctx, `UPDATE health_appeals SET state = $1, decision = $2, decided_by = $3, decided_at = $4 WHERE id = $5 AND state = $6`,
			rec.Outcome, explanation, officerID, now.UnixMilli(), a.ID, AppealPending)
		if err != nil {
			return err
		}
		if n, err := r.RowsAffected(); err != nil || n != 1 {
			var state string
			if err := tx.QueryRowContext(ctx, `SELECT state FROM health_appeals WHERE id = $1`, a.ID).Scan(&state); err == nil && state == AppealClosed {
				return ErrClosed
			}
			return ErrAlreadyDone
		}
		idx, err := tlog.Sequence(ctx, tx, now, entry)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE health_appeals SET log_index = $1 WHERE id = $2`, idx, a.ID); err != nil {
			return err
		}
		if grant {
			if _, err := tx.ExecContext(ctx, `UPDATE health_status SET color = $1, rule_id = '', reason = $2, since = $3, updated_at = $3 WHERE person_id = $4`,
				string(Green), "Appeal granted by a health officer: "+explanation, now.UnixMilli(), a.PersonID); err != nil {
				return err
			}
		}
		a.State, a.Decision, a.LogIndex, a.DecidedAt = rec.Outcome, explanation, idx, now
		out = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("decide appeal: %w", err)
	}
	return out, nil
}

// Holder is whom a pass or certificate names.
type Holder struct {
	FamilyName, GivenName, DOB string
}

// Name is the DCC nam object, with ICAO 9303 transliterations.
func (h Holder) Name() map[string]any {
	return map[string]any{"fn": h.FamilyName, "gn": h.GivenName, "fnt": icao(h.FamilyName), "gnt": icao(h.GivenName)}
}

// SplitName reads "Given Names Family" as the holder's names.
func SplitName(display string) (family, given string) {
	f := strings.Fields(display)
	if len(f) == 0 {
		return "", ""
	}
	return f[len(f)-1], strings.Join(f[:len(f)-1], " ")
}

// icao transliterates to the ICAO 9303 alphabet: capitals, diacritics
// dropped, other characters as '<'.
func icao(s string) string {
	var b strings.Builder
	for _, r := range norm.NFD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r):
		case r >= 'a' && r <= 'z':
			b.WriteRune(r - 'a' + 'A')
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r)
		case r == 'ß':
			b.WriteString("SS")
		default:
			b.WriteByte('<')
		}
	}
	out := b.String()
	if len(out) > 80 {
		out = out[:80]
	}
	return out
}

// Pass signs a short-lived health code pass for the citizen's current
// code: colour, name, date of birth, rules version; never the answers.
func (s *Service) Pass(ctx context.Context, personID, displayName string) (string, *Status, error) {
	st, err := s.Status(ctx, personID)
	if err != nil {
		return "", nil, err
	}
	fam, giv := SplitName(displayName)
	h := Holder{fam, giv, st.DOB}
	now := s.now()
	doc := map[string]any{"ver": dcc.HealthCodeVersion, "nam": h.Name(), "dob": h.DOB, "st": string(st.Colour), "rv": st.RulesVersion, "since": day(st.Since)}
	qr, err := s.issuer.IssueHealthCode(doc, now, now.Add(PassLifetime))
	if err != nil {
		return "", nil, fmt.Errorf("health pass: %w", err)
	}
	return qr, st, nil
}
