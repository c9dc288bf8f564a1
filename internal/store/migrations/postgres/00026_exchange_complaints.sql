-- +goose Up
-- A citizen's complaints to the data-protection authority about accesses
-- to her data (GDPR Art. 77), one per access record (named by its log
-- entry), and the authority's answer. The words are hers and the DPA's:
-- shown to her and to the DPA, never logged.
CREATE TABLE ex_complaints (
    id          TEXT PRIMARY KEY,
    log_index   BIGINT NOT NULL UNIQUE,
    person_id   TEXT NOT NULL,
    message     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    answer      TEXT NOT NULL DEFAULT '',
    answered_by TEXT NOT NULL DEFAULT '',
    answered_at BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX ex_complaints_person ON ex_complaints(person_id, log_index);
CREATE INDEX ex_complaints_open ON ex_complaints(answered_at, created_at, id);

-- +goose Down
DROP TABLE ex_complaints;
