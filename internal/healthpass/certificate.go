package healthpass

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/civstack/civstack/internal/dcc"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/tlog"
)

func jsonRoundTrip(v any) map[string]any {
	b, _ := json.Marshal(v)
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

// CertificateRequest is what a health authority enters to issue a DCC.
type CertificateRequest struct {
	Kind    string // "v" vaccination, "t" test, "r" recovery
	Holder  Holder
	Date    string // vaccination date, test sample time (RFC 3339) or first positive test date
	Doses   int    // vaccination: dose number (of Doses in series = Series)
	Series  int
	Result  string // test: "negative" or "positive"
	Country string
	Issuer  string // the issuing organisation's name
	// Key, if not empty, is the issuing form's: the same citizen and key
	// name one certificate, so a form sent twice (a double click, a
	// reload) issues once and returns the first with Again set.
	Key string
}

// MaxCertificateKey bounds CertificateRequest.Key.
const MaxCertificateKey = 64

// certificateKeys is the UUID namespace of certificates issued with a key.
var certificateKeys = uuid.MustParse("8f1e6b2a-3c57-4d90-b1a4-6e2d9c0f7a35")

// errIssuedBefore: the key's certificate exists already.
var errIssuedBefore = errors.New("issued before with this key")

// Certificate is a DCC held in a wallet.
type Certificate struct {
	ID        string
	Kind      string
	Summary   string
	HC1       string
	IssuedBy  string
	IssuedAt  time.Time
	ExpiresAt time.Time
	Again     bool // Issue: this request's key issued it before; nothing was issued now
}

// Kind names for people.
var kindNames = map[string]string{"v": "Vaccination", "t": "Test", "r": "Recovery"}

// KindName names a certificate type.
func KindName(k string) string { return kindNames[k] }

func (r CertificateRequest) payload(uci string, now time.Time) (map[string]any, string, time.Duration, error) {
	base := map[string]any{"ver": "1.3.0", "nam": r.Holder.Name(), "dob": r.Holder.DOB}
	country := strings.ToUpper(strings.TrimSpace(r.Country))
	common := map[string]any{"tg": "840539006", "co": country, "is": r.Issuer, "ci": uci}
	var summary, what, day string // what happened on day (YYYY-MM-DD)
	var life time.Duration
	switch r.Kind {
	case "v":
		if r.Doses < 1 || r.Series < 1 {
			return nil, "", 0, fmt.Errorf("%w: dose and series must be at least 1", ErrInvalid)
		}
		if _, err := time.Parse("2006-01-02", r.Date); err != nil {
			return nil, "", 0, fmt.Errorf("%w: vaccination date %q is not YYYY-MM-DD", ErrInvalid, r.Date)
		}
		for k, v := range map[string]any{"vp": "J07BX03", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": r.Doses, "sd": r.Series, "dt": r.Date} {
			common[k] = v
		}
		summary, life = fmt.Sprintf("Vaccination, dose %d of %d, %s", r.Doses, r.Series, r.Date), 365*24*time.Hour
		what, day = "vaccination date", r.Date
	case "t":
		sc, err := time.Parse(time.RFC3339, r.Date)
		if err != nil {
			return nil, "", 0, fmt.Errorf("%w: sample time %q is not RFC 3339", ErrInvalid, r.Date)
		}
		tr := map[string]string{"negative": "260415000", "positive": "260373001"}[r.Result]
		if tr == "" {
			return nil, "", 0, fmt.Errorf("%w: test result must be negative or positive", ErrInvalid)
		}
		for k, v := range map[string]any{"tt": "LP6464-4", "nm": "PCR", "sc": sc.UTC().Format(time.RFC3339), "tr": tr, "tc": r.Issuer} {
			common[k] = v
		}
		summary, life = fmt.Sprintf("Test (PCR), %s, sample %s", r.Result, sc.UTC().Format("2006-01-02 15:04")), 7*24*time.Hour
		what, day = "sample time", sc.UTC().Format(time.DateOnly)
		if sc.After(now.Add(time.Hour)) {
			return nil, "", 0, fmt.Errorf("%w: sample time %s is in the future", ErrInvalid, r.Date)
		}
	case "r":
		fr, err := time.Parse("2006-01-02", r.Date)
		if err != nil {
			return nil, "", 0, fmt.Errorf("%w: first positive test date %q is not YYYY-MM-DD", ErrInvalid, r.Date)
		}
		common["fr"], common["df"], common["du"] = r.Date, fr.AddDate(0, 0, 11).Format("2006-01-02"), fr.AddDate(0, 0, 180).Format("2006-01-02")
		summary, life = fmt.Sprintf("Recovery, first positive %s, valid until %s", r.Date, common["du"]), 180*24*time.Hour
		what, day = "first positive test date", r.Date
	default:
		return nil, "", 0, fmt.Errorf("%w: certificate type %q is not v, t or r", ErrInvalid, r.Kind)
	}
	// A day after today, or before the holder was born, is a typing
	// error (a day's grace: the authority's today may be the holder's
	// tomorrow). A partial date of birth (1990, 1990-04) compares as a
	// prefix: a day within it passes.
	if day > LatestDay(now) {
		return nil, "", 0, fmt.Errorf("%w: %s %s is in the future", ErrInvalid, what, r.Date)
	}
	if dob, _ := base["dob"].(string); dob != "" && day < dob {
		return nil, "", 0, fmt.Errorf("%w: %s %s is before the date of birth, %s", ErrInvalid, what, r.Date, dob)
	}
	base[r.Kind] = []any{common}
	if err := dcc.ValidateSchema(jsonRoundTrip(base)); err != nil {
		return nil, "", 0, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return base, summary, life, nil
}

// Issue signs a DCC for the citizen and puts it in their wallet; the
// issuance is logged (the certificate's digest, under the DSC's kid) in
// the same transaction.
func (s *Service) Issue(ctx context.Context, personID string, r CertificateRequest) (*Certificate, error) {
	if len(r.Key) > MaxCertificateKey {
		return nil, fmt.Errorf("%w: a form key is at most %d characters", ErrInvalid, MaxCertificateKey)
	}
	id, err := uuid.NewV7FromReader(s.rand)
	if err != nil {
		return nil, err
	}
	if r.Key != "" {
		id = uuid.NewSHA1(certificateKeys, []byte(personID+"\x00"+r.Key))
		if c, err := s.certificate(ctx, personID, id.String()); err != nil || c != nil {
			if c != nil {
				c.Again = true
			}
			return c, err
		}
	}
	now := s.now()
	country := strings.ToUpper(strings.TrimSpace(r.Country))
	uci := fmt.Sprintf("URN:UVCI:01:%s:%s", country, strings.ToUpper(strings.ReplaceAll(id.String(), "-", "")[:26]))
	uci += "#" + string(luhnModN(uci))
	doc, summary, life, err := r.payload(uci, now)
	if err != nil {
		return nil, err
	}
	qr, err := s.issuer.Issue(doc, now, now.Add(life))
	if err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	c := &Certificate{ID: id.String(), Kind: r.Kind, Summary: summary, HC1: qr, IssuedBy: r.Issuer, IssuedAt: now, ExpiresAt: now.Add(life)}
	kid := base64.RawURLEncoding.EncodeToString(dcc.KID(s.issuer.Cert.Raw))
	entry, err := (&tlog.Entry{Kind: tlog.KindCredential, Time: now, Event: tlog.EventIssued, Subject: "health/" + kid, Hash: sha256.Sum256([]byte(qr))}).Marshal()
	if err != nil {
		return nil, err
	}
	err = s.db.Tx(ctx, func(tx *store.Tx) error {
		// The row first: a concurrent send of the same key finds it here
		// (on PostgreSQL once the first commits, or on the retry of a
		// serialization failure) and sequences nothing.
		res, err := tx.ExecContext(ctx, `INSERT INTO health_certificates (id, person_id, kind, summary, hc1, issued_by, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (id) DO NOTHING`,
			c.ID, personID, c.Kind, c.Summary, c.HC1, c.IssuedBy, now.UnixMilli(), c.ExpiresAt.UnixMilli())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errIssuedBefore
		}
		_, err = tlog.Sequence(ctx, tx, now, entry)
		return err
	})
	if errors.Is(err, errIssuedBefore) {
		first, err := s.certificate(ctx, personID, c.ID)
		if err == nil && first == nil {
			err = fmt.Errorf("%w: the certificate's id is taken", ErrInvalid) // another citizen's key: cannot happen with derived ids
		}
		if err != nil {
			return nil, fmt.Errorf("issue certificate: %w", err)
		}
		first.Again = true
		return first, nil
	}
	if err != nil {
		return nil, fmt.Errorf("issue certificate: %w", err)
	}
	return c, nil
}

// certificate returns one of a citizen's certificates, or nil if they
// have none with that id.
func (s *Service) certificate(ctx context.Context, personID, id string) (*Certificate, error) {
	cs, err := s.certificates(ctx, ` AND id = $2`, personID, id)
	if err != nil || len(cs) == 0 {
		return nil, err
	}
	return cs[0], nil
}

// uciCodePoints is the eHealth Network's character set for the UCI check
// character (Luhn mod N, N = 38).
const uciCodePoints = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ/:"

// luhnModN returns the Luhn mod N check character of s (characters outside
// the set are skipped).
func luhnModN(s string) byte {
	n := len(uciCodePoints)
	factor, sum := 2, 0
	for i := len(s) - 1; i >= 0; i-- {
		cp := strings.IndexByte(uciCodePoints, s[i])
		if cp < 0 {
			continue
		}
		addend := factor * cp
		factor = 3 - factor
		sum += addend/n + addend%n
	}
	return uciCodePoints[(n-sum%n)%n]
}

// Certificates lists a citizen's certificates, newest first.
func (s *Service) Certificates(ctx context.Context, personID string) ([]*Certificate, error) {
	return s.certificates(ctx, ` ORDER BY issued_at DESC`, personID)
}

// certificates reads a citizen's certificates (args[0] is the citizen;
// where adds to the condition on person_id).
func (s *Service) certificates(ctx context.Context, where string, args ...any) ([]*Certificate, error) {
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT id, kind, summary, hc1, issued_by, issued_at, expires_at FROM health_certificates WHERE person_id = $1`+where, args...)
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	defer rows.Close()
	var out []*Certificate
	for rows.Next() {
		c := &Certificate{}
		var at, exp int64
		if err := rows.Scan(&c.ID, &c.Kind, &c.Summary, &c.HC1, &c.IssuedBy, &at, &exp); err != nil {
			return nil, err
		}
		c.IssuedAt, c.ExpiresAt = time.UnixMilli(at).UTC(), time.UnixMilli(exp).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}
