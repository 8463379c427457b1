-- What a run asked of Busha and what Busha said of the payee, so that every answer is
-- checked against the question and every display shows the provider's word.

-- The quote request of the run's current attempt (JSON: reference, fixed side and
-- amount, recipient): a quote found later by its reference is checked against it.
ALTER TABLE runs ADD COLUMN quote_ask TEXT;
-- The account holder's name as Busha reports it for the run's recipient.
ALTER TABLE runs ADD COLUMN recipient_name TEXT;

-- Every recipient a run resolved, as Busha described it: the holder's name for
-- `plan` and `runs show`, and whether Busha refuses to fetch it by id (its spec
-- types the path as a UUID while its ids are 24-hex), so that we list instead.
CREATE TABLE recipients_seen (
    grant_alias     TEXT    NOT NULL,
    recipient_id    TEXT    NOT NULL,
    holder_name     TEXT,
    bank_code       TEXT,
    -- Masked: all but the last four digits.
    account_masked  TEXT,
    currency        TEXT,
    fetch_refused   BIGINT NOT NULL DEFAULT 0,
    seen_at         BIGINT NOT NULL,
    PRIMARY KEY (grant_alias, recipient_id)
);
