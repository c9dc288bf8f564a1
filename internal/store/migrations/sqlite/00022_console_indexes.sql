-- +goose Up
-- Indexes for consoles that list by organisation: a rewards partner's
-- honoured vouchers (the latest first), and an issuer's credentials (the
-- latest first, and those it gave one citizen, found by wallet id).
-- Without them each load read every voucher, or every credential the
-- issuer ever gave.
CREATE INDEX rw_vouchers_partner ON rw_vouchers(partner_org, state, used_at);
CREATE INDEX id_issued_person ON id_issued(issuer_org, person_id);
CREATE INDEX id_issued_time ON id_issued(issuer_org, issued_at);

-- +goose Down
DROP INDEX id_issued_time;
DROP INDEX id_issued_person;
DROP INDEX rw_vouchers_partner;
