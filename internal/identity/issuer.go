package identity

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"

	"github.com/civstack/civstack/internal/credential"
	"github.com/civstack/civstack/internal/issuance"
	"github.com/civstack/civstack/internal/sdjwt"
	"github.com/civstack/civstack/internal/statuslist"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/tlog"
)

// MadeOffer is a credential offer an officer hands to a citizen: the link
// (also shown as a QR code) and, over a second channel, the transaction
// code.
type MadeOffer struct {
	Link    string
	TxCode  string
	Type    *Type
	Expires time.Time
}

// CreateOffer makes a pre-authorized offer of a credential of typeID with
// claims for personID (whose wallet lists it); only the offer link and
// the transaction code together obtain it.
func (s *Service) CreateOffer(ctx context.Context, iss *Issuer, typeID, personID, createdBy string, claims map[string]any) (*MadeOffer, error) {
	t := TypeByID(typeID)
	if t == nil || !slices.Contains(iss.Types, typeID) {
		return nil, fmt.Errorf("%w: %s is not registered to issue %q", ErrNotAllowed, iss.Name, typeID)
	}
	code := s.random(32)
	tx := s.digits(6)
	offer := issuance.NewOffer(s.IssuerID(iss), []string{typeID}, code, &issuance.TxCode{InputMode: "numeric", Length: 6,
		Description: "The 6-digit code " + iss.Name + " gave you"})
	link := offer.Link()
	cj, err := json.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrInvalid, err)
	}
	// The link holds the code and the claims are personal data: both are
	// sealed at rest (the code's hash is the key).
	sealedClaims, err := s.sealText(string(cj), "offer-claims:"+accessCode(hash(code)))
	if err != nil {
		return nil, err
	}
	sealedLink, err := s.sealText(link, "offer-link:"+personID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	exp := now.Add(OfferLifetime)
	err = s.db.Tx(ctx, func(txn *store.Tx) error {
		_, err := txn.ExecContext(ctx, `INSERT INTO id_offers (code_hash, issuer_org, type_id, person_id, claims, link, tx_hash, attempts, created_by, created_at, expires_at, used_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, 0)`, hash(code), iss.OrgID, typeID, personID, sealedClaims, sealedLink, hash(tx), createdBy, now.UnixMilli(), exp.UnixMilli())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("offer: %w", err)
	}
	return &MadeOffer{Link: link, TxCode: tx, Type: t, Expires: exp}, nil
}

func (s *Service) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		var r [1]byte
		for {
			if _, err := io.ReadFull(s.rand, r[:]); err != nil {
				panic(err)
			}
			if r[0] < 250 {
				break
			}
		}
		b[i] = '0' + r[0]%10
	}
	return string(b)
}

// accessCode names an offer by its code's hash, for sealing.
func accessCode(codeHash []byte) string { return hex.EncodeToString(codeHash) }

func (s *Service) sealText(plain, purpose string) (string, error) {
	b, err := s.seal.Seal([]byte(plain), purpose)
	if err != nil {
		return "", err
	}
	return base64.RawStdEncoding.EncodeToString(b), nil
}

func (s *Service) openText(sealed, purpose string) (string, error) {
	b, err := base64.RawStdEncoding.DecodeString(sealed)
	if err != nil {
		return "", fmt.Errorf("identity: a sealed value is not base64: %w", err)
	}
	plain, err := s.seal.Open(b, purpose)
	if err != nil {
		return "", err
	}
	return string(plain), nil
}

// PendingOffer is an offer waiting in a citizen's wallet.
type PendingOffer struct {
	Issuer, TypeName, Link string
	Expires                time.Time
}

// CountPendingOffers is how many offers wait for the citizen (what
// PendingOffers lists, without opening their links).
func (s *Service) CountPendingOffers(ctx context.Context, personID string) (int, error) {
	var n int
	err := s.db.Reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM id_offers o JOIN id_issuers i ON i.org_id = o.issuer_org
		WHERE o.person_id = $1 AND o.used_at = 0 AND o.expires_at > $2`, personID, s.now().UnixMilli()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("offers: %w", err)
	}
	return n, nil
}

// PendingOffers lists the unused, unexpired offers made for personID.
func (s *Service) PendingOffers(ctx context.Context, personID string) ([]PendingOffer, error) {
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT i.name, o.type_id, o.link, o.expires_at FROM id_offers o JOIN id_issuers i ON i.org_id = o.issuer_org
		WHERE o.person_id = $1 AND o.used_at = 0 AND o.expires_at > $2 ORDER BY o.created_at`, personID, s.now().UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("offers: %w", err)
	}
	defer rows.Close()
	var out []PendingOffer
	for rows.Next() {
		var p PendingOffer
		var typeID string
		var exp int64
		if err := rows.Scan(&p.Issuer, &typeID, &p.Link, &exp); err != nil {
			return nil, err
		}
		if t := TypeByID(typeID); t != nil {
			p.TypeName = t.Name
		}
		if p.Link, err = s.openText(p.Link, "offer-link:"+personID); err != nil {
			return nil, err
		}
		p.Expires = time.UnixMilli(exp).UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// Token exchanges a pre-authorized code and its transaction code for an
// access token (OpenID4VCI section 6). A wrong transaction code counts
// against the offer, which is burnt after MaxTxAttempts.
func (s *Service) Token(ctx context.Context, iss *Issuer, code, txCode string) (string, error) {
	if code == "" {
		return "", fmt.Errorf("%w: the pre-authorized_code parameter is missing", issuance.ErrInvalidRequest)
	}
	if txCode == "" {
		return "", fmt.Errorf("%w: the tx_code parameter is missing (the offer asks for one)", issuance.ErrInvalidRequest)
	}
	now := s.now().UnixMilli()
	token := s.random(32)
	var outcome error
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		outcome = nil
		var txHash []byte
		var attempts int
		var exp, used int64
		err := tx.QueryRowContext(ctx, `SELECT tx_hash, attempts, expires_at, used_at FROM id_offers WHERE code_hash = $1 AND issuer_org = $2`, hash(code), iss.OrgID).
			Scan(&txHash, &attempts, &exp, &used)
		if errors.Is(err, sql.ErrNoRows) {
			outcome = fmt.Errorf("%w: unknown pre-authorized code", ErrInvalidGrant)
			return nil
		}
		if err != nil {
			return err
		}
		if used != 0 || exp <= now {
			outcome = fmt.Errorf("%w: the offer has been used or has expired", ErrInvalidGrant)
			return nil
		}
		if subtle.ConstantTimeCompare(txHash, hash(txCode)) != 1 {
			attempts++
			burn := int64(0)
			if attempts >= MaxTxAttempts {
				burn = now
			}
			_, err := tx.ExecContext(ctx, `UPDATE id_offers SET attempts = $1, used_at = $2 WHERE code_hash = $3`, attempts, burn, hash(code))
			outcome = fmt.Errorf("%w: wrong transaction code", ErrInvalidGrant)
			if burn != 0 {
				outcome = fmt.Errorf("%w: wrong transaction code %d times; the offer is void, ask the issuer for a new one", ErrInvalidGrant, attempts)
			}
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE id_offers SET used_at = $1 WHERE code_hash = $2`, now, hash(code)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO id_access (token_hash, code_hash, expires_at, used_at) VALUES ($1, $2, $3, 0)`,
			hash(token), hash(code), now+TokenLifetime.Milliseconds())
		return err
	})
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	if outcome != nil {
		return "", outcome
	}
	return token, nil
}

// Nonce makes a single-use c_nonce for proofs of possession.
func (s *Service) Nonce(ctx context.Context) (string, error) {
	n := s.random(24)
	now := s.now().UnixMilli()
	err := s.db.Tx(ctx, func(tx *store.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM id_nonces WHERE expires_at < $1`, now); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO id_nonces (nonce_hash, expires_at) VALUES ($1, $2)`, hash(n), now+NonceLifetime.Milliseconds())
		return err
	})
	if err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	return n, nil
}

// CredentialRequest is the body of a credential request.
type CredentialRequest struct {
	CredentialConfigurationID string              `json:"credential_configuration_id"`
	CredentialIdentifier      string              `json:"credential_identifier"`
	Proofs                    map[string][]string `json:"proofs"`
	Proof                     json.RawMessage     `json:"proof"`
}

// Errors of the credential endpoint, named as OpenID4VCI does.
var (
	ErrCredentialRequest = errors.New("invalid_credential_request")
	ErrUnknownConfig     = errors.New("unknown_credential_configuration")
)

// CheckToken says whether accessToken is one of iss's, unused and unexpired
// (ErrToken if not): what the credential endpoint asks first of a request
// whose body it cannot read, so that only a caller with a token learns
// what is wrong with the body.
func (s *Service) CheckToken(ctx context.Context, iss *Issuer, accessToken string) error {
	_, _, _, _, err := s.grant(ctx, iss, accessToken, s.now())
	return err
}

// grant reads what accessToken was granted for: the offer's code hash, the
// credential type, the person and the offer's sealed claims.
func (s *Service) grant(ctx context.Context, iss *Issuer, accessToken string, now time.Time) (codeHash []byte, typeID, personID, claimsJSON string, err error) {
	err = s.db.Reader().QueryRowContext(ctx, `SELECT a.code_hash, o.type_id, o.person_id, o.claims FROM id_access a JOIN id_offers o ON o.code_hash = a.code_hash
		WHERE a.token_hash = $1 AND a.used_at = 0 AND a.expires_at > $2 AND o.issuer_org = $3`, hash(accessToken), now.UnixMilli(), iss.OrgID).
		Scan(&codeHash, &typeID, &personID, &claimsJSON)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", "", "", fmt.Errorf("%w: the access token is unknown, used or expired", ErrToken)
	}
	if err != nil {
		return nil, "", "", "", fmt.Errorf("credential: %w", err)
	}
	return codeHash, typeID, personID, claimsJSON, nil
}

// Issue answers a credential request: one credential per proof (each
// bound to its own holder key, with its own salts and a random status
// index), all committed with the issuance's log entry in one transaction.
func (s *Service) Issue(ctx context.Context, iss *Issuer, accessToken string, req CredentialRequest) ([]string, error) {
	now := s.now()
	codeHash, typeID, personID, claimsJSON, err := s.grant(ctx, iss, accessToken, now)
	if err != nil {
		return nil, err
	}
	// The request's shape is checked only for a caller with a token.
	if req.CredentialConfigurationID == "" || req.CredentialIdentifier != "" {
		return nil, fmt.Errorf("%w: send credential_configuration_id (this issuer has no credential identifiers)", ErrCredentialRequest)
	}
	if req.Proof != nil {
		return nil, fmt.Errorf("%w: the single proof parameter is gone in OpenID4VCI 1.0; send proofs", ErrCredentialRequest)
	}
	proofs := req.Proofs["jwt"]
	if len(req.Proofs) != 1 || len(proofs) == 0 {
		return nil, fmt.Errorf("%w: proofs must hold one non-empty jwt array", ErrCredentialRequest)
	}
	if len(proofs) > BatchSize {
		return nil, fmt.Errorf("%w: at most %d proofs per request", ErrCredentialRequest, BatchSize)
	}
	if req.CredentialConfigurationID != typeID {
		return nil, fmt.Errorf("%w: %q is not what this token was granted for", ErrUnknownConfig, req.CredentialConfigurationID)
	}
	t := TypeByID(typeID)
	plainClaims, err := s.openText(claimsJSON, "offer-claims:"+accessCode(codeHash))
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	if err := json.Unmarshal([]byte(plainClaims), &claims); err != nil || t == nil {
		return nil, fmt.Errorf("credential: the offer's claims: %v", err)
	}
	nonces := map[string]bool{}
	var lookupErr error // a failure to read the nonces is not a wrong nonce
	nonceOK := func(n string) bool {
		var exp int64
		err := s.db.Reader().QueryRowContext(ctx, `SELECT expires_at FROM id_nonces WHERE nonce_hash = $1`, hash(n)).Scan(&exp)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			lookupErr = err
		}
		if err != nil || exp <= now.UnixMilli() {
			return false
		}
		nonces[n] = true
		return true
	}
	var holders []jose.JSONWebKey
	seen := map[string]bool{}
	for i, p := range proofs {
		jwk, err := issuance.VerifyProof(p, s.IssuerID(iss), now, NonceLifetime, nonceOK)
		if lookupErr != nil {
			return nil, fmt.Errorf("credential: nonce: %w", lookupErr)
		}
		if err != nil {
			return nil, fmt.Errorf("proof %d: %w", i+1, err)
		}
		tp, err := jwk.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("proof %d: %w: %v", i+1, issuance.ErrInvalidProof, err)
		}
		if seen[string(tp)] {
			return nil, fmt.Errorf("proof %d: %w: each credential needs its own key", i+1, issuance.ErrInvalidProof)
		}
		seen[string(tp)] = true
		holders = append(holders, *jwk)
	}
	key, err := s.key(ctx, iss.OrgID)
	if err != nil {
		return nil, err
	}
	batch := uuid.Must(uuid.NewRandomFromReader(s.rand)).String()
	uri := s.StatusURI(iss)
	exp := now.Add(t.Validity)
	// Batch credentials share a coarse issuance time (the hour), so their
	// iat does not link them either.
	iat := now.Truncate(time.Hour)
	var out []string
	err = s.db.Tx(ctx, func(tx *store.Tx) error {
		out = out[:0]
		for n := range nonces {
			r, err := tx.ExecContext(ctx, `DELETE FROM id_nonces WHERE nonce_hash = $1`, hash(n))
			if err != nil {
				return err
			}
			if k, _ := r.RowsAffected(); k != 1 {
				return issuance.ErrInvalidNonce
			}
		}
		r, err := tx.ExecContext(ctx, `UPDATE id_access SET used_at = $1 WHERE token_hash = $2 AND used_at = 0`, now.UnixMilli(), hash(accessToken))
		if err != nil {
			return err
		}
		if k, _ := r.RowsAffected(); k != 1 {
			return fmt.Errorf("%w: the access token was used meanwhile", ErrToken)
		}
		batchSum := sha256.New()
		for i, h := range holders {
			idx, err := s.freeIndex(ctx, tx, iss.OrgID)
			if err != nil {
				return err
			}
			vc := credential.VC{Issuer: s.IssuerID(iss), VCT: t.VCT, Holder: h, Status: &credential.Status{URI: uri, Idx: idx},
				IssuedAt: iat, Expires: exp, Claims: claims}
			c, err := credential.Issue(key.priv, jose.ES256, vc, sdjwt.RandomSalts(s.rand))
			if err != nil {
				return err
			}
			d := sha256.Sum256([]byte(c))
			batchSum.Write(d[:])
			if _, err := tx.ExecContext(ctx, `INSERT INTO id_issued (batch_id, n, issuer_org, type_id, person_id, idx, digest, status, issued_at, expires_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9)`, batch, i, iss.OrgID, typeID, personID, idx, d[:], now.UnixMilli(), exp.UnixMilli()); err != nil {
				return err
			}
			out = append(out, c)
		}
		entry, err := (&tlog.Entry{Kind: tlog.KindCredential, Time: now, Event: tlog.EventIssued, Subject: key.kid, Hash: [32]byte(batchSum.Sum(nil))}).Marshal()
		if err != nil {
			return err
		}
		if _, err := tlog.Sequence(ctx, tx, now, entry); err != nil {
			return err
		}
		// The claims were for this issuance only; the issuer's register
		// keeps its own records, the offer no longer needs them.
		_, err = tx.ExecContext(ctx, `UPDATE id_offers SET claims = '' WHERE code_hash = $1`, codeHash)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	return out, nil
}

// freeIndex draws a random unused status index for the issuer.
func (s *Service) freeIndex(ctx context.Context, tx *store.Tx, orgID string) (int, error) {
	for range 64 {
		var b [4]byte
		if _, err := io.ReadFull(s.rand, b[:]); err != nil {
			return 0, err
		}
		idx := int(binary.BigEndian.Uint32(b[:]) % ListSize)
		var taken int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM id_issued WHERE issuer_org = $1 AND idx = $2`, orgID, idx).Scan(&taken); err != nil {
			return 0, err
		}
		if taken == 0 {
			return idx, nil
		}
	}
	return 0, errors.New("the status list is full")
}

// StatusURI is the issuer's status list URL.
func (s *Service) StatusURI(iss *Issuer) string { return s.IssuerID(iss) + "/status" }

type cachedList struct {
	token string
	made  time.Time
}

// StatusList returns the issuer's signed Status List Token (1 bit per
// entry, revoked = 1), cached until a revocation or a minute passes.
func (s *Service) StatusList(ctx context.Context, iss *Issuer) (string, error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.listTok[iss.OrgID]
	s.mu.Unlock()
	if ok && now.Sub(c.made) < time.Minute && !now.Before(c.made) {
		return c.token, nil
	}
	l, err := statuslist.New(1, ListSize)
	if err != nil {
		return "", err
	}
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT idx FROM id_issued WHERE issuer_org = $1 AND status <> 0`, iss.OrgID)
	if err != nil {
		return "", fmt.Errorf("status list: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var idx int
		if err := rows.Scan(&idx); err != nil {
			return "", err
		}
		if err := l.Set(idx, statuslist.Invalid); err != nil {
			return "", err
		}
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	key, err := s.key(ctx, iss.OrgID)
	if err != nil {
		return "", err
	}
	tok, err := statuslist.Sign(l, s.StatusURI(iss), key.priv, jose.ES256, key.kid, now, StatusTTL)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.listTok[iss.OrgID] = cachedList{tok, now}
	s.mu.Unlock()
	return tok, nil
}

// IssuedBatch is one issuance as the issuer's console lists it.
type IssuedBatch struct {
	ID, TypeName, PersonID string
	Count                  int
	Revoked                bool
	Issued, Expires        time.Time
}

// IssuedShown is how many of its latest issuances the issuer's console
// lists; older ones are found by the citizen.
const IssuedShown = 100

// Issued lists the issuer's latest IssuedShown issuances, newest first, or,
// for a citizen's wallet id, every issuance to that citizen.
func (s *Service) Issued(ctx context.Context, iss *Issuer, personID string) ([]IssuedBatch, error) {
	// The latest: the batches among the newest rows (a batch has at most
	// BatchSize rows, so IssuedShown×BatchSize rows hold the newest
	// IssuedShown batches), by the index on the issuer's issue times,
	// rather than grouping every row the issuer ever wrote.
	where, args, limit := fmt.Sprintf("WHERE issuer_org = $1 AND batch_id IN (SELECT batch_id FROM id_issued WHERE issuer_org = $1 ORDER BY issued_at DESC LIMIT %d)",
		IssuedShown*BatchSize), []any{iss.OrgID}, fmt.Sprintf(" LIMIT %d", IssuedShown)
	if personID != "" {
		where, args, limit = "WHERE issuer_org = $1 AND person_id = $2", append(args, personID), ""
	}
	rows, err := s.db.Reader().QueryContext(ctx, `SELECT batch_id, type_id, person_id, COUNT(*), MAX(status), MIN(issued_at), MIN(expires_at) FROM id_issued
		`+where+` GROUP BY batch_id, type_id, person_id ORDER BY MIN(issued_at) DESC`+limit, args...)
	if err != nil {
		return nil, fmt.Errorf("issued: %w", err)
	}
	defer rows.Close()
	var out []IssuedBatch
	for rows.Next() {
		var b IssuedBatch
		var typeID string
		var status int
		var at, exp int64
		if err := rows.Scan(&b.ID, &typeID, &b.PersonID, &b.Count, &status, &at, &exp); err != nil {
			return nil, err
		}
		if t := TypeByID(typeID); t != nil {
			b.TypeName = t.Name
		}
		b.Revoked, b.Issued, b.Expires = status != 0, time.UnixMilli(at).UTC(), time.UnixMilli(exp).UTC()
		out = append(out, b)
	}
	return out, rows.Err()
}

// Revoke revokes every credential of an issuance (the whole batch: they
// are copies of one credential) and records it in the log.
func (s *Service) Revoke(ctx context.Context, iss *Issuer, batchID string) error {
	key, err := s.key(ctx, iss.OrgID)
	if err != nil {
		return err
	}
	now := s.now()
	err = s.db.Tx(ctx, func(tx *store.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT digest, status FROM id_issued WHERE issuer_org = $1 AND batch_id = $2 ORDER BY n`, iss.OrgID, batchID)
		if err != nil {
			return err
		}
		sum := sha256.New()
		n, revoked := 0, 0
		for rows.Next() {
			var d []byte
			var st int
			if err := rows.Scan(&d, &st); err != nil {
				rows.Close()
				return err
			}
			sum.Write(d)
			n++
			if st != 0 {
				revoked++
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: no such issuance", ErrNotFound)
		}
		if revoked == n {
			return fmt.Errorf("%w: already revoked", ErrInvalid)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE id_issued SET status = 1 WHERE issuer_org = $1 AND batch_id = $2`, iss.OrgID, batchID); err != nil {
			return err
		}
		entry, err := (&tlog.Entry{Kind: tlog.KindCredential, Time: now, Event: tlog.EventRevoked, Subject: key.kid, Hash: [32]byte(sum.Sum(nil))}).Marshal()
		if err != nil {
			return err
		}
		_, err = tlog.Sequence(ctx, tx, now, entry)
		return err
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) {
		return err
	}
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	s.mu.Lock()
	delete(s.listTok, iss.OrgID)
	s.mu.Unlock()
	return nil
}

// Metadata is the issuer's OpenID4VCI credential issuer metadata.
func (s *Service) Metadata(iss *Issuer) map[string]any {
	id := s.IssuerID(iss)
	configs := map[string]any{}
	for _, typeID := range iss.Types {
		t := TypeByID(typeID)
		if t == nil {
			continue
		}
		var claims []map[string]any
		for _, f := range t.Claims() {
			claims = append(claims, map[string]any{"path": f.Path(), "display": []map[string]string{{"name": f.Label, "locale": "en"}}})
		}
		configs[t.ID] = map[string]any{
			"format": credential.Type, "vct": t.VCT, "scope": t.ID,
			"credential_signing_alg_values_supported": []string{"ES256"},
			"cryptographic_binding_methods_supported": []string{"jwk"},
			"proof_types_supported":                   map[string]any{"jwt": map[string]any{"proof_signing_alg_values_supported": []string{"ES256"}}},
			"credential_metadata": map[string]any{
				"display": []map[string]string{{"name": t.Name, "locale": "en"}},
				"claims":  claims,
			},
		}
	}
	return map[string]any{
		"credential_issuer":                   id,
		"credential_endpoint":                 id + "/credential",
		"nonce_endpoint":                      id + "/nonce",
		"batch_credential_issuance":           map[string]any{"batch_size": BatchSize},
		"display":                             []map[string]string{{"name": iss.Name, "locale": "en"}},
		"credential_configurations_supported": configs,
	}
}

// AuthorizationServerMetadata is the issuer's OAuth metadata (it is its
// own authorization server, for the pre-authorized code grant only).
func (s *Service) AuthorizationServerMetadata(iss *Issuer) map[string]any {
	id := s.IssuerID(iss)
	return map[string]any{
		"issuer":                id,
		"token_endpoint":        id + "/token",
		"grant_types_supported": []string{issuance.PreAuthorizedGrant},
		"pre-authorized_grant_anonymous_access_supported": true,
	}
}

// JWTVCIssuerMetadata is the SD-JWT VC issuer metadata (the key verifiers
// check credentials with).
func (s *Service) JWTVCIssuerMetadata(ctx context.Context, iss *Issuer) (map[string]any, error) {
	k, err := s.PublicKey(ctx, iss.OrgID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"issuer": s.IssuerID(iss), "jwks": map[string]any{"keys": []jose.JSONWebKey{k}}}, nil
}

// offersBefore selects a batch (eraseBatch) of offers whose claims or
// link are kept, expired at or before $1 (by the partial index
// id_offers_kept).
const offersBefore = `SELECT code_hash FROM id_offers WHERE link <> '' AND expires_at <= $1 LIMIT 500`

// EraseLapsedOffers erases the sealed claims and link of every credential
// offer that expired at least TokenLifetime ago, used or not: no access
// token from it can still fetch a credential (an issued one lost its
// claims already). It returns how many it erased; a node runs it with
// ErasePresentations.
func (s *Service) EraseLapsedOffers(ctx context.Context) (int, error) {
	n, err := s.eraseBatches(ctx, `UPDATE id_offers SET claims = '', link = '' WHERE code_hash IN (`+offersBefore+`)`, s.now().Add(-TokenLifetime))
	if err != nil {
		return n, fmt.Errorf("erase lapsed offers: %w", err)
	}
	return n, nil
}
