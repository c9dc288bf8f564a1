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
ALTER TABLE tlog_entries ADD COLUMN opening BYTEA;
UPDATE tlog_entries e SET opening = '\x01'::bytea || a.nonce || int8send(a.at) || int8send(a.defer_until)
    || set_byte('\x00'::bytea, 0, octet_length(a.person_id)) || convert_to(a.person_id, 'UTF8')
    || set_byte('\x00'::bytea, 0, octet_length(a.request_id)) || convert_to(a.request_id, 'UTF8')
    || set_byte('\x00'::bytea, 0, octet_length(a.requester_org)) || convert_to(a.requester_org, 'UTF8')
    || set_byte('\x00'::bytea, 0, octet_length(a.purpose)) || convert_to(a.purpose, 'UTF8')
    || convert_to(a.record, 'UTF8')
FROM ex_access a WHERE a.log_index = e.idx;

CREATE TABLE ex_access_index (
    log_index     BIGINT PRIMARY KEY,
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
ALTER INDEX ex_access_index_pkey RENAME TO ex_access_pkey;
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
DELETE FROM ex_requests r WHERE r.state = 'released' AND r.id IN (SELECT request_id FROM ex_access)
    AND NOT EXISTS (SELECT 1 FROM ex_policies p WHERE p.id = r.policy_id AND p.consent = 1);

-- +goose Down
-- Records past the index's cursor (the tail) are indexed first, from their
-- openings' headers, so that every record becomes a row of the older schema.
INSERT INTO ex_access (log_index, request_id, person_id, requester_org, purpose, at, defer_until)
SELECT o.idx, convert_from(substring(o.b from 52 + p.pl for r.rl), 'UTF8'), convert_from(substring(o.b from 51 for p.pl), 'UTF8'),
       convert_from(substring(o.b from 53 + p.pl + r.rl for a.al), 'UTF8'), convert_from(substring(o.b from 54 + p.pl + r.rl + a.al for u.ul), 'UTF8'),
       (convert_from(substring(o.b from 54 + p.pl + r.rl + a.al + u.ul), 'UTF8')::json->>'time')::bigint,
       (convert_from(substring(o.b from 54 + p.pl + r.rl + a.al + u.ul), 'UTF8')::json->>'defer_until')::bigint
FROM (SELECT idx, opening AS b FROM tlog_entries
      WHERE kind = 4 AND opening IS NOT NULL AND octet_length(opening) > 53 AND get_byte(opening, 0) = 1
          AND idx NOT IN (SELECT log_index FROM ex_access)) o,
     LATERAL (SELECT get_byte(o.b, 49) AS pl) p,
     LATERAL (SELECT get_byte(o.b, 50 + p.pl) AS rl) r,
     LATERAL (SELECT get_byte(o.b, 51 + p.pl + r.rl) AS al) a,
     LATERAL (SELECT get_byte(o.b, 52 + p.pl + r.rl + a.al) AS ul) u;
DROP TABLE ex_index_state;
CREATE TABLE ex_access_old (
    id            TEXT PRIMARY KEY,
    request_id    TEXT NOT NULL,
    person_id     TEXT NOT NULL,
    requester_org TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    record        TEXT NOT NULL,
    nonce         BYTEA NOT NULL,
    at            BIGINT NOT NULL,
    defer_until   BIGINT NOT NULL,
    log_index     BIGINT NOT NULL
);
INSERT INTO ex_access_old
SELECT convert_from(substring(e.opening from (54 + octet_length(a.person_id) + octet_length(a.request_id) + octet_length(a.requester_org) + octet_length(a.purpose))), 'UTF8')::json->>'id', a.request_id, a.person_id, a.requester_org, a.purpose,
       convert_from(substring(e.opening from (54 + octet_length(a.person_id) + octet_length(a.request_id) + octet_length(a.requester_org) + octet_length(a.purpose))), 'UTF8'), substring(e.opening from 2 for 32), a.at, a.defer_until, a.log_index
FROM ex_access a JOIN tlog_entries e ON e.idx = a.log_index WHERE e.opening IS NOT NULL;
DROP TABLE ex_access;
ALTER TABLE ex_access_old RENAME TO ex_access;
-- A direct release had a request row of its own before: it is made again
-- from the record.
INSERT INTO ex_requests (id, requester_org, officer, person_id, service_id, fields, purpose, legal_basis, deferral, policy_id, state, reason, created_at, decided_at)
SELECT a.request_id, a.requester_org, COALESCE(a.record::json->>'officer', ''), a.person_id, a.record::json->>'service', (a.record::json->'fields')::text,
       a.purpose, a.record::json->>'legal_basis', CASE WHEN a.defer_until > 0 THEN a.defer_until - a.at ELSE 0 END,
       COALESCE(a.record::json->>'policy', ''), 'released', '', a.at, a.at
FROM ex_access a WHERE NOT EXISTS (SELECT 1 FROM ex_requests r WHERE r.id = a.request_id);
CREATE INDEX ex_access_person ON ex_access(person_id, at);
CREATE INDEX ex_access_org ON ex_access(requester_org, purpose);
CREATE INDEX ex_access_deferred ON ex_access(defer_until) WHERE defer_until > 0;
ALTER TABLE tlog_entries DROP COLUMN opening;
