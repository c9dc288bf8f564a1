-- +goose Up
-- The request a single-use credential copy was presented to, while that
-- request has no answer the wallet could trust (the verifier could not
-- check it, or could not be reached). A retry of the same request presents
-- the same copy again (that verifier may hold it already) instead of using
-- up another; a shared or rejected answer clears it, so no copy is shown
-- to two requests.
ALTER TABLE id_wallet ADD COLUMN used_for BYTEA;

-- +goose Down
ALTER TABLE id_wallet DROP COLUMN used_for;
