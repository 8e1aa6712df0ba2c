-- The service's status line counts set-aside connections and paused pipelines every 30 s: each
-- count read its whole table (a million connection rows is hundreds of MiB). These indexes hold
-- only the rows counted, which are normally none.
CREATE INDEX connections_set_aside ON connections (set_aside) WHERE set_aside IS NOT NULL;
CREATE INDEX pipelines_paused ON pipelines (state) WHERE state = 'paused';
