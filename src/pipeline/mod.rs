//! Executing a run: resolve the recipient, lock a quote, initiate the transfer and
//! follow it to a final status, exactly once (invariants 3, 4 and 5).
//!
//! `execute(run_id)` is idempotent and resumable. It takes the run's fenced lease (a
//! second executor returns [`Executed::Busy`]), and then, from whatever state the run is
//! in, reconciles with the provider before acting:
//! - a recipient is looked for by account number before one is created;
//! - a quote is looked for by our `reference` before another is locked;
//! - a transfer is looked for by `quote_id` before one is initiated.
//!
//! Every money-moving call persists its intent first and its outcome after, each in one
//! transaction with its audit entry. An executor that lost its lease writes nothing.
//! Waiting (rate limits, backoff, tracking) is a `next_attempt_at` in the store, never a
//! sleep: the dispatcher sends the run out again when it is due.
//!
//! The provider is reached only through [`crate::provider::boundary`], in domain types;
//! each step first checks that the provider's capabilities cover it (`promises`). No
//! provider module or wire type is named here (a test in `sealed` scans for them).

/// One provider call, with crash points around it and one forced token refresh on a
/// 401 (a 401 means Busha applied nothing, so the retry is safe). A macro rather than
/// a generic function so that the futures stay `Send` for the worker's spawned tasks.
macro_rules! call {
    ($self:ident, $run:expr, $token:expr, $what:literal, |$t:ident| $body:expr) => {{
        $self.point(concat!("before ", $what))?;
        $self.pause(concat!("before ", $what)).await;
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

mod checks;
mod gate;
mod lease;
mod plumbing;
mod promises;
mod quote;
mod recipient;
mod recipient_given;
mod sealed;
mod tokens;
mod track;
mod transfer;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

pub use gate::{Gate, GateStep, Hold, OpenGate};
pub use tokens::{StaticTokens, TokenError, TokenSource};

use crate::audit::NewAuditEntry;
use crate::clock::Clock;
use crate::money::Currency;
use crate::provider::boundary::{
    BankAccount, FixedSide, PaymentsProvider, Quote, QuoteId, QuoteRequest, QuoteState, Recipient,
    RecipientId, RecipientQuery, Settlement, Transfer, TransferId,
};
use crate::provider::{AccessToken, Called, ErrorKind, ProviderError};
use crate::runs::{
    Amount, LockedQuote, PayoutSpec, PendingOp, QuoteAsk, RecipientSpec, Run, RunId, RunState,
    mask_account,
};
use crate::store::{RunLease, Store, StoreError};

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
    /// Added to every lease in the store, for another executor to wait out before it
    /// takes a lapsed lease over: the longest a request takes once sent (raised to
    /// the client's call timeout, which is what the default of zero means). See `lease`.
    pub takeover_grace: Duration,
    /// Kept back from the lease when proving it covers a call.
    pub send_margin: Duration,
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
            takeover_grace: Duration::zero(),
            send_margin: Duration::seconds(2),
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

    /// Freezes the execution at `point` until the returned future completes, as
    /// SIGSTOP or a VM stall would (tests of the lease proof). Points are those above.
    fn pause_at(&self, _point: &str) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        None
    }
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
    provider: Arc<dyn PaymentsProvider>,
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
        provider: impl PaymentsProvider + 'static,
        tokens: Arc<dyn TokenSource>,
        clock: Clock,
        mut cfg: PipelineConfig,
    ) -> Self {
        match provider
            .longest_call()
            .map(|d| Duration::from_std(d).unwrap_or(Duration::MAX))
        {
            Some(longest) => cfg.lease = cfg.lease.max(longest * 2),
            None => tracing::error!(
                "the provider client's pacing is unbounded: a paced call can outlive the run's lease; set max_pacing_wait"
            ),
        }
        let timeout = Duration::from_std(provider.call_timeout()).unwrap_or(Duration::MAX);
        cfg.takeover_grace = cfg.takeover_grace.max(timeout);
        Self {
            store,
            provider: Arc::new(provider),
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

    /// How long after an executor's last save another may take its run over: the
    /// lease plus the grace for a call still in flight.
    pub fn takeover_after(&self) -> Duration {
        self.cfg.lease + self.cfg.takeover_grace
    }

    /// Executes what is due of `run_id` under its lease, and records the outcome.
    pub async fn execute(&self, run_id: &RunId) -> Result<Executed, PipelineError> {
        let owner = format!("{}/{}", self.cfg.worker_id, nanoid::nanoid!(8));
        let now = self.clock.now();
        let Some((mut lease, mut run)) = self
            .store
            .acquire_run(run_id, &owner, now, self.stored_lease())
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
}
