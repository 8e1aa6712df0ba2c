-- Connections are counted by provider, status and reason from an index of the connections that
-- are not healthy, normally a few: the healthy ones are what is left of each provider's count
-- (read from the due index). An index of every connection cost each of them about 26 bytes and
-- every insert a write at its end; a healthy connection's reason is always empty.
DROP INDEX connections_by_provider;
CREATE INDEX connections_unhealthy ON connections (provider, status, reason) WHERE status <> 'healthy';
