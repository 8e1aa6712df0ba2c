-- One OAuth authorization in flight from the reauthorize page: the `state` we sent (hashed) and
-- the PKCE verifier (sealed like a token). Single use, short-lived.
CREATE TABLE oauth_sessions (
    state_hash    BLOB PRIMARY KEY,
    link_hash     BLOB NOT NULL REFERENCES reauth_links (token_hash) ON DELETE CASCADE,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    key_id        TEXT NOT NULL,
    verifier      BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
);
