-- Connections are counted by provider, status and reason from an index of the connections that
-- are not healthy, normally a few: the healthy ones are what is left of each provider's count
-- (read from the due index). An index of every connection cost each of them about 26 bytes and
-- every insert a write at its end; a healthy connection's reason is always empty.
DROP INDEX connections_by_provider;
CREATE INDEX connections_unhealthy ON connections (provider, status, reason) WHERE status <> 'healthy';

-- Each check writes its connection twice: the claim's lease, then the result. A write that
-- finds room on the row's own page and changes no indexed column (the lease) is a heap-only
-- update: no new entry in any index. Half of each page is kept for that. Pages written before
-- keep their fill until they are rewritten.
ALTER TABLE connections SET (fillfactor = 50);
