// Package identity owns civstack's identity wallet end to end: the
// credential types registered issuers offer (the PID with age flags, the
// social-services card, a diploma), issuer and verifier registrations with
// each organisation's ES256 key (sealed at rest), the issuer side of
// OpenID4VCI (pre-authorized offers with a transaction code, access tokens,
// single-use nonces, batch issuance with a random status-list index per
// credential, revocation, the signed status list, issuance and revocation
// digests in the transparency log), the verifier side of OpenID4VP
// (signed requests with a DCQL query, direct_post answers checked against
// the trusted issuers and a cached status list), and the node-hosted wallet
// (credentials and holder keys sealed, each credential used once, the
// citizen's presentation log).
//
// Wire formats live in sdjwt, credential, statuslist, dcql and issuance;
// HTTP in the server. The wallet speaks to issuers and verifiers only over
// their HTTP endpoints, through the client it is given.
package identity

import (
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"

	"github.com/civstack/civstack/internal/keyring"
	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/text"
)

// Errors the server maps to statuses and OpenID error codes.
var (
	ErrInvalid      = errors.New("invalid")
	ErrNotFound     = errors.New("not found")
	ErrNotAllowed   = errors.New("not allowed")
	ErrInvalidGrant = errors.New("invalid_grant")
	ErrToken        = errors.New("invalid_token")
	ErrAnswered     = errors.New("the request has already been answered")
	ErrExpired      = errors.New("the request has expired")
	ErrUntrusted    = errors.New("the credential's issuer is not on the trusted list")
	ErrIncomplete   = errors.New("the presentation does not answer the request")
	ErrNoCredential = errors.New("no credential in the wallet answers the request")
	// ErrCannotCheck is a presentation that could not be checked at
	// all: the issuer, its key or its status list could not be read (a
	// database or network failure, no fault of the presentation). No
	// answer is recorded for it, so the wallet may answer again and a
	// verified result stays as it was.
	ErrCannotCheck = errors.New("the presentation cannot be checked right now")
	// ErrErased is a re-check of a presentation the node has erased
	// (see KeepPresentations): there is nothing left to check.
	ErrErased = errors.New("the presentation has been erased")
)

// unchecked marks a failure to read what a check needs as ErrCannotCheck,
// unless it is the presentation's own fault (an issuer not on the trusted
// list).
func unchecked(what string, err error) error {
	if errors.Is(err, ErrUntrusted) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrCannotCheck, what, err)
}

// Lifetimes.
const (
	OfferLifetime   = time.Hour
	TokenLifetime   = 5 * time.Minute
	NonceLifetime   = 5 * time.Minute
	RequestLifetime = 10 * time.Minute
	// StatusTTL is how long a verifier may keep a status list before it
	// fetches the whole list again.
	StatusTTL = 5 * time.Minute
	// BatchSize is how many single-use credentials one request may ask
	// for; the node's wallet asks for WalletBatch.
	BatchSize   = 20
	WalletBatch = 10
	// ListSize is the number of entries in each issuer's status list
	// (1 bit each: 16 KiB before compression); indices are drawn at
	// random from it and never reused.
	ListSize = 1 << 17
	// MaxTxAttempts wrong transaction codes burn an offer.
	MaxTxAttempts = 5
	// KeepPresentations is how long a verifier's request keeps, by
	// default, what a verified presentation disclosed and the
	// presentation itself (for re-checks), counted from the answer;
	// then both are erased and the request keeps only its outcome. A
	// verifier checks at the door, not weeks later. Deps.KeepPresentations
	// sets another, from MinKeepPresentations to MaxKeepPresentations.
	KeepPresentations    = 24 * time.Hour
	MinKeepPresentations = time.Minute
	MaxKeepPresentations = 30 * 24 * time.Hour
)

// Service is the identity wallet's issuers, verifiers and holders on one
// node. Its methods are safe for concurrent use; every change (an
// issuance with its status entries and log entry, a revocation, a
// presentation and its log row) commits atomically.
type Service struct {
	db      *store.DB
	seal    *keyring.Sealer
	now     func() time.Time
	rand    io.Reader
	base    string
	country string
	keep    time.Duration // see KeepPresentations

	mu      sync.Mutex
	keys    map[string]*orgKey // by org id
	listTok map[string]cachedList
	lists   *statusCache
	fetches int

	httpMu sync.RWMutex
	http   *http.Client
}

// Deps are the Service's collaborators.
type Deps struct {
	DB      *store.DB
	SealKey []byte // 32 bytes; seals organisations' keys and wallets' credentials
	Now     func() time.Time
	Rand    io.Reader
	// BaseURL is the node's public origin; issuer and verifier
	// identifiers are URLs below it.
	BaseURL string
	Country string // issuing_country of PIDs
	// HTTP carries the wallet's and the verifier's requests to issuer and
	// verifier endpoints (see SetHTTP); nil until set.
	HTTP *http.Client
	// KeepPresentations is how long verified presentations are kept
	// (0: KeepPresentations).
	KeepPresentations time.Duration
}

// New returns a Service.
func New(d Deps) (*Service, error) {
	seal, err := keyring.NewSealer(d.SealKey, "identity", d.Rand)
	if err != nil {
		return nil, err
	}
	if d.Rand == nil {
		d.Rand = rand.Reader
	}
	keep := cmp.Or(d.KeepPresentations, KeepPresentations)
	if keep < MinKeepPresentations || keep > MaxKeepPresentations {
		return nil, fmt.Errorf("%w: presentations are kept from %v to %v, not %v", ErrInvalid, MinKeepPresentations, MaxKeepPresentations, keep)
	}
	s := &Service{db: d.DB, seal: seal, now: d.Now, rand: d.Rand, base: strings.TrimRight(d.BaseURL, "/"), country: d.Country, keep: keep,
		keys: map[string]*orgKey{}, listTok: map[string]cachedList{}, http: d.HTTP}
	s.lists = &statusCache{s: s, entries: map[string]cachedStatus{}}
	return s, nil
}

// SetHTTP sets the client the wallet and verifiers use (the server gives
// one that serves the node's own origin in process).
func (s *Service) SetHTTP(c *http.Client) {
	s.httpMu.Lock()
	s.http = c
	s.httpMu.Unlock()
}

func (s *Service) client() (*http.Client, error) {
	s.httpMu.RLock()
	defer s.httpMu.RUnlock()
	if s.http == nil {
		return nil, errors.New("identity: no HTTP client")
	}
	return s.http, nil
}

// Country is the node's issuing country (ISO 3166 alpha-2).
func (s *Service) Country() string { return s.country }

// Base is the node's public origin.
func (s *Service) Base() string { return s.base }

func (s *Service) random(n int) string {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		panic(fmt.Sprintf("identity: no randomness: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// orgKey is an organisation's ES256 key (issuer signatures, verifier
// request signatures).
type orgKey struct {
	kid  string
	priv *ecdsa.PrivateKey
	jwk  jose.JSONWebKey
}

// key returns the organisation's key, making it the first time.
func (s *Service) key(ctx context.Context, orgID string) (*orgKey, error) {
	s.mu.Lock()
	k := s.keys[orgID]
	s.mu.Unlock()
	if k != nil {
		return k, nil
	}
	var kid string
	var sealed []byte
	err := s.db.Reader().QueryRowContext(ctx, `SELECT kid, sealed_key FROM id_keys WHERE org_id = $1`, orgID).Scan(&kid, &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		if err := s.makeKey(ctx, orgID); err != nil {
			return nil, err
		}
		err = s.db.Reader().QueryRowContext(ctx, `SELECT kid, sealed_key FROM id_keys WHERE org_id = $1`, orgID).Scan(&kid, &sealed)
	}
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	der, err := s.seal.Open(sealed, "org-key:"+orgID)
	if err != nil {
		return nil, err
	}
	priv, err := x509.ParseECPrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	k = &orgKey{kid: kid, priv: priv, jwk: jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"}}
	s.mu.Lock()
	s.keys[orgID] = k
	s.mu.Unlock()
	return k, nil
}

func (s *Service) makeKey(ctx context.Context, orgID string) error {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), s.rand)
	if err != nil {
		return err
	}
	spki, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return err
	}
	sum := sha256.Sum256(spki)
	kid := base64.RawURLEncoding.EncodeToString(sum[:12])
	der, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		return err
	}
	sealed, err := s.seal.Seal(der, "org-key:"+orgID)
	if err != nil {
		return err
	}
	pub, _ := json.Marshal(jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"})
	err = s.db.Tx(ctx, func(tx *store.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO id_keys (org_id, kid, public_jwk, sealed_key, created_at) VALUES ($1, $2, $3, $4, $5)`,
			orgID, kid, string(pub), sealed, s.now().UnixMilli())
		return err
	})
	if store.IsConflict(err) { // made by another process meanwhile
		return nil
	}
	return err
}

// slugify makes a URL path segment from an organisation's name.
func slugify(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.TrimRight(b.String(), "-")
	if len(s) > 40 {
		s = strings.TrimRight(s[:40], "-")
	}
	if s == "" {
		s = "org"
	}
	return s
}

// Issuer is an organisation registered to issue credentials.
type Issuer struct {
	OrgID, Slug, Name string
	Types             []string
}

// Verifier is an organisation registered to request presentations: the
// claims it may ask for ("pid:age_over_18") and why.
type Verifier struct {
	OrgID, Slug, Name, Purpose string
	Claims                     []string
}

// Registered reports whether the verifier registered the claim.
func (v *Verifier) Registered(typeID, claim string) bool {
	return slices.Contains(v.Claims, typeID+":"+claim)
}

// ID is the issuer's credential issuer identifier.
func (s *Service) IssuerID(iss *Issuer) string { return s.base + "/issuers/" + iss.Slug }

// ClientID is the verifier's client identifier (pre-registered on this
// node, so without a prefix).
func (s *Service) ClientID(v *Verifier) string { return s.base + "/verifiers/" + v.Slug }

// RegisterIssuer registers (or updates) an organisation as an issuer of
// the given catalog types.
func (s *Service) RegisterIssuer(ctx context.Context, orgID, name string, types []string) (*Issuer, error) {
	if len(types) == 0 {
		return nil, fmt.Errorf("%w: choose at least one credential type", ErrInvalid)
	}
	for _, t := range types {
		if TypeByID(t) == nil {
			return nil, fmt.Errorf("%w: unknown credential type %q", ErrInvalid, t)
		}
	}
	tj, _ := json.Marshal(types)
	if err := s.register(ctx, "id_issuers", "types", orgID, name, string(tj), "", ""); err != nil {
		return nil, err
	}
	if _, err := s.key(ctx, orgID); err != nil {
		return nil, err
	}
	return s.IssuerByOrg(ctx, orgID)
}

// RegisterVerifier registers (or updates) an organisation as a verifier
// that may ask for claims ("type:claim") for purpose.
func (s *Service) RegisterVerifier(ctx context.Context, orgID, name, purpose string, claims []string) (*Verifier, error) {
	purpose = strings.TrimSpace(text.Newlines(purpose))
	switch {
	case purpose == "" || utf8.RuneCountInString(purpose) > 300:
		return nil, fmt.Errorf("%w: say in up to 300 characters why you ask", ErrInvalid)
	case !text.Lines(purpose):
		// Citizens read it when they decide what to share: it is shown as
		// written, no escape sequence or override changing how it reads.
		return nil, fmt.Errorf("%w: the purpose is text: valid UTF-8 with no control characters but line breaks and tabs, and no bidirectional overrides", ErrInvalid)
	}
	if len(claims) == 0 {
		return nil, fmt.Errorf("%w: choose at least one claim", ErrInvalid)
	}
	for _, c := range claims {
		typeID, name, _ := strings.Cut(c, ":")
		t := TypeByID(typeID)
		if t == nil {
			return nil, fmt.Errorf("%w: unknown credential type in %q", ErrInvalid, c)
		}
		if _, ok := t.Field(name); !ok {
			return nil, fmt.Errorf("%w: %s has no claim %q", ErrInvalid, t.Name, name)
		}
	}
	cj, _ := json.Marshal(claims)
	if err := s.register(ctx, "id_verifiers", "claims", orgID, name, string(cj), "purpose", purpose); err != nil {
		return nil, err
	}
	if _, err := s.key(ctx, orgID); err != nil {
		return nil, err
	}
	return s.VerifierByOrg(ctx, orgID)
}

// register upserts a registration row; the slug is kept once chosen.
func (s *Service) register(ctx context.Context, table, listCol, orgID, name, list, extraCol, extra string) error {
	now := s.now().UnixMilli()
	return s.db.Tx(ctx, func(tx *store.Tx) error {
		var slug string
		err := tx.QueryRowContext(ctx, `SELECT slug FROM `+table+` WHERE org_id = $1`, orgID).Scan(&slug)
		if err == nil {
			q := `UPDATE ` + table + ` SET name = $1, ` + listCol + ` = $2, updated_at = $3`
			args := []any{name, list, now}
			if extraCol != "" {
				q += `, ` + extraCol + ` = $5`
				args = append(args, orgID, extra)
			} else {
				args = append(args, orgID)
			}
			_, err = tx.ExecContext(ctx, q+` WHERE org_id = $4`, args...)
			return err
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		slug = slugify(name)
		var taken int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table+` WHERE slug = $1`, slug).Scan(&taken); err != nil {
			return err
		}
		if taken > 0 {
			slug += "-" + strings.ReplaceAll(orgID, "-", "")[:8]
		}
		cols, vals := `org_id, slug, name, `+listCol+`, updated_at`, `$1, $2, $3, $4, $5`
		args := []any{orgID, slug, name, list, now}
		if extraCol != "" {
			cols += ", " + extraCol
			vals += ", $6"
			args = append(args, extra)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO `+table+` (`+cols+`) VALUES (`+vals+`)`, args...)
		return err
	})
}

func (s *Service) issuerWhere(ctx context.Context, where string, arg any) (*Issuer, error) {
	iss := &Issuer{}
	var types string
	err := s.db.Reader().QueryRowContext(ctx, `SELECT org_id, slug, name, types FROM id_issuers WHERE `+where+` = $1`, arg).Scan(&iss.OrgID, &iss.Slug, &iss.Name, &types)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no such issuer", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	_ = json.Unmarshal([]byte(types), &iss.Types)
	return iss, nil
}

// IssuerByOrg returns the organisation's issuer registration.
func (s *Service) IssuerByOrg(ctx context.Context, orgID string) (*Issuer, error) {
	return s.issuerWhere(ctx, "org_id", orgID)
}

// IssuerBySlug returns the issuer at /issuers/slug.
func (s *Service) IssuerBySlug(ctx context.Context, slug string) (*Issuer, error) {
	return s.issuerWhere(ctx, "slug", slug)
}

// issuerByID resolves a credential issuer identifier on this node: the
// trusted issuer list is the node's registered issuers.
func (s *Service) issuerByID(ctx context.Context, id string) (*Issuer, error) {
	slug, ok := strings.CutPrefix(id, s.base+"/issuers/")
	if !ok || strings.Contains(slug, "/") {
		return nil, ErrUntrusted
	}
	iss, err := s.IssuerBySlug(ctx, slug)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrUntrusted
	}
	return iss, err
}

func (s *Service) verifierWhere(ctx context.Context, where string, arg any) (*Verifier, error) {
	v := &Verifier{}
	var claims string
	err := s.db.Reader().QueryRowContext(ctx, `SELECT org_id, slug, name, purpose, claims FROM id_verifiers WHERE `+where+` = $1`, arg).Scan(&v.OrgID, &v.Slug, &v.Name, &v.Purpose, &claims)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no such verifier", ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("verifier: %w", err)
	}
	_ = json.Unmarshal([]byte(claims), &v.Claims)
	return v, nil
}

// VerifierByOrg returns the organisation's verifier registration.
func (s *Service) VerifierByOrg(ctx context.Context, orgID string) (*Verifier, error) {
	return s.verifierWhere(ctx, "org_id", orgID)
}

// VerifierBySlug returns the verifier at /verifiers/slug.
func (s *Service) VerifierBySlug(ctx context.Context, slug string) (*Verifier, error) {
	return s.verifierWhere(ctx, "slug", slug)
}

// verifierByClientID resolves a client_id to a verifier registered here.
func (s *Service) verifierByClientID(ctx context.Context, clientID string) (*Verifier, error) {
	slug, ok := strings.CutPrefix(clientID, s.base+"/verifiers/")
	if !ok || strings.Contains(slug, "/") {
		return nil, fmt.Errorf("%w: the verifier %q is not registered on this node", ErrNotAllowed, clientID)
	}
	return s.VerifierBySlug(ctx, slug)
}

// PublicKey returns an organisation's public JWK (for metadata).
func (s *Service) PublicKey(ctx context.Context, orgID string) (jose.JSONWebKey, error) {
	k, err := s.key(ctx, orgID)
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	return k.jwk, nil
}
