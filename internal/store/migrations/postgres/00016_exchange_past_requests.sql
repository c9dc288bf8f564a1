-- +goose Up
-- A citizen's past requests are those that asked for their consent and
-- ended without a release: refused (or consent withdrawn) and cancelled
-- ones by this partial index, lapsed ones by ex_requests_open (their
-- stored state stays open; a read derives the lapse).
CREATE INDEX ex_requests_closed ON ex_requests(person_id, created_at) WHERE state IN ('refused by the citizen', 'cancelled by the agency');

-- +goose Down
DROP INDEX ex_requests_closed;
