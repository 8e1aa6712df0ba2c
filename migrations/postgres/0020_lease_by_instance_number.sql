-- A claim names the instance holding the lease by its number, as history rows do: the name
-- (host, process and a random part) made every claimed row grow by some 40 bytes. Leases held
-- now are kept, under their instance's number.
INSERT INTO instances (name)
SELECT DISTINCT lease_owner FROM connections WHERE lease_owner IS NOT NULL
ON CONFLICT (name) DO NOTHING;
ALTER TABLE connections ADD COLUMN lease_instance INTEGER;
UPDATE connections SET lease_instance = i.id FROM instances i WHERE i.name = connections.lease_owner;
ALTER TABLE connections DROP COLUMN lease_owner;
ALTER TABLE connections RENAME COLUMN lease_instance TO lease_owner;
