-- +goose Up
-- Wrong payment codes tried against a device (payment.Charge): how many
-- since when. Past a few in a short window the device's codes are refused,
-- even a right one, so that nobody can guess a code by trying many.
ALTER TABLE payment_devices ADD COLUMN misses INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payment_devices ADD COLUMN misses_since BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE payment_devices DROP COLUMN misses_since;
ALTER TABLE payment_devices DROP COLUMN misses;
