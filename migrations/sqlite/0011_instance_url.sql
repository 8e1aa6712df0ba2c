-- Where a grant's API lives when its token response says so (Salesforce's instance_url,
-- Pipedrive's api_domain): an https origin the probe is sent to, in place of the provider's.
ALTER TABLE connections ADD COLUMN instance_url TEXT;
