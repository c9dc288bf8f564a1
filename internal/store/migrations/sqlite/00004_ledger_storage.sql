-- +goose Up
-- The ledger's second storage layout (docs/ledger.md, "Storage"). The ledger
-- was unreleased when this replaced the first layout (issue 4 open, no demo
-- or API data), so its tables are rebuilt rather than converted.
--
-- A transfer is one row keyed by its client-chosen id; its fields are one
-- compact binary body (record.go). Each row links to the previous transfer of
-- its debit and of its credit account and carries both accounts' posted
-- balances after it, so an account's history is a walk along its links,
-- helped by a sparse index (ledger_marks) holding every 64th transfer of each
-- account. No per-transfer index in account order is written. An account's
-- balances and history head are one binary column (state) that each batch
-- rewrites once per account it touches.
DROP TABLE ledger_clock;
DROP TABLE ledger_batches;
DROP TABLE ledger_daily;
DROP TABLE ledger_transfers;
DROP TABLE ledger_accounts;

-- On SQLite the accounts table has an integer key (seq, its rowid, which
-- VACUUM keeps): a batch rewrites each account's fixed-size state in place by
-- seq, which a table keyed by the 16-byte id cannot do.
CREATE TABLE ledger_accounts (
    seq        INTEGER PRIMARY KEY,
    id         BLOB NOT NULL UNIQUE,
    ledger     INTEGER NOT NULL,
    kind       INTEGER NOT NULL,
    owner      TEXT NOT NULL,
    flags      INTEGER NOT NULL,
    profile    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- debits and credits, pending and posted; the newest transfer; how many
    -- transfers; the day the daily total counts and that total (record.go)
    state      BLOB NOT NULL
);
CREATE INDEX ledger_accounts_ledger ON ledger_accounts(ledger);

CREATE TABLE ledger_transfers (
    id         BLOB PRIMARY KEY,
    ts         BIGINT NOT NULL,      -- unique, strictly increasing (ns)
    state      INTEGER NOT NULL,     -- 0 done, 1 pending, 2 posted, 3 voided, 4 expired, 5 refused
    expires_at BIGINT NOT NULL,      -- Unix ms, pending with a timeout; else 0
    body       BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX ledger_transfers_expiry ON ledger_transfers(expires_at) WHERE state = 1;

-- Every 64th transfer of each account: where history walks start.
CREATE TABLE ledger_marks (
    account BLOB NOT NULL,
    ts      BIGINT NOT NULL,
    id      BLOB NOT NULL,
    PRIMARY KEY (account, ts)
) WITHOUT ROWID;

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

-- One row every batch of every process changes: its generation tells an
-- engine whether its cached accounts are still current.
CREATE TABLE ledger_clock (
    id         INTEGER PRIMARY KEY,
    last_ts    BIGINT NOT NULL,
    batches    BIGINT NOT NULL,
    generation BIGINT NOT NULL
);
INSERT INTO ledger_clock (id, last_ts, batches, generation) VALUES (1, 0, 0, 0);

-- +goose Down
DROP TABLE ledger_clock;
DROP TABLE ledger_batches;
DROP TABLE ledger_marks;
DROP TABLE ledger_transfers;
DROP TABLE ledger_accounts;

-- The first layout again, empty (it held no data when this replaced it).
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
