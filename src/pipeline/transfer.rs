//! Step 3: initiate the transfer on the locked quote, reconciling by `quote_id` first.
//! Every transfer answer is checked against the quote it must belong to, and a
//! transfer id is held by one run only, ever.

use serde_json::json;

use super::checks::{self, Fault, Mismatch};
use super::plumbing::describe;
use super::*;
use crate::provider::pager::Pager;
use crate::store::NewHeldTransfer;

/// Pages of 100 searched for our transfer when Busha ignored the `quote_id` filter.
const UNFILTERED_PAGES: u32 = 10;

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
        let caps = self.provider.capabilities();
        if let Some(reason) = super::promises::unmet(&caps, GateStep::Transfer) {
            return self.fail(lease, run, reason).await;
        }
        // Reconcile first, always: a transfer for our quote may already exist.
        match self.transfer_for(run, token, &quote).await? {
            Ok(Some(t)) => {
                return self
                    .transfer_submitted(lease, run, &t, None, "adopted")
                    .await;
            }
            Ok(None) => {}
            Err(Fault::Call(e)) => {
                // Never act on a quote we could not reconcile.
                let until = self.clock.now() + self.backoff(run.attempts);
                let note = format!("could not check for an existing transfer: {}", describe(&e));
                return self
                    .wait(lease, run, until, note, "run.retry_scheduled")
                    .await;
            }
            Err(fault) => return self.fault(lease, run, fault).await,
        }
        if quote.expires_at - self.cfg.quote_margin <= self.clock.now() {
            let reason = format!(
                "quote {} expires at {}, within the safety margin; re-quoting",
                quote.id, quote.expires_at
            );
            return self.requote(lease, run, &quote, reason).await;
        }
        if let Some(done) = self.sweep_still_fits(lease, run, token, &quote).await? {
            return Ok(done);
        }
        let sealed = match self.gated(lease, run, GateStep::Transfer).await? {
            Ok(proof) => proof,
            Err(stop) => return Ok(Some(stop)),
        };
        run.pending = Some(PendingOp::CreateTransfer);
        let intent = self.entry(
            run,
            "run.transfer.intent",
            json!({ "quote_id": quote.id, "expires_at": quote.expires_at }),
        );
        self.save(lease, run, vec![intent]).await?;
        let quote_id = QuoteId::new(quote.id.clone());
        let created = call!(self, run, token, "POST /v1/transfers", |t| self
            .provider
            .create_transfer(t, &quote_id, &self.cover(lease, &sealed)));
        match created {
            Ok(c) => {
                let recipient = run.recipient_id.clone();
                if let Err(m) =
                    checks::transfer_answers(&run.spec, &quote, recipient.as_deref(), &c.value)
                {
                    return self
                        .provider_fault(lease, run, "POST /v1/transfers", &m)
                        .await;
                }
                self.transfer_submitted(lease, run, &c.value, c.request_id, "created")
                    .await
            }
            Err(e) if matches!(e.kind(), ErrorKind::Rejected { .. }) => {
                self.transfer_refused(lease, run, token, &quote, e).await
            }
            Err(e) => self.wait_or_fail(lease, run, e).await,
        }
    }

    /// Busha refused the transfer: either one exists already (adopt it) or the quote
    /// went stale (re-quote). Anything else fails the run with Busha's reason.
    async fn transfer_refused(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
        quote: &LockedQuote,
        e: ProviderError,
    ) -> Step {
        match self.transfer_for(run, token, quote).await? {
            Ok(Some(t)) => {
                let request_id = e.request_id().map(String::from);
                return self
                    .transfer_submitted(lease, run, &t, request_id, "adopted")
                    .await;
            }
            Ok(None) => {}
            Err(Fault::Call(lookup)) => {
                // A refusal may mean a transfer exists: never give up on a quote we
                // could not reconcile; the intent stays and the next attempt looks.
                let until = self.clock.now() + self.backoff(run.attempts);
                let note = format!(
                    "Busha refused the transfer ({}) and the check for an existing one failed: {}",
                    describe(&e),
                    describe(&lookup)
                );
                return self
                    .wait(lease, run, until, note, "run.retry_scheduled")
                    .await;
            }
            Err(fault) => return self.fault(lease, run, fault).await,
        }
        let quote_id = QuoteId::new(quote.id.clone());
        let q = call!(self, run, token, "GET /v1/quotes/{id}", |t| self
            .provider
            .get_quote(t, &quote_id));
        let stale = match &q {
            Ok(c) => {
                c.value.id == quote_id
                    && (c.value.state != QuoteState::Open
                        || c.value
                            .expires_at
                            .is_none_or(|x| x - self.cfg.quote_margin <= self.clock.now()))
            }
            Err(_) => false,
        };
        if stale {
            let reason = format!(
                "Busha refused the transfer on quote {}: {}; re-quoting",
                quote.id,
                describe(&e)
            );
            return self.requote(lease, run, quote, reason).await;
        }
        let reason = format!("Busha refused the transfer: {}", describe(&e));
        self.fail(lease, run, reason).await
    }

    /// For a sweep, right before the transfer: the balance is read again and a locked
    /// quote that would leave less than `keep` is abandoned. `Some` ends the step.
    async fn sweep_still_fits(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
        quote: &LockedQuote,
    ) -> Result<Option<Option<Executed>>, Stop> {
        let Some(bound) = run.spec.sweep.clone() else {
            return Ok(None);
        };
        let Amount::Source { amount: approved } = run.spec.amount else {
            return Ok(None);
        };
        let available = match self.available(run, token).await? {
            Ok(a) => a,
            Err(fault) => return self.fault(lease, run, fault).await.map(Some),
        };
        match bound.amount(approved, available) {
            Ok(fits) if quote.source_amount <= fits => Ok(None),
            Ok(fits) => {
                let moved = format!(
                    "quote {} would move {} {cur}, but only {fits} {cur} may go now ({available} available, keep {})",
                    quote.id,
                    quote.source_amount,
                    bound.keep,
                    cur = run.spec.source_currency
                );
                if self.quotes_used(run) > run.spec.max_requotes {
                    // A busy wallet is no fault: the sweep ends skipped, and the next
                    // one weighs the balance afresh, instead of failing for a human.
                    let why = format!(
                        "the balance kept falling under the locked quote ({} quotes); the last: {moved}",
                        self.quotes_used(run)
                    );
                    return self
                        .abandon_and_skip(lease, run, quote, why)
                        .await
                        .map(Some);
                }
                let reason = format!("{moved}; re-quoting");
                self.requote(lease, run, quote, reason).await.map(Some)
            }
            Err(why) => self
                .abandon_and_skip(lease, run, quote, why)
                .await
                .map(Some),
        }
    }

    /// The locked quote will never be used, and the sweep ends skipped.
    async fn abandon_and_skip(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        quote: &LockedQuote,
        why: String,
    ) -> Step {
        let e = self.entry(
            run,
            "run.quote.abandoned",
            json!({ "quote_id": quote.id, "reason": why }),
        );
        run.quote = None;
        self.save(lease, run, vec![e]).await?;
        self.skip_sweep(lease, run, why).await
    }

    /// The quote will not be used: it is abandoned, uses up one re-quote, and the run
    /// quotes again with a new reference.
    pub(super) async fn requote(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        quote: &LockedQuote,
        reason: String,
    ) -> Step {
        run.pending = None;
        run.quote = None;
        run.quote_ask = None;
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

    /// The transfer made from `quote`, if any. Busha's filter is applied again here:
    /// a transfer for another quote is never taken for ours, and when the server
    /// ignored the filter, absence is proven only by reading the whole list. One that
    /// names our quote but not its amounts is a provider fault. More than one means
    /// the provider paid twice: that is logged loudly and the first is followed.
    pub(super) async fn transfer_for(
        &self,
        run: &Run,
        token: &mut AccessToken,
        quote: &LockedQuote,
    ) -> Result<Result<Option<Transfer>, Fault>, Stop> {
        let quote_id = QuoteId::new(quote.id.clone());
        let mut ours: Vec<Transfer> = Vec::new();
        let mut pager = Pager::new("GET /v1/transfers", UNFILTERED_PAGES);
        loop {
            let cursor = pager.cursor();
            let got = call!(self, run, token, "GET /v1/transfers", |t| self
                .provider
                .transfers_page(t, &quote_id, cursor.clone()));
            let page = match got {
                Ok(c) => c.value,
                Err(e) => return Ok(Err(Fault::Call(e))),
            };
            // An item we could not read may be our transfer unless its quote id says not.
            if let Some(s) = page
                .skipped
                .iter()
                .find(|s| s.quote_id.as_deref().is_none_or(|q| q == quote.id))
            {
                return Ok(Err(unproven(&format!(
                    "held an unreadable item that may be ours ({s})"
                ))));
            }
            let foreign = page.items.iter().filter(|t| t.quote_id != quote_id).count();
            ours.extend(page.items.into_iter().filter(|t| t.quote_id == quote_id));
            if foreign == 0 || !ours.is_empty() {
                return Ok(self.one_transfer(run, quote, ours));
            }
            tracing::warn!(run = %run.id, quote = %quote.id, foreign, "GET /v1/transfers ignored its quote_id filter; searching the whole list");
            match pager.advance(page.next_cursor.as_deref()) {
                Ok(true) => {}
                Ok(false) => return Ok(Ok(None)),
                Err(e) => return Ok(Err(unproven(&format!("could not be read to its end: {e}")))),
            }
        }
    }

    fn one_transfer(
        &self,
        run: &Run,
        quote: &LockedQuote,
        mut ours: Vec<Transfer>,
    ) -> Result<Option<Transfer>, Fault> {
        if ours.len() > 1 {
            tracing::error!(run = %run.id, quote = %quote.id, count = ours.len(), "more than one transfer for one quote");
        }
        ours.sort_by_key(|t| t.created_at);
        let Some(first) = ours.into_iter().next() else {
            return Ok(None);
        };
        let recipient = run.recipient_id.as_deref();
        checks::transfer_answers(&run.spec, quote, recipient, &first).map_err(|what| {
            Fault::Answer {
                endpoint: "GET /v1/transfers",
                what,
            }
        })?;
        Ok(Some(first))
    }

    /// Records `t` as the run's transfer, unless another run holds it already: then
    /// it is a provider fault and nothing of it is recorded.
    pub(super) async fn transfer_submitted(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        t: &Transfer,
        request_id: Option<String>,
        how: &str,
    ) -> Step {
        let before = run.clone();
        run.transfer_id = Some(t.id.to_string());
        run.transfer_status = Some(t.status.clone());
        run.pending = None;
        self.advance(run, RunState::TransferSubmitted);
        let e = self.entry(
            run,
            "run.transfer.submitted",
            json!({ "how": how, "transfer_id": t.id, "quote_id": t.quote_id, "status": t.status.as_str(), "request_id": request_id }),
        );
        let held = NewHeldTransfer {
            transfer_id: t.id.to_string(),
            quote_id: t.quote_id.to_string(),
            how: how.to_string(),
        };
        match self.save_holding(lease, run, held, vec![e]).await? {
            Ok(()) => Ok(None),
            Err(holder) => {
                *run = before;
                let what = Mismatch(vec![format!(
                    "transfer {} is already held by run {holder}",
                    t.id
                )]);
                self.provider_fault(lease, run, "GET /v1/transfers", &what)
                    .await
            }
        }
    }
}

/// Absence of our transfer could not be proven from an unfiltered list.
fn unproven(why: &str) -> Fault {
    Fault::Answer {
        endpoint: "GET /v1/transfers",
        what: Mismatch(vec![format!(
            "the list {why}: whether a transfer exists for the quote cannot be proven"
        )]),
    }
}
