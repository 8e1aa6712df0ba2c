-- A check's writer names it its connection's last check in the same update that records the
-- result: the trigger rewrote the connection row a second time for every check.
DROP TRIGGER IF EXISTS checks_chain;
