-- +goose Up
-- When an API token stops working (Unix milliseconds; NULL: it does not
-- expire). The organisation's page offers 30 days, 90 days or a year.
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;

-- +goose Down
ALTER TABLE api_tokens DROP COLUMN expires_at;
