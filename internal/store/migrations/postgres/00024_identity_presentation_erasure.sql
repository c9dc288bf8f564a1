-- +goose Up
-- The verified presentations a node still keeps (what they disclosed and
-- the presentation, for re-checks), by when they were answered: the
-- node erases them once they are older than --keep-presentations, and
-- this lets it find them without reading every request.
CREATE INDEX id_requests_kept ON id_requests(answered_at) WHERE vp_token <> '';

-- +goose Down
DROP INDEX id_requests_kept;
