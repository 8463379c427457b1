//! Step 2: lock a quote under the rate guard, reconciling by our reference first.

use chrono::Duration;
use rust_decimal::Decimal;
use serde_json::json;

use super::plumbing::fees_in;
use super::*;

impl Pipeline {
    pub(super) async fn step_quote(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
    ) -> Step {
        let spec = run.spec.clone();
        // Reconcile: the last attempt may have created a quote we never heard about.
        if run.pending == Some(PendingOp::CreateQuote) {
            let reference = run.id.quote_reference(run.quote_attempt);
            match self.find_quote(run, token, &reference).await? {
                Ok(Some(q)) => {
                    let fresh = q
                        .expires_at
                        .is_some_and(|e| e - self.cfg.quote_margin > self.clock.now());
                    match q.status {
                        // A transfer was made from it: the transfer step adopts it.
                        QuoteStatus::Accepted => {
                            return self.quote_locked(lease, run, &q, None, "adopted").await;
                        }
                        QuoteStatus::Pending if fresh => {
                            let reference = match self.reference_price(run, token).await? {
                                Ok(p) => p.map(|(price, _)| price),
                                Err(e) => return self.wait_or_fail(lease, run, e).await,
                            };
                            return self
                                .check_quote(lease, run, reference, q, None, "adopted")
                                .await;
                        }
                        _ => {
                            run.pending = None;
                            let e = self.entry(run, "run.quote.abandoned", json!({ "quote_id": q.id, "reference": reference, "status": q.status.as_str() }));
                            self.save(lease, run, vec![e]).await?;
                        }
                    }
                }
                Ok(None) => {
                    run.pending = None;
                    let e = self.entry(
                        run,
                        "run.quote.reconciled",
                        json!({ "reference": reference, "found": false }),
                    );
                    self.save(lease, run, vec![e]).await?;
                }
                Err(e) => return self.wait_or_fail(lease, run, e).await,
            }
        }

        if run.quote_attempt - run.quote_attempt_base.min(run.quote_attempt) > spec.max_requotes {
            let last = run
                .reason
                .clone()
                .unwrap_or_else(|| "no acceptable quote".into());
            let reason = format!("gave up after {} quote attempts: {last}", run.quote_attempt);
            return self.fail(lease, run, reason).await;
        }

        // The source balance must cover the amount before any quote is locked.
        let reference_price = match self.reference_price(run, token).await? {
            Ok(p) => p,
            Err(e) => return self.wait_or_fail(lease, run, e).await,
        };
        let balance = call!(self, run, token, "GET /v1/balances/{id_or_code}", |t| self
            .busha
            .get_balance(t, spec.source_currency.as_str()));
        let available = match balance {
            Ok(c) => c.value.available.amount,
            Err(e) if *e.kind() == ErrorKind::NotFound => Decimal::ZERO,
            Err(e) => return self.wait_or_fail(lease, run, e).await,
        };
        let needed = match (&spec.amount, reference_price) {
            (Amount::Source { amount }, _) => Some(*amount),
            (Amount::Target { amount }, Some((price, sell))) if !price.is_zero() => Some(
                if sell {
                    *amount / price
                } else {
                    *amount * price
                }
                .round_dp(spec.source_currency.precision()),
            ),
            _ => None,
        };
        if let Some(needed) = needed {
            if available < needed {
                let reason = format!(
                    "insufficient balance: {available} {} available, about {needed} {} needed; no quote was locked",
                    spec.source_currency, spec.source_currency
                );
                return self.fail(lease, run, reason).await;
            }
        }

        // Intent, call, outcome.
        if let Some(stop) = self.gated(lease, run, GateStep::LockQuote).await? {
            return Ok(Some(stop));
        }
        run.quote_attempt += 1;
        run.pending = Some(PendingOp::CreateQuote);
        let reference = run.id.quote_reference(run.quote_attempt);
        let intent = self.entry(
            run,
            "run.quote.intent",
            json!({ "reference": reference, "attempt": run.quote_attempt, "amount": spec.amount, "available": available.to_string() }),
        );
        self.save(lease, run, vec![intent]).await?;
        let recipient_id = run.recipient_id.clone().unwrap_or_default();
        let new = NewQuote {
            source_currency: spec.source_currency.clone(),
            target_currency: spec.target_currency.clone(),
            amount: match spec.amount {
                Amount::Source { amount } => QuoteAmount::Source(amount),
                Amount::Target { amount } => QuoteAmount::Target(amount),
            },
            reference: Some(reference),
            pay_out: Some(PayOut::BankTransfer { recipient_id }),
        };
        let created = call!(self, run, token, "POST /v1/quotes", |t| self
            .busha
            .create_quote(t, &new, &self.cover(lease)));
        match created {
            Ok(c) => {
                let reference = reference_price.map(|(price, _)| price);
                self.check_quote(lease, run, reference, c.value, c.request_id, "locked")
                    .await
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::RateLimited { .. } | ErrorKind::Withheld
                ) =>
            {
                // Nothing was created: our pacer never sent it, or Busha refused it
                // with a 429. That attempt did not happen, so it uses up no re-quote
                // (a large batch at Busha's limits would otherwise fail for pacing)
                // and its reference is used again next time.
                run.quote_attempt -= 1;
                run.pending = None;
                self.wait_or_fail(lease, run, e).await
            }
            Err(e) => self.wait_or_fail(lease, run, e).await,
        }
    }

    /// Applies `two_step`, freshness and the rate guard to a quote we hold.
    pub(super) async fn check_quote(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        reference: Option<Decimal>,
        q: Quote,
        request_id: Option<String>,
        how: &str,
    ) -> Step {
        let now = self.clock.now();
        if q.two_step.is_some() {
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
            return Ok(Some(Executed::Finished(RunState::NeedsHuman)));
        }
        let fees = fees_in(&q, &run.spec.source_currency);
        let verdict = run
            .spec
            .guard
            .check(q.rate.rate, reference, fees, &run.spec.source_currency);
        let stale = q
            .expires_at
            .is_none_or(|e| e - self.cfg.quote_margin <= now);
        let problem = match (verdict, stale) {
            (Err(reason), _) => Some(reason),
            (Ok(()), true) => Some(format!(
                "quote {} expires at {:?}, within the safety margin",
                q.id, q.expires_at
            )),
            (Ok(()), false) => None,
        };
        if let Some(reason) = problem {
            run.pending = None;
            run.reason = Some(reason.clone());
            let e = self.entry(
                run,
                "run.quote.refused",
                json!({ "quote_id": q.id, "rate": q.rate.rate.to_string(), "fees": fees.to_string(), "reference_price": reference.map(|r| r.to_string()), "reason": reason, "request_id": request_id }),
            );
            if run.quote_attempt - run.quote_attempt_base.min(run.quote_attempt)
                > run.spec.max_requotes
            {
                self.save(lease, run, vec![e]).await?;
                let reason = format!(
                    "no transfer: {reason} (after {} quote attempts)",
                    run.quote_attempt
                );
                return self.fail(lease, run, reason).await;
            }
            run.next_attempt_at = now + self.cfg.requote_delay;
            self.save(lease, run, vec![e]).await?;
            return Ok(Some(Executed::Waiting(run.next_attempt_at)));
        }
        self.quote_locked(lease, run, &q, request_id, how).await
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
            id: q.id.clone(),
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

    /// Looks for our quote by reference among recent quotes (newest first).
    pub(super) async fn find_quote(
        &self,
        run: &Run,
        token: &mut AccessToken,
        reference: &str,
    ) -> Result<Result<Option<Quote>, ProviderError>, Stop> {
        let mut cursor = None;
        for _ in 0..self.cfg.quote_search_pages {
            let page = PageRequest {
                cursor: cursor.clone(),
                limit: Some(100),
                sort: Some(SortOrder::Desc),
            };
            let got = call!(self, run, token, "GET /v1/quotes", |t| self
                .busha
                .list_quotes(t, &page));
            let page = match got {
                Ok(c) => c.value,
                Err(e) => return Ok(Err(e)),
            };
            if let Some(q) = page.items.iter().find(|q| q.reference == reference) {
                return Ok(Ok(Some(q.clone())));
            }
            // Quotes older than the run cannot be ours.
            let older = page
                .items
                .last()
                .is_some_and(|q| q.created_at < run.created_at - Duration::minutes(1));
            match page.next_cursor {
                Some(next) if !older => cursor = Some(next),
                _ => break,
            }
        }
        Ok(Ok(None))
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
        let pairs = call!(self, run, token, "GET /v1/pairs", |t| self
            .busha
            .list_pairs(Some(t), None, None));
        let pairs = match pairs {
            Ok(c) => c.value,
            Err(e) => return Ok(Err(e)),
        };
        let found = pairs.iter().find_map(|p| {
            if p.base == src && p.counter == tgt {
                Some((p.sell_price.amount, true))
            } else if p.base == tgt && p.counter == src {
                Some((p.buy_price.amount, false))
            } else {
                None
            }
        });
        Ok(Ok(found))
    }
}
