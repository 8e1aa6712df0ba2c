-- An event's connection is stored once, in connection_id: its content and its ordering key no
-- longer repeat it (the ordering key is empty when it is the connection's id).
UPDATE events SET data = json_remove(data, '$.connection')
WHERE connection_id IS NOT NULL AND json_type(data) = 'object'
  AND json_extract(data, '$.connection') = connection_id;
UPDATE events SET order_key = '' WHERE order_key = connection_id;
