//! The wall-clock figures: throughput, latency, pacing, the worker end to end, job
//! files at scale and the refresh storm.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use treasury::provider::pacing::EndpointLimits;
use treasury::sandbox::{Fault, FaultKind};

use crate::world::{
    bare_run, bench_world, bench_world_with, cpu_seconds, create_runs, drain, pipeline,
};

pub async fn throughput(n: usize, concurrency: usize) -> Value {
    let b = bench_world(true).await;
    let ids = create_runs(&b, n, "tp").await;
    let p = pipeline(&b);
    let requests_before = b.sb.requests().len();
    let cpu0 = cpu_seconds();
    let secs = drain(&p, &b.clock, ids, concurrency).await;
    let cpu = cpu_seconds() - cpu0;
    let calls = (b.sb.requests().len() - requests_before) as f64 / n as f64;
    json!({ "runs": n, "concurrency": concurrency, "seconds": secs, "runs_per_second": n as f64 / secs,
            "cpu_ms_per_run_incl_sandbox": cpu * 1000.0 / n as f64, "provider_calls_per_run": calls })
}

pub async fn bare_loop(n: usize, concurrency: usize) -> Value {
    let b = Arc::new(bench_world(true).await);
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(n));
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (b, left) = (b.clone(), left.clone());
        tasks.push(tokio::spawn(async move {
            while left
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |v| v.checked_sub(1),
                )
                .is_ok()
            {
                bare_run(&b).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    json!({ "runs": n, "seconds": secs, "runs_per_second": n as f64 / secs, "cpu_ms_per_run_incl_sandbox": cpu * 1000.0 / n as f64 })
}

pub async fn under_latency(n: usize, concurrency: usize, latency_ms: u64) -> Value {
    let b = bench_world(true).await;
    b.sb.add_fault(Fault::new(
        "*",
        FaultKind::Latency(Duration::from_millis(latency_ms)),
    ));
    let ids = create_runs(&b, n, "lat").await;
    let p = pipeline(&b);
    let before = b.sb.requests().len();
    let secs = drain(&p, &b.clock, ids, concurrency).await;
    let calls = (b.sb.requests().len() - before) as f64 / n as f64;
    let achieved = n as f64 / secs;
    let ideal = concurrency as f64 / (calls * latency_ms as f64 / 1000.0);
    json!({ "runs": n, "concurrency": concurrency, "latency_ms": latency_ms, "provider_calls_per_run": calls,
            "runs_per_second": achieved, "ideal_runs_per_second": ideal, "ratio_to_ideal": achieved / ideal })
}

/// Busha's documented limits enforced by the sandbox and kept by the pacer: a batch of
/// payouts, how close to the binding limit (20 transfers a minute) we run, and how many
/// 429s the sandbox had to answer.
pub async fn pacing(n: usize) -> Value {
    let b = bench_world_with(true, 1, None).await;
    let ids = create_runs(&b, n, "pace").await;
    let p = pipeline(&b);
    let before = b.sb.requests().len();
    let secs = drain(&p, &b.clock, ids, 16).await;
    let requests = &b.sb.requests()[before..];
    let r429 = requests.iter().filter(|r| r.status == 429).count();
    let transfers: Vec<_> = requests
        .iter()
        .filter(|r| r.endpoint == "POST /v1/transfers" && r.status < 300)
        .map(|r| r.at)
        .collect();
    let limit = f64::from(EndpointLimits::busha().limit_for("POST /v1/transfers"));
    // The achieved rate over the span the transfers took, against 20 a minute.
    let span = match (transfers.first(), transfers.last()) {
        (Some(a), Some(z)) if transfers.len() > 1 => (*z - *a).num_milliseconds() as f64 / 60_000.0,
        _ => 0.0,
    };
    let per_minute = if span > 0.0 {
        (transfers.len() - 1) as f64 / span
    } else {
        0.0
    };
    json!({ "payouts": n, "seconds": secs, "transfers_per_minute": per_minute,
            "fraction_of_limit": per_minute / limit, "responses_429": r429,
            "limit_per_minute": limit })
}

/// 10,000 job definitions: parse and validate every file, then plan the next
/// occurrence of each.
pub fn config_scale(n: usize) -> Value {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..n {
        let text = format!(
            r#"id = "vendor-{i}"
grant = "acme-treasury"
owner = "finance-lead"
source_currency = "USDT"
target_currency = "NGN"
target_amount = "{}.00"

[recipient]
bank_code = "000013"
account_number = "{:010}"
account_name = "VENDOR {i}"

[guard]
min_rate = "1450"
max_rate = "1750"
max_fees = "5"

[limits]
max_per_run = "200"
daily_cap = "400"

[schedule]
cron = "{} {} * * {}"
timezone = "Africa/Lagos"
"#,
            100_000 + i,
            1_000_000_000u64 + i as u64,
            i % 60,
            i % 24,
            ["MON", "TUE", "WED", "THU", "FRI"][i % 5]
        );
        std::fs::write(dir.path().join(format!("vendor-{i}.toml")), text).unwrap();
    }
    let grants = vec![treasury::config::GrantSpec {
        alias: "acme-treasury".into(),
        provider: "busha".into(),
        scopes: [
            "balances:read",
            "quotes:read",
            "quotes:write",
            "transfers:read",
            "transfers:write",
            "recipients:read",
            "recipients:write",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        ..Default::default()
    }];
    let rss0 = current_rss_mib();
    let started = Instant::now();
    let loaded = treasury::jobs::load_dir(dir.path(), Some(&grants)).unwrap();
    let validated = started.elapsed().as_secs_f64();
    assert!(loaded.errors.is_empty(), "{:?}", &loaded.errors[..1]);
    let plan = treasury::jobs::plan::plan(&loaded.jobs, chrono::Utc::now(), 1);
    let total = started.elapsed().as_secs_f64();
    assert_eq!(plan.jobs.len(), n);
    json!({ "jobs": n, "validate_seconds": validated, "validate_and_plan_seconds": total,
            "rss_growth_mib": current_rss_mib() - rss0 })
}

/// Current resident set size in MiB.
fn current_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
