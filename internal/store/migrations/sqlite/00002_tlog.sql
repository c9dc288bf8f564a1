-- +goose Up
-- The transparency log: entries are sequenced in the transaction of the
-- event they record; the integrator hashes them and signs checkpoints.
-- (INTEGER PRIMARY KEY makes the key SQLite's rowid: one B-tree, not two.)
-- Two counters in two rows, so that sequencing (next) and integrating
-- (integrated) never write the same row.
CREATE TABLE tlog_counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO tlog_counters (name, value) VALUES ('next', 0), ('integrated', 0);

CREATE TABLE tlog_entries (
    idx        INTEGER PRIMARY KEY,
    kind       INTEGER NOT NULL,
    data       BLOB NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX tlog_entries_kind ON tlog_entries(kind, idx);

CREATE TABLE tlog_hashes (
    id   INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
);

CREATE TABLE tlog_checkpoints (
    size       INTEGER PRIMARY KEY,
    root       BLOB NOT NULL,
    note       BLOB NOT NULL,
    created_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE tlog_checkpoints;
DROP TABLE tlog_hashes;
DROP TABLE tlog_entries;
DROP TABLE tlog_counters;
