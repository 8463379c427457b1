-- Customers' OAuth2 grants (invariants 6 and 7). A grant is one customer's permission
-- for the worker to act on their provider account. Tokens are stored only as AEAD
-- ciphertexts under a per-grant key; refreshes are serialised by a fenced lease.
CREATE TABLE grants (
    -- A UUID; also the HKDF context and part of the AEAD associated data, so a
    -- ciphertext moved to another row does not decrypt.
    id                TEXT    PRIMARY KEY,
    -- `busha` (Baanx later).
    provider          TEXT    NOT NULL,
    -- The name job files use, declared in config/treasury.toml under [[grants]].
    alias             TEXT    NOT NULL,
    -- The provider's stable user id (`sub` of the verified id_token).
    subject           TEXT    NOT NULL,
    -- Granted scopes, space-separated, as the token endpoint last reported them.
    scopes            TEXT    NOT NULL,
    -- active: usable. disconnected: the provider refused the refresh token
    -- (invalid_grant) or the grant cannot be refreshed; jobs are held until the
    -- customer re-consents. revoked: an operator revoked it. lost: a rotated token
    -- pair could not be stored, so the session is gone and needs re-consent.
    status            TEXT    NOT NULL
        CHECK (status IN ('active', 'disconnected', 'revoked', 'lost')),
    -- Why the grant left `active`, for `treasury grants list`; never token material.
    status_reason     TEXT,
    -- Version of the master key (TREASURY_MASTER_KEY) the ciphertexts are sealed under.
    key_version       INTEGER NOT NULL,
    -- hex(nonce || AES-256-GCM ciphertext) of the access token; NULL once wiped
    -- (disconnected, revoked, lost).
    access_token_ct   TEXT,
    -- Unix milliseconds at which the access token expires (from expires_in).
    access_expires_at INTEGER NOT NULL,
    -- hex(nonce || ciphertext) of the refresh token; NULL without offline_access or
    -- once wiped.
    refresh_token_ct  TEXT,
    -- Bumped by every lease acquisition and every reconnect. A token write carries the
    -- fence its writer acquired and matches nothing once the fence has moved on, so a
    -- stale lease holder can never overwrite a newer token pair.
    fence             INTEGER NOT NULL DEFAULT 0,
    -- The custodian (`worker:<host>-<pid>-<n>`) refreshing this grant, if any.
    lease_owner       TEXT,
    -- Unix milliseconds until which lease_owner holds the lease; NULL when released.
    lease_until       INTEGER,
    -- Unix milliseconds.
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    -- When the customer last consented.
    connected_at      INTEGER NOT NULL,
    -- When the token pair was last rotated; NULL before the first refresh.
    refreshed_at      INTEGER,
    -- One grant per alias and provider: job files name grants by alias.
    CONSTRAINT grants_provider_alias UNIQUE (provider, alias)
);

-- Browser authorizations in flight (`treasury connect` and GET /oauth/connect/{alias}).
-- A row is consumed by one conditional UPDATE, so a doubled callback exchanges its
-- code at most once.
CREATE TABLE grant_authorizations (
    -- SHA-256 (hex) of the `state` sent to the provider; the state itself is not kept.
    state_hash   TEXT    PRIMARY KEY,
    provider     TEXT    NOT NULL,
    alias        TEXT    NOT NULL,
    -- Scopes requested, space-separated.
    scopes       TEXT    NOT NULL,
    -- Master key version the PKCE verifier is sealed under.
    key_version  INTEGER NOT NULL,
    -- hex(nonce || ciphertext) of the PKCE code verifier.
    verifier_ct  TEXT    NOT NULL,
    -- The OIDC nonce the id_token must carry.
    nonce        TEXT    NOT NULL,
    -- Unix milliseconds; authorizations older than the provider's code lifetime are refused.
    created_at   INTEGER NOT NULL,
    -- Unix milliseconds at which the callback consumed it; NULL while pending.
    consumed_at  INTEGER
);
