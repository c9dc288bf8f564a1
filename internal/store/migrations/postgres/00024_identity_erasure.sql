-- +goose Up
-- What the node still keeps of the identity wallet's exchanges and erases
-- once it is no longer needed, each found by its time without reading
-- every row: verified presentations (what they disclosed, and the
-- presentation for re-checks) by when they were answered, erased after
-- --keep-presentations; and credential offers (their sealed claims and
-- link) by when they expire, erased once no access token from them can
-- still be used.
CREATE INDEX id_requests_kept ON id_requests(answered_at) WHERE vp_token <> '';
CREATE INDEX id_offers_kept ON id_offers(expires_at) WHERE link <> '';

-- +goose Down
DROP INDEX id_offers_kept;
DROP INDEX id_requests_kept;
