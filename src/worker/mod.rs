//! The worker: the dispatcher, the queue consumers and the purge, under one
//! cancellation token and one task tracker.
//!
//! - The **dispatcher** ([`dispatcher`]) is the only producer. Every tick it sends out
//!   the runs that are due, keeping at most `window` of them queued and unstarted, and
//!   marks each dispatch in the store. At startup and every `recovery_interval` it
//!   compares the store's undelivered dispatches with what the queue still holds and
//!   sends the missing ones out again (a lost message loses nothing). A dispatch that
//!   sat undelivered past `redispatch_after` is sent again under a new generation.
//! - The **consumers** ([`supervisor`]) run apalis workers, each under our own
//!   supervisor: apalis workers die on any transient backend error, and a restart under
//!   the same name is refused for a while, so each start gets a fresh name
//!   `{host}-{pid}-{n}` and restarts back off exponentially.
//! - The **purge** deletes finished queue rows with our own SQL, so that the queue's
//!   per-ack cost does not grow with history.
//!
//! A run that waits (`Executed::Waiting`) needs nothing from the worker: its
//! `next_attempt_at` is in the store, and the dispatcher sends it out when due.
//!
//! Shutdown: cancelling the token stops dispatching and claiming; executions in flight
//! finish, up to `shutdown_timeout`, after which they are dropped where they stand.
//! A dropped execution keeps its fenced lease until it lapses, so no second executor
//! can start it meanwhile, and the next dispatch after the lapse completes it.

mod dispatcher;
mod supervisor;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::pipeline::{Executed, Pipeline};
use crate::queue::{Handler, Queue};
use crate::runs::RunId;

/// The worker's knobs. [`WorkerConfig::default`] is the production setting.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Queue consumers (apalis workers) in this process; each runs
    /// `QueueConfig::concurrency` executions at a time.
    pub consumers: usize,
    /// How often the dispatcher looks for due runs.
    pub tick: Duration,
    /// At most this many runs sent out and not yet started. apalis-redis wedges with
    /// more than ≈8,000 due tasks and apalis-sqlite slows with queue size.
    pub window: usize,
    /// A dispatch still undelivered after this long is sent again (new generation).
    pub redispatch_after: Duration,
    /// How often undelivered dispatches are checked against the queue's contents.
    pub recovery_interval: Duration,
    /// Dispatches younger than this are left out of the periodic check (another
    /// process may be between its mark and its push).
    pub recovery_grace: Duration,
    /// How often finished queue rows are purged, and how old they must be.
    pub purge_interval: Duration,
    pub purge_after: Duration,
    /// The bound on a graceful shutdown.
    pub shutdown_timeout: Duration,
    /// A consumer's restart backoff, doubling from `min` to `max`; reset after a
    /// consumer has lived `restart_healthy`.
    pub restart_backoff_min: Duration,
    pub restart_backoff_max: Duration,
    pub restart_healthy: Duration,
    /// The host part of consumer names.
    pub host: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            consumers: 2,
            tick: Duration::from_millis(200),
            window: 1_000,
            redispatch_after: Duration::from_secs(600),
            recovery_interval: Duration::from_secs(30),
            recovery_grace: Duration::from_secs(5),
            purge_interval: Duration::from_secs(5),
            purge_after: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(10),
            restart_backoff_min: Duration::from_millis(200),
            restart_backoff_max: Duration::from_secs(10),
            restart_healthy: Duration::from_secs(30),
            host: hostname(),
        }
    }
}

/// What the worker has done so far (metrics hooks and tests).
#[derive(Clone, Debug, Default)]
pub struct WorkerStatus {
    /// The current name of each consumer slot.
    pub consumers: Vec<String>,
    /// Consumer exits that were followed by a restart.
    pub restarts: u64,
    /// Runs sent out (including re-dispatches).
    pub dispatched: u64,
    /// Undelivered dispatches found missing from the queue and sent out again.
    pub recovered: u64,
    /// Executions finished by this worker's consumers.
    pub executed: u64,
    /// Finished queue rows purged.
    pub purged: u64,
}

#[derive(Default)]
pub(crate) struct Stats {
    consumers: Mutex<Vec<String>>,
    restarts: AtomicU64,
    dispatched: AtomicU64,
    recovered: AtomicU64,
    executed: AtomicU64,
    purged: AtomicU64,
    /// Process-wide start counter: the `n` of `{host}-{pid}-{n}`.
    starts: AtomicU64,
}

/// How a shutdown went.
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// Everything stopped on its own within the bound; otherwise executions still in
    /// flight at the deadline were dropped (their leases lapse).
    pub clean: bool,
    pub took: Duration,
}

/// The worker, built but not started.
pub struct Worker {
    pipeline: Pipeline,
    queue: Queue,
    clock: Clock,
    cfg: WorkerConfig,
}

impl Worker {
    /// `clock` must be the pipeline's clock (it decides what is due).
    pub fn new(pipeline: Pipeline, queue: Queue, clock: Clock, cfg: WorkerConfig) -> Self {
        Self {
            pipeline,
            queue,
            clock,
            cfg,
        }
    }

    /// Starts the dispatcher, the consumers and the purge. They run until `token` is
    /// cancelled; then [`WorkerHandle::join`] drains them within the bound.
    pub fn start(self, token: CancellationToken) -> WorkerHandle {
        let tracker = TaskTracker::new();
        let stats = Arc::new(Stats::default());
        let mut tasks = Vec::new();
        let store = self.pipeline.store().clone();

        tasks.push(tracker.spawn(dispatcher::run(
            store,
            self.queue.clone(),
            self.clock.clone(),
            self.cfg.clone(),
            stats.clone(),
            token.clone(),
        )));
        tasks.push(tracker.spawn(dispatcher::purge(
            self.queue.clone(),
            self.cfg.clone(),
            stats.clone(),
            token.clone(),
        )));
        let handler = execute_handler(self.pipeline.clone(), stats.clone());
        stats
            .consumers
            .lock()
            .resize(self.cfg.consumers, String::new());
        for slot in 0..self.cfg.consumers {
            tasks.push(tracker.spawn(supervisor::supervise(
                slot,
                self.queue.clone(),
                handler.clone(),
                self.cfg.clone(),
                stats.clone(),
                token.clone(),
            )));
        }
        tracker.close();
        tracing::info!(
            consumers = self.cfg.consumers,
            window = self.cfg.window,
            "worker started"
        );
        WorkerHandle {
            token,
            tracker,
            tasks,
            stats,
            shutdown_timeout: self.cfg.shutdown_timeout,
        }
    }

    /// Starts the worker and returns when `token` is cancelled and the worker has
    /// drained (within `shutdown_timeout`). What `treasury run` calls.
    pub async fn run(self, token: CancellationToken) -> Shutdown {
        self.start(token).join().await
    }
}

/// A running worker.
pub struct WorkerHandle {
    token: CancellationToken,
    tracker: TaskTracker,
    tasks: Vec<JoinHandle<()>>,
    stats: Arc<Stats>,
    shutdown_timeout: Duration,
}

impl WorkerHandle {
    pub fn status(&self) -> WorkerStatus {
        let s = &self.stats;
        WorkerStatus {
            consumers: s.consumers.lock().clone(),
            restarts: s.restarts.load(Ordering::Relaxed),
            dispatched: s.dispatched.load(Ordering::Relaxed),
            recovered: s.recovered.load(Ordering::Relaxed),
            executed: s.executed.load(Ordering::Relaxed),
            purged: s.purged.load(Ordering::Relaxed),
        }
    }

    /// The token that stops the worker.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Cancels the token and drains; see [`WorkerHandle::join`].
    pub async fn shutdown(self) -> Shutdown {
        self.token.cancel();
        self.join().await
    }

    /// Waits for the token to be cancelled, then for the parts to stop: executions in
    /// flight may finish within `shutdown_timeout`; past it they are dropped.
    pub async fn join(self) -> Shutdown {
        self.token.cancelled().await;
        let started = Instant::now();
        let clean = tokio::time::timeout(self.shutdown_timeout, self.tracker.wait())
            .await
            .is_ok();
        if !clean {
            tracing::warn!(
                timeout = ?self.shutdown_timeout,
                "worker did not drain in time; dropping executions in flight (their leases lapse)"
            );
            for task in &self.tasks {
                task.abort();
            }
            // Aborted tasks stop at their next await point.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.tracker.wait()).await;
        }
        let took = started.elapsed();
        tracing::info!(clean, ?took, "worker stopped");
        Shutdown { clean, took }
    }
}

/// The consumer's handler: execute under the run's lease; the pipeline records every
/// outcome, so there is nothing to return.
fn execute_handler(pipeline: Pipeline, stats: Arc<Stats>) -> Handler {
    Arc::new(move |run: RunId| {
        let pipeline = pipeline.clone();
        let stats = stats.clone();
        Box::pin(async move {
            match pipeline.execute(&run).await {
                Ok(Executed::Waiting(until)) => {
                    tracing::debug!(run = %run, %until, "run waits; due again at next_attempt_at")
                }
                Ok(outcome) => tracing::debug!(run = %run, ?outcome, "run executed"),
                // The lease was released (or lapses); the run stays due and is sent
                // out again. Nothing to retry here.
                Err(e) => tracing::warn!(run = %run, error = %e, "execution stopped"),
            }
            stats.executed.fetch_add(1, Ordering::Relaxed);
        })
    })
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
