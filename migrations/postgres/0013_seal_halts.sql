-- Halts are derivable from the audit chain (issue 16): before every money-moving step
-- the gate replays the MAC'd `halt.on` / `halt.off` entries, so that a halt row deleted
-- in the store still stops money. This index finds those few entries without a scan.
CREATE INDEX audit_log_action ON audit_log (action, seq);
