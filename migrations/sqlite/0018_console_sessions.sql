-- Web console sessions (issue 14 §2). The cookie carries 256 random bits; the store
-- keeps only their SHA-256, never the token. A session is live while its account's
-- credential version is the one it was opened under (a password, role or status
-- change ends it), it is not ended, and it is within its idle and absolute timeouts
-- (checked by the console against its clock).
CREATE TABLE console_sessions (
    id                  TEXT    PRIMARY KEY,
    token_hash          TEXT    NOT NULL UNIQUE,
    operator_id         TEXT    NOT NULL REFERENCES operators (id),
    credential_version  INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    -- Moved forward on every request the session makes: the idle timeout counts from it.
    last_seen_at        INTEGER NOT NULL,
    -- Set at sign-out or when a newer sign-in rotated the session away.
    ended_at            INTEGER
);
CREATE INDEX console_sessions_operator ON console_sessions (operator_id);
