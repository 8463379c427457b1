-- Runs: one occurrence of a job, a persisted state machine (invariants 1-4).
CREATE TABLE runs (
    -- run_ + 24 hex of SHA-256(job id, occurrence key): the same occurrence always
    -- names the same run, so a second scheduler or a replayed trigger cannot add one.
    id                TEXT    PRIMARY KEY,
    job_id            TEXT    NOT NULL,
    -- Nominal UTC fire time (+ payee key), trigger event id, or sweep tick.
    occurrence_key    TEXT    NOT NULL,
    -- Hash of the job file version the run was created from.
    job_version       TEXT    NOT NULL,
    -- The grant alias the run acts on.
    grant_alias       TEXT    NOT NULL,
    -- The payout spec frozen at creation (JSON; decimals as strings).
    spec              TEXT    NOT NULL,
    -- created | awaiting_approval | recipient_resolved | quote_locked |
    -- transfer_submitted | settled | failed | cancelled | needs_human
    state             TEXT    NOT NULL,
    reason            TEXT,
    recipient_id      TEXT,
    -- Quote attempts so far; attempt n uses reference "<run id>-q<n>".
    quote_attempt     BIGINT NOT NULL DEFAULT 0,
    -- The locked quote (JSON: id, reference, rate, amounts, fees, expires_at).
    quote             TEXT,
    transfer_id       TEXT,
    transfer_status   TEXT,
    -- Intent of a money-moving call that may be in flight (invariant 4):
    -- create_recipient | create_quote | create_transfer.
    pending_op        TEXT,
    attempts          BIGINT NOT NULL DEFAULT 0,
    -- When the run is next due (Unix ms). Waiting is a row, never a sleeping handler.
    next_attempt_at   BIGINT NOT NULL,
    -- Fenced lease (invariant 3): every write checks fence = the holder's fence, so an
    -- executor whose lease lapsed writes nothing.
    lease_owner       TEXT,
    lease_until       BIGINT,
    fence             BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    -- One run per occurrence of a job, ever (invariant 2).
    CONSTRAINT runs_one_per_occurrence UNIQUE (job_id, occurrence_key),
    CONSTRAINT runs_state_known CHECK (state IN ('created', 'awaiting_approval',
        'recipient_resolved', 'quote_locked', 'transfer_submitted', 'settled', 'failed',
        'cancelled', 'needs_human'))
);

-- The dispatcher's question: which unfinished runs are due?
CREATE INDEX runs_due ON runs (next_attempt_at) WHERE state NOT IN ('settled', 'failed', 'cancelled', 'needs_human');
CREATE INDEX runs_job ON runs (job_id, created_at);

-- Recipients resolved for a bank account, so later runs skip the lookup.
CREATE TABLE known_recipients (
    grant_alias       TEXT    NOT NULL,
    bank_code         TEXT    NOT NULL,
    account_number    TEXT    NOT NULL,
    recipient_id      TEXT    NOT NULL,
    created_at        BIGINT NOT NULL,
    PRIMARY KEY (grant_alias, bank_code, account_number)
);
