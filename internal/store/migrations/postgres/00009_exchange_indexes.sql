-- +goose Up
-- Most requests are released at once; only the few waiting for consent,
-- denied or deferred need finding by state. Partial indexes keep the
-- released ones out of those indexes (two fewer index writes per release).
DROP INDEX ex_requests_person;
DROP INDEX ex_requests_state;
DROP INDEX ex_access_deferred;
CREATE INDEX ex_requests_pending ON ex_requests(person_id, created_at) WHERE state = 'awaiting consent';
CREATE INDEX ex_requests_denied ON ex_requests(created_at) WHERE state IN ('denied', 'refused by the citizen');
CREATE INDEX ex_access_deferred ON ex_access(defer_until) WHERE defer_until > 0;

-- +goose Down
DROP INDEX ex_access_deferred;
DROP INDEX ex_requests_denied;
DROP INDEX ex_requests_pending;
CREATE INDEX ex_access_deferred ON ex_access(defer_until);
CREATE INDEX ex_requests_state ON ex_requests(state, created_at);
CREATE INDEX ex_requests_person ON ex_requests(person_id, state);
