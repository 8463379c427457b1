//! Job-file edits picked up without a restart (issue 15 §4).
//!
//! The worker watches its jobs folder (`notify`) and listens for `SIGHUP`. Either one
//! makes it read the whole folder again and check it exactly as `treasury run` does at
//! start ([`check`]): every file, the calendars, the grants' declared and stored
//! scopes, the owners as operator accounts, and each trigger job's secret.
//!
//! - A set with any error is refused whole: the old set keeps running, and one
//!   `jobs.reload.refused` audit entry names every error (the alert watcher raises it).
//! - A valid, different set writes one `job.version` entry per new or changed job
//!   (version and previous), is proposed as the set in force ([`super::in_force`]), and
//!   replaces the old set for every occurrence not yet created. Runs already created
//!   keep the spec they were sealed with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::in_force::{JobSet, Proposal, SetVersion, propose};
use super::spec::Job;
use crate::audit::NewAuditEntry;
use crate::clock::Clock;
use crate::config::Settings;
use crate::store::{Store, StoreError};
use crate::triggers::TriggerKeys;

/// How long a burst of file events (an editor's write, rename, chmod) may settle
/// before the folder is read.
const SETTLE: Duration = Duration::from_millis(250);

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The files are the set already running.
    Unchanged,
    /// A new set replaced the old one. `changed`: jobs whose version was new to the store.
    Applied {
        version: SetVersion,
        changed: usize,
        proposal: Proposal,
    },
    /// The set has errors; the old set keeps running.
    Refused { errors: Vec<String> },
}

/// Jobs that `owner` names but that is not an operator account (by confusable
/// skeleton, as approvals match), each as `job <id> names owner "<owner>"`.
pub async fn owners_not_accounts(store: &Store, jobs: &[Job]) -> Result<Vec<String>, StoreError> {
    let mut missing = Vec::new();
    for job in jobs {
        let skeleton = crate::operators::skeleton(job.spec().owner());
        if store.operator_by_skeleton(&skeleton).await?.is_none() {
            missing.push(format!(
                "job {} names owner {:?}",
                job.id(),
                job.spec().owner()
            ));
        }
    }
    Ok(missing)
}

/// Reads and checks the whole set in `dir` as `treasury run` does at start. `Ok(Err)`:
/// every error found, as `file:line:col: message` where there is a place.
pub async fn check(
    store: &Store,
    settings: &Settings,
    dir: &Path,
) -> Result<Result<(Vec<Job>, TriggerKeys), Vec<String>>, StoreError> {
    let jobs = match super::load(dir, settings) {
        Ok(jobs) => jobs,
        Err(super::JobsError::Invalid(diags)) => {
            return Ok(Err(diags.iter().map(ToString::to_string).collect()));
        }
        Err(e) => return Ok(Err(vec![e.to_string()])),
    };
    let mut errors: Vec<String> = super::check_stored_scopes(store, &jobs, &settings.grants)
        .await?
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    errors.extend(
        owners_not_accounts(store, &jobs)
            .await?
            .into_iter()
            .map(|m| format!("{m}, which is not an operator account")),
    );
    match TriggerKeys::from_env(&jobs) {
        Ok(keys) if errors.is_empty() => Ok(Ok((jobs, keys))),
        Ok(_) => Ok(Err(errors)),
        Err(e) => {
            errors.push(e.replacen("refusing to start", "refusing the set", 1));
            Ok(Err(errors))
        }
    }
}

/// Reloads one process's job set on file changes and `SIGHUP`.
pub struct Reloader {
    store: Store,
    settings: Settings,
    dir: PathBuf,
    clock: Clock,
    actor: String,
    live: watch::Sender<Arc<JobSet>>,
    /// The errors last refused, so that repeated events for one broken edit audit it once.
    last_refused: Option<Vec<String>>,
}

impl Reloader {
    /// `live` holds the set running now; each applied reload replaces it.
    pub fn new(
        store: Store,
        settings: Settings,
        dir: PathBuf,
        clock: Clock,
        actor: String,
        live: watch::Sender<Arc<JobSet>>,
    ) -> Self {
        Self {
            store,
            settings,
            dir,
            clock,
            actor,
            live,
            last_refused: None,
        }
    }

    /// Reads the folder once and applies or refuses what it holds.
    pub async fn reload(&mut self) -> Result<ReloadOutcome, StoreError> {
        match check(&self.store, &self.settings, &self.dir).await? {
            Ok((jobs, keys)) => self.apply(jobs, keys).await,
            Err(errors) => self.refuse(errors).await,
        }
    }

    async fn apply(
        &mut self,
        jobs: Vec<Job>,
        keys: TriggerKeys,
    ) -> Result<ReloadOutcome, StoreError> {
        self.last_refused = None;
        let current = self.live.borrow().clone();
        let version = SetVersion::of(&jobs);
        if version == current.version {
            return Ok(ReloadOutcome::Unchanged);
        }
        let now = self.clock.now();
        let changed = super::record_versions(&self.store, &jobs, &self.actor, now).await?;
        let proposal = propose(&self.store, &jobs, &version, &self.actor, now).await?;
        let mut removed = current.removed.clone();
        removed.extend(
            current
                .jobs
                .iter()
                .map(|j| j.id().to_string())
                .filter(|id| !jobs.iter().any(|j| j.id().as_str() == id)),
        );
        removed.retain(|id| !jobs.iter().any(|j| j.id().as_str() == id));
        let keys = keys.keeping(&current.keys, removed.iter().map(String::as_str));
        let mut set = JobSet::new(jobs, keys);
        set.removed = removed;
        tracing::info!(version = %version, previous = %current.version, jobs = set.jobs.len(), changed, removed = set.removed.len(), proposal = ?proposal, "job set reloaded");
        self.live.send_replace(Arc::new(set));
        Ok(ReloadOutcome::Applied {
            version,
            changed,
            proposal,
        })
    }

    async fn refuse(&mut self, errors: Vec<String>) -> Result<ReloadOutcome, StoreError> {
        if self.last_refused.as_ref() != Some(&errors) {
            let in_force = self.live.borrow().version.clone();
            let reason = format!(
                "{} error(s) in {}; the old set keeps running: {}",
                errors.len(),
                self.dir.display(),
                errors.join("; ")
            );
            tracing::error!(dir = %self.dir.display(), errors = errors.len(), %reason, "job files refused");
            let entry = NewAuditEntry::new(
                &self.actor,
                "jobs.reload.refused",
                json!({
                    "dir": self.dir.display().to_string(),
                    "errors": errors,
                    "reason": reason,
                    "running": in_force.as_str(),
                }),
            );
            self.store.append_audit(self.clock.now(), entry).await?;
            self.last_refused = Some(errors.clone());
        }
        Ok(ReloadOutcome::Refused { errors })
    }

    /// Reloads on every change to a job file in the folder and on every `SIGHUP`, until
    /// `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _watcher = watch_folder(&self.dir, tx);
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; job files reload on file changes only");
                None
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(()) = rx.recv() => {}
                Some(()) = hangup_of(&mut hangup) => tracing::info!("SIGHUP: reading the job files again"),
            }
            tokio::select! { _ = shutdown.cancelled() => break, _ = tokio::time::sleep(SETTLE) => {} }
            while rx.try_recv().is_ok() {}
            match self.reload().await {
                Ok(outcome) => tracing::debug!(?outcome, "job files read again"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reload the job files: the store did not answer; the old set keeps running")
                }
            }
        }
    }
}

async fn hangup_of(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Watches `dir` for changes to `*.toml` files (not reads: reading the folder must not
/// trigger another read). `None` when the platform refuses (logged; `SIGHUP` still works).
fn watch_folder(dir: &Path, tx: mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let job_file = event
            .paths
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "toml"));
        if job_file && !matches!(event.kind, EventKind::Access(_)) {
            let _ = tx.send(());
        }
    };
    let watched = notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(dir, RecursiveMode::NonRecursive)?;
        Ok(w)
    });
    match watched {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the jobs folder; send SIGHUP to reload");
            None
        }
    }
}
