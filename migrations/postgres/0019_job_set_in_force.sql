-- The job set in force (issue 15 §4). Several workers on one store may hold different
-- job files for a while (a rolling deploy, an edit reaching one machine first). Only a
-- process whose whole set is the one recorded here creates runs, and it checks this
-- row in the same transaction as the runs it creates, so that one occurrence is never
-- built from two specs.
CREATE TABLE job_set_in_force (
    -- Always 1: one set is in force per store.
    id          BIGINT  PRIMARY KEY CHECK (id = 1),
    -- SHA-256 (hex) over every job's id and file version, sorted by id.
    version     TEXT    NOT NULL,
    -- Grows by one on every change; a proposal is a compare-and-set on it, so two
    -- loaders racing from one state never both win.
    generation  BIGINT  NOT NULL,
    -- The process that recorded it (`worker:<host>-<pid>`).
    recorded_by TEXT    NOT NULL,
    -- When it was recorded (Unix ms).
    recorded_at BIGINT  NOT NULL,
    -- The set's jobs as JSON (`{"<job id>": "<file version>"}`), so that the next
    -- proposal can audit which jobs it adds, changes and removes.
    jobs        TEXT    NOT NULL
);
