-- Guards: the kill switch and paused jobs, spending-cap reservations, and approvals.
-- Every change to these tables commits with its audit entry (invariant 9).

-- The kill switch. A row is an active halt; `treasury resume` deletes it. A halt on a
-- job is how a job is paused. No money-moving step starts for a run that a halt covers.
CREATE TABLE halts (
    -- all | job | grant
    scope             TEXT    NOT NULL,
    -- The job id or grant alias; '' for a global halt.
    target            TEXT    NOT NULL,
    reason            TEXT,
    -- The operator who pulled the switch.
    halted_by         TEXT    NOT NULL,
    halted_at         BIGINT NOT NULL,
    -- One halt per scope and target: halting twice changes nothing.
    PRIMARY KEY (scope, target),
    CONSTRAINT halts_scope_known CHECK (scope IN ('all', 'job', 'grant')),
    CONSTRAINT halts_global_has_no_target CHECK ((scope = 'all') = (target = ''))
);

-- What each run holds against the rolling 24-hour caps of its job and its grant, in the
-- source currency. Reserved at quote lock (checked and written in one transaction that
-- is serialised per cap key), trued up to the locked quote's source amount before the
-- transfer, released when the run fails, is cancelled or needs a human. A reservation
-- counts while it is unreleased, younger than 24 hours, and its run is not failed,
-- cancelled or needs_human (so a crash between failing a run and releasing its
-- reservation leaks nothing).
CREATE TABLE cap_reservations (
    -- One reservation per run: re-quotes and retries update it in place.
    run_id            TEXT    PRIMARY KEY REFERENCES runs (id),
    job_id            TEXT    NOT NULL,
    grant_alias       TEXT    NOT NULL,
    currency          TEXT    NOT NULL,
    -- Decimal text (invariant 8).
    amount            TEXT    NOT NULL,
    -- 1 while the amount is an estimate (a target amount before its quote is locked).
    estimated         BIGINT NOT NULL DEFAULT 0,
    reserved_at       BIGINT NOT NULL,
    released_at       BIGINT,
    CONSTRAINT cap_reservations_estimated_flag CHECK (estimated IN (0, 1))
);
CREATE INDEX cap_reservations_job ON cap_reservations (job_id, reserved_at);
CREATE INDEX cap_reservations_grant ON cap_reservations (grant_alias, reserved_at);

-- Who approved which run. The key makes an approver count once per run, however
-- often they approve.
CREATE TABLE run_approvals (
    run_id            TEXT    NOT NULL REFERENCES runs (id),
    -- The approver's name normalised (trimmed, lower case): the identity that counts.
    approver          TEXT    NOT NULL,
    -- The name as typed, for display.
    approver_display  TEXT    NOT NULL,
    approved_at       BIGINT NOT NULL,
    PRIMARY KEY (run_id, approver)
);
