-- The lease under which one process at a time makes signed audit checkpoints, so
-- that the checkpoint chain (kept outside the store) never forks. One row, always.
-- The checkpoints themselves are never stored here: the store's administrators must
-- not be able to rewrite what proves the store was not rewritten.
CREATE TABLE audit_checkpoint_lease (
    -- The single row.
    id          INTEGER  PRIMARY KEY,
    -- The worker holding the lease (worker:<host>-<pid>), NULL when free.
    holder      TEXT,
    -- Bumped by every taker: a checkpointer proves it still holds the lease by it.
    fence       INTEGER  NOT NULL DEFAULT 0,
    -- The lease lapses at this instant (ms since the epoch); another may take it then.
    expires_at  INTEGER  NOT NULL DEFAULT 0,
    CONSTRAINT audit_checkpoint_lease_one_row CHECK (id = 1)
);
INSERT INTO audit_checkpoint_lease (id) VALUES (1);
