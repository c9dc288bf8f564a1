-- +goose Up
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE people (
    id           TEXT PRIMARY KEY,
    handle       BYTEA NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    demo         BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   BIGINT NOT NULL
);

CREATE TABLE passkeys (
    id           BYTEA PRIMARY KEY,
    person_id    TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    label        TEXT NOT NULL,
    credential   BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX passkeys_person ON passkeys(person_id);

CREATE TABLE organisations (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    demo       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);

CREATE TABLE org_roles (
    org_id TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    role   TEXT NOT NULL,
    PRIMARY KEY (org_id, role)
);

CREATE TABLE memberships (
    person_id  TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    org_id     TEXT NOT NULL,
    role       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (person_id, org_id, role),
    FOREIGN KEY (org_id, role) REFERENCES org_roles(org_id, role) ON DELETE CASCADE
);
CREATE INDEX memberships_org ON memberships(org_id);

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    role         TEXT NOT NULL,
    label        TEXT NOT NULL,
    hash         BYTEA NOT NULL UNIQUE,
    created_by   TEXT,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_tokens_org ON api_tokens(org_id);

CREATE TABLE sessions (
    hash       BYTEA PRIMARY KEY,
    person_id  TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_person ON sessions(person_id);

CREATE TABLE ceremonies (
    hash       BYTEA PRIMARY KEY,
    kind       TEXT NOT NULL,
    person_id  TEXT,
    data       BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE setup_tokens (
    hash       BYTEA PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE setup_tokens;
DROP TABLE ceremonies;
DROP TABLE sessions;
DROP TABLE api_tokens;
DROP TABLE memberships;
DROP TABLE org_roles;
DROP TABLE organisations;
DROP TABLE passkeys;
DROP TABLE people;
DROP TABLE meta;
