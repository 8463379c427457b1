//! A job as typed values: what [`super::parse`] produces from a job file, and the
//! payout specs its occurrences freeze into runs. No IO.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::schedule::{CatchUp, CronSchedule};
use crate::money::{Currency, MoneyError, check_precision};
use crate::runs::{
    Amount, ApprovalRule, Limits, PayoutSpec, RateGuard, RecipientSpec, Run, SweepBound,
};

/// A job's `id` key: 1–64 lower-case ASCII letters, digits, `-` or `_`, starting with a
/// letter or digit. Run ids derive from it (never from the file name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "`id` {s:?} must be 1-64 lower-case letters, digits, '-' or '_', starting with a letter or digit"
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which side of the quote an amount fixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Source,
    Target,
}

impl Side {
    pub fn amount(self, amount: Decimal) -> Amount {
        match self {
            Side::Source => Amount::Source { amount },
            Side::Target => Amount::Target { amount },
        }
    }
}

/// Who gets paid and how much, per occurrence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payout {
    /// One recipient. `amount` is `None` when the occurrence supplies it (triggers,
    /// sweeps).
    Single {
        amount: Option<Amount>,
        recipient: RecipientSpec,
    },
    /// `[[payees]]`: one run per payee per occurrence, the payee key in the occurrence key.
    Batch(Vec<Payee>),
}

/// One line of a batch job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payee {
    pub key: String,
    pub amount: Amount,
    pub recipient: RecipientSpec,
}

/// `[approval]`: runs whose source amount may exceed `above` wait for approvers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Approval {
    #[serde(with = "rust_decimal::serde::str")]
    pub above: Decimal,
    /// 1 or 2 distinct approvers, never the job's owner.
    pub approvers: u32,
}

/// `[schedule]`.
#[derive(Clone, Debug)]
pub struct ScheduleSpec {
    pub cron: CronSchedule,
    pub catch_up: CatchUp,
    pub max_lateness: Duration,
    /// `calendar` and `roll`: business days (`None`: every day is one).
    pub business: Option<super::calendar::BusinessDays>,
}

/// `[trigger]`: a signed `POST /triggers/{job}` whose amount is bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTrigger {
    /// Which side the request's amount fixes.
    pub side: Side,
    pub min_amount: Decimal,
    pub max_amount: Decimal,
    /// The environment variable holding the HMAC-SHA256 secret.
    pub secret_env: String,
}

/// `[sweep]`: when the balance's `available` is above `threshold`, move
/// `available - keep` (source side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepSpec {
    pub balance: Currency,
    pub threshold: Decimal,
    pub keep: Decimal,
    /// A sweep that, re-computed against the live balance, would move less than this
    /// is skipped (`None`: anything above zero is moved).
    pub min_amount: Option<Decimal>,
    /// How often to poll the balance.
    pub interval: Duration,
    /// Least time between two sweeps of this job.
    pub min_interval: Duration,
    /// How long the balance must stay above the threshold before a sweep fires.
    pub debounce: Duration,
}

/// What starts a job's occurrences: exactly one per job.
#[derive(Clone, Debug)]
pub enum Trigger {
    Schedule(ScheduleSpec),
    Http(HttpTrigger),
    Sweep(SweepSpec),
}

impl Trigger {
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Schedule(_) => "schedule",
            Trigger::Http(_) => "trigger",
            Trigger::Sweep(_) => "sweep",
        }
    }
}

/// A parsed, valid job file. Fields are private: the only way to get one is
/// [`super::parse::parse_job`], which checks every invariant.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub(super) id: JobId,
    pub(super) description: Option<String>,
    pub(super) grant: String,
    pub(super) owner: String,
    pub(super) source_currency: Currency,
    pub(super) target_currency: Currency,
    pub(super) payout: Payout,
    pub(super) guard: RateGuard,
    pub(super) max_requotes: u32,
    pub(super) limits: Limits,
    pub(super) approval: Option<Approval>,
    pub(super) trigger: Trigger,
}

/// One run an occurrence will create: the payee (batch), its frozen spec and whether it
/// waits for approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedPayout {
    pub payee: Option<String>,
    pub spec: PayoutSpec,
    pub needs_approval: bool,
}

impl PlannedPayout {
    /// The run's occurrence key: the occurrence's, plus `#<payee key>` for a batch.
    pub fn occurrence_key(&self, occurrence: &str) -> String {
        match &self.payee {
            Some(k) => format!("{occurrence}#{k}"),
            None => occurrence.to_string(),
        }
    }
}

/// Why an occurrence's payouts could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayoutError {
    #[error("job {job}: a {kind} occurrence needs an amount")]
    AmountRequired { job: String, kind: &'static str },
    #[error("job {job}: a scheduled occurrence takes its amounts from the job file")]
    AmountNotAllowed { job: String },
    #[error("job {job}: amount {amount} {currency} is outside the trigger's bounds [{min}, {max}]")]
    OutOfBounds {
        job: String,
        amount: Decimal,
        currency: Currency,
        min: Decimal,
        max: Decimal,
    },
    #[error("job {job}: {source}")]
    Money {
        job: String,
        #[source]
        source: MoneyError,
    },
}

impl JobSpec {
    pub fn id(&self) -> &JobId {
        &self.id
    }
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// The grant alias (declared in `config/`).
    pub fn grant(&self) -> &str {
        &self.grant
    }
    pub fn owner(&self) -> &str {
        &self.owner
    }
    pub fn source_currency(&self) -> &Currency {
        &self.source_currency
    }
    pub fn target_currency(&self) -> &Currency {
        &self.target_currency
    }
    pub fn payout(&self) -> &Payout {
        &self.payout
    }
    pub fn guard(&self) -> &RateGuard {
        &self.guard
    }
    pub fn max_requotes(&self) -> u32 {
        self.max_requotes
    }
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    pub fn approval(&self) -> Option<&Approval> {
        self.approval.as_ref()
    }
    pub fn trigger(&self) -> &Trigger {
        &self.trigger
    }
    /// The schedule, for scheduled jobs.
    pub fn schedule(&self) -> Option<&ScheduleSpec> {
        match &self.trigger {
            Trigger::Schedule(s) => Some(s),
            _ => None,
        }
    }
    pub fn http_trigger(&self) -> Option<&HttpTrigger> {
        match &self.trigger {
            Trigger::Http(t) => Some(t),
            _ => None,
        }
    }
    pub fn sweep(&self) -> Option<&SweepSpec> {
        match &self.trigger {
            Trigger::Sweep(s) => Some(s),
            _ => None,
        }
    }

    /// The Busha scopes a grant must hold to run this job.
    pub fn required_scopes(&self) -> Vec<&'static str> {
        let mut scopes = vec![
            "balances:read",
            "quotes:write",
            "quotes:read",
            "transfers:write",
            "transfers:read",
            "recipients:read",
        ];
        let bank = match &self.payout {
            Payout::Single { recipient, .. } => matches!(recipient, RecipientSpec::Bank { .. }),
            Payout::Batch(p) => p
                .iter()
                .any(|p| matches!(p.recipient, RecipientSpec::Bank { .. })),
        };
        if bank {
            scopes.push("recipients:write");
        }
        scopes
    }

    /// The most the source side of `amount` can be: itself, or for a target amount,
    /// `target / guard.min_rate` (the guard refuses any lower rate). `None` when a
    /// target amount has no `min_rate` to bound it.
    pub fn worst_case_source(&self, amount: &Amount) -> Option<Decimal> {
        match amount {
            Amount::Source { amount } => Some(*amount),
            Amount::Target { amount } => {
                let min = self.guard.min_rate.filter(|r| *r > Decimal::ZERO)?;
                amount.checked_div(min)
            }
        }
    }

    fn needs_approval(&self, amount: &Amount) -> bool {
        match &self.approval {
            None => false,
            // Unbounded means we cannot show it is small enough: ask. (Validation makes
            // approval on target amounts require `min_rate`, so this is a backstop.)
            Some(a) => self.worst_case_source(amount).is_none_or(|s| s > a.above),
        }
    }

    fn spec_for(&self, amount: Amount, recipient: RecipientSpec) -> PlannedPayout {
        let needs_approval = self.needs_approval(&amount);
        PlannedPayout {
            payee: None,
            needs_approval,
            spec: PayoutSpec {
                grant: self.grant.clone(),
                source_currency: self.source_currency.clone(),
                target_currency: self.target_currency.clone(),
                amount,
                recipient,
                guard: self.guard.clone(),
                max_requotes: self.max_requotes,
                limits: self.limits.clone(),
                approval: self
                    .approval
                    .as_ref()
                    .filter(|_| needs_approval)
                    .map(|a| ApprovalRule {
                        approvers: a.approvers,
                        owner: self.owner.clone(),
                    }),
                sweep: self.sweep().map(|s| SweepBound {
                    keep: s.keep,
                    min_amount: s.min_amount,
                }),
            },
        }
    }

    /// The payouts one occurrence creates. `amount` is `None` for a scheduled job (the
    /// file fixes the amounts), the request's amount for a trigger (checked against the
    /// bounds, on the trigger's side), and the computed `available - keep` for a sweep
    /// (source side).
    pub fn payouts(&self, amount: Option<Decimal>) -> Result<Vec<PlannedPayout>, PayoutError> {
        let job = || self.id.to_string();
        let money = |source| PayoutError::Money { job: job(), source };
        match (&self.trigger, amount) {
            (Trigger::Schedule(_), Some(_)) => Err(PayoutError::AmountNotAllowed { job: job() }),
            (Trigger::Schedule(_), None) => Ok(match &self.payout {
                Payout::Single {
                    amount: Some(a),
                    recipient,
                } => vec![self.spec_for(a.clone(), recipient.clone())],
                Payout::Single { amount: None, .. } => {
                    // parse_job gives every scheduled single payout an amount.
                    return Err(PayoutError::AmountRequired {
                        job: job(),
                        kind: "schedule",
                    });
                }
                Payout::Batch(payees) => payees
                    .iter()
                    .map(|p| {
                        let mut planned = self.spec_for(p.amount.clone(), p.recipient.clone());
                        planned.payee = Some(p.key.clone());
                        planned
                    })
                    .collect(),
            }),
            (t, None) => Err(PayoutError::AmountRequired {
                job: job(),
                kind: t.kind(),
            }),
            (Trigger::Http(t), Some(amount)) => {
                let currency = match t.side {
                    Side::Source => &self.source_currency,
                    Side::Target => &self.target_currency,
                };
                check_precision(amount, currency).map_err(money)?;
                if amount < t.min_amount || amount > t.max_amount {
                    return Err(PayoutError::OutOfBounds {
                        job: job(),
                        amount,
                        currency: currency.clone(),
                        min: t.min_amount,
                        max: t.max_amount,
                    });
                }
                Ok(vec![self.spec_for(
                    t.side.amount(amount.normalize()),
                    self.single_recipient(),
                )])
            }
            (Trigger::Sweep(_), Some(amount)) => {
                if amount <= Decimal::ZERO {
                    return Err(money(MoneyError::NotPositive(amount)));
                }
                check_precision(amount, &self.source_currency).map_err(money)?;
                Ok(vec![self.spec_for(
                    Amount::Source {
                        amount: amount.normalize(),
                    },
                    self.single_recipient(),
                )])
            }
        }
    }

    fn single_recipient(&self) -> RecipientSpec {
        match &self.payout {
            Payout::Single { recipient, .. } => recipient.clone(),
            // parse_job refuses payees on triggers and sweeps.
            Payout::Batch(p) => p[0].recipient.clone(),
        }
    }
}

/// A job file as loaded: its spec, where it came from and its version.
#[derive(Clone, Debug)]
pub struct Job {
    pub(super) spec: JobSpec,
    pub(super) path: String,
    pub(super) version: String,
    /// The file's text, as read: what the store keeps of each version, for `jobs diff`.
    pub(super) source: String,
    /// Where `id` and `grant` are written, for cross-file messages.
    pub(super) id_at: (usize, usize),
    pub(super) grant_at: (usize, usize),
    /// What the file does that is allowed but likely not meant.
    pub(super) warnings: Vec<super::Diagnostic>,
}

impl Job {
    /// The file's text, as read.
    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }
    /// Warnings found while parsing (allowed, but likely not meant).
    pub fn warnings(&self) -> &[super::Diagnostic] {
        &self.warnings
    }
    pub fn id(&self) -> &JobId {
        &self.spec.id
    }
    /// The file it was read from, as given.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// SHA-256 (hex) of the file's bytes: every run records it.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The runs one occurrence creates (see [`JobSpec::payouts`] for `amount`), ready
    /// for `Store::create_run`. Runs above the approval threshold start
    /// `awaiting_approval`.
    pub fn runs(
        &self,
        occurrence_key: &str,
        amount: Option<Decimal>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Run>, PayoutError> {
        Ok(self
            .spec
            .payouts(amount)?
            .into_iter()
            .map(|p| {
                Run::new(
                    self.spec.id.as_str(),
                    &p.occurrence_key(occurrence_key),
                    &self.version,
                    p.spec,
                    p.needs_approval,
                    now,
                )
            })
            .collect())
    }
}
