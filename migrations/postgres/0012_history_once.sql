-- A check's history row is written once, whole, with its result: the claim of the connection
-- row (its lease, and refresh_sent_at) is the record that an attempt is under way, so no
-- unfinished rows exist to find. The provider is the connection's.
DROP INDEX IF EXISTS checks_unfinished;
ALTER TABLE checks DROP COLUMN provider;
-- Nothing looks connections up by key or by owner; these only cost space and writes.
DROP INDEX IF EXISTS connections_by_key;
DROP INDEX IF EXISTS connections_by_owner;
