-- Dispatch bookkeeping (invariant 1): the store, not the queue, knows what was sent out.
-- Each dispatch of a run bumps dispatch_gen (the queue's idempotency key is run id +
-- generation, so a deliberate re-dispatch is never swallowed), stamps dispatched_at,
-- and remembers the run's fence at that moment. An executor that takes the lease bumps
-- the fence, so "dispatch_fence = fence" means "sent out and not yet picked up".
ALTER TABLE runs ADD COLUMN dispatch_gen BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN dispatched_at BIGINT;
ALTER TABLE runs ADD COLUMN dispatch_fence BIGINT;

-- The dispatcher's window and recovery questions: which dispatches are still queued?
CREATE INDEX runs_undelivered ON runs (dispatched_at) WHERE dispatch_fence = fence;
