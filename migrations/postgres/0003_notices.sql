-- Notices: the outbox is read by kind and recipient when an owner's notices are gathered into
-- one digest, and a reauthorize link is found by its connection's open incident.
CREATE INDEX outbox_by_recipient ON outbox (recipient, kind) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX incidents_reminders ON incidents (next_reminder_at) WHERE closed_at IS NULL;
