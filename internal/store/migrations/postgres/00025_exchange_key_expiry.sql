-- +goose Up
-- Idempotency keys are remembered for exchange.KeyLife (90 days), then the
-- node's hourly sweep forgets them, oldest first by this index.
CREATE INDEX ex_request_keys_created ON ex_request_keys (created_at);

-- +goose Down
DROP INDEX ex_request_keys_created;
