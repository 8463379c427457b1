//! What every step shares: saving under the lease, audit entries, the gate, waiting and failing.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::*;
use crate::seal::SealChecked;

impl Pipeline {
    /// Persists the run and its audit entries under the lease, with crash points.
    pub(super) async fn save(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        audit: Vec<NewAuditEntry>,
    ) -> Result<(), Stop> {
        self.point("before save")?;
        let now = self.clock.now();
        run.updated_at = now;
        self.store
            .save_run(lease, run, audit, now, self.stored_lease())
            .await?;
        self.point("after save")?;
        Ok(())
    }

    /// [`Self::save`], recording in the same transaction that the run holds `held`.
    /// `Err(holder)` if another run already holds that transfer: nothing was written.
    pub(super) async fn save_holding(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        held: crate::store::NewHeldTransfer,
        audit: Vec<NewAuditEntry>,
    ) -> Result<Result<(), String>, Stop> {
        self.point("before save")?;
        let now = self.clock.now();
        run.updated_at = now;
        let saved = self
            .store
            .save_run_holding(lease, run, Some(held), audit, now, self.stored_lease())
            .await;
        match saved {
            Err(StoreError::TransferHeld { holder, .. }) => return Ok(Err(holder)),
            other => other?,
        }
        self.point("after save")?;
        Ok(Ok(()))
    }

    /// The lease as the store holds it: its length plus the takeover grace.
    pub(super) fn stored_lease(&self) -> Duration {
        self.cfg.lease + self.cfg.takeover_grace
    }

    /// What the provider client checks right before a money-moving request leaves. It
    /// takes the proof that the run matched its seal: no money-moving call can be
    /// made without passing [`Self::gated`].
    pub(super) fn cover<'a>(
        &'a self,
        lease: &'a RunLease,
        sealed: &'a SealChecked,
    ) -> super::lease::Cover<'a> {
        super::lease::Cover {
            _sealed: sealed,
            lease,
            clock: &self.clock,
            hold: self.cfg.lease.to_std().unwrap_or_default(),
            grace: self.cfg.takeover_grace,
            margin: self.cfg.send_margin.to_std().unwrap_or_default(),
        }
    }

    /// An injected freeze (tests): the execution stands still, as a stopped process.
    pub(super) async fn pause(&self, point: &str) {
        if let Some(frozen) = self.crash.as_ref().and_then(|c| c.pause_at(point)) {
            frozen.await;
        }
    }

    pub(super) fn point(&self, point: &str) -> Result<(), Stop> {
        match &self.crash {
            Some(c) if c.crash_here(point) => Err(Stop::Crash(point.to_string())),
            _ => Ok(()),
        }
    }

    pub(super) fn advance(&self, run: &mut Run, to: RunState) {
        run.state = to;
        run.attempts = 0;
    }

    pub(super) fn entry(&self, run: &Run, action: &str, payload: Value) -> NewAuditEntry {
        NewAuditEntry::new(format!("worker:{}", self.cfg.worker_id), action, payload)
            .run(run.id.as_str())
            .job(&run.job_id)
            .grant(&run.spec.grant)
    }

    /// Checks the run against its seal, then asks the gate whether a money-moving step
    /// may start now. `Ok(Ok(proof))`: go on, with the proof the call needs. A broken
    /// seal stops the run for a person; a hold makes it wait (and be re-checked); a
    /// refusal fails it with the reason.
    pub(super) async fn gated(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        step: GateStep,
    ) -> Result<Result<SealChecked, Executed>, Stop> {
        let sealed = match self.sealed(lease, run, step).await? {
            Ok(proof) => proof,
            Err(done) => return Ok(Err(done)),
        };
        let held = match self.gate.check(run, step).await {
            Ok(()) => return Ok(Ok(sealed)),
            Err(hold) => hold,
        };
        // Every hold ends this execution (it waits or fails, and says which).
        let done = self.held(lease, run, held).await?;
        Ok(Err(done.unwrap_or(Executed::Waiting(run.next_attempt_at))))
    }

    async fn held(&self, lease: &mut RunLease, run: &mut Run, hold: Hold) -> Step {
        match hold {
            Hold::Wait { reason, until } => {
                // A hold is not a failure: it does not grow the backoff, and it is
                // audited when it starts or its reason changes, not at every recheck.
                let until = until.max(self.clock.now() + self.cfg.retry_base);
                let audit = if run.reason.as_deref() == Some(reason.as_str()) {
                    Vec::new()
                } else {
                    vec![self.entry(run, "run.held", json!({ "reason": reason, "until": until }))]
                };
                run.next_attempt_at = until;
                run.reason = Some(reason);
                self.save(lease, run, audit).await?;
                Ok(Some(Executed::Waiting(until)))
            }
            Hold::Refuse { reason } => self.fail(lease, run, reason).await,
            Hold::Unavailable { reason } => {
                let until = self.clock.now() + self.backoff(run.attempts);
                self.wait(lease, run, until, reason, "run.retry_scheduled")
                    .await
            }
        }
    }

    pub(super) async fn fail(&self, lease: &mut RunLease, run: &mut Run, reason: String) -> Step {
        run.pending = None;
        run.reason = Some(reason.clone());
        self.advance(run, RunState::Failed);
        let e = self.entry(run, "run.failed", json!({ "reason": reason }));
        self.save(lease, run, vec![e]).await?;
        self.gate.released(run).await;
        Ok(Some(Executed::Finished(RunState::Failed)))
    }

    pub(super) async fn wait(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        until: DateTime<Utc>,
        note: String,
        action: &str,
    ) -> Step {
        run.attempts += 1;
        run.next_attempt_at = until;
        run.reason = Some(note.clone());
        let e = self.entry(
            run,
            action,
            json!({ "reason": note, "until": until, "attempt": run.attempts }),
        );
        self.save(lease, run, vec![e]).await?;
        Ok(Some(Executed::Waiting(until)))
    }

    /// A failed call waits or fails as [`Self::wait_or_fail`] decides; a wrong answer
    /// is a provider fault.
    pub(super) async fn fault(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        fault: super::checks::Fault,
    ) -> Step {
        match fault {
            super::checks::Fault::Call(e) => self.wait_or_fail(lease, run, e).await,
            super::checks::Fault::Answer { endpoint, what } => {
                self.provider_fault(lease, run, endpoint, &what).await
            }
        }
    }

    /// Busha answered something other than what was asked. Nothing more is done on
    /// that answer: the run stops for a person, saying what differed. A transfer
    /// intent in flight stays recorded, so that no retry can pay without first
    /// finding out what happened; caps stay reserved while money may have moved.
    pub(super) async fn provider_fault(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        endpoint: &str,
        what: &super::checks::Mismatch,
    ) -> Step {
        let reason =
            format!("provider fault: {endpoint} answered something else than asked: {what}");
        tracing::error!(run = %run.id, endpoint, %what, "provider fault: the answer does not match the request");
        if run.pending != Some(PendingOp::CreateTransfer) {
            run.pending = None;
        }
        run.reason = Some(reason.clone());
        let money_may_have_moved =
            run.pending.is_some() || run.state == RunState::TransferSubmitted;
        self.advance(run, RunState::NeedsHuman);
        let e = self.entry(
            run,
            "run.provider_fault",
            json!({ "endpoint": endpoint, "differences": what.0, "reason": reason }),
        );
        self.save(lease, run, vec![e]).await?;
        if !money_may_have_moved {
            self.gate.released(run).await;
        }
        Ok(Some(Executed::Finished(RunState::NeedsHuman)))
    }

    /// The one place provider errors become decisions of the run's state machine.
    pub(super) async fn wait_or_fail(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        e: ProviderError,
    ) -> Step {
        let now = self.clock.now();
        let what = describe(&e);
        match e.kind() {
            ErrorKind::Withheld => {
                // Nothing left the process. Saving renews the lease, or proves it lost
                // (then this executor stops here and writes nothing more).
                let until = now + self.cfg.retry_base;
                self.wait(
                    lease,
                    run,
                    until,
                    format!("not sent, the lease was too short: {what}"),
                    "run.call_withheld",
                )
                .await
            }
            ErrorKind::RateLimited { retry_after } => {
                let wait = retry_after
                    .and_then(|d| Duration::from_std(d).ok())
                    .unwrap_or(Duration::seconds(3));
                self.wait(
                    lease,
                    run,
                    now + wait,
                    format!("rate limited: {what}"),
                    "run.rate_limited",
                )
                .await
            }
            k if k.outcome_unknown() => {
                // The call may have been applied: the next attempt reconciles first.
                let until = now
                    + self
                        .backoff(run.attempts.min(3))
                        .max(self.cfg.unknown_outcome_grace);
                self.wait(
                    lease,
                    run,
                    until,
                    format!("outcome unknown, will reconcile: {what}"),
                    "run.outcome_unknown",
                )
                .await
            }
            ErrorKind::Transient | ErrorKind::Decode { .. } | ErrorKind::OutcomeUnknown => {
                let until = now + self.backoff(run.attempts);
                self.wait(
                    lease,
                    run,
                    until,
                    format!("transient: {what}"),
                    "run.retry_scheduled",
                )
                .await
            }
            ErrorKind::Unauthorized => {
                self.fail(
                    lease,
                    run,
                    format!("Busha refused the grant's token even after a refresh: {what}"),
                )
                .await
            }
            ErrorKind::InsufficientScope { required } => {
                let scope = required.clone().unwrap_or_else(|| "a scope".into());
                self.fail(
                    lease,
                    run,
                    format!("grant {} lacks {scope}: {what}", run.spec.grant),
                )
                .await
            }
            ErrorKind::NotFound
            | ErrorKind::Validation { .. }
            | ErrorKind::Rejected { .. }
            | ErrorKind::InvalidRequest => self.fail(lease, run, what).await,
        }
    }

    pub(super) fn backoff(&self, attempts: u32) -> Duration {
        doubling(self.cfg.retry_base, self.cfg.retry_max, attempts)
    }

    pub(super) fn track_backoff(&self, attempts: u32) -> Duration {
        doubling(self.cfg.track_base, self.cfg.track_max, attempts)
    }
}

pub(super) fn doubling(base: Duration, max: Duration, attempts: u32) -> Duration {
    let factor = 1i32 << attempts.min(16);
    (base * factor).min(max)
}

/// A provider error as one line for reasons and audit entries: the error's own text: endpoint, kind, message, and the HTTP status and request id
/// (or that there was no response), with account numbers masked. Never tokens or bodies.
pub(super) fn describe(e: &ProviderError) -> String {
    crate::runs::mask_account_numbers_in(&e.to_string())
}

/// Total fees of a quote in `source` units.
pub(super) fn fees_in(q: &Quote, source: &Currency) -> Decimal {
    q.fees
        .iter()
        .map(|f| match &f.converted_amount {
            Some(c) if &c.currency == source => c.amount,
            _ if &f.amount.currency == source => f.amount.amount,
            _ if !q.rate.rate.is_zero() => f.amount.amount / q.rate.rate,
            _ => Decimal::ZERO,
        })
        .sum::<Decimal>()
        .round_dp(source.precision())
}
