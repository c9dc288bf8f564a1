-- +goose Up
-- Wrong payment codes one shop tried against a device (payment.Charge), how
-- many since when. Past a few in a short window that shop may charge none
-- of the device's codes until the window has passed; the device's own
-- count (payment_devices.misses) now takes the wrong codes of every shop,
-- with a higher limit, so that one shop cannot stop a customer's codes at
-- every other. Rows whose window has passed are deleted as new ones come.
CREATE TABLE payment_code_misses (
    device_id   TEXT NOT NULL REFERENCES payment_devices(id) ON DELETE CASCADE,
    org_id      TEXT NOT NULL,
    misses      INTEGER NOT NULL,
    since       BIGINT NOT NULL,
    PRIMARY KEY (device_id, org_id)
);
CREATE INDEX payment_code_misses_since ON payment_code_misses(since);

-- +goose Down
DROP TABLE payment_code_misses;
