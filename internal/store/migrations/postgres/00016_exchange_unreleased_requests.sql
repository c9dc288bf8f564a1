-- +goose Up
-- Requests that released nothing. A citizen's past requests are those
-- that asked for their consent and ended so: refused (or consent
-- withdrawn) and cancelled ones by ex_requests_closed, lapsed ones by
-- ex_requests_open (their stored state stays open; a read derives the
-- lapse). The DPA's list of them now has the agencies' cancellations too.
CREATE INDEX ex_requests_closed ON ex_requests(person_id, created_at) WHERE state IN ('refused by the citizen', 'cancelled by the agency');
DROP INDEX ex_requests_denied;
CREATE INDEX ex_requests_denied ON ex_requests(created_at) WHERE state IN ('denied', 'refused by the citizen', 'cancelled by the agency');

-- +goose Down
DROP INDEX ex_requests_denied;
CREATE INDEX ex_requests_denied ON ex_requests(created_at) WHERE state IN ('denied', 'refused by the citizen');
DROP INDEX ex_requests_closed;
