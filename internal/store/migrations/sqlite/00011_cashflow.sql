-- +goose Up
-- Merchants' cash-flow report shares: which lender a merchant lets fetch
-- its signed report, through a link whose secret is stored hashed; stopping
-- a share ends further updates. The signed reports themselves are
-- payment_documents of kind 'cashflow' (payment_id 'share:<id>').
CREATE TABLE payment_report_shares (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    lender       TEXT NOT NULL,
    token_hash   BLOB NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    stopped_at   BIGINT NOT NULL,
    last_sent_at BIGINT NOT NULL,
    sent         INTEGER NOT NULL
);
CREATE INDEX payment_report_shares_org ON payment_report_shares(org_id, created_at);

-- +goose Down
DROP TABLE payment_report_shares;
