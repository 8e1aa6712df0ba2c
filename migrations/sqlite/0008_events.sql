-- Every change a platform acts on, written in the transaction of the change. `seq` orders them:
-- on SQLite the one writer commits in that order; on PostgreSQL writers of events take one
-- advisory lock last, so they commit in seq order too, and a reader never sees a gap fill later.
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    type           TEXT NOT NULL,
    at             INTEGER NOT NULL,
    connection_id  TEXT,
    pipeline_id    TEXT,
    -- Deliveries of one key go out in order (a connection's, or a pipeline's of its own).
    order_key      TEXT NOT NULL,
    -- The connection's external_id and metadata as they were then (the connection may be gone).
    external_id    TEXT,
    metadata       TEXT,
    data           TEXT NOT NULL
);
CREATE INDEX events_by_type ON events (type, seq);
CREATE INDEX events_by_time ON events (at);

-- One row per event and webhook endpoint, delivered at least once, in order per order_key.
CREATE TABLE webhook_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint         TEXT NOT NULL,
    event_seq        INTEGER NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    order_key        TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    delivered_at     INTEGER,
    failed_at        INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    UNIQUE (endpoint, event_seq)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint, order_key, event_seq)
    WHERE delivered_at IS NULL AND failed_at IS NULL;

-- How far each endpoint's deliveries were fanned out from the events, and since when it fails.
CREATE TABLE webhook_endpoints (
    endpoint      TEXT PRIMARY KEY,
    fanned_seq    INTEGER NOT NULL,
    failing_since INTEGER
);
