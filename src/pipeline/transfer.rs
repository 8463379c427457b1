//! Step 3: initiate the transfer on the locked quote, reconciling by `quote_id` first.

use serde_json::json;

use super::plumbing::describe;
use super::*;

impl Pipeline {
    pub(super) async fn step_transfer(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
    ) -> Step {
        let Some(quote) = run.quote.clone() else {
            self.advance(run, RunState::RecipientResolved);
            let e = self.entry(run, "run.quote.missing", json!({}));
            self.save(lease, run, vec![e]).await?;
            return Ok(None);
        };
        // Reconcile first, always: a transfer for our quote may already exist.
        match self.transfers_for(run, token, &quote.id).await? {
            Ok(Some(t)) => {
                return self
                    .transfer_submitted(lease, run, &t, None, "adopted")
                    .await;
            }
            Ok(None) => {}
            Err(e) => {
                // Never act on a quote we could not reconcile.
                let until = self.clock.now() + self.backoff(run.attempts);
                let note = format!("could not check for an existing transfer: {}", describe(&e));
                return self
                    .wait(lease, run, until, note, "run.retry_scheduled")
                    .await;
            }
        }
        let now = self.clock.now();
        if quote.expires_at - self.cfg.quote_margin <= now {
            return self
                .requote(
                    lease,
                    run,
                    &quote,
                    format!(
                        "quote {} expires at {}, within the safety margin; re-quoting",
                        quote.id, quote.expires_at
                    ),
                )
                .await;
        }
        if let Some(stop) = self.gated(lease, run, GateStep::Transfer).await? {
            return Ok(Some(stop));
        }
        run.pending = Some(PendingOp::CreateTransfer);
        let intent = self.entry(
            run,
            "run.transfer.intent",
            json!({ "quote_id": quote.id, "expires_at": quote.expires_at }),
        );
        self.save(lease, run, vec![intent]).await?;
        let created = call!(self, run, token, "POST /v1/transfers", |t| self
            .busha
            .create_transfer(t, &quote.id, &self.cover(lease)));
        match created {
            Ok(c) => {
                self.transfer_submitted(lease, run, &c.value, c.request_id, "created")
                    .await
            }
            Err(e) if matches!(e.kind(), ErrorKind::Rejected { .. }) => {
                // Refused: either a transfer exists already (adopt it) or the quote went
                // stale (re-quote). Anything else fails the run with Busha's reason.
                match self.transfers_for(run, token, &quote.id).await? {
                    Ok(Some(t)) => {
                        return self
                            .transfer_submitted(
                                lease,
                                run,
                                &t,
                                e.request_id().map(String::from),
                                "adopted",
                            )
                            .await;
                    }
                    Ok(None) => {}
                    Err(_) => return self.wait_or_fail(lease, run, e).await,
                }
                let q = call!(self, run, token, "GET /v1/quotes/{id}", |t| self
                    .busha
                    .get_quote(t, &quote.id));
                let stale = match &q {
                    Ok(c) => {
                        c.value.status != QuoteStatus::Pending
                            || c.value
                                .expires_at
                                .is_none_or(|x| x - self.cfg.quote_margin <= self.clock.now())
                    }
                    Err(_) => false,
                };
                if stale {
                    return self
                        .requote(
                            lease,
                            run,
                            &quote,
                            format!(
                                "Busha refused the transfer on quote {}: {}; re-quoting",
                                quote.id,
                                describe(&e)
                            ),
                        )
                        .await;
                }
                self.fail(
                    lease,
                    run,
                    format!("Busha refused the transfer: {}", describe(&e)),
                )
                .await
            }
            Err(e) => self.wait_or_fail(lease, run, e).await,
        }
    }

    pub(super) async fn requote(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        quote: &LockedQuote,
        reason: String,
    ) -> Step {
        run.pending = None;
        run.quote = None;
        run.reason = Some(reason.clone());
        self.advance(run, RunState::RecipientResolved);
        let e = self.entry(
            run,
            "run.quote.stale",
            json!({ "quote_id": quote.id, "expires_at": quote.expires_at, "reason": reason }),
        );
        self.save(lease, run, vec![e]).await?;
        Ok(None)
    }

    /// The transfer made from `quote_id`, if any. More than one means the provider
    /// paid twice: that is logged loudly and the first is followed.
    pub(super) async fn transfers_for(
        &self,
        run: &Run,
        token: &mut AccessToken,
        quote_id: &str,
    ) -> Result<Result<Option<Transfer>, ProviderError>, Stop> {
        let filter = TransferFilter {
            quote_id: Some(quote_id.to_string()),
            status: Vec::new(),
            cursor: None,
            limit: Some(10),
        };
        let got = call!(self, run, token, "GET /v1/transfers", |t| self
            .busha
            .list_transfers(t, &filter));
        Ok(got.map(|c| {
            if c.value.items.len() > 1 {
                tracing::error!(run = %run.id, quote = quote_id, count = c.value.items.len(), "more than one transfer for one quote");
            }
            c.value.items.into_iter().min_by_key(|t| t.created_at)
        }))
    }

    pub(super) async fn transfer_submitted(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        t: &Transfer,
        request_id: Option<String>,
        how: &str,
    ) -> Step {
        run.transfer_id = Some(t.id.clone());
        run.transfer_status = Some(t.status.as_str().to_string());
        run.pending = None;
        self.advance(run, RunState::TransferSubmitted);
        let e = self.entry(
            run,
            "run.transfer.submitted",
            json!({ "how": how, "transfer_id": t.id, "quote_id": t.quote_id, "status": t.status.as_str(), "request_id": request_id }),
        );
        self.save(lease, run, vec![e]).await?;
        Ok(None)
    }
}
