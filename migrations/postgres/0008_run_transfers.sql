-- Every transfer id any run ever held, across retries and re-quotes (issue: no two
-- runs may ever hold one transfer). The primary key makes a second holder impossible:
-- a provider that answers two runs with one transfer is caught at the insert, and the
-- second run stops instead of counting someone else's transfer as its own.
CREATE TABLE run_transfers (
    transfer_id   TEXT    PRIMARY KEY,
    run_id        TEXT    NOT NULL REFERENCES runs (id),
    -- The quote the transfer was made from, as our run locked it.
    quote_id      TEXT    NOT NULL,
    -- created | adopted
    how           TEXT    NOT NULL,
    recorded_at   BIGINT  NOT NULL
);
CREATE INDEX run_transfers_run ON run_transfers (run_id);

-- Creating a recipient for one (grant, bank, account) is serialised: the holder is
-- the run whose executor may search and create; others wait until it is released or
-- lapses (issue: two runs created two Busha recipients for one account).
CREATE TABLE recipient_locks (
    grant_alias     TEXT    NOT NULL,
    bank_code       TEXT    NOT NULL,
    account_number  TEXT    NOT NULL,
    run_id          TEXT    NOT NULL,
    until_ms        BIGINT  NOT NULL,
    PRIMARY KEY (grant_alias, bank_code, account_number)
);

-- Every transfer a run held before this table existed, from its audit trail (which
-- records each submission or adoption, across retries), then its current one.
INSERT INTO run_transfers (transfer_id, run_id, quote_id, how, recorded_at)
    SELECT DISTINCT ON (a.payload::json->>'transfer_id')
           a.payload::json->>'transfer_id', a.run_id,
           COALESCE(a.payload::json->>'quote_id', ''),
           COALESCE(a.payload::json->>'how', 'adopted'), a.at_ms
    FROM audit_log a JOIN runs r ON r.id = a.run_id
    WHERE a.action = 'run.transfer.submitted'
      AND a.payload::json->>'transfer_id' IS NOT NULL
    ORDER BY a.payload::json->>'transfer_id', a.seq
ON CONFLICT DO NOTHING;
INSERT INTO run_transfers (transfer_id, run_id, quote_id, how, recorded_at)
    SELECT transfer_id, id, COALESCE(quote::json->>'id', ''), 'adopted', updated_at
    FROM runs WHERE transfer_id IS NOT NULL
ON CONFLICT DO NOTHING;
