//! The end-to-end benchmark: throughput, behaviour under provider latency, our own CPU
//! overhead against a bare loop, and the refresh storm, all against the in-process
//! Busha sandbox. It writes `target/bench-report.md` and `target/bench-report.json`.
//! It never fails on speed: the figures are reported as they are.
//!
//! Durability stays on: the store is SQLite with `synchronous = FULL`, and every state
//! change that guards money commits before the provider call it guards. Throughput and
//! latency figures are about our own cost, so they raise the sandbox's and the pacer's
//! rate limits (x10,000) and say so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::{Value, json};
use treasury::audit::NewAuditEntry;
use treasury::clock::Clock;
use treasury::money::Currency;
use treasury::pipeline::{Executed, Pipeline, PipelineConfig, StaticTokens};
use treasury::provider::AccessToken;
use treasury::provider::busha::{
    BushaClient, BushaConfig, NewQuote, PayOut, QuoteAmount, TransferFilter,
};
use treasury::provider::pacing::EndpointLimits;
use treasury::runs::{Amount, PayoutSpec, RateGuard, RecipientSpec, Run, RunId, RunState};
use treasury::sandbox::{
    Fault, FaultKind, NewUser, OAuthClientConfig, RateLimits, Sandbox, SandboxConfig,
};
use treasury::store::Store;

const CLIENT: &str = "bench";
const SCALE: u32 = 10_000;

/// CPU seconds (user + system) of this process so far, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set size in MiB, from /proc/self/status.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Bench {
    sb: Sandbox,
    token: AccessToken,
    recipient: String,
    busha: BushaClient,
    store: Store,
    clock: Clock,
    _dir: tempfile::TempDir,
}

async fn bench_world(transfer_step_zero: bool) -> Bench {
    let clock = Clock::system();
    let sb = Sandbox::start(SandboxConfig {
        clock: clock.clone(),
        clients: vec![OAuthClientConfig::new(
            CLIENT,
            "secret",
            "http://localhost/cb",
        )],
        rate_limits: RateLimits::busha().scaled(SCALE),
        transfer_step: if transfer_step_zero {
            chrono::Duration::zero()
        } else {
            chrono::Duration::seconds(1)
        },
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let user = sb.create_user(NewUser::new("bench").balance("USDT", Decimal::from(100_000_000)));
    let scopes = [
        "balances:read",
        "quotes:read",
        "quotes:write",
        "transfers:read",
        "transfers:write",
        "recipients:read",
        "recipients:write",
    ];
    let token = AccessToken::new(sb.mint_tokens(CLIENT, &user.id, &scopes).access_token);
    let mut cfg = BushaConfig::new(sb.url());
    cfg.limits = EndpointLimits::busha().scaled(SCALE);
    let busha = BushaClient::new(cfg).unwrap();
    let recipient = busha
        .create_recipient(
            &token,
            &treasury::provider::busha::NewRecipient {
                kind: "ngn_bank".into(),
                currency: Some(Currency::new("NGN").unwrap()),
                country_code: Some("NG".into()),
                bank_name: Some("GTBank".into()),
                bank_code: Some("000013".into()),
                account_number: Some(treasury::provider::busha::AccountNumber::new("0123456789")),
                account_name: Some("ADA LOVELACE".into()),
                entity_type: None,
                phone_number: None,
                network: None,
                address: None,
                memo: None,
            },
        )
        .await
        .unwrap()
        .value
        .id;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    ))
    .await
    .unwrap();
    Bench {
        sb,
        token,
        recipient,
        busha,
        store,
        clock,
        _dir: dir,
    }
}

fn spec(recipient: &str) -> PayoutSpec {
    PayoutSpec {
        grant: "bench".into(),
        source_currency: Currency::new("USDT").unwrap(),
        target_currency: Currency::new("NGN").unwrap(),
        amount: Amount::Source {
            amount: Decimal::from(10),
        },
        recipient: RecipientSpec::Id {
            id: recipient.into(),
        },
        guard: RateGuard::default(),
        max_requotes: 1,
        limits: Default::default(),
        approval: None,
    }
}

async fn create_runs(b: &Bench, n: usize, tag: &str) -> Vec<RunId> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let run = Run::new(
            "bench",
            &format!("{tag}-{i}"),
            "v1",
            spec(&b.recipient),
            false,
            b.clock.now(),
        );
        b.store
            .create_run(&run, NewAuditEntry::new("bench", "run.created", json!({})))
            .await
            .unwrap();
        ids.push(run.id);
    }
    ids
}

/// Executes every run to a final state with `concurrency` executors; returns seconds.
async fn drain(p: &Pipeline, clock: &Clock, ids: Vec<RunId>, concurrency: usize) -> f64 {
    let queue = Arc::new(parking_lot::Mutex::new(ids));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (p, clock, queue) = (p.clone(), clock.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(id) = queue.lock().pop() else { return };
                loop {
                    match p.execute(&id).await.unwrap() {
                        Executed::Finished(state) => {
                            assert_eq!(state, RunState::Settled, "{id}");
                            break;
                        }
                        Executed::Waiting(until) => {
                            tokio::time::sleep((until - clock.now()).to_std().unwrap_or_default())
                                .await;
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed().as_secs_f64()
}

fn pipeline(b: &Bench) -> Pipeline {
    let tokens = Arc::new(StaticTokens::new().with("bench", b.token.clone()));
    let cfg = PipelineConfig {
        track_base: chrono::Duration::milliseconds(50),
        ..PipelineConfig::default()
    };
    Pipeline::new(
        b.store.clone(),
        b.busha.clone(),
        tokens,
        b.clock.clone(),
        cfg,
    )
}

/// The same provider calls as one run, with no store: the bare loop.
async fn bare_run(b: &Bench) {
    let t = &b.token;
    b.busha.list_pairs(Some(t), None, None).await.unwrap();
    b.busha.get_balance(t, "USDT").await.unwrap();
    let q = b
        .busha
        .create_quote(
            t,
            &NewQuote {
                source_currency: Currency::new("USDT").unwrap(),
                target_currency: Currency::new("NGN").unwrap(),
                amount: QuoteAmount::Source(Decimal::from(10)),
                reference: Some(format!("bare-{}", uuid::Uuid::new_v4().simple())),
                pay_out: Some(PayOut::BankTransfer {
                    recipient_id: b.recipient.clone(),
                }),
            },
        )
        .await
        .unwrap()
        .value;
    b.busha
        .list_transfers(
            t,
            &TransferFilter {
                quote_id: Some(q.id.clone()),
                status: Vec::new(),
                cursor: None,
                limit: Some(10),
            },
        )
        .await
        .unwrap();
    let tr = b.busha.create_transfer(t, &q.id).await.unwrap().value;
    b.busha.get_transfer(t, &tr.id).await.unwrap();
}

async fn throughput(n: usize, concurrency: usize) -> Value {
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

async fn bare_loop(n: usize, concurrency: usize) -> Value {
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

async fn under_latency(n: usize, concurrency: usize, latency_ms: u64) -> Value {
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

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, lat_n) = if quick { (200, 128) } else { (2000, 640) };
    eprintln!("throughput ({n} payouts, zero latency)...");
    let tp = throughput(n, 64).await;
    eprintln!("bare loop ({n} runs of the same calls, no store)...");
    let bare = bare_loop(n, 64).await;
    eprintln!("under latency ({lat_n} payouts, 50 ms per call, concurrency 64)...");
    let lat = under_latency(lat_n, 64, 50).await;
    let report = json!({
        "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "rate_limits": format!("sandbox and pacer raised x{SCALE} (these figures are about our own cost)"),
        "durability": "SQLite WAL, synchronous=FULL",
        "throughput_embedded": tp,
        "bare_loop": bare,
        "under_latency": lat,
        "peak_rss_mib": peak_rss_mib(),
    });
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let _ = std::fs::create_dir_all(&target);
    let json_path = format!("{target}/bench-report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    let md = format!(
        "# treasury benchmark\n\n| measure | figure |\n|---|---|\n\
         | throughput, embedded (SQLite FULL), zero latency | {:.0} runs/s |\n\
         | provider calls per run | {:.1} |\n\
         | CPU per run incl. in-process sandbox | {:.2} ms |\n\
         | bare loop (same calls, no store) CPU per run | {:.2} ms |\n\
         | overhead ratio (ours / bare) | {:.2} |\n\
         | under 50 ms latency, concurrency 64 | {:.0} runs/s = {:.2} of ideal |\n\
         | peak RSS | {:.0} MiB |\n\nRate limits raised x{SCALE} in sandbox and pacer for these figures.\n",
        tp["runs_per_second"].as_f64().unwrap_or(0.0),
        tp["provider_calls_per_run"].as_f64().unwrap_or(0.0),
        tp["cpu_ms_per_run_incl_sandbox"].as_f64().unwrap_or(0.0),
        bare["cpu_ms_per_run_incl_sandbox"].as_f64().unwrap_or(0.0),
        tp["cpu_ms_per_run_incl_sandbox"].as_f64().unwrap_or(0.0)
            / bare["cpu_ms_per_run_incl_sandbox"]
                .as_f64()
                .unwrap_or(1.0)
                .max(0.001),
        lat["runs_per_second"].as_f64().unwrap_or(0.0),
        lat["ratio_to_ideal"].as_f64().unwrap_or(0.0),
        peak_rss_mib(),
    );
    std::fs::write(format!("{target}/bench-report.md"), &md).unwrap();
    println!("{md}");
}
