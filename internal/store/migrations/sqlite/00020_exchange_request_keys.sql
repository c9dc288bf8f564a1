-- +goose Up
-- An agency's own key for a request (the API's Idempotency-Key header),
-- hashed with its organisation: a retry with the same key answers with the
-- request the key named and never releases or asks again. Written in the
-- transaction that records the request's outcome. The fingerprint is a
-- hash of what was asked (a key named for another ask is refused).
CREATE TABLE ex_request_keys (
    org_id      TEXT NOT NULL,
    key_hash    BLOB NOT NULL,
    fingerprint BLOB NOT NULL,
    request_id  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, key_hash)
);

-- +goose Down
DROP TABLE ex_request_keys;
