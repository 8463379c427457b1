//! One occurrence of a job made into its runs (one per payee for a batch), in one
//! transaction with their sealed `run.created` entries: what the scheduler, triggers
//! and sweeps call. For a process on a job set, nothing is created unless that set is
//! the one in force ([`super::in_force`]).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::json;

use super::in_force::SetVersion;
use super::spec::{Job, PayoutError};
use crate::audit::NewAuditEntry;
use crate::runs::{Amount, Run, RunId};
use crate::store::{OccurrenceWrite, Store, StoreError};

/// Why an occurrence's runs were not created.
#[derive(Debug, thiserror::Error)]
pub enum OccurrenceError {
    #[error(transparent)]
    Payout(#[from] PayoutError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This process's job set is not the one in force: nothing was created.
    #[error(
        "this worker's job set {ours} is not the one in force ({}): it creates no runs until its job files agree",
        in_force.as_deref().unwrap_or("none recorded")
    )]
    NotInForce {
        ours: String,
        in_force: Option<String>,
    },
}

/// Creates the runs of one occurrence of `job` (one per payee for a batch), each with
/// its `run.created` audit entry. `amount`: `None` for schedules, the request's amount
/// for triggers, `available - keep` for sweeps. Returns each run's id and whether this
/// call created it (`false`: it already existed; a replay creates nothing).
///
/// This is what triggers and sweeps call with their event id or watch tick.
pub async fn create_occurrence(
    store: &Store,
    job: &Job,
    occurrence_key: &str,
    amount: Option<Decimal>,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Vec<(RunId, bool)>, OccurrenceError> {
    create_occurrence_in(store, None, job, occurrence_key, amount, actor, now).await
}

/// As [`create_occurrence`], for a process running the job set `set`: nothing is
/// created unless `set` is the one in force (checked in the creating transaction). All
/// of an occurrence's runs are created in one transaction, and an occurrence that
/// already has runs from another version of the job gets none from this one: its
/// existing runs are answered as already existing.
pub async fn create_occurrence_in(
    store: &Store,
    set: Option<&SetVersion>,
    job: &Job,
    occurrence_key: &str,
    amount: Option<Decimal>,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Vec<(RunId, bool)>, OccurrenceError> {
    let runs = job.runs(occurrence_key, amount, now)?;
    let shown: Vec<(String, String)> = runs
        .iter()
        .map(|r| (r.occurrence_key.clone(), r.state.to_string()))
        .collect();
    let entries = runs
        .into_iter()
        .map(|run| {
            let entry = created_entry(job, &run, actor);
            (run, entry)
        })
        .collect();
    let written = store
        .create_occurrence_runs(set.map(SetVersion::as_str), occurrence_key, entries)
        .await?;
    match written {
        OccurrenceWrite::Written(out) => {
            for ((id, created), (key, state)) in out.iter().zip(&shown) {
                if *created {
                    tracing::info!(job = %job.id(), run = %id, occurrence = %key, %state, "run created");
                }
            }
            Ok(out)
        }
        OccurrenceWrite::OtherVersion { version, runs } => {
            tracing::warn!(job = %job.id(), occurrence = occurrence_key, created_by = %version, ours = %job.version(), "occurrence already created from another version of the job; it keeps that spec");
            Ok(runs.into_iter().map(|id| (id, false)).collect())
        }
        OccurrenceWrite::NotInForce { in_force } => Err(OccurrenceError::NotInForce {
            ours: set.map(ToString::to_string).unwrap_or_default(),
            in_force,
        }),
    }
}

fn created_entry(job: &Job, run: &Run, actor: &str) -> NewAuditEntry {
    let (side, amount, currency) = match &run.spec.amount {
        Amount::Source { amount } => ("source", amount, &run.spec.source_currency),
        Amount::Target { amount } => ("target", amount, &run.spec.target_currency),
    };
    NewAuditEntry::new(
        actor,
        "run.created",
        json!({
            "occurrence_key": run.occurrence_key,
            "job_version": run.job_version,
            "trigger": job.spec().trigger().kind(),
            "state": run.state.as_str(),
            "amount": amount.to_string(),
            "side": side,
            "currency": currency.as_str(),
            "grant": run.spec.grant,
        }),
    )
    .run(run.id.as_str())
    .job(job.id().as_str())
}
