//! The audit verification benchmark: a full `audit verify` over a large chain, and an
//! incremental `audit verify --since-checkpoint` after new entries, on SQLite and on
//! PostgreSQL. It prints a Markdown table (and writes `target/bench-audit.md`); it never
//! fails on speed.
//!
//! `cargo bench --bench audit` runs 1,000,000 entries then 10,000 more on both backends;
//! `-- --entries N --new M` changes the sizes, `-- --only sqlite|postgres` one backend.
//! PostgreSQL is `TREASURY_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`),
//! on a database of its own that is dropped afterwards.

use std::time::Instant;

use chrono::Utc;
use serde_json::json;
use treasury::audit::{AuditEntry, GENESIS, NewAuditEntry, canonical_json};
use treasury::checkpoints::key::{generate, parse_signing_key};
use treasury::checkpoints::{Checkpointer, Folder, Made, verify_since};
use treasury::clock::Clock;
use treasury::store::Store;

/// Rows per INSERT when filling (10 columns each: within both backends' bind limits).
const BATCH: usize = 1000;

struct Options {
    entries: usize,
    new: usize,
    only: Option<String>,
}

impl Options {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let after = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1).cloned())
        };
        let count = |flag: &str, default: usize| {
            after(flag).map_or(default, |v| v.parse().expect("a count"))
        };
        Self {
            entries: count("--entries", 1_000_000),
            new: count("--new", 10_000),
            only: after("--only"),
        }
    }
}

/// What a run's audit entry typically holds.
fn entry(i: usize) -> NewAuditEntry {
    NewAuditEntry::new(
        "worker:bench-1",
        "run.quote.locked",
        json!({
            "amount": "1500.00", "currency": "NGN", "rate": "1612.45",
            "quote_id": format!("qt_{i:012}"), "expires_at": "2026-03-02T09:05:00Z",
        }),
    )
    .run(format!("run_{:08}", i / 6))
    .job("weekly-vendors")
    .grant("treasury-ops")
}

/// Appends `n` chained entries after `head` in batched multi-row INSERTs.
async fn fill(pool: &sqlx::AnyPool, head: &mut (i64, String), n: usize) {
    let mut left = n;
    while left > 0 {
        let take = left.min(BATCH);
        let rows: Vec<AuditEntry> = (0..take)
            .map(|_| {
                let seq = head.0 + 1;
                let e = AuditEntry::chain(
                    seq,
                    Utc::now(),
                    entry(usize::try_from(seq).unwrap_or_default()),
                    &head.1,
                );
                *head = (seq, e.hash.clone());
                e
            })
            .collect();
        // Numbered placeholders: both backends take `$n` (the Any builder writes `?`).
        let values: Vec<String> = (0..rows.len())
            .map(|r| {
                let n: Vec<String> = (1..=10).map(|c| format!("${}", r * 10 + c)).collect();
                format!("({})", n.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO audit_log (seq, at_ms, actor, action, run_id, job_id, grant_id, payload, prev_hash, hash) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for e in rows {
            q = q
                .bind(e.seq)
                .bind(e.at.timestamp_millis())
                .bind(e.actor)
                .bind(e.action)
                .bind(e.run_id)
                .bind(e.job_id)
                .bind(e.grant_id)
                .bind(canonical_json(&e.payload))
                .bind(e.prev_hash)
                .bind(e.hash);
        }
        q.execute(pool).await.expect("insert a batch");
        left -= take;
    }
}

struct Figures {
    backend: &'static str,
    full: (u64, f64),
    incremental: (u64, f64),
}

async fn measure(backend: &'static str, url: &str, o: &Options) -> Figures {
    let store = Store::connect(url).await.expect("open the store");
    let pool = sqlx::AnyPool::connect(url).await.expect("a raw pool");
    let mut head = (0i64, GENESIS.to_string());
    let t = Instant::now();
    fill(&pool, &mut head, o.entries).await;
    eprintln!(
        "{backend}: {} entries written in {:.1?}",
        o.entries,
        t.elapsed()
    );

    let t = Instant::now();
    let full = store
        .verify_audit(None)
        .await
        .unwrap()
        .expect("an intact chain");
    let full_secs = t.elapsed().as_secs_f64();
    assert_eq!(usize::try_from(full.entries).ok(), Some(o.entries));

    let folder = tempfile::tempdir().unwrap();
    let key = parse_signing_key(&generate()).unwrap();
    let cp = Checkpointer::new(
        store.clone(),
        Folder::new(folder.path()),
        key,
        Clock::system(),
        "bench",
    );
    let Made::New(last) = cp.make().await.expect("a checkpoint") else {
        panic!("no checkpoint made");
    };
    fill(&pool, &mut head, o.new).await;
    let t = Instant::now();
    let inc = verify_since(&store, Some(&last))
        .await
        .unwrap()
        .expect("an intact chain");
    let inc_secs = t.elapsed().as_secs_f64();
    assert_eq!(usize::try_from(inc.head_seq).ok(), Some(o.entries + o.new));
    Figures {
        backend,
        full: (full.entries, full_secs),
        incremental: (u64::try_from(o.new).unwrap_or(u64::MAX), inc_secs),
    }
}

async fn postgres_db() -> (String, String) {
    let admin = std::env::var("TREASURY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("treasury_bench_audit_{}", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .expect("PostgreSQL for the bench");
    sqlx::Executor::execute(
        &mut conn,
        sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
    )
    .await
    .expect("create the bench database");
    let mut url = url::Url::parse(&admin).expect("a PostgreSQL URL");
    url.set_path(&name);
    (url.to_string(), name)
}

async fn drop_postgres_db(name: &str) {
    let admin = std::env::var("TREASURY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await {
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let _ = sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(drop)).await;
    }
}

fn row(label: &str, (n, secs): (u64, f64), target: f64) -> String {
    let rate = n as f64 / secs;
    let verdict = if secs <= target { "met" } else { "missed" };
    format!("| {label} | {n} | {secs:.3} s | {rate:.0} entries/s | ≤ {target} s ({verdict}) |\n")
}

#[tokio::main]
async fn main() {
    sqlx::any::install_default_drivers();
    let o = Options::from_args();
    let wanted = |b: &str| o.only.as_deref().is_none_or(|only| only == b);
    let mut all = Vec::new();
    if wanted("sqlite") {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        );
        all.push(measure("SQLite", &url, &o).await);
    }
    if wanted("postgres") {
        let (url, name) = postgres_db().await;
        all.push(measure("PostgreSQL", &url, &o).await);
        drop_postgres_db(&name).await;
    }
    let mut md =
        String::from("| measure | entries | time | rate | target |\n|---|---|---|---|---|\n");
    for f in &all {
        md += &row(&format!("full `audit verify`, {}", f.backend), f.full, 10.0);
        md += &row(
            &format!("`audit verify --since-checkpoint`, {}", f.backend),
            f.incremental,
            0.5,
        );
    }
    print!("{md}");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let _ = std::fs::write(format!("{target}/bench-audit.md"), md);
}
