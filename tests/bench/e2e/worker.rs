//! The worker end to end: dispatcher, queue, consumers and pipeline, embedded and
//! distributed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use treasury::pipeline::{Pipeline, PipelineConfig, StaticTokens};
use treasury::provider::busha::{BushaClient, BushaConfig};
use treasury::provider::pacing::EndpointLimits;
use treasury::runs::RunState;

use crate::world::{SCALE, bench_world_with, cpu_seconds, create_runs};

/// Where the distributed figures run: PostgreSQL and Redis as `.ci/run` starts them.
fn bench_postgres_admin() -> String {
    std::env::var("TREASURY_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn bench_redis() -> String {
    std::env::var("TREASURY_BENCH_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A fresh PostgreSQL database for one figure.
async fn fresh_postgres() -> String {
    use sqlx::Connection;
    let admin = bench_postgres_admin();
    let name = format!("treasury_bench_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin}: {e}"));
    sqlx::Executor::execute(
        &mut conn,
        sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
    )
    .await
    .unwrap();
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&name);
    url.to_string()
}

/// End to end through the real worker: the dispatcher's window, the queue (SQLite
/// file, or Redis), the consumers and the pipeline; runs per second until every run
/// has settled.
///
/// `tmpfs` (embedded only) puts the store on /dev/shm, where fsync costs nothing: not
/// a configuration anyone should run, but the difference is the price of durability.
pub async fn through_the_worker(n: usize, distributed: bool, tmpfs: bool) -> Value {
    use treasury::queue::{Queue, QueueConfig};
    use treasury::worker::{Worker, WorkerConfig};
    let shm = tempfile::Builder::new()
        .prefix("treasury-bench")
        .tempdir_in("/dev/shm")
        .ok()
        .filter(|_| tmpfs);
    let store_url = if distributed {
        Some(fresh_postgres().await)
    } else {
        shm.as_ref()
            .map(|d| format!("sqlite://{}?mode=rwc", d.path().join("bench.db").display()))
    };
    let b = bench_world_with(true, SCALE, store_url.as_deref()).await;
    let ids = create_runs(&b, n, "w").await;
    let queue_cfg = if distributed {
        QueueConfig::redis(bench_redis())
            .named(format!("treasury-bench-{}", uuid::Uuid::new_v4().simple()))
    } else {
        QueueConfig::sqlite(
            shm.as_ref()
                .map_or(b.dir.path(), |d| d.path())
                .join("queue.db"),
        )
    };
    let queue = Queue::open(QueueConfig {
        poll_interval: Duration::from_millis(50),
        // Two consumers of 32: 64 executions in flight, as in the pipeline-only figure
        // (`[worker] concurrency = 32`; the shipped default is 16).
        concurrency: 32,
        batch_size: 32,
        ..queue_cfg
    })
    .await
    .unwrap();
    let busha = if distributed {
        let mut cfg = BushaConfig::new(b.sb.url());
        cfg.limits = EndpointLimits::busha().scaled(SCALE);
        cfg.shared_pacing = Some(
            treasury::provider::pacing::SharedPacing::new(
                &bench_redis(),
                &format!("bench-{}", uuid::Uuid::new_v4().simple()),
            )
            .unwrap(),
        );
        BushaClient::new(cfg).unwrap()
    } else {
        b.busha.clone()
    };
    let tokens = Arc::new(StaticTokens::new().with("bench", b.token.clone()));
    let p = Pipeline::new(
        b.store.clone(),
        busha,
        tokens,
        b.clock.clone(),
        PipelineConfig {
            track_base: chrono::Duration::milliseconds(50),
            ..PipelineConfig::default()
        },
    );
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let worker = Worker::new(
        p,
        queue.clone(),
        b.clock.clone(),
        WorkerConfig {
            tick: Duration::from_millis(50),
            purge_after: Duration::ZERO,
            ..WorkerConfig::default()
        },
    )
    .start(tokio_util::sync::CancellationToken::new());
    loop {
        let settled = b
            .store
            .count_runs_by_state()
            .await
            .unwrap()
            .iter()
            .find(|(state, _)| *state == RunState::Settled)
            .map_or(0, |(_, n)| *n);
        if settled as usize >= ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    worker.shutdown().await;
    let _ = queue.flush_redis().await;
    json!({ "runs": n, "seconds": secs, "runs_per_second": n as f64 / secs,
            "cpu_ms_per_run_incl_sandbox": cpu * 1000.0 / n as f64,
            "profile": match (distributed, shm.is_some()) {
                (true, _) => "PostgreSQL store, Redis queue, shared pacer",
                (false, false) => "SQLite store (FULL), SQLite queue",
                (false, true) => "SQLite store and queue on tmpfs (diagnostic only)",
            } })
}
