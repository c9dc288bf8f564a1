-- +goose Up
-- A citizen's open requests are those waiting for their consent and those
-- they consented to that the agency has not collected yet (they may
-- withdraw those): the wallet finds both by one partial index.
DROP INDEX ex_requests_pending;
CREATE INDEX ex_requests_open ON ex_requests(person_id, created_at) WHERE state IN ('awaiting consent', 'consented');

-- +goose Down
DROP INDEX ex_requests_open;
CREATE INDEX ex_requests_pending ON ex_requests(person_id, created_at) WHERE state = 'awaiting consent';
