-- A link that lets an owner connect a new data source: what it will create, for whom, until
-- when. Only the token's SHA-256 is kept; single use.
CREATE TABLE connect_links (
    token_hash    BLOB PRIMARY KEY,
    provider      TEXT NOT NULL,
    name          TEXT NOT NULL,
    owner_email   TEXT NOT NULL,
    external_id   TEXT,
    -- When set, only a grant for this account is accepted.
    account       TEXT,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER,
    connection_id TEXT
);

-- One authorization in flight from a connect page (as oauth_sessions are for reauthorizing).
CREATE TABLE connect_sessions (
    state_hash BLOB PRIMARY KEY,
    link_hash  BLOB NOT NULL REFERENCES connect_links (token_hash) ON DELETE CASCADE,
    key_id     TEXT NOT NULL,
    verifier   BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
