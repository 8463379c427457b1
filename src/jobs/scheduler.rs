//! The scheduler tick: due occurrences of every scheduled job become run rows, exactly
//! once (invariant 2).
//!
//! Each job has a cursor in the store: every occurrence at or before it has been
//! decided. A tick at `now` takes the occurrences in `(cursor, now]`, lets the job's
//! catch-up policy decide which run ([`super::schedule::decide`]), creates their runs,
//! and only then moves the cursor to `now` by compare-and-set. So:
//! - two schedulers on one store may both create a run for an occurrence, and the
//!   store's unique (job id, occurrence key) lets exactly one through;
//! - a crash between creating runs and moving the cursor repeats creations that are
//!   no-ops;
//! - downtime leaves the cursor behind, and the next tick's catch-up sees what was missed.
//!
//! A job whose grant is not usable is held: no runs, and its cursor stays put, so that
//! when the customer reconnects, catch-up decides what was missed while it was held.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

pub use super::occurrence::{OccurrenceError, create_occurrence, create_occurrence_in};

use super::in_force::SetVersion;
use super::schedule::Fire;
use super::spec::Job;
use crate::audit::NewAuditEntry;
use crate::grants::{Usability, usability};
use crate::runs::RunId;
use crate::store::{Store, StoreError};

/// How a scheduler behaves.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Written as the actor of its audit entries (`worker:<host>-<pid>`).
    pub actor: String,
    /// An occurrence no later than this is on time and always runs; a later one was
    /// missed and the job's catch-up policy decides. Keep it above the tick interval.
    pub grace: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            actor: format!("worker:scheduler-{}", std::process::id()),
            grace: Duration::minutes(2),
        }
    }
}

/// A job that created no runs because its grant cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldJob {
    pub job_id: String,
    pub grant: String,
    pub reason: String,
}

/// What one tick did.
#[derive(Clone, Debug, Default)]
pub struct TickReport {
    /// Runs this tick created.
    pub created: Vec<RunId>,
    /// Runs that were due but already existed (another scheduler, or a retried tick).
    pub already_existed: usize,
    /// Occurrences the catch-up policy skipped: (job id, occurrence key).
    pub skipped: Vec<(String, String)>,
    /// Jobs held because their grant is not usable.
    pub held: Vec<HeldJob>,
    /// Jobs whose runs could not be built: (job id, reason).
    pub failed: Vec<(String, String)>,
    /// This scheduler's job set is not the one in force: the tick created nothing and
    /// moved no cursor from the moment it found out.
    pub not_in_force: bool,
}

/// Records every job's file version, auditing each change as `job.version` once,
/// whichever worker loads it first. Returns how many versions were new.
pub async fn record_versions(
    store: &Store,
    jobs: &[Job],
    actor: &str,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut changed = 0;
    for job in jobs {
        let new = store
            .record_job_version(
                job.id().as_str(),
                job.version(),
                job.path(),
                job.source(),
                now,
                |prev| {
                    NewAuditEntry::new(
                        actor,
                        "job.version",
                        json!({"version": job.version(), "previous": prev, "path": job.path()}),
                    )
                    .job(job.id().as_str())
                },
            )
            .await?;
        if new {
            tracing::info!(job = %job.id(), version = %job.version(), path = %job.path(), "job version loaded");
            changed += 1;
        }
    }
    Ok(changed)
}

/// Creates runs for scheduled jobs' occurrences. Cheap to share; holds no state of its
/// own beyond the loaded jobs (the cursors live in the store).
pub struct Scheduler {
    store: Store,
    jobs: Vec<Job>,
    config: SchedulerConfig,
    /// The job set these jobs belong to: when set, nothing is created and no cursor
    /// moves unless it is the set in force.
    set: Option<SetVersion>,
}

impl Scheduler {
    /// Records the jobs' versions (see [`record_versions`]), keeps the scheduled ones,
    /// and starts the cursor of any job seen for the first time at `now`.
    pub async fn start(
        store: Store,
        jobs: Vec<Job>,
        config: SchedulerConfig,
        now: DateTime<Utc>,
    ) -> Result<Scheduler, StoreError> {
        record_versions(&store, &jobs, &config.actor, now).await?;
        let jobs: Vec<Job> = jobs
            .into_iter()
            .filter(|j| j.spec().schedule().is_some())
            .collect();
        // A job is owed occurrences from when a scheduler first loaded it, not from
        // before it existed. Existing cursors are left alone (that is catch-up).
        for job in &jobs {
            store.schedule_cursor(job.id().as_str(), now).await?;
        }
        Ok(Scheduler {
            store,
            jobs,
            config,
            set: None,
        })
    }

    /// Creates runs only while `set` is the job set in force (see [`super::in_force`]).
    pub fn gated_by(mut self, set: SetVersion) -> Self {
        self.set = Some(set);
        self
    }

    /// The scheduled jobs.
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// Creates the runs due at `now`. A store error ends the tick early; everything done
    /// so far is idempotent, so the next tick simply carries on.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickReport, StoreError> {
        let mut report = TickReport::default();
        if let Some(set) = &self.set {
            if !super::in_force::is_in_force(&self.store, set).await? {
                report.not_in_force = true;
                return Ok(report);
            }
        }
        let mut grants: BTreeMap<&str, Usability> = BTreeMap::new();
        for job in &self.jobs {
            let Some(schedule) = job.spec().schedule() else {
                continue;
            };
            let alias = job.spec().grant();
            if !grants.contains_key(alias) {
                grants.insert(alias, usability(&self.store, "busha", alias).await?);
            }
            let reason = match &grants[alias] {
                Usability::Usable => None,
                Usability::Held { status, reason } => {
                    Some(format!("grant {alias} is {}: {reason}", status.as_str()))
                }
                Usability::NotConnected => Some(format!("grant {alias} is not connected")),
            };
            if let Some(reason) = reason {
                tracing::warn!(job = %job.id(), grant = alias, %reason, "job held: its grant is not usable");
                report.held.push(HeldJob {
                    job_id: job.id().to_string(),
                    grant: alias.to_string(),
                    reason,
                });
                continue;
            }

            let cursor = self.store.schedule_cursor(job.id().as_str(), now).await?;
            if now <= cursor {
                continue;
            }
            let due = schedule.between(cursor, now);
            let decision = super::schedule::decide(
                due,
                now,
                self.config.grace,
                schedule.catch_up,
                schedule.max_lateness,
            );
            let mut failed = false;
            for fire in &decision.run {
                match create_occurrence_in(
                    &self.store,
                    self.set.as_ref(),
                    job,
                    &fire.occurrence_key(),
                    None,
                    &self.config.actor,
                    now,
                )
                .await
                {
                    Ok(runs) => {
                        for (id, created) in runs {
                            if created {
                                report.created.push(id);
                            } else {
                                report.already_existed += 1;
                            }
                        }
                    }
                    Err(OccurrenceError::Store(e)) => return Err(e),
                    // The set changed under this tick: stop before any cursor moves.
                    Err(OccurrenceError::NotInForce { .. }) => {
                        report.not_in_force = true;
                        return Ok(report);
                    }
                    Err(OccurrenceError::Payout(e)) => {
                        // Cannot happen for a parsed scheduled job; keep the cursor so
                        // that nothing is silently lost, and say so.
                        tracing::error!(job = %job.id(), error = %e, "cannot build the job's runs");
                        report.failed.push((job.id().to_string(), e.to_string()));
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                continue;
            }
            let audit = (!decision.skipped.is_empty())
                .then(|| skipped_entry(job, &decision.skipped, &self.config.actor));
            let moved = self
                .store
                .advance_schedule_cursor(
                    self.set.as_ref().map(SetVersion::as_str),
                    job.id().as_str(),
                    cursor,
                    now,
                    audit,
                )
                .await?;
            if moved && !decision.skipped.is_empty() {
                tracing::warn!(job = %job.id(), count = decision.skipped.len(), policy = schedule.catch_up.as_str(), "missed occurrences skipped");
                report.skipped.extend(
                    decision
                        .skipped
                        .iter()
                        .map(|f| (job.id().to_string(), f.occurrence_key())),
                );
            }
        }
        Ok(report)
    }
}

fn skipped_entry(job: &Job, skipped: &[Fire], actor: &str) -> NewAuditEntry {
    let keys: Vec<String> = skipped.iter().take(50).map(Fire::occurrence_key).collect();
    let policy = job
        .spec()
        .schedule()
        .map_or("skip", |s| s.catch_up.as_str());
    NewAuditEntry::new(
        actor,
        "job.occurrences.skipped",
        json!({
            "count": skipped.len(),
            "first": skipped.first().map(Fire::occurrence_key),
            "last": skipped.last().map(Fire::occurrence_key),
            "occurrence_keys": keys,
            "catch_up": policy,
            "job_version": job.version(),
        }),
    )
    .job(job.id().as_str())
}
