-- An event's data is what it says without its type, which has a column of its own: the type
-- was stored twice in every event.
UPDATE events SET data = COALESCE((data::json -> 'data')::text, 'null')
WHERE (data::json ->> 'type') IS NOT NULL;
