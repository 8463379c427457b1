//! apalis 1.0.0 on Redis, for the distributed profile.
//!
//! The defects measured in `apalis-1.0.md`, and what makes each harmless here:
//! - idempotency keys deduplicate nothing without a TTL (a TTL of "0" expires the key
//!   at once): we always set [`IDEMPOTENCY_TTL`];
//! - `max_attempts` is ignored (25 is hard-coded): our handler always returns `Ok`, or
//!   `AbortError` for a payload that is not a run id, so apalis never retries;
//! - the fetch script `unpack`s every due task and fails past ≈8,000: the dispatcher
//!   keeps at most its window (1,000 by default) queued;
//! - finished tasks are never removed: [`RedisQueue::purge_finished`] deletes them;
//! - a Redis restart kills the consumers: the supervisor restarts them under new names,
//!   and recovery re-dispatches from the store whatever the queue lost.
//!
//! Our own commands read and delete only apalis' keys under `{queue}:`.

use std::time::Duration;

use apalis::prelude::{BackendExt, TaskBuilder, WorkerBuilder, WorkerBuilderExt, WorkerContext};
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use super::{
    Deliver, Dispatch, Handler, QueueConfig, QueueError, QueueStats, deliver, supervise_events,
};

/// How long a dispatch's idempotency key lives: longer than any dispatch waits in the
/// queue, so that a duplicate push of one dispatch is always dropped.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long one Redis command may take before it fails. redis-rs defaults to 500 ms,
/// which a loaded machine exceeds on a `SCAN` of a shared keyspace: the queue then
/// reads as unavailable although Redis is up. A stalled Redis still fails in seconds.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection settings every Redis connection of ours uses.
pub fn connection_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
}

#[derive(Clone)]
pub(super) struct RedisQueue {
    conn: ConnectionManager,
    config: QueueConfig,
    apalis: Config,
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

impl RedisQueue {
    pub(super) async fn open(url: &str, config: QueueConfig) -> Result<Self, QueueError> {
        let client = redis::Client::open(url).map_err(|e| {
            QueueError::Config(format!(
                "the queue URL {:?} is not a Redis URL: {e}",
                super::redact_url(url)
            ))
        })?;
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            client.get_connection_manager_with_config(connection_config()),
        )
        .await
        .map_err(|_| {
            unavailable(format!(
                "no answer from Redis at {} in 10 s",
                super::redact_url(url)
            ))
        })?
        .map_err(unavailable)?;
        let apalis = Config::default()
            .queue(&config.name)
            .batch_size(config.batch_size)
            .heartbeat_interval(config.heartbeat)
            .missed_heartbeats(config.missed_heartbeats)
            .idempotency_ttl(Some(IDEMPOTENCY_TTL));
        Ok(Self {
            conn,
            config,
            apalis,
        })
    }

    pub(super) fn config(&self) -> &QueueConfig {
        &self.config
    }

    pub(super) async fn push_many(&self, dispatches: &[Dispatch]) -> Result<(), QueueError> {
        let tasks = dispatches
            .iter()
            .map(|d| {
                let payload = serde_json::to_vec(d.run_id.as_str()).map_err(unavailable)?;
                // max_attempts(1) for the record; apalis-redis ignores it, and our
                // handler never gives it anything to retry.
                Ok(TaskBuilder::new(payload)
                    .idempotency_key(d.key())
                    .max_attempts(1)
                    .build())
            })
            .collect::<Result<Vec<_>, QueueError>>()?;
        let mut conn = self.conn.clone();
        // One script call per chunk: the push script takes every task as arguments.
        for chunk in tasks.chunks(500) {
            apalis_redis::queries::push_tasks(&mut conn, &self.apalis, chunk)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// The members of the per-consumer in-flight sets.
    async fn inflight_sets(&self) -> Result<Vec<String>, QueueError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:*", self.apalis.inflight_jobs_set());
        let mut keys: Vec<String> = Vec::new();
        let mut iter: redis::AsyncIter<'_, String> =
            conn.scan_match(&pattern).await.map_err(unavailable)?;
        while let Some(k) = iter.next_item().await {
            keys.push(k.map_err(unavailable)?);
        }
        Ok(keys)
    }

    pub(super) async fn stats(&self) -> Result<QueueStats, QueueError> {
        let inflight = self.inflight_sets().await?;
        let mut pipe = redis::pipe();
        pipe.llen(self.apalis.active_jobs_list())
            .zcard(self.apalis.scheduled_jobs_set())
            .scard(self.apalis.done_jobs_set())
            .scard(self.apalis.dead_jobs_set());
        for set in &inflight {
            pipe.scard(set);
        }
        let mut conn = self.conn.clone();
        let counts: Vec<u64> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let claimed = counts.iter().skip(4).sum();
        Ok(QueueStats {
            pending: counts[0] + counts[1],
            claimed,
            finished: counts[2] + counts[3],
        })
    }

    pub(super) async fn live(&self) -> Result<Vec<Dispatch>, QueueError> {
        let mut conn = self.conn.clone();
        let mut ids: Vec<String> = conn
            .lrange(self.apalis.active_jobs_list(), 0, -1)
            .await
            .map_err(unavailable)?;
        let scheduled: Vec<String> = conn
            .zrange(self.apalis.scheduled_jobs_set(), 0, -1)
            .await
            .map_err(unavailable)?;
        ids.extend(scheduled);
        for set in self.inflight_sets().await? {
            let members: Vec<String> = conn.smembers(&set).await.map_err(unavailable)?;
            ids.extend(members);
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(self.meta_key(id), "idempotency_key");
        }
        let keys: Vec<Option<String>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(keys
            .into_iter()
            .flatten()
            .filter_map(|k| Dispatch::parse_key(&k))
            .collect())
    }

    fn meta_key(&self, task_id: &str) -> String {
        format!("{}:{task_id}", self.apalis.job_meta_hash())
    }

    pub(super) async fn purge_finished(&self, older_than: Duration) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let now = chrono::Utc::now().timestamp();
        let cutoff = now - i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
        let mut deleted = 0u64;
        for set in [self.apalis.done_jobs_set(), self.apalis.dead_jobs_set()] {
            let ids: Vec<String> = conn.smembers(&set).await.map_err(unavailable)?;
            for chunk in ids.chunks(500) {
                let mut pipe = redis::pipe();
                for id in chunk {
                    pipe.cmd("HMGET")
                        .arg(self.meta_key(id))
                        .arg("done_at")
                        .arg("idempotency_key");
                }
                let metas: Vec<(Option<i64>, Option<String>)> =
                    pipe.query_async(&mut conn).await.map_err(unavailable)?;
                let mut pipe = redis::pipe();
                let mut n = 0u64;
                for (id, (done_at, key)) in chunk.iter().zip(metas) {
                    // A task with no done_at is one apalis has not finished writing.
                    if done_at.is_none_or(|t| t > cutoff) {
                        continue;
                    }
                    pipe.srem(&set, id)
                        .hdel(self.apalis.job_data_hash(), id)
                        .hdel(format!("{}:result", self.apalis.job_meta_hash()), id)
                        .del(self.meta_key(id));
                    if let Some(key) = key.filter(|k| !k.is_empty()) {
                        pipe.del(format!("{}:{key}", self.apalis.idempotency_key_set()));
                    }
                    n += 1;
                }
                if n > 0 {
                    pipe.query_async::<()>(&mut conn)
                        .await
                        .map_err(unavailable)?;
                    deleted += n;
                }
            }
        }
        Ok(deleted)
    }

    pub(super) async fn consume(
        &self,
        name: &str,
        handler: Handler,
        stop: CancellationToken,
    ) -> Result<(), QueueError> {
        let ctx = WorkerContext::new(name);
        let storage = RedisStorage::<String>::new(self.conn.clone())
            .with_config(self.apalis.clone())
            // Without it an idle consumer notices new work only at its heartbeat.
            .poll_with_interval(self.config.poll_interval);
        let worker = WorkerBuilder::new(ctx.clone())
            .backend(storage)
            .data(Deliver(handler))
            .concurrency(self.config.concurrency)
            .build(deliver);
        supervise_events(name, &ctx, worker.stream(), stop).await
    }

    pub(super) async fn close(&self) {}

    /// Deletes every key of this queue: for tests that simulate a lost Redis.
    pub(super) async fn flush(&self) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:*", self.config.name);
        let mut keys: Vec<String> = Vec::new();
        {
            let mut iter: redis::AsyncIter<'_, String> =
                conn.scan_match(&pattern).await.map_err(unavailable)?;
            while let Some(k) = iter.next_item().await {
                keys.push(k.map_err(unavailable)?);
            }
        }
        let mut n = 0;
        for chunk in keys.chunks(500) {
            n += conn.del::<_, u64>(chunk).await.map_err(unavailable)?;
        }
        Ok(n)
    }
}
