-- Health checks: a sweep claims due connections provider by provider, and a provider whose
-- client is misconfigured is held back, with one trial check at a time.
CREATE INDEX connections_due_by_provider ON connections (provider, next_check_at);

ALTER TABLE provider_alerts ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE provider_alerts ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;

-- A refresh whose answer never arrived (timeout after sending, cut-off body): the provider may
-- have rotated the refresh token then. Cleared by the next definite answer.
ALTER TABLE connections ADD COLUMN refresh_uncertain_since BIGINT;
