-- A check's history row names the daemon instance that ran it by a number: the name (host,
-- process and a random part) was a fifth of the row. A claim registers its instance's name.
CREATE TABLE instances (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
INSERT INTO instances (name) SELECT DISTINCT instance FROM checks WHERE instance IS NOT NULL;
ALTER TABLE checks ADD COLUMN instance_id INTEGER;
UPDATE checks SET instance_id = (SELECT i.id FROM instances i WHERE i.name = checks.instance);
ALTER TABLE checks DROP COLUMN instance;
