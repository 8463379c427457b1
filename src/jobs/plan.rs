//! `treasury jobs plan`: each job's next occurrences, what each will pay to whom, its
//! guards, and whether a person must approve. Computes only; moves no money.
//! Account numbers are masked.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::schedule::{DstAdjustment, format_duration};
use super::spec::{Approval, Job, PlannedPayout, Side, Trigger};
use crate::runs::{Amount, Limits, RateGuard, RecipientSpec, RunId, mask_account};
use crate::store::{Store, StoreError};

/// The plan for a set of jobs from an instant.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub from: DateTime<Utc>,
    pub jobs: Vec<JobPlan>,
    /// What the planned runs add up to, and the approvals they need.
    pub totals: super::totals::PlanTotals,
}

/// One job's plan.
#[derive(Clone, Debug, Serialize)]
pub struct JobPlan {
    pub id: String,
    pub path: String,
    pub version: String,
    pub description: Option<String>,
    pub grant: String,
    pub owner: String,
    pub source_currency: String,
    pub target_currency: String,
    pub trigger: TriggerPlan,
    pub guard: RateGuard,
    pub max_requotes: u32,
    pub limits: Limits,
    pub approval: Option<Approval>,
    /// The next occurrences of a schedule (empty for triggers and sweeps).
    pub occurrences: Vec<OccurrencePlan>,
    /// About the schedule's calendar: years it lists no holidays for, provisional dates.
    pub warnings: Vec<String>,
}

/// What starts the job, as `plan` shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TriggerPlan {
    Schedule {
        cron: String,
        timezone: String,
        catch_up: String,
        max_lateness: String,
        /// The business-day calendar and its roll rule (`None`: every day is one).
        calendar: Option<String>,
        roll: Option<super::calendar::Roll>,
    },
    Trigger {
        side: Side,
        currency: String,
        #[serde(with = "rust_decimal::serde::str")]
        min_amount: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        max_amount: Decimal,
        secret_env: String,
        /// The recipient every triggered run pays.
        recipient: String,
    },
    Sweep {
        balance: String,
        #[serde(with = "rust_decimal::serde::str")]
        threshold: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        keep: Decimal,
        interval: String,
        min_interval: String,
        debounce: String,
        recipient: String,
    },
}

/// One scheduled occurrence.
#[derive(Clone, Debug, Serialize)]
pub struct OccurrencePlan {
    /// Made of the nominal instant: a roll never changes it.
    pub occurrence_key: String,
    /// When it runs (the rolled instant, when a calendar moved it).
    pub utc: DateTime<Utc>,
    /// When it runs: RFC 3339 with the zone's offset at that instant.
    pub local: String,
    /// The nominal date, the rolled date and the holiday that caused the roll.
    pub roll: Option<super::rolled::RollPlan>,
    pub timezone: String,
    pub dst: DstAdjustment,
    pub runs: Vec<RunPlan>,
}

/// One run an occurrence would create.
#[derive(Clone, Debug, Serialize)]
pub struct RunPlan {
    pub run_id: RunId,
    pub occurrence_key: String,
    pub payee: Option<String>,
    pub side: Side,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    pub currency: String,
    /// Masked, with whose name it shows: see [`describe_recipient`].
    pub recipient: String,
    pub approval_needed: bool,
    pub approvers: Option<u32>,
}

/// The holders' names Busha reported for recipients named by id, keyed by
/// (grant, recipient id): what runs saw (`Store::seen_recipient`).
#[derive(Clone, Debug, Default)]
pub struct Holders(BTreeMap<(String, String), String>);

impl Holders {
    /// No store read: every holder is not yet known.
    pub fn unknown() -> Self {
        Self::default()
    }

    /// Reads from the store the holder of every recipient the jobs name by id.
    pub async fn read(store: &Store, jobs: &[Job]) -> Result<Self, StoreError> {
        let mut names = BTreeMap::new();
        for job in jobs {
            let grant = job.spec().grant();
            for r in recipients(job) {
                let RecipientSpec::Id { id } = r else {
                    continue;
                };
                if let Some(name) = store
                    .seen_recipient(grant, id)
                    .await?
                    .and_then(|seen| seen.holder_name)
                {
                    names.insert((grant.to_string(), id.clone()), name);
                }
            }
        }
        Ok(Self(names))
    }

    fn get(&self, grant: &str, id: &str) -> Option<&str> {
        self.0
            .get(&(grant.to_string(), id.to_string()))
            .map(String::as_str)
    }
}

fn recipients(job: &Job) -> Vec<&RecipientSpec> {
    match job.spec().payout() {
        super::Payout::Single { recipient, .. } => vec![recipient],
        super::Payout::Batch(ps) => ps.iter().map(|p| &p.recipient).collect(),
    }
}

/// Describes a recipient for people, with the account number masked: for an id, the
/// holder's name as Busha reported it to a run, or that it is not known yet; for a bank
/// account, the job's declared name, marked as such (worded as `runs::payee_shown`).
pub fn describe_recipient(r: &RecipientSpec, grant: &str, holders: &Holders) -> String {
    match r {
        RecipientSpec::Id { id } => match holders.get(grant, id) {
            Some(holder) => {
                // The provider's text, not the reviewed file's: never printed raw.
                let holder = super::text::printable(holder);
                format!("{holder} (recipient {id}; the holder's name as the provider reports it)")
            }
            None => format!(
                "recipient {id} (holder's name not yet known: it is read from the provider at the first run)"
            ),
        },
        RecipientSpec::Bank {
            bank_code,
            account_number,
            expected_name,
        } => format!(
            "{expected_name} ({} at bank {bank_code}; name as the job declares it, not yet confirmed by the provider)",
            mask_account(account_number)
        ),
    }
}

fn run_plan(job: &Job, occurrence: &str, p: &PlannedPayout, holders: &Holders) -> RunPlan {
    let spec = &p.spec;
    let (side, amount, currency) = match &spec.amount {
        Amount::Source { amount } => (Side::Source, *amount, &spec.source_currency),
        Amount::Target { amount } => (Side::Target, *amount, &spec.target_currency),
    };
    let key = p.occurrence_key(occurrence);
    RunPlan {
        run_id: RunId::derive(job.id().as_str(), &key),
        occurrence_key: key,
        payee: p.payee.clone(),
        side,
        amount,
        currency: currency.to_string(),
        recipient: describe_recipient(&spec.recipient, &spec.grant, holders),
        approval_needed: p.needs_approval,
        approvers: spec.approval.as_ref().map(|a| a.approvers),
    }
}

/// The plan of `jobs` for the `next` occurrences after `from`, every holder not yet known.
pub fn plan(jobs: &[Job], from: DateTime<Utc>, next: usize) -> Plan {
    plan_with(jobs, from, next, &Holders::unknown())
}

/// The plan of `jobs` for the `next` occurrences after `from`, with the holders' names
/// runs have read.
pub fn plan_with(jobs: &[Job], from: DateTime<Utc>, next: usize, holders: &Holders) -> Plan {
    let jobs = jobs
        .iter()
        .map(|job| {
            let spec = job.spec();
            let single_recipient = || match spec.payout() {
                super::Payout::Single { recipient, .. } => {
                    describe_recipient(recipient, spec.grant(), holders)
                }
                super::Payout::Batch(_) => String::new(),
            };
            let mut warnings = Vec::new();
            let (trigger, occurrences) = match spec.trigger() {
                Trigger::Schedule(s) => {
                    let tz = s.cron.timezone();
                    let payouts = spec.payouts(None).unwrap_or_default();
                    let occ: Vec<OccurrencePlan> = s
                        .after(from)
                        .take(next)
                        .map(|f| {
                            let key = f.occurrence_key();
                            OccurrencePlan {
                                runs: payouts
                                    .iter()
                                    .map(|p| run_plan(job, &key, p, holders))
                                    .collect(),
                                occurrence_key: key,
                                utc: f.due,
                                local: f.roll.as_ref().map_or(f.local, |r| r.local).to_rfc3339(),
                                roll: f.roll.as_ref().map(super::rolled::RollPlan::of),
                                timezone: tz.name().to_string(),
                                dst: f.dst,
                            }
                        })
                        .collect();
                    let until = occ.last().map_or(from, |o| o.utc);
                    warnings = super::rolled::calendar_warnings(s, from, until);
                    (
                        TriggerPlan::Schedule {
                            cron: s.cron.expr().to_string(),
                            timezone: tz.name().to_string(),
                            catch_up: s.catch_up.as_str().to_string(),
                            max_lateness: format_duration(s.max_lateness),
                            calendar: s.business.as_ref().map(|b| b.calendar.name.clone()),
                            roll: s.business.as_ref().map(|b| b.roll),
                        },
                        occ,
                    )
                }
                Trigger::Http(t) => (
                    TriggerPlan::Trigger {
                        side: t.side,
                        currency: match t.side {
                            Side::Source => spec.source_currency().to_string(),
                            Side::Target => spec.target_currency().to_string(),
                        },
                        min_amount: t.min_amount,
                        max_amount: t.max_amount,
                        secret_env: t.secret_env.clone(),
                        recipient: single_recipient(),
                    },
                    Vec::new(),
                ),
                Trigger::Sweep(s) => (
                    TriggerPlan::Sweep {
                        balance: s.balance.to_string(),
                        threshold: s.threshold,
                        keep: s.keep,
                        interval: format_duration(s.interval),
                        min_interval: format_duration(s.min_interval),
                        debounce: format_duration(s.debounce),
                        recipient: single_recipient(),
                    },
                    Vec::new(),
                ),
            };
            JobPlan {
                id: job.id().to_string(),
                path: job.path().to_string(),
                version: job.version().to_string(),
                description: spec.description().map(str::to_string),
                grant: spec.grant().to_string(),
                owner: spec.owner().to_string(),
                source_currency: spec.source_currency().to_string(),
                target_currency: spec.target_currency().to_string(),
                trigger,
                guard: spec.guard().clone(),
                max_requotes: spec.max_requotes(),
                limits: spec.limits().clone(),
                approval: spec.approval().cloned(),
                occurrences,
                warnings,
            }
        })
        .collect();
    let mut plan = Plan {
        from,
        jobs,
        totals: Default::default(),
    };
    plan.totals = super::totals::totals(&plan);
    plan
}

fn guard_text(g: &RateGuard, source: &str) -> String {
    let mut parts = Vec::new();
    if let Some(v) = g.min_rate {
        parts.push(format!("min_rate {v}"));
    }
    if let Some(v) = g.max_rate {
        parts.push(format!("max_rate {v}"));
    }
    if let Some(v) = g.max_drift_pct {
        parts.push(format!("max_drift {v}%"));
    }
    if let Some(v) = g.max_fees {
        parts.push(format!("max_fees {v} {source}"));
    }
    parts.join(", ")
}

/// Writes the plan for people.
pub fn write_text(out: &mut dyn Write, plan: &Plan) -> std::io::Result<()> {
    writeln!(out, "plan from {} (no money moves)", plan.from.to_rfc3339())?;
    for j in &plan.jobs {
        let src = &j.source_currency;
        writeln!(out)?;
        writeln!(
            out,
            "{} ({}) {} -> {}, grant {}, owner {}",
            j.id, j.path, src, j.target_currency, j.grant, j.owner
        )?;
        if let Some(d) = &j.description {
            writeln!(out, "  {d}")?;
        }
        match &j.trigger {
            TriggerPlan::Schedule {
                cron,
                timezone,
                catch_up,
                max_lateness,
                calendar,
                roll,
            } => {
                let days = match (calendar, roll) {
                    (Some(c), Some(r)) => {
                        format!("; business days of calendar {c}, roll {}", r.as_str())
                    }
                    _ => String::new(),
                };
                writeln!(
                    out,
                    "  schedule: {cron} in {timezone}; catch-up {catch_up} within {max_lateness}{days}"
                )?
            }
            TriggerPlan::Trigger {
                currency,
                min_amount,
                max_amount,
                secret_env,
                recipient,
                ..
            } => writeln!(
                out,
                "  on a signed POST /triggers/{} (secret in ${secret_env}): {min_amount}..{max_amount} {currency} to {recipient}",
                j.id
            )?,
            TriggerPlan::Sweep {
                balance,
                threshold,
                keep,
                interval,
                min_interval,
                debounce,
                recipient,
            } => writeln!(
                out,
                "  sweep: when available {balance} > {threshold} (checked every {interval}, debounce {debounce}, at most one per {min_interval}), send available - {keep} {balance} to {recipient}"
            )?,
        }
        writeln!(
            out,
            "  guard: {}; up to {} re-quotes",
            guard_text(&j.guard, src),
            j.max_requotes
        )?;
        let mut limits = Vec::new();
        if let Some(v) = j.limits.max_per_run {
            limits.push(format!("max {v} {src} per run"));
        }
        if let Some(v) = j.limits.job_daily_cap {
            limits.push(format!("{v} {src} per rolling 24 h"));
        }
        if !limits.is_empty() {
            writeln!(out, "  limits: {}", limits.join(", "))?;
        }
        if let Some(a) = &j.approval {
            writeln!(
                out,
                "  approval: above {} {src}, {} approver(s), never {}",
                a.above, a.approvers, j.owner
            )?;
        }
        for o in &j.occurrences {
            let dst = match o.dst {
                DstAdjustment::None => "",
                DstAdjustment::MovedPastGap => {
                    "  [local time skipped by DST: runs at the next valid instant]"
                }
                DstAdjustment::FirstOfRepeated => "  [local time repeats (DST): runs at the first]",
            };
            let roll = o.roll.as_ref().map(super::rolled::RollPlan::text);
            writeln!(
                out,
                "  {}  ({} UTC){dst}{}",
                o.local,
                o.utc.format("%Y-%m-%dT%H:%M:%SZ"),
                roll.unwrap_or_default()
            )?;
            for r in &o.runs {
                let payee = r
                    .payee
                    .as_deref()
                    .map(|p| format!("{p}: "))
                    .unwrap_or_default();
                let side = match r.side {
                    Side::Source => "send",
                    Side::Target => "deliver",
                };
                let approval = if r.approval_needed {
                    format!("APPROVAL NEEDED ({})", r.approvers.unwrap_or(1))
                } else {
                    "no approval".to_string()
                };
                writeln!(
                    out,
                    "    {payee}{side} {} {} to {}; {approval}",
                    r.amount, r.currency, r.recipient
                )?;
            }
        }
    }
    for j in &plan.jobs {
        for w in &j.warnings {
            writeln!(out, "warning: {}: {w}", j.id)?;
        }
    }
    super::totals::write_text(out, &plan.totals)
}
