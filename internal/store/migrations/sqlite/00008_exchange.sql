-- +goose Up
-- Data exchange. Data services (what an agency holds, as typed fields) and
-- the values it holds per citizen; policies (who may read which fields of
-- which service, for which purpose and legal basis, with or without the
-- citizen's consent, deferral and retention); requests, including denied
-- and refused ones; and access records, each committed with a
-- transparency-log entry that holds only H(nonce, record) and a keyed,
-- per-entry pseudonym of the citizen.
CREATE TABLE ex_services (
    id          TEXT PRIMARY KEY,
    holder_org  TEXT NOT NULL,
    name        TEXT NOT NULL,
    fields      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE ex_values (
    service_id  TEXT NOT NULL,
    person_id   TEXT NOT NULL,
    field       TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (service_id, person_id, field)
);

CREATE TABLE ex_policies (
    id            TEXT PRIMARY KEY,
    requester_org TEXT NOT NULL,
    service_id    TEXT NOT NULL,
    fields        TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    legal_basis   TEXT NOT NULL,
    consent       INTEGER NOT NULL,
    max_deferral  BIGINT NOT NULL,
    retention     BIGINT NOT NULL,
    active        INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX ex_policies_requester ON ex_policies(requester_org, service_id, active);

CREATE TABLE ex_requests (
    id            TEXT PRIMARY KEY,
    requester_org TEXT NOT NULL,
    officer       TEXT NOT NULL,
    person_id     TEXT NOT NULL,
    service_id    TEXT NOT NULL,
    fields        TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    legal_basis   TEXT NOT NULL,
    deferral      BIGINT NOT NULL,
    policy_id     TEXT NOT NULL,
    state         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    decided_at    BIGINT NOT NULL
);
CREATE INDEX ex_requests_org ON ex_requests(requester_org, created_at);
CREATE INDEX ex_requests_person ON ex_requests(person_id, state);
CREATE INDEX ex_requests_state ON ex_requests(state, created_at);

CREATE TABLE ex_access (
    id            TEXT PRIMARY KEY,
    request_id    TEXT NOT NULL,
    person_id     TEXT NOT NULL,
    requester_org TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    record        TEXT NOT NULL,
    nonce         BLOB NOT NULL,
    at            BIGINT NOT NULL,
    defer_until   BIGINT NOT NULL,
    log_index     BIGINT NOT NULL
);
CREATE INDEX ex_access_person ON ex_access(person_id, at);
CREATE INDEX ex_access_org ON ex_access(requester_org, purpose);
CREATE INDEX ex_access_deferred ON ex_access(defer_until);

-- +goose Down
DROP TABLE ex_access;
DROP TABLE ex_requests;
DROP TABLE ex_policies;
DROP TABLE ex_values;
DROP TABLE ex_services;
