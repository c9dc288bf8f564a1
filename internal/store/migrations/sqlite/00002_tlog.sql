-- +goose Up
-- The transparency log: entries are sequenced in the transaction of the
-- event they record; the integrator hashes them and signs checkpoints.
CREATE TABLE tlog_state (
    id         INTEGER PRIMARY KEY,
    next_index BIGINT NOT NULL,
    integrated BIGINT NOT NULL
);
INSERT INTO tlog_state (id, next_index, integrated) VALUES (1, 0, 0);

CREATE TABLE tlog_entries (
    idx        BIGINT PRIMARY KEY,
    kind       INTEGER NOT NULL,
    data       BLOB NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX tlog_entries_kind ON tlog_entries(kind, idx);

CREATE TABLE tlog_hashes (
    id   BIGINT PRIMARY KEY,
    hash BLOB NOT NULL
);

CREATE TABLE tlog_checkpoints (
    size       BIGINT PRIMARY KEY,
    root       BLOB NOT NULL,
    note       BLOB NOT NULL,
    created_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE tlog_checkpoints;
DROP TABLE tlog_hashes;
DROP TABLE tlog_entries;
DROP TABLE tlog_state;
