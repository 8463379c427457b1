//! The jobs a running worker creates runs for, following the live job set
//! ([`crate::jobs::in_force`]): the scheduler loop and one balance watch per sweep job.
//! When a reload swaps the set, the scheduler is rebuilt on the new jobs (cursors stay
//! in the store, so nothing already decided is decided again), the watches of removed
//! or changed sweep jobs stop and those of new or changed ones start. Runs already
//! created are not touched: the worker finishes them with the spec they were sealed
//! with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::jobs::in_force::{JobSet, LiveSet, Proposal, SetVersion, propose};
use crate::jobs::scheduler::{Scheduler, SchedulerConfig, create_occurrence_in};
use crate::jobs::{Job, record_versions};
use crate::pipeline::TokenSource;
use crate::provider::busha::BushaClient;
use crate::runs::RunState;
use crate::store::{RunFilter, Store, StoreError};
use crate::triggers::{SweepRule, SweepWatch};

/// At start: records each job's version (`job.version` once per change) and proposes
/// the set as the one in force. A process that loses keeps running but creates no runs
/// until its job files agree with the set in force.
pub async fn start_set(
    store: &Store,
    set: &JobSet,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Proposal, StoreError> {
    record_versions(store, &set.jobs, actor, now).await?;
    let proposal = propose(store, &set.jobs, &set.version, actor, now).await?;
    if let Proposal::Lost { in_force } = &proposal {
        tracing::warn!(ours = %set.version, %in_force, "another worker recorded another job set meanwhile: this one creates no runs until its job files agree");
    }
    Ok(proposal)
}

/// Resolves when the live set changes; never, once its sender is gone.
async fn changed(live: &mut LiveSet) {
    if live.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The scheduler loop: every tick creates the runs that are due on the live set, while
/// that set is the one in force.
pub struct ScheduleLoop {
    pub store: Store,
    pub live: LiveSet,
    pub config: SchedulerConfig,
    pub clock: Clock,
    pub tick: Duration,
}

impl ScheduleLoop {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut scheduler: Option<(SetVersion, Scheduler)> = None;
        let mut behind = false;
        while !shutdown.is_cancelled() {
            let set = self.live.borrow_and_update().clone();
            if scheduler.as_ref().map(|(v, _)| v) != Some(&set.version) {
                match self.scheduler_for(&set).await {
                    Ok(s) => scheduler = Some((set.version.clone(), s)),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start the scheduler on the new job set; retrying")
                    }
                }
            }
            if let Some((version, s)) = &scheduler {
                match s.tick(self.clock.now()).await {
                    Ok(report) => {
                        if report.not_in_force != behind {
                            behind = report.not_in_force;
                            say_in_force(version, !behind);
                        }
                        if !report.created.is_empty() {
                            tracing::info!(
                                created = report.created.len(),
                                "scheduler created runs"
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "scheduler tick failed; retrying"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.tick) => {}
                _ = changed(&mut self.live) => {}
            }
        }
        tracing::info!("scheduler stopped");
    }

    async fn scheduler_for(&self, set: &JobSet) -> Result<Scheduler, StoreError> {
        let s = Scheduler::start(
            self.store.clone(),
            set.jobs.to_vec(),
            self.config.clone(),
            self.clock.now(),
        )
        .await?;
        Ok(s.gated_by(set.version.clone()))
    }
}

fn say_in_force(version: &SetVersion, in_force: bool) {
    metrics::gauge!("treasury_job_set_in_force").set(if in_force { 1.0 } else { 0.0 });
    if in_force {
        tracing::info!(set = %version, "this worker's job set is in force: creating runs");
    } else {
        tracing::warn!(set = %version, "this worker's job files are not the set in force: it creates no runs until they agree");
    }
}

/// What every sweep watch needs besides its job.
#[derive(Clone)]
pub struct SweepParts {
    pub store: Store,
    pub busha: BushaClient,
    pub tokens: Arc<dyn TokenSource>,
    pub clock: Clock,
    pub actor: String,
    /// Polls every sweep's balance this often instead of at its job's `interval`.
    pub poll: Option<Duration>,
}

/// Keeps one balance watch running per sweep job of the live set.
pub async fn run_sweeps(parts: SweepParts, mut live: LiveSet, shutdown: CancellationToken) {
    let tasks = TaskTracker::new();
    let mut running: BTreeMap<String, (String, CancellationToken)> = BTreeMap::new();
    loop {
        let set = live.borrow_and_update().clone();
        running.retain(|id, (version, stop)| {
            let keep = set
                .job(id)
                .is_some_and(|j| j.version() == version && j.spec().sweep().is_some());
            if !keep {
                tracing::info!(job = %id, "sweep watch stops: the job was removed or changed");
                stop.cancel();
            }
            keep
        });
        for job in set.jobs.iter().filter(|j| j.spec().sweep().is_some()) {
            let id = job.id().to_string();
            if running.contains_key(&id) {
                continue;
            }
            let stop = shutdown.child_token();
            let watch = SweepLoop {
                job: job.clone(),
                parts: parts.clone(),
                live: live.clone(),
            };
            tasks.spawn(watch.run(stop.clone()));
            running.insert(id, (job.version().to_string(), stop));
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = changed(&mut live) => {}
        }
    }
    tasks.close();
    tasks.wait().await;
}

/// The balance watch of one sweep job: polls `available`, and when the watch fires,
/// creates the sweep's run keyed by the watch tick.
struct SweepLoop {
    job: Job,
    parts: SweepParts,
    live: LiveSet,
}

impl SweepLoop {
    async fn run(self, shutdown: CancellationToken) {
        let Some(spec) = self.job.spec().sweep().cloned() else {
            return;
        };
        let rule = SweepRule {
            threshold: spec.threshold,
            keep: spec.keep,
            debounce: spec.debounce,
            min_interval: spec.min_interval,
        };
        let job_id = self.job.id().as_str().to_string();
        let last = self.runs().await.iter().map(|r| r.created_at).max();
        let mut watch = SweepWatch::resume(last);
        let interval = self
            .parts
            .poll
            .unwrap_or_else(|| spec.interval.to_std().unwrap_or(Duration::from_secs(60)));
        while !shutdown.is_cancelled() {
            if let Err(e) = self.poll(&mut watch, &rule, &spec.balance).await {
                tracing::warn!(job = %job_id, error = %e, "sweep watch could not poll");
            }
            tokio::select! { _ = shutdown.cancelled() => break, _ = tokio::time::sleep(interval) => {} }
        }
    }

    async fn runs(&self) -> Vec<crate::runs::Run> {
        self.parts
            .store
            .list_runs(&RunFilter {
                job_id: Some(self.job.id().as_str().to_string()),
                ..RunFilter::default()
            })
            .await
            .unwrap_or_default()
    }

    /// The version of the live set, if it still holds this very job (a watch whose job
    /// a reload changed or removed is being stopped, and must create nothing).
    fn set_holding_job(&self) -> Option<SetVersion> {
        let set = self.live.borrow();
        set.job(self.job.id().as_str())
            .filter(|j| j.version() == self.job.version())
            .map(|_| set.version.clone())
    }

    async fn poll(
        &self,
        watch: &mut SweepWatch,
        rule: &SweepRule,
        currency: &crate::money::Currency,
    ) -> Result<(), String> {
        let p = &self.parts;
        let token = p
            .tokens
            .access_token(self.job.spec().grant())
            .await
            .map_err(|e| e.to_string())?;
        let balance = p
            .busha
            .get_balance(&token, currency.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let in_flight = self
            .runs()
            .await
            .iter()
            .any(|r| !r.state.is_final() && r.state != RunState::AwaitingApproval);
        let now = p.clock.now();
        let Some(amount) = watch.observe(rule, balance.value.available.amount, now, in_flight)
        else {
            return Ok(());
        };
        let Some(set) = self.set_holding_job() else {
            return Ok(());
        };
        let key = format!("sweep@{}", now.format("%Y-%m-%dT%H:%M:%SZ"));
        let runs = create_occurrence_in(
            &p.store,
            Some(&set),
            &self.job,
            &key,
            Some(amount),
            &p.actor,
            now,
        )
        .await
        .map_err(|e| e.to_string())?;
        tracing::info!(job = %self.job.id().as_str(), %amount, runs = runs.len(), "sweep fired");
        Ok(())
    }
}
