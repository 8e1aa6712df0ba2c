-- An event's data is what it says without its type, which has a column of its own: the type
-- was stored twice in every event.
UPDATE events SET data = COALESCE(json_extract(data, '$.data'), 'null')
WHERE json_type(data, '$.type') IS NOT NULL;
