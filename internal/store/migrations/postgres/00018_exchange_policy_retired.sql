-- +goose Up
-- When a policy was retired and by whom, so that the operator and the DPA
-- can tell for each access whether its policy was still in force. A
-- policy retired before this migration keeps NULL: the time is unknown.
ALTER TABLE ex_policies ADD COLUMN retired_at BIGINT;
ALTER TABLE ex_policies ADD COLUMN retired_by TEXT;

-- +goose Down
ALTER TABLE ex_policies DROP COLUMN retired_by;
ALTER TABLE ex_policies DROP COLUMN retired_at;
