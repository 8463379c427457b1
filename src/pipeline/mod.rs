//! Executing a run: resolve the recipient, lock a quote, initiate the transfer and
//! follow it to a final status, exactly once (invariants 3, 4 and 5).
//!
//! `execute(run_id)` is idempotent and resumable. It takes the run's fenced lease (a
//! second executor returns [`Executed::Busy`]), and then, from whatever state the run is
//! in, reconciles with Busha before acting:
//! - a recipient is looked for by account number before one is created;
//! - a quote is looked for by our `reference` before another is locked;
//! - a transfer is looked for by `quote_id` before one is initiated.
//!
//! Every money-moving call persists its intent first and its outcome after, each in one
//! transaction with its audit entry. An executor that lost its lease writes nothing.
//! Waiting (rate limits, backoff, tracking) is a `next_attempt_at` in the store, never a
//! sleep: the dispatcher sends the run out again when it is due.

mod gate;
mod tokens;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};

pub use gate::{Gate, GateStep, Hold, OpenGate};
pub use tokens::{StaticTokens, TokenError, TokenSource};

use crate::audit::NewAuditEntry;
use crate::clock::Clock;
use crate::money::Currency;
use crate::provider::AccessToken;
use crate::provider::busha::{
    AccountNumber, BushaClient, Channel, ErrorKind, NewQuote, NewRecipient, PageRequest, PayOut,
    ProviderError, Quote, QuoteAmount, QuoteStatus, RecipientFilter, RecipientType,
    ResolveBankAccount, Settlement, SortOrder, Transfer, TransferFilter,
};
use crate::runs::{
    Amount, LockedQuote, PendingOp, RecipientSpec, Run, RunId, RunState, mask_account, names_match,
};
use crate::store::{RunLease, Store, StoreError};

/// One provider call, with crash points around it and one forced token refresh on a
/// 401 (a 401 means Busha applied nothing, so the retry is safe). A macro rather than
/// a generic function so that the futures stay `Send` for the worker's spawned tasks.
macro_rules! call {
    ($self:ident, $run:expr, $token:expr, $what:literal, |$t:ident| $body:expr) => {{
        $self.point(concat!("before ", $what))?;
        let mut result = {
            let $t: &AccessToken = &*$token;
            $body.await
        };
        if matches!(&result, Err(e) if *e.kind() == ErrorKind::Unauthorized) {
            if let Ok(fresh) = $self.tokens.token_rejected(&$run.spec.grant, &*$token).await {
                *$token = fresh;
                let $t: &AccessToken = &*$token;
                result = $body.await;
            }
        }
        $self.point(concat!("after ", $what))?;
        result
    }};
}

/// Knobs of the executor.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Names this worker in leases and audit entries.
    pub worker_id: String,
    /// How long a lease lasts; every save extends it. It must outlive the slowest
    /// provider call (the client's timeout), so that a lapsed lease means a dead holder.
    pub lease: Duration,
    /// Never submit a transfer on a quote with less than this left before `expires_at`.
    pub quote_margin: Duration,
    /// Backoff after transient errors, doubling from `retry_base` up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Pause before re-quoting after a quote fell outside the guard.
    pub requote_delay: Duration,
    /// After an unknown outcome (a timeout, a lost response), wait at least this long
    /// before reconciling, so that a request Busha is still processing lands first.
    pub unknown_outcome_grace: Duration,
    /// Polling of a submitted transfer, doubling from `track_base` up to `track_max`.
    pub track_base: Duration,
    pub track_max: Duration,
    /// How many pages of recent quotes (100 each) to search for our reference.
    pub quote_search_pages: u32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            worker_id: format!("worker-{}", std::process::id()),
            lease: Duration::seconds(120),
            quote_margin: Duration::seconds(60),
            retry_base: Duration::seconds(1),
            retry_max: Duration::minutes(5),
            requote_delay: Duration::seconds(5),
            unknown_outcome_grace: Duration::seconds(15),
            track_base: Duration::seconds(2),
            track_max: Duration::seconds(60),
            quote_search_pages: 5,
        }
    }
}

/// Where an execution left the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Executed {
    /// The run reached a final state.
    Finished(RunState),
    /// The run waits until this time (backoff, rate limit, transfer in flight).
    Waiting(DateTime<Utc>),
    /// The run waits for an operator's approval.
    AwaitingApproval,
    /// Another executor holds the run's lease (or the run is final or unknown).
    Busy,
    /// The lease was lost mid-way (it lapsed and another executor took it); this
    /// executor wrote nothing after that.
    LeaseLost,
}

/// Why an execution stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An injected crash (tests only): the execution was abandoned at this point,
    /// lease and all, as a killed process would leave it.
    #[error("crashed at {0}")]
    Crashed(String),
}

/// Crash injection for tests: the pipeline asks at every step boundary (before and
/// after each provider call and each store write) whether to abandon the execution.
pub trait CrashPoints: Send + Sync {
    fn crash_here(&self, point: &str) -> bool;
}

/// An internal stop: unwinds `drive` without writing.
enum Stop {
    LeaseLost,
    Crash(String),
    Store(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LeaseLost(_) => Stop::LeaseLost,
            other => Stop::Store(other),
        }
    }
}

/// `None`: progress was made, go on. `Some`: the execution ends here.
type Step = Result<Option<Executed>, Stop>;

/// The executor. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    store: Store,
    busha: BushaClient,
    tokens: Arc<dyn TokenSource>,
    clock: Clock,
    cfg: PipelineConfig,
    crash: Option<Arc<dyn CrashPoints>>,
    gate: Arc<dyn Gate>,
}

impl Pipeline {
    /// The lease is raised, if need be, to twice the client's longest call (pacing bound
    /// plus timeout): a lease that lapsed mid-call would let a second executor act
    /// while the first one's request is still on its way.
    pub fn new(
        store: Store,
        busha: BushaClient,
        tokens: Arc<dyn TokenSource>,
        clock: Clock,
        mut cfg: PipelineConfig,
    ) -> Self {
        match busha
            .longest_call()
            .map(|d| Duration::from_std(d).unwrap_or(Duration::MAX))
        {
            Some(longest) => cfg.lease = cfg.lease.max(longest * 2),
            None => tracing::error!(
                "the Busha client's pacing is unbounded: a paced call can outlive the run's lease; set max_pacing_wait"
            ),
        }
        Self {
            store,
            busha,
            tokens,
            clock,
            cfg,
            crash: None,
            gate: Arc::new(OpenGate),
        }
    }

    /// Installs the guards checked before every money-moving step.
    pub fn with_gate(mut self, gate: Arc<dyn Gate>) -> Self {
        self.gate = gate;
        self
    }

    /// Installs crash injection (tests).
    pub fn with_crash_points(mut self, crash: Arc<dyn CrashPoints>) -> Self {
        self.crash = Some(crash);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    /// Executes what is due of `run_id` under its lease, and records the outcome.
    pub async fn execute(&self, run_id: &RunId) -> Result<Executed, PipelineError> {
        let owner = format!("{}/{}", self.cfg.worker_id, nanoid::nanoid!(8));
        let now = self.clock.now();
        let Some((mut lease, mut run)) = self
            .store
            .acquire_run(run_id, &owner, now, self.cfg.lease)
            .await?
        else {
            // Not leasable: finished (then say so), or another executor holds it.
            return Ok(match self.store.get_run(run_id).await? {
                Some(run) if run.state.is_final() => Executed::Finished(run.state),
                _ => Executed::Busy,
            });
        };
        let outcome = self.drive(&mut lease, &mut run).await;
        match outcome {
            Ok(done) => {
                self.store.release_run(&lease).await?;
                Ok(done)
            }
            Err(Stop::LeaseLost) => {
                tracing::warn!(run = %run_id, "lease lost mid-execution; another executor owns the run");
                Ok(Executed::LeaseLost)
            }
            // A crash leaves the lease as a dead process would: held until it lapses.
            Err(Stop::Crash(point)) => Err(PipelineError::Crashed(point)),
            Err(Stop::Store(e)) => {
                // Best effort: a store that just failed may fail again; the lease then lapses.
                let _ = self.store.release_run(&lease).await;
                Err(PipelineError::Store(e))
            }
        }
    }

    async fn drive(&self, lease: &mut RunLease, run: &mut Run) -> Result<Executed, Stop> {
        loop {
            if run.state.is_final() {
                return Ok(Executed::Finished(run.state));
            }
            if run.state == RunState::AwaitingApproval {
                return Ok(Executed::AwaitingApproval);
            }
            let now = self.clock.now();
            if run.next_attempt_at > now {
                return Ok(Executed::Waiting(run.next_attempt_at));
            }
            let mut token = match self.tokens.access_token(&run.spec.grant).await {
                Ok(t) => t,
                Err(e) => {
                    let until = now + self.backoff(run.attempts);
                    let note = format!("waiting for grant {}: {e}", run.spec.grant);
                    return self
                        .wait(lease, run, until, note, "run.grant_unavailable")
                        .await
                        .map(|w| w.unwrap_or(Executed::Waiting(until)));
                }
            };
            let step = match run.state {
                RunState::Created => self.step_recipient(lease, run, &mut token).await?,
                RunState::RecipientResolved => self.step_quote(lease, run, &mut token).await?,
                RunState::QuoteLocked => self.step_transfer(lease, run, &mut token).await?,
                RunState::TransferSubmitted => self.step_track(lease, run, &mut token).await?,
                _ => unreachable!("final and approval states return above"),
            };
            if let Some(done) = step {
                return Ok(done);
            }
        }
    }

    // ------------------------------------------------------------------ recipient

    async fn step_recipient(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
    ) -> Step {
        let target = run.spec.target_currency.clone();
        let (bank_code, account_number, expected_name) = match run.spec.recipient.clone() {
            RecipientSpec::Id { id } => {
                return self.use_given_recipient(lease, run, token, &id).await;
            }
            RecipientSpec::Bank {
                bank_code,
                account_number,
                expected_name,
            } => (bank_code, account_number, expected_name),
        };
        let masked = mask_account(&account_number);
        let grant = run.spec.grant.clone();

        // 1. A recipient an earlier run of ours resolved for this account.
        if let Some(id) = self
            .store
            .known_recipient(&grant, &bank_code, &account_number)
            .await?
        {
            let got = call!(self, run, token, "GET /v1/recipients/{id}", |t| self
                .busha
                .get_recipient(t, &id));
            match got {
                Ok(c) if c.value.active => {
                    return self
                        .recipient_resolved(lease, run, &id, "known", c.request_id)
                        .await;
                }
                Ok(_) | Err(_) => {} // gone or inactive: look again below
            }
        }

        // 2. Search saved recipients by account number. This also reconciles a create
        //    whose outcome we never heard.
        let filter = RecipientFilter {
            currency: Some(target.clone()),
            account_number: Some(AccountNumber::new(account_number.clone())),
            kind: None,
            cursor: None,
            limit: Some(100),
        };
        let found = call!(self, run, token, "GET /v1/recipients", |t| self
            .busha
            .list_recipients(t, &filter));
        let found = match found {
            Ok(c) => c,
            Err(e) => return self.wait_or_fail(lease, run, e).await,
        };
        if let Some(r) = found.value.items.iter().find(|r| {
            r.active
                && r.account_number
                    .as_ref()
                    .is_some_and(|a| a.as_str() == account_number)
                && r.bank_code.as_deref().is_none_or(|b| b == bank_code)
        }) {
            let id = r.id.clone();
            self.store
                .remember_recipient(&grant, &bank_code, &account_number, &id, self.clock.now())
                .await?;
            let how = if run.pending == Some(PendingOp::CreateRecipient) {
                "adopted"
            } else {
                "found"
            };
            return self
                .recipient_resolved(lease, run, &id, how, found.request_id)
                .await;
        }

        // 3. Name enquiry: the account must carry the expected name.
        let enquiry = ResolveBankAccount {
            currency: target.clone(),
            country: country_of(&target),
            channel: Channel::BankTransfer,
            bank_code: Some(bank_code.clone()),
            account_number: AccountNumber::new(account_number.clone()),
        };
        let resolved = call!(
            self,
            run,
            token,
            "POST /v1/recipients/resolve-bank-account",
            |t| self.busha.resolve_bank_account(t, &enquiry)
        );
        let resolved = match resolved {
            Ok(c) => c,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Rejected { .. } | ErrorKind::NotFound | ErrorKind::Validation { .. }
                ) =>
            {
                let reason = format!(
                    "name enquiry for account {masked} at bank {bank_code} failed: {}",
                    describe(&e)
                );
                return self.fail(lease, run, reason).await;
            }
            Err(e) => return self.wait_or_fail(lease, run, e).await,
        };
        if !names_match(&expected_name, &resolved.value.account_name) {
            let reason = format!(
                "name enquiry mismatch: account {masked} at bank {bank_code} belongs to {:?}, the job expects {:?}; no recipient was created",
                resolved.value.account_name, expected_name
            );
            return self.fail(lease, run, reason).await;
        }

        // 4. Create it: intent, call, outcome.
        if let Some(stop) = self.gated(lease, run, GateStep::CreateRecipient).await? {
            return Ok(Some(stop));
        }
        run.pending = Some(PendingOp::CreateRecipient);
        let intent = self.entry(run, "run.recipient.intent", json!({ "bank_code": bank_code, "account": masked, "name": resolved.value.account_name }));
        self.save(lease, run, vec![intent]).await?;
        let new = NewRecipient {
            kind: RecipientType::from(
                format!("{}_bank", target.as_str().to_ascii_lowercase()).as_str(),
            ),
            currency: Some(target.clone()),
            country_code: Some(country_of(&target)),
            bank_name: resolved.value.bank_name.clone(),
            bank_code: Some(bank_code.clone()),
            account_number: Some(AccountNumber::new(account_number.clone())),
            account_name: Some(resolved.value.account_name.clone()),
            entity_type: None,
            phone_number: None,
            network: None,
            address: None,
            memo: None,
        };
        let created = call!(self, run, token, "POST /v1/recipients", |t| self
            .busha
            .create_recipient(t, &new));
        match created {
            Ok(c) => {
                self.store
                    .remember_recipient(
                        &grant,
                        &bank_code,
                        &account_number,
                        &c.value.id,
                        self.clock.now(),
                    )
                    .await?;
                self.recipient_resolved(lease, run, &c.value.id.clone(), "created", c.request_id)
                    .await
            }
            Err(e) => self.wait_or_fail(lease, run, e).await,
        }
    }

    async fn use_given_recipient(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
        id: &str,
    ) -> Step {
        let got = call!(self, run, token, "GET /v1/recipients/{id}", |t| self
            .busha
            .get_recipient(t, id));
        match got {
            Ok(c) => {
                let r = &c.value;
                if !r.active {
                    return self
                        .fail(lease, run, format!("recipient {id} is not active"))
                        .await;
                }
                if let Some(cur) = &r.currency {
                    if cur != &run.spec.target_currency {
                        let reason = format!(
                            "recipient {id} receives {cur}, the job pays {}",
                            run.spec.target_currency
                        );
                        return self.fail(lease, run, reason).await;
                    }
                }
                self.recipient_resolved(lease, run, id, "given", c.request_id)
                    .await
            }
            Err(e) if *e.kind() == ErrorKind::NotFound => {
                self.fail(lease, run, format!("recipient {id} does not exist"))
                    .await
            }
            Err(e) => self.wait_or_fail(lease, run, e).await,
        }
    }

    async fn recipient_resolved(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        id: &str,
        how: &str,
        request_id: Option<String>,
    ) -> Step {
        run.recipient_id = Some(id.to_string());
        run.pending = None;
        self.advance(run, RunState::RecipientResolved);
        let e = self.entry(
            run,
            "run.recipient.resolved",
            json!({ "recipient_id": id, "how": how, "request_id": request_id }),
        );
        self.save(lease, run, vec![e]).await?;
        Ok(None)
    }

    // ------------------------------------------------------------------ quote

    async fn step_quote(
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
            .create_quote(t, &new));
        match created {
            Ok(c) => {
                let reference = reference_price.map(|(price, _)| price);
                self.check_quote(lease, run, reference, c.value, c.request_id, "locked")
                    .await
            }
            Err(e) if matches!(e.kind(), ErrorKind::RateLimited { .. }) => {
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
    async fn check_quote(
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

    async fn quote_locked(
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
    async fn find_quote(
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
    async fn reference_price(
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

    // ------------------------------------------------------------------ transfer

    async fn step_transfer(
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
            .create_transfer(t, &quote.id));
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

    async fn requote(
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
    async fn transfers_for(
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

    async fn transfer_submitted(
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

    // ------------------------------------------------------------------ tracking

    async fn step_track(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        token: &mut AccessToken,
    ) -> Step {
        let Some(id) = run.transfer_id.clone() else {
            self.advance(run, RunState::QuoteLocked);
            let e = self.entry(run, "run.transfer.missing", json!({}));
            self.save(lease, run, vec![e]).await?;
            return Ok(None);
        };
        let got = call!(self, run, token, "GET /v1/transfers/{id}", |t| self
            .busha
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
        let status = c.value.status.as_str().to_string();
        let changed = run.transfer_status.as_deref() != Some(status.as_str());
        run.transfer_status = Some(status.clone());
        match c.value.settlement() {
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

    // ------------------------------------------------------------------ plumbing

    /// Persists the run and its audit entries under the lease, with crash points.
    async fn save(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        audit: Vec<NewAuditEntry>,
    ) -> Result<(), Stop> {
        self.point("before save")?;
        let now = self.clock.now();
        run.updated_at = now;
        self.store
            .save_run(lease, run, audit, now, self.cfg.lease)
            .await?;
        self.point("after save")?;
        Ok(())
    }

    fn point(&self, point: &str) -> Result<(), Stop> {
        match &self.crash {
            Some(c) if c.crash_here(point) => Err(Stop::Crash(point.to_string())),
            _ => Ok(()),
        }
    }

    fn advance(&self, run: &mut Run, to: RunState) {
        run.state = to;
        run.attempts = 0;
    }

    fn entry(&self, run: &Run, action: &str, payload: Value) -> NewAuditEntry {
        NewAuditEntry::new(format!("worker:{}", self.cfg.worker_id), action, payload)
            .run(run.id.as_str())
            .job(&run.job_id)
            .grant(&run.spec.grant)
    }

    /// Asks the gate whether a money-moving step may start now. A hold makes the run
    /// wait (and be re-checked); a refusal fails it with the reason.
    async fn gated(
        &self,
        lease: &mut RunLease,
        run: &mut Run,
        step: GateStep,
    ) -> Result<Option<Executed>, Stop> {
        match self.gate.check(run, step).await {
            Ok(()) => Ok(None),
            Err(Hold::Wait { reason, until }) => {
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
            Err(Hold::Refuse { reason }) => self.fail(lease, run, reason).await,
            Err(Hold::Unavailable { reason }) => {
                let until = self.clock.now() + self.backoff(run.attempts);
                self.wait(lease, run, until, reason, "run.retry_scheduled")
                    .await
            }
        }
    }

    async fn fail(&self, lease: &mut RunLease, run: &mut Run, reason: String) -> Step {
        run.pending = None;
        run.reason = Some(reason.clone());
        self.advance(run, RunState::Failed);
        let e = self.entry(run, "run.failed", json!({ "reason": reason }));
        self.save(lease, run, vec![e]).await?;
        self.gate.released(run).await;
        Ok(Some(Executed::Finished(RunState::Failed)))
    }

    async fn wait(
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

    /// The one place provider errors become decisions of the run's state machine.
    async fn wait_or_fail(&self, lease: &mut RunLease, run: &mut Run, e: ProviderError) -> Step {
        let now = self.clock.now();
        let what = describe(&e);
        match e.kind() {
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

    fn backoff(&self, attempts: u32) -> Duration {
        doubling(self.cfg.retry_base, self.cfg.retry_max, attempts)
    }

    fn track_backoff(&self, attempts: u32) -> Duration {
        doubling(self.cfg.track_base, self.cfg.track_max, attempts)
    }
}

fn doubling(base: Duration, max: Duration, attempts: u32) -> Duration {
    let factor = 1i32 << attempts.min(16);
    (base * factor).min(max)
}

/// A provider error as one line for reasons and audit entries: endpoint, kind, message
/// and request id. Never tokens or bodies.
fn describe(e: &ProviderError) -> String {
    let mut s = format!("{} {}", e.endpoint(), e.kind());
    if let Some(m) = e.message() {
        s.push_str(": ");
        s.push_str(m);
    }
    if let Some(id) = e.request_id() {
        s.push_str(&format!(" (request {id})"));
    }
    s
}

/// Total fees of a quote in `source` units.
fn fees_in(q: &Quote, source: &Currency) -> Decimal {
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

/// The ISO country of a payout currency's bank system.
fn country_of(currency: &Currency) -> String {
    match currency.as_str() {
        "KES" => "KE",
        "GHS" => "GH",
        "USD" => "US",
        "GBP" => "GB",
        _ => "NG",
    }
    .to_string()
}
