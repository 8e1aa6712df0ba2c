-- Events are written in time order, so the first event since a time is found by walking them in
-- `seq` order; removing old events and replaying them from a time need no index of their own
-- (it cost every event a write at the end of a second index).
DROP INDEX IF EXISTS events_by_time;
