-- What a connection holds, sealed in access_token: an OAuth access token (with its refresh
-- token), an API key, or a user name and password ("user:password"). Checked against its
-- provider's `auth` before every check, so a changed config cannot send a key as a Bearer.
ALTER TABLE connections ADD COLUMN credential_kind TEXT NOT NULL DEFAULT 'oauth';
