//! The dispatch queue: a thin layer that carries run ids to executors (invariant 1).
//!
//! The store is the system of record; the queue only says "look at run X now". It is
//! at-least-once, so every delivery may be duplicated or lost, and nothing here may
//! matter for correctness: the pipeline's fenced lease makes a duplicate harmless, and
//! the dispatcher (in [`crate::worker`]) sends every non-final run out again from the
//! store when its message is lost.
//!
//! This is the only module that names apalis types. Its rules answer the defects
//! measured in `../shared/reference/apalis-1.0.md`:
//! - a message carries a run id and nothing else, with an idempotency key of run id +
//!   dispatch generation, so that a deliberate re-dispatch is never swallowed;
//! - it is pushed with `max_attempts(1)` and no `RetryPolicy`: retries belong to the
//!   run's state machine (`next_attempt_at`), never to apalis;
//! - the handler executes, returns `Ok`, never sleeps and never returns
//!   `RetryAfterError` (which strands the task on SQLite); `AbortError` only for the
//!   impossible (a payload that is not a run id);
//! - consumers always poll at an explicit interval (otherwise ≈30 s idle latency);
//! - finished rows are deleted by our own SQL ([`Queue::purge_finished`]), because the
//!   ack query scans every row a worker name ever locked and `vacuum_before` deletes
//!   everything finished however recent;
//! - embedded, it lives in its own SQLite file: apalis' `setup()` turns `synchronous`
//!   off, which our store must never inherit.
//!
//! [`Queue`] is an enum-backed handle over the two backends: SQLite (embedded) and
//! Redis (distributed; see [`redis`] for how each of its defects is made harmless).

mod redis;
mod sqlite;

pub use redis::{IDEMPOTENCY_TTL, connection_config as redis_connection_config};

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::runs::RunId;

/// One message: "run `run_id` is due", sent as dispatch number `generation`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dispatch {
    pub run_id: RunId,
    pub generation: i64,
}

impl Dispatch {
    pub fn new(run_id: RunId, generation: i64) -> Self {
        Self { run_id, generation }
    }

    /// The queue-level idempotency key: a second push of the same dispatch is dropped,
    /// a new generation of the same run is not.
    pub fn key(&self) -> String {
        format!("{}#{}", self.run_id, self.generation)
    }

    pub fn parse_key(key: &str) -> Option<Dispatch> {
        let (run, generation) = key.rsplit_once('#')?;
        Some(Dispatch {
            run_id: RunId::parse(run)?,
            generation: generation.parse().ok()?,
        })
    }
}

impl fmt::Display for Dispatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// What a consumer does with a delivered run id. It must record its outcome itself
/// (the pipeline does) and never fail: the queue always acknowledges.
pub type Handler = Arc<dyn Fn(RunId) -> BoxFuture<'static, ()> + Send + Sync>;

/// Where the queue lives. `Display` and `Debug` never show a Redis password.
#[derive(Clone)]
pub enum QueueBackend {
    /// apalis on SQLite, in a file of its own (never the store's file).
    Sqlite { path: PathBuf },
    /// apalis on Redis (run it with `maxmemory-policy noeviction`).
    Redis { url: String },
}

impl fmt::Display for QueueBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueBackend::Sqlite { path } => write!(f, "sqlite {}", path.display()),
            QueueBackend::Redis { url } => write!(f, "redis {}", redact_url(url)),
        }
    }
}

impl fmt::Debug for QueueBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueueBackend({self})")
    }
}

/// A URL with any password replaced by `***`, for messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// How the queue is opened and consumed.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub backend: QueueBackend,
    /// The apalis queue (job type) name.
    pub name: String,
    /// How often an idle consumer looks for work.
    pub poll_interval: Duration,
    /// Consumer liveness: a consumer silent for `heartbeat × missed_heartbeats` is
    /// dead and its claimed messages go back to the queue. Whole seconds (apalis
    /// compares in seconds), at least 1 s.
    pub heartbeat: Duration,
    pub missed_heartbeats: usize,
    /// Executions in flight per consumer.
    pub concurrency: usize,
    /// Messages claimed per fetch.
    pub batch_size: usize,
    /// How long a queue statement waits for SQLite's lock before it fails (and the
    /// consumer with it; the supervisor restarts it).
    pub busy_timeout: Duration,
}

impl QueueConfig {
    /// The embedded default: apalis on SQLite at `path`.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Self {
            backend: QueueBackend::Sqlite { path: path.into() },
            name: "treasury-runs".into(),
            poll_interval: Duration::from_millis(200),
            heartbeat: Duration::from_secs(10),
            missed_heartbeats: 3,
            concurrency: 16,
            batch_size: 16,
            busy_timeout: Duration::from_secs(5),
        }
    }

    /// The distributed profile: apalis on Redis at `url`, shared by every process.
    pub fn redis(url: impl Into<String>) -> Self {
        Self {
            backend: QueueBackend::Redis { url: url.into() },
            ..Self::sqlite(PathBuf::new())
        }
    }

    /// The same settings under another apalis queue name (tests give each its own).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

/// Row counts by phase, for the window, metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Waiting to be claimed by a consumer.
    pub pending: u64,
    /// Claimed by a consumer (buffered or executing).
    pub claimed: u64,
    /// Finished (done or killed) and not yet purged.
    pub finished: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is unavailable: {0}")]
    Unavailable(String),
    #[error("the queue consumer {worker} stopped: {reason}")]
    ConsumerDied { worker: String, reason: String },
    #[error("queue configuration: {0}")]
    Config(String),
}

/// The queue handle. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    inner: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::SqliteQueue),
    Redis(redis::RedisQueue),
}

/// Both backends' one method body, on whichever this queue is.
macro_rules! on_backend {
    ($self:expr, $q:ident => $body:expr) => {
        match &$self.inner {
            Backend::Sqlite($q) => $body,
            Backend::Redis($q) => $body,
        }
    };
}

impl Queue {
    /// Opens (and on SQLite creates and migrates) the queue.
    pub async fn open(config: QueueConfig) -> Result<Queue, QueueError> {
        if config.heartbeat < Duration::from_secs(1) || config.missed_heartbeats == 0 {
            return Err(QueueError::Config(
                "the heartbeat must be at least 1 s and missed_heartbeats at least 1".into(),
            ));
        }
        if config.concurrency == 0 || config.batch_size == 0 {
            return Err(QueueError::Config(
                "concurrency and batch_size must be at least 1".into(),
            ));
        }
        let inner = match &config.backend {
            QueueBackend::Sqlite { path } => {
                Backend::Sqlite(sqlite::SqliteQueue::open(path.clone(), config.clone()).await?)
            }
            QueueBackend::Redis { url } => {
                Backend::Redis(redis::RedisQueue::open(url, config.clone()).await?)
            }
        };
        Ok(Queue { inner })
    }

    pub fn config(&self) -> &QueueConfig {
        on_backend!(self, q => q.config())
    }

    /// Sends one run out.
    pub async fn push(&self, run_id: &RunId, generation: i64) -> Result<(), QueueError> {
        self.push_many(&[Dispatch::new(run_id.clone(), generation)])
            .await
    }

    /// Sends several runs out in one write. A dispatch already in the queue (same run
    /// and generation) is dropped silently.
    pub async fn push_many(&self, dispatches: &[Dispatch]) -> Result<(), QueueError> {
        if dispatches.is_empty() {
            return Ok(());
        }
        on_backend!(self, q => q.push_many(dispatches).await)
    }

    /// Messages waiting for a consumer (queued and not yet started).
    pub async fn depth(&self) -> Result<u64, QueueError> {
        Ok(self.stats().await?.pending)
    }

    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        on_backend!(self, q => q.stats().await)
    }

    /// Every dispatch the queue still holds unfinished (pending or claimed), for
    /// recovery: a dispatch the store believes is queued but the queue does not hold
    /// was lost.
    pub async fn live(&self) -> Result<Vec<Dispatch>, QueueError> {
        on_backend!(self, q => q.live().await)
    }

    /// Deletes finished messages that finished more than `older_than` ago, and the
    /// registrations of long-dead consumers that hold nothing. Returns the messages
    /// deleted.
    pub async fn purge_finished(&self, older_than: Duration) -> Result<u64, QueueError> {
        on_backend!(self, q => q.purge_finished(older_than).await)
    }

    /// Runs one consumer named `name` until `stop` is cancelled (then it stops
    /// claiming, lets the executions in flight finish and returns `Ok`) or until the
    /// backend fails (then it returns the error; claimed messages come back to the
    /// queue once the consumer's heartbeat is missed).
    pub async fn consume(
        &self,
        name: &str,
        handler: Handler,
        stop: CancellationToken,
    ) -> Result<(), QueueError> {
        on_backend!(self, q => q.consume(name, handler, stop).await)
    }

    /// Closes the queue's connections.
    pub async fn close(&self) {
        on_backend!(self, q => q.close().await)
    }
}

impl Queue {
    /// Deletes every message and bookkeeping key of this queue on Redis (a flushed or
    /// replaced Redis, for tests and drills); on SQLite, does nothing. Returns the keys
    /// deleted.
    pub async fn flush_redis(&self) -> Result<u64, QueueError> {
        match &self.inner {
            Backend::Sqlite(_) => Ok(0),
            Backend::Redis(q) => q.flush().await,
        }
    }
}

/// The whole handler contract, for both backends: parse the run id, execute,
/// acknowledge. Never sleeps, never asks apalis for a retry (`AbortError`, which apalis
/// never retries, only for a payload that is not a run id).
async fn deliver(
    run_id: String,
    handler: apalis::prelude::Data<Deliver>,
) -> Result<(), apalis::prelude::BoxDynError> {
    let Some(id) = RunId::parse(&run_id) else {
        return Err(apalis::prelude::AbortError::new(format!("not a run id: {run_id:?}")).into());
    };
    handler.run(id).await;
    Ok(())
}

/// Follows a running apalis worker's events until `stop` is cancelled (then it stops
/// claiming, lets the executions in flight finish and returns `Ok`) or the worker dies
/// (then the error, for the supervisor to restart it under a new name).
async fn supervise_events<S, E>(
    name: &str,
    ctx: &apalis::prelude::WorkerContext,
    events: S,
    stop: CancellationToken,
) -> Result<(), QueueError>
where
    S: futures_util::Stream<Item = Result<apalis::prelude::Event, E>>,
    E: fmt::Display,
{
    use apalis::prelude::Event;
    use futures_util::StreamExt;
    let died = |reason: String| QueueError::ConsumerDied {
        worker: name.to_string(),
        reason,
    };
    let mut events = std::pin::pin!(events);
    let mut stopped = std::pin::pin!(stop.cancelled_owned());
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = &mut stopped, if !stopping => {
                stopping = true;
                // Stops claiming; the executions in flight finish, buffered messages
                // go back to the queue.
                if ctx.stop().is_err() {
                    return Ok(()); // never started: nothing in flight
                }
            }
            event = events.next() => match event {
                None | Some(Ok(Event::Exit)) if stopping => return Ok(()),
                None | Some(Ok(Event::Exit)) => return Err(died("exited".into())),
                Some(Err(e)) => return Err(died(e.to_string())),
                Some(Ok(Event::Error(e))) => {
                    tracing::warn!(consumer = name, error = %e, "queue handler error");
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The handler as worker data (a named type keeps apalis' extractor bounds simple).
#[derive(Clone)]
struct Deliver(Handler);

impl Deliver {
    fn run(&self, id: RunId) -> BoxFuture<'static, ()> {
        (self.0)(id)
    }
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("config", self.config())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_password_never_shows_in_display_or_debug() {
        let backend = QueueBackend::Redis {
            url: "redis://:hunter2@queue.internal:6379/0".into(),
        };
        let config = QueueConfig::redis("redis://user:hunter2@queue.internal:6379/");
        for shown in [
            backend.to_string(),
            format!("{backend:?}"),
            format!("{config:?}"),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        let plain = QueueBackend::Redis {
            url: "redis://queue.internal:6379/0".into(),
        };
        assert_eq!(plain.to_string(), "redis redis://queue.internal:6379/0");
    }
}
