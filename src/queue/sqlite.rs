//! apalis 1.0.0 on SQLite, in a file of its own.
//!
//! Our own SQL here touches only apalis' `Jobs` and `Workers` tables, for the
//! statistics, recovery and purging that apalis gets wrong or does not offer.

use std::path::PathBuf;
use std::time::Duration;

use apalis::prelude::{BackendExt, TaskBuilder, WorkerBuilder, WorkerBuilderExt, WorkerContext};
use apalis_sqlite::{Config, SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteStorage};
use sqlx::Row;
use sqlx::sqlite::SqliteJournalMode;
use tokio_util::sync::CancellationToken;

use super::{
    Deliver, Dispatch, Handler, QueueConfig, QueueError, QueueStats, deliver, supervise_events,
};

#[derive(Clone)]
pub(super) struct SqliteQueue {
    pool: SqlitePool,
    config: QueueConfig,
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

impl SqliteQueue {
    pub(super) async fn open(path: PathBuf, config: QueueConfig) -> Result<Self, QueueError> {
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(config.busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        // Migrations, plus `synchronous = OFF` on one pooled connection: acceptable
        // here because this file is only the dispatch layer (a lost message is sent
        // again from the store), and the reason the queue never shares the store's file.
        SqliteStorage::setup(&pool).await.map_err(unavailable)?;
        Ok(Self { pool, config })
    }

    pub(super) fn config(&self) -> &QueueConfig {
        &self.config
    }

    fn apalis_config(&self) -> Config {
        Config::default()
            .queue(&self.config.name)
            .batch_size(self.config.batch_size)
            .heartbeat_interval(self.config.heartbeat)
            .missed_heartbeats(self.config.missed_heartbeats)
    }

    pub(super) async fn push_many(&self, dispatches: &[Dispatch]) -> Result<(), QueueError> {
        let tasks = dispatches
            .iter()
            .map(|d| {
                let payload = serde_json::to_vec(d.run_id.as_str()).map_err(unavailable)?;
                // max_attempts(1): a failed execution is never re-run by apalis (the
                // run's own `next_attempt_at` decides), and no RetryPolicy is layered.
                Ok(TaskBuilder::new(payload)
                    .idempotency_key(d.key())
                    .max_attempts(1)
                    .build())
            })
            .collect::<Result<Vec<_>, QueueError>>()?;
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        apalis_sqlite::queries::push_tasks(&mut *tx, &self.config.name, &tasks)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn stats(&self) -> Result<QueueStats, QueueError> {
        let row = sqlx::query(
            "SELECT \
               COALESCE(SUM(CASE WHEN status = 'Pending' OR (status = 'Failed' AND attempts < max_attempts) THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN status IN ('Queued', 'Running') THEN 1 ELSE 0 END), 0), \
               COALESCE(SUM(CASE WHEN status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts) THEN 1 ELSE 0 END), 0) \
             FROM Jobs WHERE job_type = ?1",
        )
        .bind(&self.config.name)
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        let count = |i: usize| -> Result<u64, QueueError> {
            let n: i64 = row.try_get(i).map_err(unavailable)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(QueueStats {
            pending: count(0)?,
            claimed: count(1)?,
            finished: count(2)?,
        })
    }

    pub(super) async fn live(&self) -> Result<Vec<Dispatch>, QueueError> {
        let rows = sqlx::query(
            "SELECT idempotency_key FROM Jobs WHERE job_type = ?1 \
             AND (status IN ('Pending', 'Queued', 'Running') OR (status = 'Failed' AND attempts < max_attempts))",
        )
        .bind(&self.config.name)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<Option<String>, _>(0).ok().flatten())
            .filter_map(|k| Dispatch::parse_key(&k))
            .collect())
    }

    pub(super) async fn purge_finished(&self, older_than: Duration) -> Result<u64, QueueError> {
        // Not apalis' `vacuum_before`: it compares an INTEGER with TEXT and so deletes
        // every finished row however recent. `done_at` is in Unix seconds.
        let secs = i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
        let deleted = sqlx::query(
            "DELETE FROM Jobs WHERE job_type = ?1 \
             AND (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts)) \
             AND done_at IS NOT NULL AND done_at <= CAST(strftime('%s', 'now') AS INTEGER) - ?2",
        )
        .bind(&self.config.name)
        .bind(secs)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?
        .rows_affected();
        // Every restart registers a new consumer name; forget the ones that have been
        // silent for an hour and hold no message (orphan recovery needs the others).
        sqlx::query(
            "DELETE FROM Workers WHERE worker_type = ?1 \
             AND last_seen < CAST(strftime('%s', 'now') AS INTEGER) - 3600 \
             AND NOT EXISTS (SELECT 1 FROM Jobs WHERE Jobs.lock_by = Workers.id)",
        )
        .bind(&self.config.name)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(deleted)
    }

    pub(super) async fn consume(
        &self,
        name: &str,
        handler: Handler,
        stop: CancellationToken,
    ) -> Result<(), QueueError> {
        let ctx = WorkerContext::new(name);
        let storage = SqliteStorage::<String>::new(&self.pool)
            .with_config(self.apalis_config())
            // Without it an idle consumer notices new work only at its heartbeat.
            .poll_with_interval(self.config.poll_interval);
        let worker = WorkerBuilder::new(ctx.clone())
            .backend(storage)
            .data(Deliver(handler))
            .concurrency(self.config.concurrency)
            .build(deliver);
        supervise_events(name, &ctx, worker.stream(), stop).await
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}
