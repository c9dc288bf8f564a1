package rewards

import (
	"context"
	"crypto/ecdsa"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"

	"github.com/civstack/civstack/internal/ledger"
	"github.com/civstack/civstack/internal/store"
)

// Voucher is a bought voucher.
type Voucher struct {
	ID          string
	Item        string
	Name        string
	Partner     string
	PartnerName string
	Price       int64
	Bought      time.Time
	Expires     time.Time
	Used        time.Time // zero: not used
	State       string    // valid, used, expired
	Again       bool      // Buy: this key bought it before; nothing was spent now
}

// MaxBuyKey bounds a purchase's key (Buy).
const MaxBuyKey = 64

// buyKeys is the UUID namespace of vouchers bought with a key.
var buyKeys = uuid.MustParse("5d0c3b9e-6a43-4f0e-9a57-1f6e2b8c4d21")

// Voucher states.
const (
	Valid       = "valid"
	Used        = "used"
	ExpiredSt   = "expired"
	voucherType = "civstack-voucher+jwt"
)

// claims are what a voucher's QR code carries, signed (ES256).
type claims struct {
	Voucher string `json:"vid"`
	Item    string `json:"item"`
	Partner string `json:"partner"`
	Expires int64  `json:"exp"`
}

// Buy spends a citizen's points on a catalogue voucher. It is one linked
// ledger chain: the points go from the citizen back to the programme, and
// the programme reserves the voucher's value for the partner as a pending
// transfer that expires with the voucher; both happen or neither (not
// enough points: ErrPoints). The partner's scan posts the pending transfer,
// which the ledger allows once.
//
// key, if not empty, makes the purchase one that can be retried: the same
// citizen, item and key name the same voucher, so a form sent twice (a
// double click, a reload) spends the points once and returns the first
// voucher with Again set. Too few points are told before anything is
// asked of the ledger, which remembers a transfer it refused: a key
// refused for too few points may buy once they are there.
func (s *Service) Buy(ctx context.Context, personID, itemID, key string) (*Voucher, error) {
	if len(key) > MaxBuyKey {
		return nil, fmt.Errorf("%w: a purchase key is at most %d characters", ErrInvalid, MaxBuyKey)
	}
	it, err := s.item(ctx, itemID)
	if err != nil {
		return nil, err
	}
	if !it.Active {
		return nil, fmt.Errorf("%w: %s is no longer on offer", ErrInvalid, it.Name)
	}
	if err := s.ensure(ctx, ledger.Account{ID: PartnerAccount(it.Partner), Ledger: ledger.LedgerPoints, Kind: ledger.KindMerchant, Owner: it.Partner}); err != nil {
		return nil, fmt.Errorf("buy: partner account: %w", err)
	}
	now := s.Now().UTC()
	valid := time.Duration(it.ValidDays) * 24 * time.Hour
	id := uuid.Must(uuid.NewV7())
	if key != "" {
		id = uuid.NewSHA1(buyKeys, []byte(personID+"\x00"+it.ID+"\x00"+key))
	}
	v := &Voucher{ID: id.String(), Item: it.ID, Name: it.Name, Partner: it.Partner, PartnerName: it.PartnerName, Price: it.Price,
		Bought: now, Expires: now.Add(valid), State: Valid}
	bal, err := s.Balance(ctx, personID)
	if err != nil {
		return nil, fmt.Errorf("buy: %w", err)
	}
	if bal < it.Price {
		// Bought with this key already (perhaps a moment ago, by the same
		// form sent twice: read after the balance, the voucher is there
		// if the points it took are gone)? Then that is the answer.
		if key != "" {
			if first, err := s.VoucherOf(ctx, personID, v.ID); err == nil {
				first.Again = true
				return first, nil
			} else if !errors.Is(err, ErrNotFound) {
				return nil, fmt.Errorf("buy: %w", err)
			}
		}
		return nil, fmt.Errorf("%w: %s costs %d points and you have %d; nothing was spent", ErrPoints, it.Name, it.Price, bal)
	}
	chain := []ledger.Transfer{
		{ID: derive("voucher", v.ID), Debit: PointsAccount(personID), Credit: ProgrammeAccount, Amount: it.Price, Ledger: ledger.LedgerPoints,
			Code: ledger.CodeRedemption, Flags: ledger.Linked, Reference: "voucher " + it.ID},
		{ID: claimID(v.ID), Debit: ProgrammeAccount, Credit: PartnerAccount(it.Partner), Amount: it.Price, Ledger: ledger.LedgerPoints,
			Code: ledger.CodePayment, Flags: ledger.Pending, Timeout: valid, Reference: "voucher " + v.ID},
	}
	rs, err := s.Ledger.SubmitThen(ctx, chain, func(ctx context.Context, tx *store.Tx, rs []ledger.Result) error {
		if rs[0] != ledger.OK || rs[1] != ledger.OK {
			return nil
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO rw_vouchers (id, person_id, item_id, partner_org, price, created_at, expires_at, state, used_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0)`, v.ID, personID, it.ID, it.Partner, it.Price, now.UnixMilli(), v.Expires.UnixMilli(), Valid)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("buy: %w", err)
	}
	switch {
	case rs[0] == ledger.OK && rs[1] == ledger.OK:
		return v, nil
	case key != "" && (rs[0] == ledger.Exists || rs[0] == ledger.ExistsWithDifferentAmount || rs[0] == ledger.ExistsWithDifferentTimeout):
		// This key's purchase was made before (perhaps at the item's old
		// price or validity): its voucher row committed with its transfers.
		first, err := s.VoucherOf(ctx, personID, v.ID)
		if err != nil {
			return nil, fmt.Errorf("buy: the voucher bought with this key: %w", err)
		}
		first.Again = true
		return first, nil
	case rs[0] == ledger.ExceedsCredits || rs[0] == ledger.DebitAccountNotFound:
		// The points went meanwhile (another purchase, or expiry): the
		// ledger keeps this refusal, so this key cannot buy again.
		bal, _ := s.Balance(ctx, personID)
		return nil, fmt.Errorf("%w: %s costs %d points and you have %d now; nothing was spent. Reload the page to buy again", ErrPoints, it.Name, it.Price, bal)
	}
	return nil, fmt.Errorf("buy: the ledger refused the voucher (%s, %s); nothing was spent", rs[0], rs[1])
}

func claimID(voucherID string) ledger.ID { return derive("voucher-claim", voucherID) }

// Code is a voucher's QR payload: a compact JWS (ES256) of its id, item,
// partner and expiry. It is made again each time it is shown (nothing
// secret is stored); whoever holds it can use it once, like a paper voucher.
func (s *Service) Code(v *Voucher) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: s.Key},
		(&jose.SignerOptions{}).WithType(voucherType).WithHeader("kid", s.KeyID))
	if err != nil {
		return "", err
	}
	payload, _ := json.Marshal(claims{Voucher: v.ID, Item: v.Item, Partner: v.Partner, Expires: v.Expires.Unix()})
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign voucher: %w", err)
	}
	return jws.CompactSerialize()
}

// MaxCode bounds a voucher code a partner sends.
const MaxCode = 2048

// Redeem is a partner's scan of a voucher code: the signature, the partner
// and the expiry are checked, then the voucher's pending ledger transfer is
// posted to the partner, once; a second scan is ErrUsed.
func (s *Service) Redeem(ctx context.Context, partnerOrg, code string) (*Voucher, error) {
	c, err := s.open(code)
	if err != nil {
		return nil, err
	}
	v, err := s.voucher(ctx, `v.id = $1`, c.Voucher)
	if err != nil {
		return nil, err
	}
	if v.Partner != partnerOrg || c.Partner != partnerOrg {
		return nil, fmt.Errorf("%w: this voucher is honoured by %s", ErrOther, v.PartnerName)
	}
	now := s.Now().UTC()
	if v.State == Used {
		return v, fmt.Errorf("%w: this voucher was used on %s", ErrUsed, v.Used.Format("2 Jan 2006 15:04 UTC"))
	}
	if !now.Before(v.Expires) {
		return v, fmt.Errorf("%w: this voucher expired on %s", ErrExpired, v.Expires.Format("2 Jan 2006"))
	}
	post := ledger.Transfer{ID: derive("voucher-use", v.ID), PendingID: claimID(v.ID), Flags: ledger.PostPending, Ledger: ledger.LedgerPoints, Code: ledger.CodePayment}
	rs, err := s.Ledger.SubmitThen(ctx, []ledger.Transfer{post}, func(ctx context.Context, tx *store.Tx, rs []ledger.Result) error {
		if rs[0] != ledger.OK {
			return nil
		}
		_, err := tx.ExecContext(ctx, `UPDATE rw_vouchers SET state = $1, used_at = $2 WHERE id = $3`, Used, now.UnixMilli(), v.ID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("redeem: %w", err)
	}
	switch rs[0] {
	case ledger.OK:
		v.State, v.Used = Used, now
		return v, nil
	case ledger.Exists, ledger.PendingAlreadyPosted:
		return v, fmt.Errorf("%w: this voucher was used already", ErrUsed)
	case ledger.PendingExpired, ledger.PendingAlreadyVoided:
		return v, fmt.Errorf("%w: this voucher expired", ErrExpired)
	}
	return nil, fmt.Errorf("redeem: the ledger refused: %s", rs[0])
}

// open checks a voucher code's signature and reads it.
func (s *Service) open(code string) (*claims, error) {
	code = strings.TrimSpace(code)
	if code == "" || len(code) > MaxCode {
		return nil, fmt.Errorf("%w: that is not a voucher code", ErrInvalid)
	}
	jws, err := jose.ParseSignedCompact(code, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: that is not a voucher code", ErrInvalid)
	}
	if typ, _ := jws.Signatures[0].Protected.ExtraHeaders["typ"].(string); typ != voucherType {
		return nil, fmt.Errorf("%w: that is not a voucher code", ErrInvalid)
	}
	payload, err := jws.Verify(s.publicKey(jws.Signatures[0].Protected.KeyID))
	if err != nil {
		return nil, fmt.Errorf("%w: the voucher's signature is not the programme's", ErrInvalid)
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil || c.Voucher == "" {
		return nil, fmt.Errorf("%w: the voucher code carries no voucher", ErrInvalid)
	}
	return &c, nil
}

func (s *Service) publicKey(kid string) *ecdsa.PublicKey {
	if s.PublicKey != nil {
		if k := s.PublicKey(kid); k != nil {
			return k
		}
	}
	return &s.Key.PublicKey
}

// Vouchers lists a citizen's vouchers, newest first.
func (s *Service) Vouchers(ctx context.Context, personID string) ([]*Voucher, error) {
	return s.vouchers(ctx, `v.person_id = $1 ORDER BY v.created_at DESC, v.id DESC`, personID)
}

// Honoured lists the vouchers a partner has honoured, the latest first,
// limit at a time from below a place (the zero time: from the latest): for
// the partner's accounts. It names no citizen.
func (s *Service) Honoured(ctx context.Context, partnerOrg string, before time.Time, beforeID string, limit int) ([]*Voucher, error) {
	if before.IsZero() {
		return s.vouchers(ctx, `v.partner_org = $1 AND v.state = $2 ORDER BY v.used_at DESC, v.id LIMIT $3`, partnerOrg, Used, limit)
	}
	return s.vouchers(ctx, `v.partner_org = $1 AND v.state = $2 AND (v.used_at < $3 OR v.used_at = $3 AND v.id > $4) ORDER BY v.used_at DESC, v.id LIMIT $5`,
		partnerOrg, Used, before.UnixMilli(), beforeID, limit)
}

// VoucherOf returns one of a citizen's vouchers.
func (s *Service) VoucherOf(ctx context.Context, personID, id string) (*Voucher, error) {
	vs, err := s.vouchers(ctx, `v.person_id = $1 AND v.id = $2`, personID, id)
	if err != nil {
		return nil, err
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("%w: no such voucher", ErrNotFound)
	}
	return vs[0], nil
}

func (s *Service) voucher(ctx context.Context, where string, args ...any) (*Voucher, error) {
	vs, err := s.vouchers(ctx, where, args...)
	if err != nil {
		return nil, err
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("%w: no such voucher", ErrNotFound)
	}
	return vs[0], nil
}

func (s *Service) vouchers(ctx context.Context, where string, args ...any) ([]*Voucher, error) {
	rows, err := s.DB.QueryRead(ctx, `SELECT v.id, v.item_id, COALESCE(i.name, v.item_id), v.partner_org, v.price, v.created_at, v.expires_at, v.state, v.used_at
		FROM rw_vouchers v LEFT JOIN rw_items i ON i.id = v.item_id WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("vouchers: %w", err)
	}
	defer rows.Close()
	var out []*Voucher
	now := s.Now()
	for rows.Next() {
		v := &Voucher{}
		var bought, expires, used int64
		if err := rows.Scan(&v.ID, &v.Item, &v.Name, &v.Partner, &v.Price, &bought, &expires, &v.State, &used); err != nil {
			return nil, err
		}
		v.Bought, v.Expires = time.UnixMilli(bought).UTC(), time.UnixMilli(expires).UTC()
		if used != 0 {
			v.Used = time.UnixMilli(used).UTC()
		}
		if v.State == Valid && !now.Before(v.Expires) {
			v.State = ExpiredSt
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, v := range out {
		v.PartnerName = s.OrgName(ctx, v.Partner)
	}
	return out, nil
}

func (s *Service) item(ctx context.Context, id string) (*Item, error) {
	it := &Item{}
	var active int
	err := s.DB.QueryRowRead(ctx, `SELECT id, name, partner_org, price, valid_days, active FROM rw_items WHERE id = $1`, id).
		Scan(&it.ID, &it.Name, &it.Partner, &it.Price, &it.ValidDays, &active)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no voucher %q in the catalogue", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("item: %w", err)
	}
	it.Active = active == 1
	it.PartnerName = s.OrgName(ctx, it.Partner)
	return it, nil
}

// ExpirePoints takes back points older than the published period that were
// not spent, oldest first: for each points account, what it earned before
// the cut-off minus everything it has spent or lost to expiry so far. That
// is its balance less what it earned since the cut-off (earned before =
// all earned − earned since; balance = all earned − all gone), so only the
// period's history is read, not the account's whole past. One transfer per
// account per day, with an id derived from both, so that several processes
// running it cannot take twice. It returns how many accounts lost points.
func (s *Service) ExpirePoints(ctx context.Context) (int, error) {
	if s.cfg.PointsExpire <= 0 {
		return 0, nil
	}
	now := s.Now().UTC()
	cutoff := now.Add(-s.cfg.PointsExpire)
	accounts, err := s.Ledger.Accounts(ctx, ledger.LedgerPoints)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range accounts {
		held := a.Balance() - a.DebitsPending
		if a.Kind != ledger.KindWallet || a.ID != PointsAccount(a.Owner) || held <= 0 {
			continue // an account with no points has none to lose: its history is not read
		}
		recent, err := s.Ledger.History(ctx, a.ID, cutoff, now.Add(time.Second), 1_000_000)
		if err != nil {
			return n, err
		}
		due := held
		for _, e := range recent {
			if e.Delta > 0 && !e.Timestamp.Before(cutoff) {
				due -= e.Delta
			}
		}
		if due <= 0 {
			continue
		}
		t := ledger.Transfer{ID: derive("points-expired", a.Owner, now.Format(time.DateOnly)), Debit: a.ID, Credit: ProgrammeAccount, Amount: due,
			Ledger: ledger.LedgerPoints, Code: ledger.CodeRedemption, Reference: "points expired"}
		rs, err := s.Ledger.Submit(ctx, []ledger.Transfer{t})
		if err != nil {
			return n, fmt.Errorf("expire points: %w", err)
		}
		if rs[0] == ledger.OK {
			n++
		}
	}
	return n, nil
}
