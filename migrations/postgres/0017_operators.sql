-- Operators are accounts (never typed names). A name is stored normalised (NFKC,
-- lower case); its confusable skeleton is unique, so two accounts never look alike.
CREATE TABLE operators (
    id                  TEXT    PRIMARY KEY,
    name                TEXT    NOT NULL UNIQUE,
    skeleton            TEXT    NOT NULL UNIQUE,
    role                TEXT    NOT NULL,
    -- argon2id, PHC string format; never the password.
    password_hash       TEXT    NOT NULL,
    -- 1 after an admin reset: the account must choose its own before it acts.
    password_temporary  BIGINT  NOT NULL DEFAULT 0,
    disabled            BIGINT  NOT NULL DEFAULT 0,
    failed_sign_ins     BIGINT  NOT NULL DEFAULT 0,
    locked              BIGINT  NOT NULL DEFAULT 0,
    -- Bumped on every password, role or status change: tokens and sessions minted
    -- under an older version stop working.
    credential_version  BIGINT  NOT NULL DEFAULT 1,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL,
    CONSTRAINT operators_role_known CHECK (role IN ('viewer', 'operator', 'approver', 'admin')),
    CONSTRAINT operators_flags CHECK (password_temporary IN (0, 1) AND disabled IN (0, 1) AND locked IN (0, 1))
);

-- Personal tokens: SHA-256 of the token (256 random bits), never the token.
CREATE TABLE operator_tokens (
    id                  TEXT    PRIMARY KEY,
    operator_id         TEXT    NOT NULL REFERENCES operators (id),
    token_hash          TEXT    NOT NULL UNIQUE,
    credential_version  BIGINT  NOT NULL,
    created_at          BIGINT  NOT NULL,
    expires_at          BIGINT  NOT NULL
);
CREATE INDEX operator_tokens_operator ON operator_tokens (operator_id);
