-- +goose Up
-- Requests whose stored state is still open, by when they were asked.
-- A read derives the lapse (no row changes when a request lapses), so
-- the DPA's list of requests that released nothing finds the lapsed
-- ones here: asked more than 30 days ago and not consented to within
-- the 30 days before.
CREATE INDEX ex_requests_lapsing ON ex_requests(created_at) WHERE state IN ('awaiting consent', 'consented');

-- +goose Down
DROP INDEX ex_requests_lapsing;
