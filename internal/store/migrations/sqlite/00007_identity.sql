-- +goose Up
-- Identity wallet. Issuers and verifiers registered on the node (with the
-- credential types an issuer may issue, the claims a verifier may ask for
-- and why), each organisation's ES256 key (private half sealed), OpenID4VCI
-- state (offers, access tokens and nonces: secrets stored as SHA-256
-- hashes), the credentials issued (status-list index only: the credential
-- itself is the holder's), the wallets' credentials and holder keys
-- (sealed), OpenID4VP requests, and each citizen's presentation log.
CREATE TABLE id_keys (
    org_id      TEXT PRIMARY KEY,
    kid         TEXT NOT NULL,
    public_jwk  TEXT NOT NULL,
    sealed_key  BLOB NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE id_issuers (
    org_id     TEXT PRIMARY KEY,
    slug       TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    types      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE id_verifiers (
    org_id     TEXT PRIMARY KEY,
    slug       TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    claims     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE id_offers (
    code_hash   BLOB PRIMARY KEY,
    issuer_org  TEXT NOT NULL,
    type_id     TEXT NOT NULL,
    person_id   TEXT NOT NULL,
    claims      TEXT NOT NULL,
    link        TEXT NOT NULL,
    tx_hash     BLOB NOT NULL,
    attempts    INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT NOT NULL
);
CREATE INDEX id_offers_person ON id_offers(person_id, used_at);

CREATE TABLE id_access (
    token_hash  BLOB PRIMARY KEY,
    code_hash   BLOB NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT NOT NULL
);

CREATE TABLE id_nonces (
    nonce_hash  BLOB PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE id_issued (
    batch_id    TEXT NOT NULL,
    n           INTEGER NOT NULL,
    issuer_org  TEXT NOT NULL,
    type_id     TEXT NOT NULL,
    person_id   TEXT NOT NULL,
    idx         INTEGER NOT NULL,
    digest      BLOB NOT NULL,
    status      INTEGER NOT NULL,
    issued_at   BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (batch_id, n)
);
CREATE UNIQUE INDEX id_issued_idx ON id_issued(issuer_org, idx);
CREATE INDEX id_issued_status ON id_issued(issuer_org, status);

CREATE TABLE id_wallet (
    id          TEXT PRIMARY KEY,
    person_id   TEXT NOT NULL,
    batch_id    TEXT NOT NULL,
    issuer      TEXT NOT NULL,
    vct         TEXT NOT NULL,
    sealed      BLOB NOT NULL,
    received_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT NOT NULL
);
CREATE INDEX id_wallet_person ON id_wallet(person_id, batch_id);

CREATE TABLE id_requests (
    id           TEXT PRIMARY KEY,
    verifier_org TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    query        TEXT NOT NULL,
    state        TEXT NOT NULL,
    vp_token     TEXT NOT NULL,
    result       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    answered_at  BIGINT NOT NULL
);
CREATE INDEX id_requests_verifier ON id_requests(verifier_org, created_at);

CREATE TABLE id_presentations (
    id           TEXT PRIMARY KEY,
    person_id    TEXT NOT NULL,
    verifier_org TEXT NOT NULL,
    verifier     TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    requested    TEXT NOT NULL,
    presented    TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    reason       TEXT NOT NULL,
    at           BIGINT NOT NULL
);
CREATE INDEX id_presentations_person ON id_presentations(person_id, at);

-- +goose Down
DROP TABLE id_presentations;
DROP TABLE id_requests;
DROP TABLE id_wallet;
DROP TABLE id_issued;
DROP TABLE id_nonces;
DROP TABLE id_access;
DROP TABLE id_offers;
DROP TABLE id_verifiers;
DROP TABLE id_issuers;
DROP TABLE id_keys;
