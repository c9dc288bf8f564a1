-- +goose Up
-- Civic rewards: members (opt-in; a member card id that partners scan,
-- not the citizen's id), published earning rules and the voucher
-- catalogue, reward events (deleted when the member leaves), and bought
-- vouchers. Points themselves live on the ledger's points ledger.
CREATE TABLE rw_members (
    person_id  TEXT PRIMARY KEY,
    card       TEXT NOT NULL UNIQUE,
    joined_at  BIGINT NOT NULL
);

CREATE TABLE rw_rules (
    event_type  TEXT PRIMARY KEY,
    label       TEXT NOT NULL,
    partner_org TEXT NOT NULL,
    points      BIGINT NOT NULL,
    daily_cap   BIGINT NOT NULL
);

CREATE TABLE rw_items (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    partner_org TEXT NOT NULL,
    price       BIGINT NOT NULL,
    valid_days  INTEGER NOT NULL,
    active      INTEGER NOT NULL
);

CREATE TABLE rw_events (
    id            TEXT PRIMARY KEY,
    person_id     TEXT NOT NULL,
    partner_org   TEXT NOT NULL,
    partner_event TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    points        BIGINT NOT NULL,
    day           TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    UNIQUE (partner_org, partner_event)
);
CREATE INDEX rw_events_person ON rw_events(person_id, event_type, day);

CREATE TABLE rw_vouchers (
    id          TEXT PRIMARY KEY,
    person_id   TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    partner_org TEXT NOT NULL,
    price       BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    state       TEXT NOT NULL,
    used_at     BIGINT NOT NULL
);
CREATE INDEX rw_vouchers_person ON rw_vouchers(person_id, created_at);

-- +goose Down
DROP TABLE rw_vouchers;
DROP TABLE rw_events;
DROP TABLE rw_items;
DROP TABLE rw_rules;
DROP TABLE rw_members;
