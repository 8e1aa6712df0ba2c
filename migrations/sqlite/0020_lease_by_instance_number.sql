-- A claim names the instance holding the lease by its number, as history rows do: the name
-- (host, process and a random part) made every claimed row grow by some 40 bytes, which split
-- the full pages rows are stored in. Leases held now are kept, under their instance's number.
INSERT INTO instances (name)
SELECT DISTINCT lease_owner FROM connections
WHERE lease_owner IS NOT NULL AND lease_owner NOT IN (SELECT name FROM instances);
ALTER TABLE connections ADD COLUMN lease_instance INTEGER;
UPDATE connections SET lease_instance = (SELECT id FROM instances WHERE name = connections.lease_owner)
WHERE lease_owner IS NOT NULL;
ALTER TABLE connections DROP COLUMN lease_owner;
ALTER TABLE connections RENAME COLUMN lease_instance TO lease_owner;
