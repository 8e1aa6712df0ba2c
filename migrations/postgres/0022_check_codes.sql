-- A check's phase and category are stored as numbers, the same forever (a new one takes the
-- next number); the numbers' names are in check_phases and check_categories. With the usual
-- detail of a healthy check no longer repeated, a history row is about a third smaller, and
-- history rows are most of a database's bytes.
--
-- Rows written before keep their names in phase and category: rewriting them would hold the
-- daemon's start for as long as the history is large. They age out with the history's
-- retention. The view check_history reads both forms the same, with names and details.
CREATE TABLE check_phases (
    code SMALLINT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    -- The detail every healthy check of the phase has, which its rows leave out.
    healthy_detail TEXT NOT NULL
);
INSERT INTO check_phases (code, name, healthy_detail) VALUES
    (1, 'refresh', 'refreshed'),
    (2, 'probe', 'probe answered');

CREATE TABLE check_categories (
    code SMALLINT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
INSERT INTO check_categories (code, name) VALUES
    (1, 'healthy'),
    (2, 'transient'),
    (3, 'rate_limited'),
    (4, 'expired'),
    (5, 'revoked'),
    (6, 'password_changed'),
    (7, 'access_changed'),
    (8, 'reconsent_required'),
    (9, 'account_disabled'),
    (10, 'rotation_lost'),
    (11, 'client_misconfigured'),
    (12, 'unknown');

ALTER TABLE checks ADD COLUMN phase_code SMALLINT;
ALTER TABLE checks ADD COLUMN category_code SMALLINT;

CREATE VIEW check_history AS
SELECT c.id, c.connection_id, c.previous_id, c.instance_id, c.token_generation, c.started_at,
       c.finished_at, COALESCE(p.name, c.phase) AS phase, COALESCE(k.name, c.category) AS category,
       c.http_status, c.latency_ms,
       COALESCE(c.error, CASE WHEN k.name = 'healthy' THEN p.healthy_detail END) AS error
FROM checks c
LEFT JOIN check_phases p ON p.code = c.phase_code
LEFT JOIN check_categories k ON k.code = c.category_code;
