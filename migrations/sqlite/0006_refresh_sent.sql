-- Set by the claim under which a refresh may go out; cleared by whatever ends that check.
-- Found set by the next claim, it means a worker crashed or stalled with a refresh perhaps in
-- flight and its answer never stored: the provider may have rotated the refresh token then, so
-- the claim moves it into refresh_uncertain_since.
ALTER TABLE connections ADD COLUMN refresh_sent_at INTEGER;
-- A refresh_sent_at that a claim found set (see above), kept until the next definite answer:
-- unlike a timeout, the provider almost certainly rotated the refresh token then.
ALTER TABLE connections ADD COLUMN refresh_interrupted_at INTEGER;

-- One row, written only while writes have been failing, to learn that they work again when no
-- other write is due.
CREATE TABLE write_probe (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    at  INTEGER NOT NULL
);

-- Why a connection was set aside: its stored tokens cannot be opened (altered, or sealed under
-- a key that is not configured). Claims skip it, so it cannot stop its provider's other
-- connections; a restart tries it again.
ALTER TABLE connections ADD COLUMN set_aside TEXT;
