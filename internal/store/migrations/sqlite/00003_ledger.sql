-- +goose Up
-- The ledger: double-entry accounts and immutable transfers in integer minor
-- units. Balances are kept on the account row and changed only by the
-- engine's batches (see docs/ledger.md).
CREATE TABLE ledger_accounts (
    id              BLOB PRIMARY KEY,
    ledger          INTEGER NOT NULL,
    kind            INTEGER NOT NULL,
    owner           TEXT NOT NULL,
    flags           INTEGER NOT NULL,
    profile         TEXT NOT NULL,
    debits_pending  BIGINT NOT NULL,
    debits_posted   BIGINT NOT NULL,
    credits_pending BIGINT NOT NULL,
    credits_posted  BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE ledger_transfers (
    id          BLOB PRIMARY KEY,
    debit       BLOB NOT NULL,
    credit      BLOB NOT NULL,
    amount      BIGINT NOT NULL,
    pending_id  BLOB NOT NULL,
    ledger      INTEGER NOT NULL,
    code        INTEGER NOT NULL,
    flags       INTEGER NOT NULL,
    timeout     BIGINT NOT NULL,
    reference   TEXT NOT NULL,
    ts          BIGINT NOT NULL,
    state       INTEGER NOT NULL,
    expires_at  BIGINT NOT NULL,
    batch       BIGINT NOT NULL
);
CREATE INDEX ledger_transfers_debit ON ledger_transfers(debit, ts);
CREATE INDEX ledger_transfers_credit ON ledger_transfers(credit, ts);
CREATE INDEX ledger_transfers_expiry ON ledger_transfers(expires_at) WHERE state = 1;

CREATE TABLE ledger_daily (
    account BLOB NOT NULL,
    day     BIGINT NOT NULL,
    debited BIGINT NOT NULL,
    PRIMARY KEY (account, day)
);

-- Each batch's Merkle root over its transfers, and the transparency-log
-- entry that holds it: what a receipt's inclusion proof leads to.
CREATE TABLE ledger_batches (
    batch     INTEGER PRIMARY KEY,
    log_index BIGINT NOT NULL,
    root      BLOB NOT NULL,
    count     INTEGER NOT NULL,
    first_ts  BIGINT NOT NULL,
    hashes    BLOB NOT NULL
);

CREATE TABLE ledger_clock (
    id      INTEGER PRIMARY KEY,
    last_ts BIGINT NOT NULL,
    batches BIGINT NOT NULL
);
INSERT INTO ledger_clock (id, last_ts, batches) VALUES (1, 0, 0);

-- +goose Down
DROP TABLE ledger_clock;
DROP TABLE ledger_batches;
DROP TABLE ledger_daily;
DROP TABLE ledger_transfers;
DROP TABLE ledger_accounts;
