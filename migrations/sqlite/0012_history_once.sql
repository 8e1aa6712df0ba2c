-- A check's history row is written once, whole, with its result: the claim of the connection
-- row (its lease, and refresh_sent_at) is the record that an attempt is under way, so no
-- unfinished rows exist to find, and none are kept.
--
-- A connection's history is a chain: the connection names its last check, each check the one
-- before it. An index on (connection_id, id) cost every check a write at a random place in the
-- file (connection ids are random), a third of what a sweep wrote; the chain costs a field of
-- rows that are written anyway. The provider is the connection's, not repeated per check.
CREATE TABLE checks_chained (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    connection_id    TEXT NOT NULL,
    previous_id      INTEGER,
    instance         TEXT NOT NULL,
    token_generation INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    finished_at      INTEGER NOT NULL,
    phase            TEXT,
    category         TEXT,
    http_status      INTEGER,
    latency_ms       INTEGER,
    error            TEXT
);
INSERT INTO checks_chained (id, connection_id, previous_id, instance, token_generation,
                            started_at, finished_at, phase, category, http_status, latency_ms, error)
SELECT id, connection_id, LAG(id) OVER (PARTITION BY connection_id ORDER BY id), instance,
       token_generation, started_at, finished_at, phase, category, http_status, latency_ms, error
FROM checks WHERE finished_at IS NOT NULL;
DROP TABLE checks;
ALTER TABLE checks_chained RENAME TO checks;

ALTER TABLE connections ADD COLUMN last_check_id INTEGER;
UPDATE connections SET last_check_id = m.last
FROM (SELECT connection_id, MAX(id) AS last FROM checks GROUP BY connection_id) AS m
WHERE m.connection_id = connections.id;

-- Every history row becomes its connection's last, in the statement that writes it.
CREATE TRIGGER checks_chain AFTER INSERT ON checks BEGIN
    UPDATE connections SET last_check_id = NEW.id WHERE id = NEW.connection_id;
END;

-- Nothing looks connections up by key or by owner; these only cost space and writes.
DROP INDEX IF EXISTS connections_by_key;
DROP INDEX IF EXISTS connections_by_owner;
