-- The audit log (invariant 9): append-only and hash-chained, one chain per store.
-- Every step of every run, every grant event, approval, kill-switch flip and config
-- version gets an entry. `treasury audit verify` recomputes the chain.
CREATE TABLE audit_log (
    -- 1, 2, 3, ... with no gaps; appenders serialise on an advisory lock, and the
    -- primary key is the last line of defence.
    seq        BIGINT  PRIMARY KEY,
    -- Unix milliseconds.
    at_ms      BIGINT  NOT NULL,
    -- `worker:<id>` or `operator:<name>`.
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    run_id     TEXT,
    job_id     TEXT,
    grant_id   TEXT,
    -- Canonical JSON (sorted keys): amounts, rates and ids; never secrets.
    payload    TEXT    NOT NULL,
    -- `hash` of entry seq-1 (64 zeros for the first entry).
    prev_hash  TEXT    NOT NULL,
    -- SHA-256 over the canonical encoding of this entry and prev_hash.
    hash       TEXT    NOT NULL
);

CREATE INDEX audit_log_run ON audit_log (run_id);
CREATE INDEX audit_log_at ON audit_log (at_ms);

-- Defence in depth: the application never updates or deletes entries. (Someone with
-- admin rights can drop this trigger; the hash chain still catches the edit.)
CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
