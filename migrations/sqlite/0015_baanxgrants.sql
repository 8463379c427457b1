-- Grants on Baanx (issue 12 §4) and consent records for both providers.

-- Baanx routes every call by region (`x-us-env`), and a token used in the other
-- region is refused: `international` or `us` for Baanx grants, NULL for Busha.
ALTER TABLE grants ADD COLUMN region TEXT
    CHECK (region IS NULL OR region IN ('international', 'us'));
-- Unix milliseconds at which the refresh token dies unused (Baanx's
-- `refresh_token_expires_in`, or 7 days when absent); NULL when the provider does not
-- say. Keep-alive refreshes a grant before this moment.
ALTER TABLE grants ADD COLUMN refresh_expires_at INTEGER;
-- The consent record of the latest connect (JSON: what we asked for and what was
-- granted, each labelled; the consent text our own screen showed, if any; when; the
-- operator; the browser's address and user agent; the provider's consent status;
-- its end once revoked or disconnected). Never token material. NULL for grants
-- connected before this column existed.
ALTER TABLE grants ADD COLUMN consent TEXT;
-- The refresh expiry (Unix milliseconds) keep-alive last alerted about: a lifetime
-- that refreshing does not extend (absolute) is alerted once per expiry, naming the
-- date by which the customer must connect again.
ALTER TABLE grants ADD COLUMN expiry_warned_for INTEGER;
