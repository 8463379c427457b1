//! The job set in force: many processes on one store agree on one set of job versions,
//! and only a process on that set creates runs (issue 15 §4).
//!
//! A process's set is every job it loaded, named by a [`SetVersion`] (SHA-256 over each
//! job's id and file version). When a process loads a valid set (at start, or on a
//! reload) it proposes it: a compare-and-set on the store's one `job_set_in_force` row,
//! audited as `jobs.set.in_force` with the jobs it adds, changes and removes. The
//! newest set loaded wins; a process whose files differ creates no runs (no ticks, no
//! triggers, no sweeps) until its files agree again. Every run creation checks the row
//! in its own transaction ([`crate::store::Store::create_occurrence_runs`]), so that a
//! set changing mid-tick cannot mix two specs into one occurrence.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::spec::Job;
use crate::audit::NewAuditEntry;
use crate::store::{Store, StoreError};
use crate::triggers::TriggerKeys;

/// The version of a whole job set: SHA-256 (hex) over each job's id and file version,
/// sorted by id. Two processes with the same files have the same version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SetVersion(String);

impl SetVersion {
    pub fn of(jobs: &[Job]) -> Self {
        let mut h = Sha256::new();
        for (id, version) in versions(jobs) {
            h.update(id.as_bytes());
            h.update([0u8]);
            h.update(version.as_bytes());
            h.update([b'\n']);
        }
        Self(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SetVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn versions(jobs: &[Job]) -> BTreeMap<String, String> {
    jobs.iter()
        .map(|j| (j.id().to_string(), j.version().to_string()))
        .collect()
}

/// The jobs a process runs, as one unit: what the scheduler, the triggers and the
/// sweeps read, swapped whole on a reload.
#[derive(Debug)]
pub struct JobSet {
    pub jobs: Arc<Vec<Job>>,
    pub version: SetVersion,
    /// Every trigger job's key, plus the keys of trigger jobs this process has since
    /// dropped, so that a signed trigger for a removed job is told it was removed.
    pub keys: Arc<TriggerKeys>,
    /// Job ids this process ran before and that the set no longer holds.
    pub removed: BTreeSet<String>,
}

impl JobSet {
    pub fn new(jobs: Vec<Job>, keys: TriggerKeys) -> Self {
        Self {
            version: SetVersion::of(&jobs),
            jobs: Arc::new(jobs),
            keys: Arc::new(keys),
            removed: BTreeSet::new(),
        }
    }

    /// The job `id`, if the set holds it.
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id().as_str() == id)
    }
}

/// How the set in force is shared in one process: the reloader sends, the scheduler,
/// the triggers and the sweeps read the latest.
pub type LiveSet = tokio::sync::watch::Receiver<Arc<JobSet>>;

/// What proposing a set did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Proposal {
    /// The set was already in force.
    AlreadyInForce,
    /// This process recorded it.
    Recorded,
    /// Another process recorded another set meanwhile; ours is not in force.
    Lost { in_force: String },
}

/// Proposes `jobs` (of version `version`) as the set in force: one compare-and-set
/// against the row as read, audited as `jobs.set.in_force`.
pub async fn propose(
    store: &Store,
    jobs: &[Job],
    version: &SetVersion,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Proposal, StoreError> {
    let current = store.job_set_in_force().await?;
    if current
        .as_ref()
        .is_some_and(|c| c.version == version.as_str())
    {
        return Ok(Proposal::AlreadyInForce);
    }
    let ours = versions(jobs);
    let theirs: BTreeMap<String, String> = current
        .as_ref()
        .and_then(|c| serde_json::from_str(&c.jobs).ok())
        .unwrap_or_default();
    let mut payload = change(&ours, &theirs);
    payload["version"] = json!(version.as_str());
    payload["previous"] = json!(current.as_ref().map(|c| c.version.clone()));
    let entry = NewAuditEntry::new(actor, "jobs.set.in_force", payload);
    let jobs_json = serde_json::to_string(&ours).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let seen = current.as_ref().map(|c| c.generation);
    if store
        .propose_job_set(seen, version.as_str(), &jobs_json, actor, now, entry)
        .await?
    {
        metrics::counter!("treasury_job_set_changes_total").increment(1);
        return Ok(Proposal::Recorded);
    }
    let now_in_force = store.job_set_in_force().await?;
    Ok(match now_in_force {
        Some(row) if row.version == version.as_str() => Proposal::AlreadyInForce,
        Some(row) => Proposal::Lost {
            in_force: row.version,
        },
        None => Proposal::Lost {
            in_force: String::new(),
        },
    })
}

/// The payload of `jobs.set.in_force`: which jobs the set adds, changes and removes.
fn change(ours: &BTreeMap<String, String>, theirs: &BTreeMap<String, String>) -> serde_json::Value {
    let added: Vec<&String> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    let changed: Vec<&String> = ours
        .iter()
        .filter(|(k, v)| theirs.get(*k).is_some_and(|t| t != *v))
        .map(|(k, _)| k)
        .collect();
    let removed: Vec<&String> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    json!({ "added": added, "changed": changed, "removed": removed, "jobs": ours.len() })
}

/// Whether `version` is the set in force now.
pub async fn is_in_force(store: &Store, version: &SetVersion) -> Result<bool, StoreError> {
    Ok(store
        .job_set_in_force()
        .await?
        .is_some_and(|row| row.version == version.as_str()))
}
