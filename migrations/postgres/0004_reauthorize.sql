-- One OAuth authorization in flight from the reauthorize page: the `state` we sent (hashed) and
-- the PKCE verifier (sealed like a token). Single use, short-lived.
CREATE TABLE oauth_sessions (
    state_hash    BYTEA PRIMARY KEY,
    link_hash     BYTEA NOT NULL REFERENCES reauth_links (token_hash) ON DELETE CASCADE,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    key_id        TEXT NOT NULL,
    verifier      BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT
);
