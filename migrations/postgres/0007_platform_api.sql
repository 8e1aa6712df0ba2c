-- The platform's own name for a connection or a pipeline: creating one twice with the same
-- external_id gives back the first, so a platform can retry a create without duplicating it.
ALTER TABLE connections ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX connections_by_external_id ON connections (external_id) WHERE external_id IS NOT NULL;
-- Whatever the platform keeps about a connection (a JSON object), handed back as it was given.
ALTER TABLE connections ADD COLUMN metadata TEXT;
ALTER TABLE pipelines ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX pipelines_by_external_id ON pipelines (external_id) WHERE external_id IS NOT NULL;
