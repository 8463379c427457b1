-- Jobs as the workers have seen them: the file version each job was last loaded at,
-- and each scheduled job's cursor, so that catch-up survives restarts.

-- One row per job id (the file's `id` key, never its name). `version` is the SHA-256
-- (hex) of the job file's bytes when a worker last loaded it; a change is audited as
-- `job.version` exactly once, however many workers load the new file.
CREATE TABLE job_versions (
    job_id      TEXT    PRIMARY KEY,
    version     TEXT    NOT NULL,
    -- The file it was read from, for operators (renaming it changes nothing else).
    path        TEXT    NOT NULL,
    -- When this version was first seen (Unix ms).
    seen_at     INTEGER  NOT NULL
);

-- Scheduler cursors. Every occurrence of the job's schedule at or before `cursor_at`
-- (Unix ms) has been decided: its runs were created, or catch-up skipped it (audited).
-- Cursors only move forward, by compare-and-set, so two schedulers never decide one
-- stretch of time twice; run creation itself is idempotent (runs_one_per_occurrence).
CREATE TABLE job_schedules (
    job_id      TEXT    PRIMARY KEY,
    cursor_at   INTEGER  NOT NULL,
    updated_at  INTEGER  NOT NULL
);
