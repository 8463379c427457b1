//! Step 4: follow the transfer to a final status.

use serde_json::json;

use super::plumbing::describe;
use super::*;

impl Pipeline {
    pub(super) async fn step_track(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
    ) -> Step {
        let Some(id) = run.transfer_id.clone().map(TransferId::new) else {
            self.advance(run, RunState::QuoteLocked);
            let e = self.entry(run, "run.transfer.missing", json!({}));
            self.save(lease, run, vec![e]).await?;
            return Ok(None);
        };
        let got = call!(self, run, token, "GET /v1/transfers/{id}", |t| self
            .provider
            .get_transfer(t, &id));
        let c = match got {
            Ok(c) => c,
            Err(e) => {
                // The transfer exists; a read error never fails the run.
                let until = self.clock.now() + self.track_backoff(run.attempts);
                return self
                    .wait(
                        lease,
                        run,
                        until,
                        format!("tracking {id}: {}", describe(&e)),
                        "run.track.retry",
                    )
                    .await;
            }
        };
        let status = c.value.status.clone();
        let changed = run.transfer_status.as_ref() != Some(&status);
        run.transfer_status = Some(status.clone());
        match c.value.settlement {
            Settlement::Succeeded => {
                self.advance(run, RunState::Settled);
                run.reason = None;
                let e = self.entry(
                    run,
                    "run.settled",
                    json!({ "transfer_id": id, "status": status, "request_id": c.request_id }),
                );
                self.save(lease, run, vec![e]).await?;
                Ok(Some(Executed::Finished(RunState::Settled)))
            }
            Settlement::Failed => {
                self.advance(run, RunState::Failed);
                run.reason = Some(format!("transfer {id} ended {status}"));
                let e = self.entry(run, "run.failed", json!({ "transfer_id": id, "status": status, "reason": run.reason, "request_id": c.request_id }));
                self.save(lease, run, vec![e]).await?;
                self.gate.released(run).await;
                Ok(Some(Executed::Finished(RunState::Failed)))
            }
            Settlement::InFlight => {
                let until = self.clock.now() + self.track_backoff(run.attempts);
                run.attempts += 1;
                run.next_attempt_at = until;
                let audit = if changed {
                    vec![self.entry(
                        run,
                        "run.transfer.status",
                        json!({ "transfer_id": id, "status": status, "request_id": c.request_id }),
                    )]
                } else {
                    Vec::new()
                };
                self.save(lease, run, audit).await?;
                Ok(Some(Executed::Waiting(until)))
            }
        }
    }
}
