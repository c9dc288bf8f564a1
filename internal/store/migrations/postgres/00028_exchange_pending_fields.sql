-- +goose Up
-- A change of a service's field types being checked (exchange.PublishService):
-- the new types, as JSON with who started it and when, or NULL. While it is
-- set, a value stored under such a field must fit the new type as well, so
-- that the check can read the stored values without holding the write lock.
ALTER TABLE ex_services ADD COLUMN pending TEXT;

-- +goose Down
ALTER TABLE ex_services DROP COLUMN pending;
