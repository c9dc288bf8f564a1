-- +goose Up
-- The DPA's accesses between two days: by agency, and of every agency,
-- found by the access's time instead of reading every newer access first
-- (exchange.Accesses reads a range of up to 92 days through them).
CREATE INDEX ex_access_org_at ON ex_access(requester_org, at);
CREATE INDEX ex_access_at ON ex_access(at);

-- +goose Down
DROP INDEX ex_access_at;
DROP INDEX ex_access_org_at;
