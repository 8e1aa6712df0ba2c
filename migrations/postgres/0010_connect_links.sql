-- A link that lets an owner connect a new data source: what it will create, for whom, until
-- when. Only the token's SHA-256 is kept; single use.
CREATE TABLE connect_links (
    token_hash    BYTEA PRIMARY KEY,
    provider      TEXT NOT NULL,
    name          TEXT NOT NULL,
    owner_email   TEXT NOT NULL,
    external_id   TEXT,
    -- When set, only a grant for this account is accepted.
    account       TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT,
    connection_id TEXT
);

-- One authorization in flight from a connect page (as oauth_sessions are for reauthorizing).
CREATE TABLE connect_sessions (
    state_hash BYTEA PRIMARY KEY,
    link_hash  BYTEA NOT NULL REFERENCES connect_links (token_hash) ON DELETE CASCADE,
    key_id     TEXT NOT NULL,
    verifier   BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
