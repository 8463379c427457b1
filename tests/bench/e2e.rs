//! The end-to-end benchmark: throughput, behaviour under provider latency, our own CPU
//! overhead against a bare loop, and the refresh storm, all against the in-process
//! Busha sandbox. It writes `target/bench-report.md` and `target/bench-report.json`.
//! It never fails on speed: the figures are reported as they are.
//!
//! `cargo bench --bench e2e` runs everything (about 15 minutes, ten of them the
//! pacing figure at Busha's real limits); `-- --quick` runs small sizes, and
//! `-- --no-pacing` leaves the pacing figure out, and `-- --only pipeline,bare` measures
//! only the parts named (scale, pipeline, bare, embedded, tmpfs, distributed, latency,
//! storm, pacing).
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
    dir: tempfile::TempDir,
}

async fn bench_world(transfer_step_zero: bool) -> Bench {
    bench_world_with(transfer_step_zero, SCALE, None).await
}

/// A sandbox and store: Busha's limits times `scale` in both the sandbox and the
/// pacer; the store on SQLite (FULL) unless `store_url` names another.
async fn bench_world_with(transfer_step_zero: bool, scale: u32, store_url: Option<&str>) -> Bench {
    let clock = Clock::system();
    let sb = Sandbox::start(SandboxConfig {
        clock: clock.clone(),
        clients: vec![OAuthClientConfig::new(
            CLIENT,
            "secret",
            "http://localhost/cb",
        )],
        rate_limits: RateLimits::busha().scaled(scale),
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
    cfg.limits = EndpointLimits::busha().scaled(scale);
    let busha = BushaClient::new(cfg).unwrap();
    // The one recipient is set up outside the measured part (its endpoint's limit is 20
    // a minute at Busha's real limits).
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
            &treasury::provider::Unleased,
        )
        .await
        .unwrap()
        .value
        .id;
    let dir = tempfile::tempdir().unwrap();
    let url = store_url.map(str::to_string).unwrap_or_else(|| {
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        )
    });
    let store = Store::connect(&url).await.unwrap();
    Bench {
        sb,
        token,
        recipient,
        busha,
        store,
        clock,
        dir,
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
        sweep: None,
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
                        Executed::Finished(RunState::Settled) => break,
                        Executed::Finished(state) => {
                            let reason = p
                                .store()
                                .get_run(&id)
                                .await
                                .ok()
                                .flatten()
                                .and_then(|r| r.reason);
                            panic!("{id} ended {state}: {reason:?}");
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
            &treasury::provider::Unleased,
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
    let tr = b
        .busha
        .create_transfer(t, &q.id, &treasury::provider::Unleased)
        .await
        .unwrap()
        .value;
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
async fn through_the_worker(n: usize, distributed: bool, tmpfs: bool) -> Value {
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

/// Busha's documented limits enforced by the sandbox and kept by the pacer: a batch of
/// payouts, how close to the binding limit (20 transfers a minute) we run, and how many
/// 429s the sandbox had to answer.
async fn pacing(n: usize) -> Value {
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
fn config_scale(n: usize) -> Value {
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

/// 1,000 concurrent runs on 10 grants whose access tokens have all expired: the
/// custodian refreshes each grant once, whoever asks first, and the others wait for it.
async fn refresh_storm(runs: usize, grants: usize) -> Value {
    use treasury::config::Secret;
    use treasury::grants::{
        BushaOAuth, CallbackParams, Connector, Custodian, CustodyConfig, Keyring, OAuthSettings,
    };
    use treasury::sandbox::LedgerEvent;
    let b = bench_world_with(true, SCALE, None).await;
    let redirect = url::Url::parse("http://127.0.0.1:9/oauth/callback").unwrap();
    b.sb.register_client(OAuthClientConfig::new(
        "storm",
        "storm-secret",
        redirect.as_str(),
    ));
    let oauth = Arc::new(
        BushaOAuth::discover(
            &OAuthSettings::new(
                b.sb.url(),
                "storm",
                Secret::new("storm-secret".to_string()),
                redirect,
            ),
            b.clock.clone(),
        )
        .await
        .unwrap(),
    );
    let specs: Vec<treasury::config::GrantSpec> = (0..grants)
        .map(|g| treasury::config::GrantSpec {
            alias: format!("g{g}"),
            provider: "busha".into(),
            scopes: [
                "balances:read",
                "quotes:read",
                "quotes:write",
                "transfers:read",
                "transfers:write",
                "recipients:read",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            ..Default::default()
        })
        .collect();
    let keys = Arc::new(Keyring::generate(1));
    let connector = Connector::new(
        b.store.clone(),
        keys.clone(),
        oauth.clone(),
        b.clock.clone(),
        specs.clone(),
    );
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The sandbox's HTML form, posted as a person would (user "bench", default password).
    for spec in &specs {
        let started = connector.begin(&spec.alias).await.unwrap();
        let mut form: Vec<(String, String)> = started.url.query_pairs().into_owned().collect();
        form.push(("username".into(), "bench".into()));
        form.push(("password".into(), "sandbox".into()));
        form.push(("decision".into(), "approve".into()));
        let mut post = started.url.clone();
        post.set_query(None);
        let res = browser.post(post).form(&form).send().await.unwrap();
        let location = url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
        let mut params = CallbackParams::default();
        for (k, v) in location.query_pairs() {
            match k.as_ref() {
                "code" => params.code = Some(v.into_owned()),
                "state" => params.state = Some(v.into_owned()),
                _ => {}
            }
        }
        connector.complete(&params, "bench").await.unwrap();
    }
    // Every access token expires.
    b.clock.advance(chrono::Duration::hours(2));
    let custodian = Custodian::new(
        b.store.clone(),
        keys,
        oauth,
        b.clock.clone(),
        CustodyConfig::default(),
    );
    let mut ids = Vec::with_capacity(runs);
    for i in 0..runs {
        let mut spec = spec(&b.recipient);
        spec.grant = format!("g{}", i % grants);
        let run = Run::new("storm", &format!("s-{i}"), "v1", spec, false, b.clock.now());
        b.store
            .create_run(&run, NewAuditEntry::new("bench", "run.created", json!({})))
            .await
            .unwrap();
        ids.push(run.id);
    }
    let refreshes = |sb: &Sandbox| {
        sb.ledger()
            .iter()
            .filter(|e| matches!(&e.event, LedgerEvent::TokenIssued { grant, .. } if grant == "refresh_token"))
            .count()
    };
    let before = refreshes(&b.sb);
    let p = Pipeline::new(
        b.store.clone(),
        b.busha.clone(),
        Arc::new(custodian),
        b.clock.clone(),
        PipelineConfig {
            track_base: chrono::Duration::milliseconds(50),
            ..PipelineConfig::default()
        },
    );
    let secs = drain(&p, &b.clock, ids, runs).await;
    json!({ "runs": runs, "grants": grants, "refreshes": refreshes(&b.sb) - before, "seconds": secs })
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // The pacing figure takes ten minutes of wall time at Busha's real limits.
    let no_pacing = std::env::args().any(|a| a == "--no-pacing");
    let (n, lat_n, pace_n, jobs_n, storm_n) = if quick {
        (200, 128, 20, 1_000, 100)
    } else {
        (2000, 640, 200, 10_000, 1_000)
    };
    // `--only a,b` measures only those parts (for a quick look at one figure); the
    // report then shows the others as skipped.
    let only: Option<Vec<String>> = std::env::args()
        .skip_while(|a| a != "--only")
        .nth(1)
        .map(|v| v.split(',').map(str::to_string).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|w| w == name));
    let skipped = || json!({ "skipped": "--only" });
    let scale = if wanted("scale") {
        eprintln!("config scale ({jobs_n} job files)...");
        config_scale(jobs_n)
    } else {
        skipped()
    };
    let tp = if wanted("pipeline") {
        eprintln!("throughput ({n} payouts, zero latency, pipeline only)...");
        throughput(n, 64).await
    } else {
        skipped()
    };
    let bare = if wanted("bare") {
        eprintln!("bare loop ({n} runs of the same calls, no store)...");
        bare_loop(n, 64).await
    } else {
        skipped()
    };
    let embedded = if wanted("embedded") {
        eprintln!("through the worker, embedded ({n} payouts)...");
        through_the_worker(n, false, false).await
    } else {
        skipped()
    };
    let embedded_tmpfs = if wanted("tmpfs") {
        eprintln!("through the worker, embedded, store on tmpfs ({n} payouts, diagnostic)...");
        through_the_worker(n, false, true).await
    } else {
        skipped()
    };
    let distributed = if wanted("distributed") {
        eprintln!("through the worker, distributed ({n} payouts)...");
        through_the_worker(n, true, false).await
    } else {
        skipped()
    };
    let lat = if wanted("latency") {
        eprintln!("under latency ({lat_n} payouts, 50 ms per call, concurrency 64)...");
        under_latency(lat_n, 64, 50).await
    } else {
        skipped()
    };
    let storm = if wanted("storm") {
        eprintln!("refresh storm ({storm_n} runs on 10 expired grants)...");
        refresh_storm(storm_n, 10).await
    } else {
        skipped()
    };
    let pace = if no_pacing || !wanted("pacing") {
        json!({ "skipped": if no_pacing { "--no-pacing" } else { "--only" } })
    } else {
        eprintln!(
            "pacing ({pace_n} payouts at Busha's documented limits; about {} min)...",
            pace_n / 20
        );
        pacing(pace_n).await
    };
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let ours_ms = f(&tp, "cpu_ms_per_run_incl_sandbox") - f(&bare, "cpu_ms_per_run_incl_sandbox");
    let report = json!({
        "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "rate_limits": format!("sandbox and pacer raised x{SCALE} for throughput, latency and the storm; Busha's own for pacing"),
        "durability": "SQLite WAL, synchronous=FULL; PostgreSQL defaults",
        "throughput_pipeline": tp,
        "throughput_worker_embedded": embedded,
        "throughput_worker_distributed": distributed,
        "throughput_worker_embedded_tmpfs_diagnostic": embedded_tmpfs,
        "bare_loop": bare,
        "our_cpu_ms_per_run": ours_ms,
        "under_latency": lat,
        "pacing": pace,
        "config_scale": scale,
        "refresh_storm": storm,
        "peak_rss_mib": peak_rss_mib(),
    });
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let _ = std::fs::create_dir_all(&target);
    let json_path = format!("{target}/bench-report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    let md = format!(
        "# treasury benchmark\n\n| measure | figure | target |\n|---|---|---|\n\
         | end to end through the worker, embedded (SQLite FULL), zero latency | {:.0} runs/s | ≥ 1,000 |\n\
         | the same with the store on tmpfs (fsync free; diagnostic, never shipped) | {:.0} runs/s | |\n\
         | end to end through the worker, distributed (PostgreSQL + Redis) | {:.0} runs/s | |\n\
         | pipeline only (no queue), embedded | {:.0} runs/s | |\n\
         | provider calls per run | {:.1} | |\n\
         | CPU per run, ours + in-process sandbox | {:.2} ms | |\n\
         | CPU per run, bare loop (same calls, no store) + sandbox | {:.2} ms | |\n\
         | our own CPU per run (difference) | {:.2} ms | ≤ 1 ms |\n\
         | overhead ratio (ours + sandbox) / (bare + sandbox) | {:.2} | ≤ 2 |\n\
         | under 50 ms latency, concurrency 64 | {:.0} runs/s = {:.2} of ideal | ≥ 0.9 |\n\
         | pacing at Busha's limits ({} payouts) | {:.1} transfers/min = {:.2} of 20/min, {} × 429 | ≥ 0.95, 0 |\n\
         | {} job files validated / validated and planned | {:.2} s / {:.2} s, +{:.0} MiB | < 2 s |\n\
         | refresh storm: {} runs on {} expired grants | {} refreshes in {:.1} s | 10 |\n\
         | peak RSS (whole bench process) | {:.0} MiB | |\n\n\
         Rate limits raised x{SCALE} in sandbox and pacer for every figure but pacing.\n",
        f(&embedded, "runs_per_second"),
        f(&embedded_tmpfs, "runs_per_second"),
        f(&distributed, "runs_per_second"),
        f(&tp, "runs_per_second"),
        f(&tp, "provider_calls_per_run"),
        f(&tp, "cpu_ms_per_run_incl_sandbox"),
        f(&bare, "cpu_ms_per_run_incl_sandbox"),
        ours_ms,
        f(&tp, "cpu_ms_per_run_incl_sandbox") / f(&bare, "cpu_ms_per_run_incl_sandbox").max(0.001),
        f(&lat, "runs_per_second"),
        f(&lat, "ratio_to_ideal"),
        pace_n,
        f(&pace, "transfers_per_minute"),
        f(&pace, "fraction_of_limit"),
        pace["responses_429"],
        jobs_n,
        f(&scale, "validate_seconds"),
        f(&scale, "validate_and_plan_seconds"),
        f(&scale, "rss_growth_mib"),
        storm_n,
        10,
        storm["refreshes"],
        f(&storm, "seconds"),
        peak_rss_mib(),
    );
    std::fs::write(format!("{target}/bench-report.md"), &md).unwrap();
    println!("{md}");
}
