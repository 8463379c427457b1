//! The seal check before every money-moving step (issue 16 §1): the run as read from
//! its row must match what its `run.created` entry sealed, and any approval the seal
//! requires must be proven by entries that carry the worker's MAC. A mismatch moves no
//! money: the run goes to `needs_human` with the reason, audited as `run.seal_broken`
//! (which raises an alert).

use serde_json::json;

use super::*;
use crate::seal::{SealBreak, SealChecked, check_run};

impl Pipeline {
    /// `Ok(Ok(proof))` when the run matches its seal; otherwise the run has been
    /// stopped (or, if the store could not be read, made to wait).
    pub(super) async fn sealed(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        step: GateStep,
    ) -> Result<Result<SealChecked, Executed>, Stop> {
        let entries = match self.store.seal_entries(&run.id).await {
            Ok(entries) => entries,
            Err(e) if e.is_transient() => {
                let until = self.clock.now() + self.backoff(run.attempts);
                let note = format!("could not read the run's seal: {e}");
                let done = self.wait(lease, run, until, note, "run.retry_scheduled").await?;
                return Ok(Err(done.unwrap_or(Executed::Waiting(until))));
            }
            Err(e) => return Err(e.into()),
        };
        match check_run(self.store.seal_keys(), run, &entries) {
            Ok(proof) => Ok(Ok(proof)),
            Err(broken) => self.seal_broken(lease, run, step, broken).await.map(Err),
        }
    }

    async fn seal_broken(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        step: GateStep,
        broken: SealBreak,
    ) -> Result<Executed, Stop> {
        let reason = format!(
            "the run does not match its seal in the audit chain: {broken}; no money was moved at {step:?}"
        );
        tracing::error!(run = %run.id, step = ?step, %broken, "seal broken: the run's row was changed outside the worker");
        // A transfer intent from an earlier attempt stays recorded: whether that call
        // landed is for the person to find out; caps stay reserved while it may have.
        if run.pending != Some(PendingOp::CreateTransfer) {
            run.pending = None;
        }
        let money_may_have_moved =
            run.pending.is_some() || run.state == RunState::TransferSubmitted;
        run.reason = Some(reason.clone());
        self.advance(run, RunState::NeedsHuman);
        let e = self.entry(
            run,
            "run.seal_broken",
            json!({ "step": format!("{step:?}"), "reason": reason }),
        );
        self.save(lease, run, vec![e]).await?;
        if !money_may_have_moved {
            self.gate.released(run).await;
        }
        Ok(Executed::Finished(RunState::NeedsHuman))
    }
}
