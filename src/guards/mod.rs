//! Guards: the kill switch, paused jobs, spending caps and approvals, and the rules of
//! the operator commands that change runs (approve, reject, cancel, retry).
//!
//! [`Guards`] is the pipeline's [`Gate`]: it is asked just before every money-moving
//! step (recipient creation, quote lock, transfer) and answers from the store:
//! - a halt covering the run (global, its job, or its grant) holds the step
//!   ([`Hold::Wait`], re-checked after [`GuardsConfig::recheck`]); a job halt is how a
//!   job is paused;
//! - at quote lock, the run's amount is checked against `max_per_run` and reserved
//!   against the rolling 24-hour caps of its job and its grant, atomically across
//!   processes; a run that would break a cap is refused ([`Hold::Refuse`]) with the cap,
//!   the amount and what is already used;
//! - before the transfer, the reservation is trued up to the locked quote's source
//!   amount (fees included), with the same checks.
//!
//! Every run reserves, whether or not its own job declares limits, so that a grant's
//! cap counts everything spent on the grant. Caps count reservations in the run's
//! source currency only.
//!
//! Amounts reserved, in the source currency:
//! - a fixed source amount is reserved as is;
//! - a fixed target amount is estimated at quote lock as `target / min_rate + max_fees`
//!   when the job's rate guard has a `min_rate` (an upper bound: a quote below
//!   `min_rate` is refused anyway, and `max_fees` bounds the fees). Without `min_rate`
//!   nothing can bound it, so the quote lock only checks that the caps have headroom
//!   left, and the true-up before the transfer enforces them on the quote's real
//!   source amount. Either way no transfer starts beyond a cap.
//!
//! This module holds the rules; the SQL lives in `store::guards`. It never calls Busha.
//! [`known`]: the job ids and grant aliases a halt or resume may name.

pub mod batch;
pub mod known;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures_util::future::BoxFuture;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::clock::Clock;
use crate::pipeline::{Gate, GateStep, Hold};
use crate::runs::{Amount, Limits, PayoutSpec, RecipientSpec, Run, RunState};
use crate::store::{CapCheck, Store, StoreError};

/// What a halt covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "scope", content = "target", rename_all = "snake_case")]
pub enum HaltScope {
    /// Every run.
    All,
    /// Every run of one job (this is how a job is paused).
    Job(String),
    /// Every run on one grant alias.
    Grant(String),
}

impl HaltScope {
    /// The store's `scope` column.
    pub fn kind(&self) -> &'static str {
        match self {
            HaltScope::All => "all",
            HaltScope::Job(_) => "job",
            HaltScope::Grant(_) => "grant",
        }
    }

    /// The store's `target` column: the job id, the grant alias, or `""`.
    pub fn target(&self) -> &str {
        match self {
            HaltScope::All => "",
            HaltScope::Job(t) | HaltScope::Grant(t) => t,
        }
    }

    /// Parses the store's columns back.
    pub fn from_parts(kind: &str, target: &str) -> Option<Self> {
        match kind {
            "all" => Some(HaltScope::All),
            "job" if !target.is_empty() => Some(HaltScope::Job(target.into())),
            "grant" if !target.is_empty() => Some(HaltScope::Grant(target.into())),
            _ => None,
        }
    }

    /// True if this halt stops `run`.
    pub fn covers(&self, run: &Run) -> bool {
        match self {
            HaltScope::All => true,
            HaltScope::Job(j) => *j == run.job_id,
            HaltScope::Grant(g) => *g == run.spec.grant,
        }
    }
}

impl fmt::Display for HaltScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HaltScope::All => f.write_str("everything"),
            HaltScope::Job(j) => write!(f, "job {j}"),
            HaltScope::Grant(g) => write!(f, "grant {g}"),
        }
    }
}

/// An active halt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Halt {
    #[serde(flatten)]
    pub scope: HaltScope,
    pub reason: Option<String>,
    pub halted_by: String,
    pub halted_at: DateTime<Utc>,
}

/// Who acts: an authenticated operator account (see `crate::operators`). Two
/// approvals count once when they come from one account, and a job's owner is
/// recognised by the confusable skeleton of the name, so a look-alike is the owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    key: String,
    name: String,
    skeleton: String,
}

impl Operator {
    /// The operator an authenticated account acts as.
    pub fn from_account(account: &crate::operators::Account) -> Self {
        Self {
            key: account.id.as_str().to_string(),
            name: account.name.clone(),
            skeleton: crate::operators::skeleton(&account.name),
        }
    }

    /// An identity the caller vouches for without an account: the library's own tests
    /// and tools. The CLI and the console only ever use [`Operator::from_account`].
    pub fn parse(name: &str) -> Result<Self, String> {
        let name = crate::operators::OperatorName::new(name)?;
        let skeleton = name.skeleton();
        Ok(Self {
            key: format!("name:{skeleton}"),
            name: name.as_str().to_string(),
            skeleton,
        })
    }

    /// The name, for display.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The identity that counts: approvals by the same key count once.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether `name` (a job's owner, say) looks like this operator's name.
    pub fn is_named(&self, name: &str) -> bool {
        crate::operators::skeleton(name) == self.skeleton
    }

    /// The audit actor, `operator:<name>`.
    pub fn actor(&self) -> String {
        format!("operator:{}", self.name)
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

// ---------------------------------------------------------------------------- caps

/// What other runs already hold against a run's caps (its own reservation excluded).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CapUse {
    #[serde(with = "rust_decimal::serde::str")]
    pub job: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub grant: Decimal,
}

/// What a run asks to reserve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ask {
    /// This amount of the source currency.
    Amount { amount: Decimal, estimated: bool },
    /// The amount cannot be bounded yet (a target amount with no `min_rate`): only
    /// check that the caps have headroom; the true-up before the transfer enforces them.
    Headroom,
}

/// The amount a run asks to reserve at `step` (see the module docs).
pub fn ask_for(run: &Run, step: GateStep) -> Ask {
    let spec = &run.spec;
    if step == GateStep::Transfer {
        if let Some(q) = &run.quote {
            return Ask::Amount {
                amount: q.source_amount,
                estimated: false,
            };
        }
    }
    match &spec.amount {
        Amount::Source { amount } => Ask::Amount {
            amount: *amount,
            estimated: false,
        },
        Amount::Target { amount } => match spec
            .guard
            .reserve_for_target(*amount, &spec.source_currency)
        {
            Some(amount) => Ask::Amount {
                amount,
                estimated: true,
            },
            None => Ask::Headroom,
        },
    }
}

/// Checks an ask against the run's limits, given what is already used. The error names
/// the cap, the amount asked and what is already used.
pub fn check_caps(run: &Run, ask: &Ask, used: &CapUse) -> Result<(), String> {
    let Limits {
        max_per_run,
        job_daily_cap,
        grant_daily_cap,
    } = &run.spec.limits;
    let cur = &run.spec.source_currency;
    let (amount, what) = match ask {
        Ask::Amount {
            amount,
            estimated: false,
        } => (*amount, format!("{amount} {cur}")),
        Ask::Amount {
            amount,
            estimated: true,
        } => (
            *amount,
            format!(
                "an estimated {amount} {cur} (target amount at the minimum rate, plus the maximum fees)"
            ),
        ),
        Ask::Headroom => (Decimal::ZERO, "an amount not known before the quote".into()),
    };
    if let Some(max) = max_per_run {
        if amount > *max {
            return Err(format!(
                "over the per-run maximum: the run needs {what}, the maximum per run is {max} {cur}"
            ));
        }
    }
    let caps = [
        (
            job_daily_cap,
            used.job,
            format!("job {}'s rolling 24-hour cap", run.job_id),
        ),
        (
            grant_daily_cap,
            used.grant,
            format!("grant {}'s rolling 24-hour cap", run.spec.grant),
        ),
    ];
    for (cap, used, name) in caps {
        let Some(cap) = cap else { continue };
        let broken = match ask {
            Ask::Headroom => used >= *cap,
            Ask::Amount { .. } => used + amount > *cap,
        };
        if broken {
            return Err(format!(
                "over {name} of {cap} {cur}: the run needs {what}, {used} {cur} is already used in the last 24 hours, {} {cur} is left",
                (*cap - used).max(Decimal::ZERO)
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------- approval

/// How many distinct approvers a run needs (at least one once it awaits approval).
pub fn approvals_needed(spec: &PayoutSpec) -> u32 {
    spec.approval.as_ref().map_or(1, |r| r.approvers.max(1))
}

/// Whether a job should create its runs `awaiting_approval`: the scheduler passes this
/// as `needs_approval` to [`Run::new`] (jobs without a rule run without approval).
pub fn needs_approval(spec: &PayoutSpec) -> bool {
    spec.approval.is_some()
}

/// An approver may never be the job's declared owner.
pub fn may_approve(spec: &PayoutSpec, who: &Operator) -> Result<(), String> {
    match &spec.approval {
        Some(rule) if who.is_named(&rule.owner) => Err(format!(
            "{who} is the job's owner and may not approve its runs"
        )),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------- cancel, retry

/// The transfer statuses after which no money moved (or it came back).
pub const FAILED_TRANSFER_STATUSES: [&str; 3] =
    ["cancelled", "funds_not_delivered", "funds_refunded"];

/// What the store reads of a run to decide an operator command, under its lock.
#[derive(Clone, Debug)]
pub struct RunFacts {
    pub state: RunState,
    pub pending_create_transfer: bool,
    pub transfer_id: Option<String>,
    pub transfer_status: Option<String>,
    pub recipient_id: Option<String>,
}

/// `runs cancel` works while no money has moved: before any transfer exists or may
/// exist. Otherwise the error says why not.
pub fn may_cancel(f: &RunFacts) -> Result<(), String> {
    match f.state {
        RunState::Created | RunState::AwaitingApproval | RunState::RecipientResolved => Ok(()),
        RunState::QuoteLocked if f.transfer_id.is_some() => Err(format!(
            "a transfer ({}) exists for this run: money may have moved",
            f.transfer_id.as_deref().unwrap_or_default()
        )),
        RunState::QuoteLocked if f.pending_create_transfer => Err(
            "a transfer request may be in flight (its outcome is not known yet): money may have moved"
                .into(),
        ),
        RunState::QuoteLocked => Ok(()),
        RunState::TransferSubmitted => Err(format!(
            "transfer {} was submitted: money may have moved",
            f.transfer_id.as_deref().unwrap_or("(unknown id)")
        )),
        RunState::Settled => Err("the run settled: money moved".into()),
        RunState::Cancelled => Err("the run is already cancelled".into()),
        RunState::Failed | RunState::NeedsHuman => Err(format!(
            "the run is {}: it will not move money unless retried; there is nothing to cancel",
            f.state
        )),
    }
}

/// `runs retry` covers failed and needs-human runs whose transfer, if any, ended
/// without paying. Returns the state the run restarts from.
pub fn may_retry(f: &RunFacts) -> Result<RunState, String> {
    if !matches!(f.state, RunState::Failed | RunState::NeedsHuman) {
        return Err(format!(
            "only failed and needs_human runs can be retried; this one is {}",
            f.state
        ));
    }
    if let Some(t) = &f.transfer_id {
        let status = f.transfer_status.as_deref().unwrap_or("unknown");
        if !FAILED_TRANSFER_STATUSES.contains(&status) {
            return Err(format!(
                "transfer {t} is {status}: it may still pay, so the run cannot be retried"
            ));
        }
    }
    if f.pending_create_transfer {
        return Err("a transfer request's outcome is unknown: the run cannot be retried".into());
    }
    Ok(if f.recipient_id.is_some() {
        RunState::RecipientResolved
    } else {
        RunState::Created
    })
}

// ---------------------------------------------------------------------------- payees, batches

/// Who a run pays, as a stable key: the recipient id, or the bank and account number.
pub fn payee_key(r: &RecipientSpec) -> String {
    match r {
        RecipientSpec::Id { id } => format!("recipient:{id}"),
        RecipientSpec::Bank {
            bank_code,
            account_number,
            ..
        } => format!("bank:{bank_code}:{account_number}"),
    }
}

/// Totals per currency and side, e.g. `"150000 NGN (target)"`.
fn totals(runs: &[&Run]) -> Vec<String> {
    let mut sums: BTreeMap<(String, &'static str), Decimal> = BTreeMap::new();
    for r in runs {
        let (cur, side, amount) = match &r.spec.amount {
            Amount::Source { amount } => (&r.spec.source_currency, "source", *amount),
            Amount::Target { amount } => (&r.spec.target_currency, "target", *amount),
        };
        *sums.entry((cur.to_string(), side)).or_default() += amount;
    }
    sums.into_iter()
        .map(|((cur, side), sum)| format!("{sum} {cur} ({side})"))
        .collect()
}

/// What an operator sees before approving every run of one batch occurrence.
#[derive(Clone, Debug, Serialize)]
pub struct ApprovalPreview {
    pub job_id: String,
    pub occurrence: String,
    /// Runs of the occurrence awaiting approval: these would be approved.
    pub awaiting: Vec<PreviewRun>,
    /// Runs of the occurrence in other states (left alone).
    pub others: usize,
    /// The awaiting runs' amounts, per currency and fixed side.
    pub total: Vec<String>,
    /// Payees of the awaiting runs that no earlier run of the job paid.
    pub new_payees: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PreviewRun {
    pub id: String,
    pub occurrence_key: String,
    pub payee: String,
    pub amount: String,
}

fn amount_label(spec: &PayoutSpec) -> String {
    match &spec.amount {
        Amount::Source { amount } => format!("{amount} {}", spec.source_currency),
        Amount::Target { amount } => format!("{amount} {}", spec.target_currency),
    }
}

/// Builds the preview from the occurrence's runs and the job's earlier runs.
pub fn preview_batch(
    job_id: &str,
    occurrence: &str,
    batch: &[Run],
    earlier: &[Run],
) -> ApprovalPreview {
    let awaiting: Vec<&Run> = batch
        .iter()
        .filter(|r| r.state == RunState::AwaitingApproval)
        .collect();
    let seen: BTreeSet<String> = earlier
        .iter()
        .map(|r| payee_key(&r.spec.recipient))
        .collect();
    let mut new_keys = BTreeSet::new();
    let mut new_payees = Vec::new();
    for r in &awaiting {
        let key = payee_key(&r.spec.recipient);
        if !seen.contains(&key) && new_keys.insert(key) {
            new_payees.push(crate::runs::payee_shown(r));
        }
    }
    ApprovalPreview {
        job_id: job_id.into(),
        occurrence: occurrence.into(),
        awaiting: awaiting
            .iter()
            .map(|r| PreviewRun {
                id: r.id.to_string(),
                occurrence_key: r.occurrence_key.clone(),
                payee: crate::runs::payee_shown(r),
                amount: amount_label(&r.spec),
            })
            .collect(),
        others: batch.len() - awaiting.len(),
        total: totals(&awaiting),
        new_payees,
    }
}

/// How one occurrence of a (batch) job went.
#[derive(Clone, Debug, Serialize)]
pub struct BatchSummary {
    pub job_id: String,
    pub occurrence: String,
    pub runs: usize,
    pub settled: usize,
    /// Settled amounts per currency and fixed side.
    pub settled_total: Vec<String>,
    pub failed: Vec<FailedRun>,
    /// Runs per state (settled and failed included).
    pub by_state: BTreeMap<String, usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FailedRun {
    pub id: String,
    pub occurrence_key: String,
    pub payee: String,
    pub state: String,
    pub reason: Option<String>,
}

/// Summarises the runs of one occurrence: how many settled, and which failed (or need
/// a human), with their reasons.
pub fn summarise_batch(job_id: &str, occurrence: &str, runs: &[Run]) -> BatchSummary {
    let mut by_state = BTreeMap::new();
    for r in runs {
        *by_state.entry(r.state.to_string()).or_insert(0) += 1;
    }
    let settled: Vec<&Run> = runs
        .iter()
        .filter(|r| r.state == RunState::Settled)
        .collect();
    BatchSummary {
        job_id: job_id.into(),
        occurrence: occurrence.into(),
        runs: runs.len(),
        settled: settled.len(),
        settled_total: totals(&settled),
        failed: runs
            .iter()
            .filter(|r| matches!(r.state, RunState::Failed | RunState::NeedsHuman))
            .map(|r| FailedRun {
                id: r.id.to_string(),
                occurrence_key: r.occurrence_key.clone(),
                payee: crate::runs::payee_shown(r),
                state: r.state.to_string(),
                reason: r.reason.clone(),
            })
            .collect(),
        by_state,
    }
}

// ---------------------------------------------------------------------------- the gate

/// Knobs of the guards.
#[derive(Clone, Debug)]
pub struct GuardsConfig {
    /// How soon a held run is checked again: short, so that resumed runs go on promptly.
    pub recheck: Duration,
    /// The audit actor of reservations and releases (`worker:<id>`).
    pub actor: String,
}

impl GuardsConfig {
    /// The defaults, with reservations audited as this worker (`worker:<id>`, the
    /// pipeline's `worker_id`).
    pub fn for_worker(worker_id: &str) -> Self {
        Self {
            actor: format!("worker:{worker_id}"),
            ..Self::default()
        }
    }
}

impl Default for GuardsConfig {
    fn default() -> Self {
        Self {
            recheck: Duration::seconds(30),
            actor: "worker:guards".into(),
        }
    }
}

/// The guards, as the pipeline's gate. The worker installs them with
///
/// ```text
/// let guards = Guards::with_config(store.clone(), clock.clone(), GuardsConfig::for_worker(&cfg.worker_id));
/// let pipeline = Pipeline::new(store, busha, tokens, clock, cfg).with_gate(guards.into_gate());
/// ```
#[derive(Clone)]
pub struct Guards {
    store: Store,
    clock: Clock,
    cfg: GuardsConfig,
}

impl Guards {
    pub fn new(store: Store, clock: Clock) -> Self {
        Self::with_config(store, clock, GuardsConfig::default())
    }

    pub fn with_config(store: Store, clock: Clock, cfg: GuardsConfig) -> Self {
        Self { store, clock, cfg }
    }

    /// This gate as the pipeline takes it.
    pub fn into_gate(self) -> Arc<dyn Gate> {
        Arc::new(self)
    }

    async fn decide(&self, run: &Run, step: GateStep) -> Result<(), Hold> {
        let now = self.clock.now();
        let unavailable = |e: StoreError| Hold::Unavailable {
            reason: format!("the guards could not be read: {e}"),
        };
        let halts = self
            .store
            .halts_covering(&run.job_id, &run.spec.grant)
            .await
            .map_err(unavailable)?;
        if let Some(h) = halts.iter().min_by_key(|h| h.scope.clone()) {
            let step = match step {
                GateStep::CreateRecipient => "recipient creation",
                GateStep::LockQuote => "quote lock",
                GateStep::Transfer => "transfer",
            };
            return Err(Hold::Wait {
                reason: format!(
                    "held before the {step}: {} halted by {} at {}{} (`treasury resume` lets it go on)",
                    h.scope,
                    h.halted_by,
                    h.halted_at.to_rfc3339(),
                    h.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                until: now + self.cfg.recheck,
            });
        }
        if step == GateStep::CreateRecipient {
            return Ok(());
        }
        // Every run reserves, limits or not: a grant's cap declared by one job must see
        // what the grant's other jobs spend.
        let ask = ask_for(run, step);
        let check = CapCheck {
            run,
            ask: &ask,
            at: now,
            actor: &self.cfg.actor,
        };
        match self.store.reserve_caps(check).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(reason)) => Err(Hold::Refuse {
                reason: format!("refused by the spending limits: {reason}"),
            }),
            Err(e) => Err(unavailable(e)),
        }
    }
}

impl Gate for Guards {
    fn check<'a>(&'a self, run: &'a Run, step: GateStep) -> BoxFuture<'a, Result<(), Hold>> {
        Box::pin(self.decide(run, step))
    }

    fn released<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // A release that fails here leaks nothing: a failed or needs-human run's
            // reservation stops counting by its state alone (see `store::guards`).
            if let Err(e) = self
                .store
                .release_caps(&run.id, self.clock.now(), &self.cfg.actor)
                .await
            {
                tracing::warn!(run = %run.id, error = %e, "could not mark the run's cap reservation released");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::runs::{ApprovalRule, RateGuard};
    use rust_decimal::dec;

    fn run(amount: Amount, limits: Limits) -> Run {
        let spec = PayoutSpec {
            grant: "acme".into(),
            source_currency: Currency::new("USDT").unwrap(),
            target_currency: Currency::new("NGN").unwrap(),
            amount,
            recipient: RecipientSpec::Id { id: "r1".into() },
            guard: RateGuard::default(),
            max_requotes: 3,
            limits,
            approval: Some(ApprovalRule {
                approvers: 2,
                owner: "Olu".into(),
            }),
            sweep: None,
        };
        Run::new("payroll", "occ", "v1", spec, true, Utc::now())
    }

    #[test]
    fn caps_name_the_cap_the_amount_and_what_is_used() {
        let r = run(
            Amount::Source { amount: dec!(60) },
            Limits {
                max_per_run: Some(dec!(100)),
                job_daily_cap: Some(dec!(100)),
                grant_daily_cap: Some(dec!(1000)),
            },
        );
        let ask = ask_for(&r, GateStep::LockQuote);
        assert!(check_caps(&r, &ask, &CapUse::default()).is_ok());
        let used = CapUse {
            job: dec!(50),
            grant: dec!(50),
        };
        let err = check_caps(&r, &ask, &used).unwrap_err();
        assert!(
            err.contains("job payroll")
                && err.contains("100 USDT")
                && err.contains("60 USDT")
                && err.contains("50 USDT is already used"),
            "{err}"
        );
        let big = run(Amount::Source { amount: dec!(101) }, r.spec.limits.clone());
        let err = check_caps(
            &big,
            &ask_for(&big, GateStep::LockQuote),
            &CapUse::default(),
        )
        .unwrap_err();
        assert!(
            err.contains("per-run maximum") && err.contains("101 USDT"),
            "{err}"
        );
    }

    #[test]
    fn a_target_amount_is_estimated_from_the_minimum_rate_or_only_needs_headroom() {
        let mut r = run(
            Amount::Target {
                amount: dec!(160000),
            },
            Limits::default(),
        );
        assert_eq!(ask_for(&r, GateStep::LockQuote), Ask::Headroom);
        r.spec.guard.min_rate = Some(dec!(1600));
        r.spec.guard.max_fees = Some(dec!(1));
        assert_eq!(
            ask_for(&r, GateStep::LockQuote),
            Ask::Amount {
                amount: dec!(101),
                estimated: true
            }
        );
        r.spec.limits.job_daily_cap = Some(dec!(10));
        let full = CapUse {
            job: dec!(10),
            grant: dec!(0),
        };
        assert!(check_caps(&r, &Ask::Headroom, &full).is_err());
        let some = CapUse {
            job: dec!(9),
            grant: dec!(0),
        };
        assert!(check_caps(&r, &Ask::Headroom, &some).is_ok());
    }

    #[test]
    fn the_owner_may_never_approve_whatever_the_case() {
        let r = run(Amount::Source { amount: dec!(1) }, Limits::default());
        assert!(may_approve(&r.spec, &Operator::parse(" olu ").unwrap()).is_err());
        assert!(may_approve(&r.spec, &Operator::parse("ada").unwrap()).is_ok());
        assert_eq!(approvals_needed(&r.spec), 2);
        assert!(Operator::parse("  ").is_err());
        assert_eq!(Operator::parse("Ada").unwrap().as_str(), "ada");
        assert!(Operator::parse("\u{043E}lu").unwrap().is_named("OLU"));
    }

    #[test]
    fn cancel_is_refused_once_a_transfer_exists_or_may_exist() {
        let facts = |state, pending, transfer: Option<&str>| RunFacts {
            state,
            pending_create_transfer: pending,
            transfer_id: transfer.map(String::from),
            transfer_status: None,
            recipient_id: None,
        };
        assert!(may_cancel(&facts(RunState::Created, false, None)).is_ok());
        assert!(may_cancel(&facts(RunState::AwaitingApproval, false, None)).is_ok());
        assert!(may_cancel(&facts(RunState::QuoteLocked, false, None)).is_ok());
        assert!(may_cancel(&facts(RunState::QuoteLocked, true, None)).is_err());
        assert!(may_cancel(&facts(RunState::QuoteLocked, false, Some("t"))).is_err());
        assert!(may_cancel(&facts(RunState::TransferSubmitted, false, Some("t"))).is_err());
        assert!(may_cancel(&facts(RunState::Settled, false, Some("t"))).is_err());
    }

    #[test]
    fn retry_restarts_failed_and_needs_human_runs_only_when_nothing_can_still_pay() {
        let mut f = RunFacts {
            state: RunState::Failed,
            pending_create_transfer: false,
            transfer_id: None,
            transfer_status: None,
            recipient_id: Some("r".into()),
        };
        assert_eq!(may_retry(&f), Ok(RunState::RecipientResolved));
        f.transfer_id = Some("t".into());
        f.transfer_status = Some("funds_not_delivered".into());
        assert!(may_retry(&f).is_ok());
        f.transfer_status = Some("processing".into());
        assert!(may_retry(&f).is_err());
        f.state = RunState::Settled;
        assert!(may_retry(&f).is_err());
    }
}
