-- +goose Up
-- Accesses per agency and purpose, for the DPA's summary: the access index
-- adds each batch's counts as it takes the batch (internal/exchange/index.go),
-- so the summary reads a row per agency and purpose instead of counting the
-- index. The audit checks these counts against the index.
CREATE TABLE ex_access_counts (
    requester_org TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    n             BIGINT NOT NULL,
    PRIMARY KEY (requester_org, purpose)
);
INSERT INTO ex_access_counts (requester_org, purpose, n)
    SELECT requester_org, purpose, COUNT(*) FROM ex_access GROUP BY requester_org, purpose;

-- +goose Down
DROP TABLE ex_access_counts;
