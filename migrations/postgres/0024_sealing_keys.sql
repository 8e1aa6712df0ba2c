-- The keys that sealed stored tokens, so that opening the store (the daemon's start, every
-- command) need not read every connection to learn them: 10-60 ms at 100,000 connections, and
-- growing with them.
-- It may list a key no token needs any more (all sealed again since); a start that does not
-- have a listed key reads the connections to be sure, and forgets the key if none needs it.
CREATE TABLE sealing_keys (
    id TEXT PRIMARY KEY
);
INSERT INTO sealing_keys (id) SELECT DISTINCT key_id FROM connections;
