-- +goose Up
-- An access record now commits in its log entry's own row, as the entry's
-- opening (tlog_entries.opening: private, never published), instead of in a
-- row of its own; ex_access becomes the index that finds the records (by
-- citizen, agency, request, deferral), filled when the log is integrated,
-- up to the cursor in ex_index_state. A direct release writes no request
-- row: its record is the request. Opening format (version 1, see
-- internal/exchange/index.go): 0x01 ‖ nonce (32 bytes) ‖ time ‖ deferral
-- end (8 bytes each, big-endian) ‖ person, request, agency, purpose (each a
-- length byte and the bytes) ‖ canonical record.
ALTER TABLE tlog_entries ADD COLUMN opening BLOB;
UPDATE tlog_entries SET opening = (
    SELECT X'01' || a.nonce || unhex(printf('%016x', a.at)) || unhex(printf('%016x', a.defer_until))
        || unhex(printf('%02x', length(CAST(a.person_id AS BLOB)))) || CAST(a.person_id AS BLOB)
        || unhex(printf('%02x', length(CAST(a.request_id AS BLOB)))) || CAST(a.request_id AS BLOB)
        || unhex(printf('%02x', length(CAST(a.requester_org AS BLOB)))) || CAST(a.requester_org AS BLOB)
        || unhex(printf('%02x', length(CAST(a.purpose AS BLOB)))) || CAST(a.purpose AS BLOB)
        || CAST(a.record AS BLOB)
    FROM ex_access a WHERE a.log_index = tlog_entries.idx)
WHERE idx IN (SELECT log_index FROM ex_access);

CREATE TABLE ex_access_index (
    log_index     INTEGER PRIMARY KEY,
    request_id    TEXT NOT NULL,
    person_id     TEXT NOT NULL,
    requester_org TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    at            BIGINT NOT NULL,
    defer_until   BIGINT NOT NULL
);
INSERT INTO ex_access_index SELECT log_index, request_id, person_id, requester_org, purpose, at, defer_until FROM ex_access;
DROP TABLE ex_access;
ALTER TABLE ex_access_index RENAME TO ex_access;
CREATE INDEX ex_access_person ON ex_access(person_id, log_index);
CREATE INDEX ex_access_org ON ex_access(requester_org, log_index);
CREATE INDEX ex_access_request ON ex_access(request_id);
CREATE INDEX ex_access_deferred ON ex_access(defer_until) WHERE defer_until > 0;

CREATE TABLE ex_index_state (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO ex_index_state (name, value) SELECT 'indexed', value FROM tlog_counters WHERE name = 'next';

-- Released requests stay only as their access records.
DELETE FROM ex_requests WHERE state = 'released' AND id IN (SELECT request_id FROM ex_access)
    AND NOT EXISTS (SELECT 1 FROM ex_policies p WHERE p.id = ex_requests.policy_id AND p.consent = 1);

-- The values of a release are read by (service, person): a clustered table
-- finds them in one B-tree instead of an index and then the table.
CREATE TABLE ex_values_clustered (
    service_id  TEXT NOT NULL,
    person_id   TEXT NOT NULL,
    field       TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (service_id, person_id, field)
) WITHOUT ROWID;
INSERT INTO ex_values_clustered SELECT service_id, person_id, field, value, updated_at FROM ex_values;
DROP TABLE ex_values;
ALTER TABLE ex_values_clustered RENAME TO ex_values;

-- +goose Down
CREATE TABLE ex_values_rowid (
    service_id  TEXT NOT NULL,
    person_id   TEXT NOT NULL,
    field       TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (service_id, person_id, field)
);
INSERT INTO ex_values_rowid SELECT * FROM ex_values;
DROP TABLE ex_values;
ALTER TABLE ex_values_rowid RENAME TO ex_values;
DROP TABLE ex_index_state;
CREATE TABLE ex_access_old (
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
INSERT INTO ex_access_old
SELECT json_extract(CAST(substr(e.opening, (54 + length(CAST(a.person_id AS BLOB)) + length(CAST(a.request_id AS BLOB)) + length(CAST(a.requester_org AS BLOB)) + length(CAST(a.purpose AS BLOB)))) AS TEXT), '$.id'), a.request_id, a.person_id, a.requester_org, a.purpose,
       CAST(substr(e.opening, (54 + length(CAST(a.person_id AS BLOB)) + length(CAST(a.request_id AS BLOB)) + length(CAST(a.requester_org AS BLOB)) + length(CAST(a.purpose AS BLOB)))) AS TEXT), substr(e.opening, 2, 32), a.at, a.defer_until, a.log_index
FROM ex_access a JOIN tlog_entries e ON e.idx = a.log_index WHERE e.opening IS NOT NULL;
DROP TABLE ex_access;
ALTER TABLE ex_access_old RENAME TO ex_access;
CREATE INDEX ex_access_person ON ex_access(person_id, at);
CREATE INDEX ex_access_org ON ex_access(requester_org, purpose);
CREATE INDEX ex_access_deferred ON ex_access(defer_until) WHERE defer_until > 0;
ALTER TABLE tlog_entries DROP COLUMN opening;
