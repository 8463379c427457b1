-- Quote attempts since the run was last retried by an operator. The attempt counter
-- itself never goes back (each attempt's quote reference must stay unique), so
-- max_requotes is measured from this base: quote_attempt - quote_attempt_base.
ALTER TABLE runs ADD COLUMN quote_attempt_base BIGINT NOT NULL DEFAULT 0;
