//! Step 2: lock a quote under the rate guard, reconciling by our reference first.

use chrono::Duration;
use rust_decimal::Decimal;
use serde_json::json;

use super::checks::{self, Fault};
use super::plumbing::{describe, fees_in};
use super::*;
use crate::provider::pager::{Pager, PagingError};

impl Pipeline {
    pub(super) async fn step_quote(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
    ) -> Step {
        let caps = self.provider.capabilities();
        if let Some(reason) = super::promises::unmet(&caps, GateStep::LockQuote) {
            return self.fail(lease, run, reason).await;
        }
        // Reconcile: the last attempt may have created a quote we never heard about.
        if run.pending == Some(PendingOp::CreateQuote) {
            if let Some(done) = self.reconcile_quote(lease, run, token).await? {
                return Ok(Some(done));
            }
            if run.state != RunState::RecipientResolved {
                return Ok(None);
            }
        }
        if run.quote_ask.is_none() && self.quotes_used(run) > run.spec.max_requotes {
            let last = run
                .reason
                .clone()
                .unwrap_or_else(|| "no acceptable quote".into());
            let reason = format!(
                "gave up after {} quotes were refused (max_requotes = {}); the last: {last}",
                self.quotes_used(run),
                run.spec.max_requotes
            );
            return self.fail(lease, run, reason).await;
        }

        // The source balance must cover the amount before any quote is locked; a
        // sweep's amount is bounded by what it must leave.
        let reference_price = match self.reference_price(run, token).await? {
            Ok(p) => p,
            Err(e) => return self.wait_or_fail(lease, run, e).await,
        };
        let available = match self.available(run, token).await? {
            Ok(a) => a,
            Err(fault) => return self.fault(lease, run, fault).await,
        };
        let amount = match self.amount_to_quote(run, available) {
            Ok(a) => a,
            Err(skip) => return self.skip_sweep(lease, run, skip).await,
        };
        if let Some(reason) = short_of(&run.spec, &amount, available, reference_price) {
            return self.fail(lease, run, reason).await;
        }

        // Intent, call, outcome.
        let sealed = match self.gated(lease, run, GateStep::LockQuote).await? {
            Ok(proof) => proof,
            Err(stop) => return Ok(Some(stop)),
        };
        let ask = self.next_ask(run, amount);
        run.pending = Some(PendingOp::CreateQuote);
        run.quote_ask = Some(ask.clone());
        let intent = self.entry(
            run,
            "run.quote.intent",
            json!({ "reference": ask.reference, "attempt": run.quote_attempt, "amount": ask.amount, "available": available.to_string() }),
        );
        self.save(lease, run, vec![intent]).await?;
        let new = QuoteRequest {
            source_currency: run.spec.source_currency.clone(),
            target_currency: run.spec.target_currency.clone(),
            amount: match ask.amount {
                Amount::Source { amount } => FixedSide::Source(amount),
                Amount::Target { amount } => FixedSide::Target(amount),
            },
            reference: ask.reference.clone(),
            recipient_id: RecipientId::new(ask.recipient_id.clone()),
        };
        let created = call!(self, run, token, "POST /v1/quotes", |t| self
            .provider
            .create_quote(t, &new, &self.cover(lease, &sealed)));
        match created {
            Ok(c) => {
                let reference = reference_price.map(|(price, _)| price);
                self.check_quote(lease, run, reference, c.value, c.request_id, "locked")
                    .await
            }
            Err(e) if e.status().is_some_and(|s| s.as_u16() == 409) => {
                // Busha holds a quote with this reference already: an earlier request
                // landed after all. The intent stays, and reconciliation finds it.
                let until = self.clock.now() + self.cfg.unknown_outcome_grace;
                let note = format!("the reference is taken, will reconcile: {}", describe(&e));
                self.wait(lease, run, until, note, "run.outcome_unknown")
                    .await
            }
            Err(e) if nothing_created(&e) => {
                // Nothing was created (paced locally, a 429, withheld, a refused
                // connection): no quote was used up, and the same reference is asked
                // again next time, under the run's backoff.
                run.pending = None;
                self.wait_or_fail(lease, run, e).await
            }
            Err(e) => self.wait_or_fail(lease, run, e).await,
        }
    }

    /// After an unknown outcome: adopts the quote our reference names, if one exists
    /// and answers what we asked, or clears the intent. `Some` ends the execution.
    async fn reconcile_quote(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
    ) -> Result<Option<Executed>, Stop> {
        let Some(ask) = run.quote_ask.clone() else {
            // An intent from before asks were kept: its reference is the attempt's.
            run.quote_ask = Some(QuoteAsk {
                reference: run.id.quote_reference(run.quote_attempt),
                amount: run.spec.amount.clone(),
                recipient_id: run.recipient_id.clone().unwrap_or_default(),
            });
            return Box::pin(self.reconcile_quote(lease, run, token)).await;
        };
        let found = match self.find_quote(run, token, &ask.reference).await? {
            Ok(found) => found,
            Err(e) => return self.wait_or_fail(lease, run, e).await,
        };
        let Some(q) = found else {
            // It never landed: the same reference is asked again, uses up nothing.
            run.pending = None;
            let e = self.entry(
                run,
                "run.quote.reconciled",
                json!({ "reference": ask.reference, "found": false }),
            );
            self.save(lease, run, vec![e]).await?;
            return Ok(None);
        };
        match q.state {
            // A transfer was made from it: lock it (once it answers what we asked), and
            // the transfer step adopts that transfer.
            QuoteState::Used => self.check_quote(lease, run, None, q, None, "adopted").await,
            QuoteState::Open => {
                let reference = match self.reference_price(run, token).await? {
                    Ok(p) => p.map(|(price, _)| price),
                    Err(e) => return self.wait_or_fail(lease, run, e).await,
                };
                self.check_quote(lease, run, reference, q, None, "adopted")
                    .await
            }
            _ => {
                let why = format!("it was {} when found", q.state.as_str());
                if let Err(mismatch) = checks::quote_answers(&run.spec, &ask, &q) {
                    return self
                        .provider_fault(lease, run, "GET /v1/quotes", &mismatch)
                        .await;
                }
                self.burn_quote(lease, run, &q, why).await
            }
        }
    }

    /// Quotes this retry cycle has asked for (each reference is asked once).
    pub(super) fn quotes_used(&self, run: &Run) -> u32 {
        run.quote_attempt.saturating_sub(run.quote_attempt_base)
    }

    /// The ask of the next attempt: the current one again while its reference is
    /// unused (nothing was created with it), else a new reference.
    fn next_ask(&self, run: &mut Run, amount: Amount) -> QuoteAsk {
        let reference = match &run.quote_ask {
            Some(ask) => ask.reference.clone(),
            None => {
                run.quote_attempt += 1;
                run.id.quote_reference(run.quote_attempt)
            }
        };
        QuoteAsk {
            reference,
            amount,
            recipient_id: run.recipient_id.clone().unwrap_or_default(),
        }
    }

    /// The source balance available now (a balance Busha does not have is zero).
    pub(super) async fn available(
        &self,
        run: &Run,
        token: &mut AccessToken,
    ) -> Result<Result<Decimal, Fault>, Stop> {
        let code = run.spec.source_currency.clone();
        let got = call!(self, run, token, "GET /v1/balances/{id_or_code}", |t| self
            .provider
            .balance(t, &code));
        Ok(match got {
            Ok(c) if c.value.currency == code => Ok(c.value.available),
            Ok(c) => Err(Fault::Answer {
                endpoint: "GET /v1/balances/{id_or_code}",
                what: checks::Mismatch(vec![format!(
                    "currency: asked {code}, got {}",
                    c.value.currency
                )]),
            }),
            Err(e) if *e.kind() == ErrorKind::NotFound => Ok(Decimal::ZERO),
            Err(e) => Err(Fault::Call(e)),
        })
    }

    /// The amount to quote: the spec's, or for a sweep `min(approved, available −
    /// keep)`, or why the sweep is skipped.
    fn amount_to_quote(&self, run: &Run, available: Decimal) -> Result<Amount, String> {
        match (&run.spec.sweep, &run.spec.amount) {
            (Some(bound), Amount::Source { amount }) => bound
                .amount(*amount, available)
                .map(|amount| Amount::Source { amount }),
            _ => Ok(run.spec.amount.clone()),
        }
    }

    /// Checks a quote we hold against what we asked, then (unless a transfer was
    /// already made from it) `two_step`, freshness and the rate guard, and locks it.
    pub(super) async fn check_quote(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        reference: Option<Decimal>,
        q: Quote,
        request_id: Option<String>,
        how: &str,
    ) -> Step {
        let Some(ask) = run.quote_ask.clone() else {
            return self
                .provider_fault(
                    lease,
                    run,
                    "POST /v1/quotes",
                    &checks::Mismatch(vec!["no request on record for this quote".into()]),
                )
                .await;
        };
        if let Err(mismatch) = checks::quote_answers(&run.spec, &ask, &q) {
            return self
                .provider_fault(lease, run, "POST /v1/quotes", &mismatch)
                .await;
        }
        if q.state == QuoteState::Used {
            return self.quote_locked(lease, run, &q, request_id, how).await;
        }
        if q.needs_second_factor {
            return self.two_step(lease, run, &q, request_id).await;
        }
        let fees = fees_in(&q, &run.spec.source_currency);
        let verdict = run
            .spec
            .guard
            .check(q.rate.rate, reference, fees, &run.spec.source_currency);
        let stale = q
            .expires_at
            .is_none_or(|e| e - self.cfg.quote_margin <= self.clock.now());
        let problem = match (verdict, stale) {
            (Err(reason), _) => Some(reason),
            (Ok(()), true) => Some(format!(
                "quote {} expires at {:?}, within the safety margin",
                q.id, q.expires_at
            )),
            (Ok(()), false) => None,
        };
        match problem {
            Some(reason) => {
                let reason = format!("quote {} was refused: {reason}", q.id);
                self.burn_quote(lease, run, &q, reason).await
            }
            None => self.quote_locked(lease, run, &q, request_id, how).await,
        }
    }

    /// A quote that exists at Busha and will not be used (refused by the guard, or
    /// stale): it uses up one re-quote, and the next attempt asks with a new reference.
    pub(super) async fn burn_quote(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        q: &Quote,
        reason: String,
    ) -> Step {
        run.pending = None;
        run.quote_ask = None;
        run.reason = Some(reason.clone());
        let e = self.entry(
            run,
            "run.quote.refused",
            json!({ "quote_id": q.id, "reference": q.reference, "rate": q.rate.rate.to_string(), "reason": reason, "quotes_used": self.quotes_used(run) }),
        );
        if self.quotes_used(run) > run.spec.max_requotes {
            self.save(lease, run, vec![e]).await?;
            let reason = format!(
                "no transfer: {reason} (after {} quotes; max_requotes = {})",
                self.quotes_used(run),
                run.spec.max_requotes
            );
            return self.fail(lease, run, reason).await;
        }
        run.next_attempt_at = self.clock.now() + self.cfg.requote_delay;
        self.save(lease, run, vec![e]).await?;
        Ok(Some(Executed::Waiting(run.next_attempt_at)))
    }

    async fn two_step(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        q: &Quote,
        request_id: Option<String>,
    ) -> Step {
        run.pending = None;
        run.reason = Some(format!(
            "quote {} requires two-step verification; a person must act (`treasury runs retry` re-quotes)",
            q.id
        ));
        self.advance(run, RunState::NeedsHuman);
        let e = self.entry(
            run,
            "run.needs_human",
            json!({ "quote_id": q.id, "request_id": request_id }),
        );
        self.save(lease, run, vec![e]).await?;
        self.gate.released(run).await;
        Ok(Some(Executed::Finished(RunState::NeedsHuman)))
    }

    /// A sweep whose bounded amount fell below its minimum: nothing is quoted.
    pub(super) async fn skip_sweep(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        why: String,
    ) -> Step {
        let reason = format!("sweep skipped: {why}");
        run.pending = None;
        run.reason = Some(reason.clone());
        self.advance(run, RunState::Cancelled);
        let e = self.entry(run, "run.sweep.skipped", json!({ "reason": reason }));
        self.save(lease, run, vec![e]).await?;
        self.gate.released(run).await;
        Ok(Some(Executed::Finished(RunState::Cancelled)))
    }

    pub(super) async fn quote_locked(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        q: &Quote,
        request_id: Option<String>,
        how: &str,
    ) -> Step {
        let fees = fees_in(q, &run.spec.source_currency);
        let locked = LockedQuote {
            id: q.id.to_string(),
            reference: q.reference.clone(),
            rate: q.rate.rate,
            source_amount: q.source_amount,
            target_amount: q.target_amount,
            fees,
            expires_at: q.expires_at.unwrap_or(self.clock.now()),
        };
        let e = self.entry(
            run,
            "run.quote.locked",
            json!({
                "how": how, "quote_id": locked.id, "reference": locked.reference,
                "rate": locked.rate.to_string(), "source_amount": locked.source_amount.to_string(),
                "source_currency": run.spec.source_currency, "target_amount": locked.target_amount.to_string(),
                "target_currency": run.spec.target_currency, "fees": fees.to_string(),
                "expires_at": locked.expires_at, "request_id": request_id,
            }),
        );
        run.quote = Some(locked);
        run.pending = None;
        run.reason = None;
        self.advance(run, RunState::QuoteLocked);
        self.save(lease, run, vec![e]).await?;
        Ok(None)
    }

    /// Looks for our quote by reference among recent quotes (newest first). The list
    /// is filtered on our side; a cursor seen twice ends the search.
    pub(super) async fn find_quote(
        &self,
        run: &Run,
        token: &mut AccessToken,
        reference: &str,
    ) -> Result<Result<Option<Quote>, ProviderError>, Stop> {
        let pages = self.cfg.quote_search_pages;
        let mut pager = Pager::new("GET /v1/quotes", pages);
        loop {
            let cursor = pager.cursor();
            let got = call!(self, run, token, "GET /v1/quotes", |t| self
                .provider
                .quotes_page(t, cursor.clone()));
            let page = match got {
                Ok(c) => c.value,
                Err(e) => return Ok(Err(e)),
            };
            if let Some(q) = page.items.iter().find(|q| q.reference == reference) {
                return Ok(Ok(Some(q.clone())));
            }
            // An item we could not read may be our quote unless its reference says not:
            // then its absence cannot be concluded (the search waits and tries again).
            if let Some(s) = page
                .skipped
                .iter()
                .find(|s| s.reference.as_deref().is_none_or(|r| r == reference))
            {
                let e = ProviderError::new("GET /v1/quotes", ErrorKind::Transient)
                    .with_message(format!("a quote we cannot read may be ours: {s}"));
                return Ok(Err(e));
            }
            // Quotes older than the run cannot be ours.
            let older = page
                .items
                .last()
                .is_some_and(|q| q.created_at < run.created_at - Duration::minutes(1));
            if older {
                return Ok(Ok(None));
            }
            match pager.advance(page.next_cursor.as_deref()) {
                Ok(true) => {}
                // The end, or the bound of recent quotes searched: not ours.
                Ok(false) | Err(PagingError::TooManyPages { .. }) => return Ok(Ok(None)),
                Err(e) => return Ok(Err(e.into())),
            }
        }
    }

    /// Busha's reference price for the pair (`GET /v1/pairs`), with whether the
    /// source is the base (`sell`).
    pub(super) async fn reference_price(
        &self,
        run: &Run,
        token: &mut AccessToken,
    ) -> Result<Result<Option<(Decimal, bool)>, ProviderError>, Stop> {
        let (src, tgt) = (
            run.spec.source_currency.clone(),
            run.spec.target_currency.clone(),
        );
        if src == tgt {
            return Ok(Ok(Some((Decimal::ONE, true))));
        }
        let price = call!(self, run, token, "GET /v1/pairs", |t| self
            .provider
            .reference_price(t, &src, &tgt));
        Ok(price.map(|c| c.value.map(|p| (p.price, p.source_is_base))))
    }
}

/// Nothing was created by a quote request that failed this way.
fn nothing_created(e: &ProviderError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::RateLimited { .. } | ErrorKind::Withheld | ErrorKind::Transient
    )
}

/// Why the balance cannot cover the amount, if it cannot (the target side is
/// converted at the reference price).
fn short_of(
    spec: &PayoutSpec,
    amount: &Amount,
    available: Decimal,
    reference_price: Option<(Decimal, bool)>,
) -> Option<String> {
    let needed = match (amount, reference_price) {
        (Amount::Source { amount }, _) => *amount,
        (Amount::Target { amount }, Some((price, sell))) if !price.is_zero() => if sell {
            *amount / price
        } else {
            *amount * price
        }
        .round_dp(spec.source_currency.precision()),
        _ => return None,
    };
    (available < needed).then(|| {
        format!(
            "insufficient balance: {available} {cur} available, about {needed} {cur} needed; no quote was locked",
            cur = spec.source_currency
        )
    })
}
