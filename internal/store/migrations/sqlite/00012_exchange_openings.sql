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
-- Records past the index's cursor (the tail) are indexed first, from their
-- openings' headers, so that every record becomes a row of the older schema.
INSERT INTO ex_access (log_index, request_id, person_id, requester_org, purpose, at, defer_until)
WITH o AS (
    SELECT idx, opening AS b FROM tlog_entries
    WHERE kind = 4 AND opening IS NOT NULL AND length(opening) > 53 AND substr(opening, 1, 1) = X'01'
        AND idx NOT IN (SELECT log_index FROM ex_access)),
p AS (SELECT idx, b, (instr(X'000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F606162636465666768696A6B6C6D6E6F707172737475767778797A7B7C7D7E7F808182838485868788898A8B8C8D8E8F909192939495969798999A9B9C9D9E9FA0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBFC0C1C2C3C4C5C6C7C8C9CACBCCCDCECFD0D1D2D3D4D5D6D7D8D9DADBDCDDDEDFE0E1E2E3E4E5E6E7E8E9EAEBECEDEEEFF0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF', substr(b, 50, 1)) - 1) AS pl FROM o),
r AS (SELECT idx, b, pl, (instr(X'000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F606162636465666768696A6B6C6D6E6F707172737475767778797A7B7C7D7E7F808182838485868788898A8B8C8D8E8F909192939495969798999A9B9C9D9E9FA0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBFC0C1C2C3C4C5C6C7C8C9CACBCCCDCECFD0D1D2D3D4D5D6D7D8D9DADBDCDDDEDFE0E1E2E3E4E5E6E7E8E9EAEBECEDEEEFF0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF', substr(b, 51 + pl, 1)) - 1) AS rl FROM p),
a AS (SELECT idx, b, pl, rl, (instr(X'000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F606162636465666768696A6B6C6D6E6F707172737475767778797A7B7C7D7E7F808182838485868788898A8B8C8D8E8F909192939495969798999A9B9C9D9E9FA0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBFC0C1C2C3C4C5C6C7C8C9CACBCCCDCECFD0D1D2D3D4D5D6D7D8D9DADBDCDDDEDFE0E1E2E3E4E5E6E7E8E9EAEBECEDEEEFF0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF', substr(b, 52 + pl + rl, 1)) - 1) AS al FROM r),
u AS (SELECT idx, b, pl, rl, al, (instr(X'000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F404142434445464748494A4B4C4D4E4F505152535455565758595A5B5C5D5E5F606162636465666768696A6B6C6D6E6F707172737475767778797A7B7C7D7E7F808182838485868788898A8B8C8D8E8F909192939495969798999A9B9C9D9E9FA0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBFC0C1C2C3C4C5C6C7C8C9CACBCCCDCECFD0D1D2D3D4D5D6D7D8D9DADBDCDDDEDFE0E1E2E3E4E5E6E7E8E9EAEBECEDEEEFF0F1F2F3F4F5F6F7F8F9FAFBFCFDFEFF', substr(b, 53 + pl + rl + al, 1)) - 1) AS ul FROM a)
SELECT idx, CAST(substr(b, 52 + pl, rl) AS TEXT), CAST(substr(b, 51, pl) AS TEXT), CAST(substr(b, 53 + pl + rl, al) AS TEXT),
       CAST(substr(b, 54 + pl + rl + al, ul) AS TEXT),
       json_extract(CAST(substr(b, 54 + pl + rl + al + ul) AS TEXT), '$.time'), json_extract(CAST(substr(b, 54 + pl + rl + al + ul) AS TEXT), '$.defer_until')
FROM u;
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
-- A direct release had a request row of its own before: it is made again
-- from the record.
INSERT INTO ex_requests (id, requester_org, officer, person_id, service_id, fields, purpose, legal_basis, deferral, policy_id, state, reason, created_at, decided_at)
SELECT a.request_id, a.requester_org, COALESCE(json_extract(a.record, '$.officer'), ''), a.person_id, json_extract(a.record, '$.service'), json_extract(a.record, '$.fields'),
       a.purpose, json_extract(a.record, '$.legal_basis'), CASE WHEN a.defer_until > 0 THEN a.defer_until - a.at ELSE 0 END,
       COALESCE(json_extract(a.record, '$.policy'), ''), 'released', '', a.at, a.at
FROM ex_access a WHERE NOT EXISTS (SELECT 1 FROM ex_requests r WHERE r.id = a.request_id);
CREATE INDEX ex_access_person ON ex_access(person_id, at);
CREATE INDEX ex_access_org ON ex_access(requester_org, purpose);
CREATE INDEX ex_access_deferred ON ex_access(defer_until) WHERE defer_until > 0;
ALTER TABLE tlog_entries DROP COLUMN opening;
