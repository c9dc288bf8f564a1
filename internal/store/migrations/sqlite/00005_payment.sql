-- +goose Up
-- Payments: merchants' payment profiles and keys, wallet devices that show
-- payment codes, dynamic sales, payments and refunds (each one ledger
-- transfer, same id), and the signed documents (receipts, invoices,
-- cancellations) whose hashes are in the transparency log. Secrets (device
-- secrets, merchants' private keys) are sealed with the node's payment key.
CREATE TABLE payment_merchants (
    org_id        TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    city          TEXT NOT NULL,
    mcc           TEXT NOT NULL,
    tax_id        TEXT NOT NULL,
    vat_rate      INTEGER NOT NULL,
    key_id        TEXT NOT NULL,
    public_key    BLOB NOT NULL,
    sealed_key    BLOB NOT NULL,
    key_log_index BIGINT NOT NULL,
    invoice_seq   BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE payment_devices (
    id            TEXT PRIMARY KEY,
    person_id     TEXT NOT NULL,
    handle        TEXT NOT NULL UNIQUE,
    sealed_secret BLOB NOT NULL,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT NOT NULL
);
CREATE INDEX payment_devices_person ON payment_devices(person_id);

CREATE TABLE payment_receive (
    person_id  TEXT PRIMARY KEY,
    handle     TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE payment_sales (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    reference  TEXT NOT NULL,
    lines      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE payments (
    id           TEXT PRIMARY KEY,
    kind         INTEGER NOT NULL,
    method       TEXT NOT NULL,
    payer        TEXT NOT NULL,
    payee_org    TEXT NOT NULL,
    payee_person TEXT NOT NULL,
    amount       BIGINT NOT NULL,
    refunded     BIGINT NOT NULL,
    original     TEXT NOT NULL,
    sale_id      TEXT NOT NULL,
    reference    TEXT NOT NULL,
    request      TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX payments_org ON payments(payee_org, created_at);
CREATE INDEX payments_payer ON payments(payer, created_at);
CREATE INDEX payments_payee_person ON payments(payee_person, created_at);
CREATE INDEX payments_original ON payments(original);
CREATE UNIQUE INDEX payments_sale ON payments(sale_id) WHERE sale_id <> '';

CREATE TABLE payment_refunds_pending (
    id         TEXT PRIMARY KEY,
    original   TEXT NOT NULL,
    org_id     TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE payment_documents (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    payment_id   TEXT NOT NULL,
    org_id       TEXT NOT NULL,
    number       TEXT NOT NULL,
    jws          TEXT NOT NULL,
    log_index    BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    cancelled_by TEXT NOT NULL
);
CREATE INDEX payment_documents_payment ON payment_documents(payment_id);
CREATE UNIQUE INDEX payment_documents_invoice ON payment_documents(payment_id) WHERE kind = 'invoice' AND cancelled_by = '';

-- +goose Down
DROP TABLE payment_documents;
DROP TABLE payment_refunds_pending;
DROP TABLE payments;
DROP TABLE payment_sales;
DROP TABLE payment_receive;
DROP TABLE payment_devices;
DROP TABLE payment_merchants;
