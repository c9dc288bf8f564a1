-- +goose Up
-- A holder may withdraw a data service no policy in force names: its
-- values are deleted, and the service stays as a tombstone (its name and
-- fields label past policies and requests, and its id stays its holder's,
-- so that past policies never come to name another's data).
ALTER TABLE ex_services ADD COLUMN withdrawn_at BIGINT;

-- +goose Down
-- The older schema has no withdrawn services: their tombstones go (they
-- hold no values, and every policy naming them is retired).
DELETE FROM ex_services WHERE withdrawn_at IS NOT NULL;
ALTER TABLE ex_services DROP COLUMN withdrawn_at;
