-- Every timestamp is Unix time in milliseconds (BIGINT), as on SQLite.
-- Tokens are stored only as XChaCha20-Poly1305 blobs; key_id names the key that sealed them.

CREATE TABLE connections (
    id                   TEXT PRIMARY KEY,
    provider             TEXT NOT NULL,
    name                 TEXT NOT NULL,
    owner_email          TEXT NOT NULL,
    account              TEXT,
    scopes               TEXT NOT NULL DEFAULT '',
    key_id               TEXT NOT NULL,
    access_token         BYTEA NOT NULL,
    refresh_token        BYTEA,
    -- Bumped by every token write: the compare-and-swap value for rotations.
    token_generation     BIGINT NOT NULL DEFAULT 1,
    access_expires_at    BIGINT,
    -- Absolute end of the refresh token (LinkedIn, Intuit ...), refreshing cannot move it.
    refresh_expires_at   BIGINT,
    tokens_updated_at    BIGINT NOT NULL,
    status               TEXT NOT NULL DEFAULT 'healthy' CHECK (status IN ('healthy', 'degraded', 'broken')),
    reason               TEXT,
    status_since         BIGINT NOT NULL,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    last_check_at        BIGINT,
    next_check_at        BIGINT NOT NULL,
    -- A claim on the connection by one daemon instance; expires if that instance dies.
    lease_owner          TEXT,
    lease_expires_at     BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX connections_due ON connections (next_check_at);
CREATE INDEX connections_by_provider ON connections (provider, status);
CREATE INDEX connections_by_owner ON connections (owner_email);
CREATE INDEX connections_by_key ON connections (key_id);

CREATE TABLE pipelines (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    state               TEXT NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'paused')),
    position            TEXT,
    position_updated_at BIGINT,
    paused_at_position  TEXT,
    paused_at           BIGINT,
    paused_by           TEXT CHECK (paused_by IN ('credwatch', 'platform')),
    pause_reason        TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

CREATE TABLE pipeline_connections (
    pipeline_id   TEXT NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    -- No cascade: a connection that pipelines use cannot be removed from under them.
    connection_id TEXT NOT NULL REFERENCES connections (id),
    PRIMARY KEY (pipeline_id, connection_id)
);
CREATE INDEX pipeline_connections_by_connection ON pipeline_connections (connection_id);

-- Pauses and resumes, with the position and the data gap they leave.
CREATE TABLE pipeline_events (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline_id    TEXT NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    at             BIGINT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('paused', 'resumed')),
    position       TEXT,
    connection_id  TEXT,
    incident_id    BIGINT,
    reason         TEXT,
    gap_started_at BIGINT,
    gap_ended_at   BIGINT
);
CREATE INDEX pipeline_events_by_pipeline ON pipeline_events (pipeline_id, id);

-- One row per attempt, written before the provider is called: a row without finished_at is an
-- attempt in flight, or one a crash interrupted (the rotation recovery reads these).
CREATE TABLE checks (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection_id    TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    provider         TEXT NOT NULL,
    instance         TEXT NOT NULL,
    token_generation BIGINT NOT NULL,
    started_at       BIGINT NOT NULL,
    finished_at      BIGINT,
    phase            TEXT,
    category         TEXT,
    http_status      BIGINT,
    latency_ms       BIGINT,
    error            TEXT
);
CREATE INDEX checks_by_connection ON checks (connection_id, id);
CREATE INDEX checks_unfinished ON checks (started_at) WHERE finished_at IS NULL;

-- One period during which a connection is broken: one notice, its reminders, one recovery.
CREATE TABLE incidents (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection_id    TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    category         TEXT NOT NULL,
    detail           TEXT,
    opened_at        BIGINT NOT NULL,
    closed_at        BIGINT,
    closed_by        TEXT,
    reminders_sent   BIGINT NOT NULL DEFAULT 0,
    next_reminder_at BIGINT
);
CREATE UNIQUE INDEX incidents_one_open ON incidents (connection_id) WHERE closed_at IS NULL;

-- Reauthorize links: only a hash of the token is kept.
CREATE TABLE reauth_links (
    token_hash    BYTEA PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    incident_id   BIGINT REFERENCES incidents (id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT
);
CREATE INDEX reauth_links_by_connection ON reauth_links (connection_id);

-- The operator's incidents: a provider's client misconfigured, or a provider-wide outage.
CREATE TABLE provider_alerts (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider  TEXT NOT NULL,
    kind      TEXT NOT NULL,
    detail    TEXT,
    opened_at BIGINT NOT NULL,
    closed_at BIGINT
);
CREATE UNIQUE INDEX provider_alerts_one_open ON provider_alerts (provider, kind) WHERE closed_at IS NULL;

-- Notices are written here in the same transaction as the change that causes them, and sent
-- by the mailer. dedupe_key makes "one notice per incident" a constraint, not a hope.
CREATE TABLE outbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    dedupe_key       TEXT NOT NULL UNIQUE,
    connection_id    TEXT REFERENCES connections (id) ON DELETE SET NULL,
    incident_id      BIGINT,
    payload          TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    not_before       BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    sent_at          BIGINT,
    failed_at        BIGINT,
    last_error       TEXT,
    lease_owner      TEXT,
    lease_expires_at BIGINT
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;
