-- +goose Up
-- Health pass: each citizen's current health code (decided by the
-- published rules from the questionnaire; the answers stay here, with the
-- health authority, and never reach a pass or the log), daily check-ins,
-- appeals and the health officer's decisions (whose digests are in the
-- transparency log), and the EU DCCs issued to wallets.
CREATE TABLE health_status (
    person_id     TEXT PRIMARY KEY,
    color         TEXT NOT NULL,
    rule_id       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    rules_version TEXT NOT NULL,
    answers       TEXT NOT NULL,
    dob           TEXT NOT NULL,
    since         BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE health_checkins (
    person_id  TEXT NOT NULL,
    day        TEXT NOT NULL,
    normal     INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (person_id, day)
);

CREATE TABLE health_appeals (
    id          TEXT PRIMARY KEY,
    person_id   TEXT NOT NULL,
    color       TEXT NOT NULL,
    rule_id     TEXT NOT NULL,
    message     TEXT NOT NULL,
    state       TEXT NOT NULL,
    decision    TEXT NOT NULL,
    decided_by  TEXT NOT NULL,
    log_index   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    decided_at  BIGINT NOT NULL
);
CREATE INDEX health_appeals_state ON health_appeals(state, created_at);
CREATE INDEX health_appeals_person ON health_appeals(person_id);

CREATE TABLE health_certificates (
    id         TEXT PRIMARY KEY,
    person_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    summary    TEXT NOT NULL,
    hc1        TEXT NOT NULL,
    issued_by  TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX health_certificates_person ON health_certificates(person_id);

-- +goose Down
DROP TABLE health_certificates;
DROP TABLE health_appeals;
DROP TABLE health_checkins;
DROP TABLE health_status;
