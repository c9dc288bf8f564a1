package exchange

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/civstack/civstack/internal/store"
)

// Idempotency keys. An agency's system may name a request with a key of
// its own (the API's Idempotency-Key header), so that a retry after a lost
// answer does not ask again: a second release with its own record, or a
// second consent request to the citizen. A retry with the same key answers
// with the request the key named, as it stands, marked Replayed. Values
// are released once, to the first call: a replay carries none, so nothing
// is disclosed without its record (an agency that lost them asks again,
// and that read is recorded as one). The key, hashed with its
// organisation, is written in the transaction that records the request's
// outcome, so a request and its key commit together or not at all.

// MaxKey is the longest idempotency key, in bytes.
const MaxKey = 255

// KeyLife is how long an idempotency key is remembered at least: longer
// than a request can stay open (AnswerWithin, then CollectWithin), so a
// retry finds its request for as long as the request can change. After
// it ForgetKeys may forget the key, and the same key makes a new request.
const KeyLife = 90 * Day

// forgetBatch is how many rows ForgetKeys and ForgetComplaints delete per
// transaction, so that a sweep never holds the write lock for long (tests
// set it lower).
var forgetBatch int64 = 5000

// ErrKeyReused is an idempotency key given again with another ask.
var ErrKeyReused = errors.New("this idempotency key was first given with another request (its citizen, service, fields, purpose, legal basis, deferral or officer differ); a new request needs a new key")

// errKeyTaken: a concurrent request with the same key committed first.
var errKeyTaken = errors.New("idempotency key taken")

// requestKey is a request's idempotency key as stored.
type requestKey struct {
	org         string
	hash, print []byte
}

// keyFor is the stored form of an ask's key (nil without one): its hash
// with the organisation, and a fingerprint of what was asked.
func keyFor(key string, r *Request) (*requestKey, error) {
	if key == "" {
		return nil, nil
	}
	if len(key) > MaxKey {
		return nil, fmt.Errorf("%w: an idempotency key is at most %d bytes", ErrInvalid, MaxKey)
	}
	h := sha256.Sum256([]byte(r.Requester + "\x00" + key))
	asked, err := json.Marshal([]any{r.Officer, r.Citizen, r.Service, r.Fields, r.Purpose, r.LegalBasis, strconv.FormatInt(r.Defer.Milliseconds(), 10)})
	if err != nil {
		return nil, err
	}
	p := sha256.Sum256(asked)
	return &requestKey{org: r.Requester, hash: h[:], print: p[:]}, nil
}

// claim writes the key for request id in tx; errKeyTaken if the key
// names a request already.
func (k *requestKey) claim(ctx context.Context, tx *store.Tx, id string, now time.Time) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO ex_request_keys (org_id, key_hash, fingerprint, request_id, created_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (org_id, key_hash) DO NOTHING`, k.org, k.hash, k.print, id, now.UnixMilli())
	if err != nil {
		return fmt.Errorf("idempotency key: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return errKeyTaken
	}
	return nil
}

// replay answers a retry: the request the key named, as it stands now,
// marked Replayed and without values; nil if the key names none yet.
func (x *Exchange) replay(ctx context.Context, k *requestKey) (*Request, error) {
	var print []byte
	var id string
	err := x.db.Reader().QueryRowContext(ctx, `SELECT fingerprint, request_id FROM ex_request_keys WHERE org_id = $1 AND key_hash = $2`, k.org, k.hash).
		Scan(&print, &id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("idempotency key: %w", err)
	}
	if string(print) != string(k.print) {
		return nil, ErrKeyReused
	}
	// A direct release is found before the index takes it (its record is
	// read from the log's rows until then).
	r, err := x.RequestFor(ctx, k.org, id)
	if errors.Is(err, ErrNotFound) {
		// Its record was deleted (the audit reports it): not the caller's
		// "no such request".
		return nil, fmt.Errorf("idempotency key: the request %s it names cannot be found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("idempotency key: request %s: %w", id, err)
	}
	r.Values, r.Replayed = nil, true
	return r, nil
}

// ForgetKeys deletes the idempotency keys older than KeyLife, a batch at a
// time, and returns how many it deleted. The requests they named are kept.
func (x *Exchange) ForgetKeys(ctx context.Context) (int64, error) {
	return x.forget(ctx, "forget idempotency keys", `DELETE FROM ex_request_keys WHERE (org_id, key_hash) IN
		(SELECT org_id, key_hash FROM ex_request_keys WHERE created_at < $1 ORDER BY created_at LIMIT $2)`, x.now().Add(-KeyLife))
}

// forget runs del, a DELETE of at most $2 rows older than $1 (Unix ms),
// with before, a transaction at a time, until a batch deletes fewer than
// forgetBatch; it returns how many it deleted. what names it in errors.
func (x *Exchange) forget(ctx context.Context, what, del string, before time.Time) (int64, error) {
	var total int64
	for {
		var n int64
		err := x.db.Tx(ctx, func(tx *store.Tx) error {
			res, err := tx.ExecContext(ctx, del, before.UnixMilli(), forgetBatch)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("%s: %w", what, err)
		}
		total += n
		if n < forgetBatch {
			return total, nil
		}
	}
}
