//! Three real `treasury run` processes on one PostgreSQL and one Redis, with Busha
//! failing around them (5% 5xx, 2% responses dropped after commit, 2% 429s) and a
//! random process killed with SIGKILL every few seconds, then started again. The load
//! is a scheduled batch job with several occurrences, signed triggers, and sweeps.
//!
//! Busha's documented limits are raised five times in both the sandbox and the pacer
//! (`[pacing] limits_scale = 5`) so that the load fits in the test's minutes; the
//! rolling-minute check below holds the processes to those raised limits together.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DurationRound, Timelike, Utc};
use rust_decimal::dec;
use treasury::runs::RunState;
use treasury::sandbox::{Fault, FaultKind, LedgerEvent, NewUser, RateLimits};
use treasury::store::RunFilter;
use treasury::triggers::sign_trigger;

use crate::backends::TestStore;
use crate::processes::{CLIENT_ID, Deployment, Process, free_port, try_wait_for};
use crate::servers::{PrivateRedis, SERIAL};

const SCALE: u32 = 5;
const TRIGGER_ENV: &str = "TREASURY_TRIGGER_CHAOS_TEST";
const TRIGGER_SECRET: &str = "chaos-trigger-secret-of-at-least-32-bytes";
const TRIGGERS: usize = 16;
const PAYEES: usize = 4;
const SWEEP_THRESHOLD: rust_decimal::Decimal = dec!(5000);

fn batch_job(cron: &str) -> String {
    let mut text = format!(
        r#"
id = "payroll"
grant = "acme"
owner = "finance-lead"
source_currency = "USDT"
target_currency = "NGN"

[guard]
min_rate = "1000"

[schedule]
cron = "{cron}"
timezone = "UTC"
catch_up = "all"
max_lateness = "30m"
"#
    );
    for i in 0..PAYEES {
        text.push_str(&format!(
            r#"
[[payees]]
key = "p{i}"
target_amount = "{}.00"
bank_code = "000013"
account_number = "0123456789"
account_name = "ADA LOVELACE"
"#,
            10_000 + i * 1_000
        ));
    }
    text
}

const TRIGGER_JOB: &str = r#"
id = "on-demand"
grant = "acme"
owner = "procurement-lead"
source_currency = "USDT"
target_currency = "NGN"

[recipient]
bank_code = "000013"
account_number = "0123456789"
account_name = "ADA LOVELACE"

[guard]
min_rate = "1000"

[trigger]
side = "source"
min_amount = "1"
max_amount = "100"
secret_env = "TREASURY_TRIGGER_CHAOS_TEST"
"#;

const SWEEP_JOB: &str = r#"
id = "sweep"
grant = "acme"
owner = "treasurer"
source_currency = "USDT"
target_currency = "NGN"

[recipient]
bank_code = "000013"
account_number = "0123456789"
account_name = "ADA LOVELACE"

[guard]
min_rate = "1000"

[sweep]
balance = "USDT"
threshold = "5000"
keep = "4000"
interval = "1s"
min_interval = "20s"
"#;

const RESOURCE_ENDPOINTS: [&str; 11] = [
    "GET /v1/balances/{id_or_code}",
    "GET /v1/pairs",
    "GET /v1/recipients",
    "POST /v1/recipients",
    "POST /v1/recipients/resolve-bank-account",
    "GET /v1/quotes",
    "POST /v1/quotes",
    "GET /v1/quotes/{id}",
    "GET /v1/transfers",
    "POST /v1/transfers",
    "GET /v1/transfers/{id}",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_killed_at_random_pay_every_run_exactly_once_within_the_limits() {
    let _serial = SERIAL.lock().await;
    let redis = PrivateRedis::start();
    let ts = TestStore::postgres().await;
    let d = Deployment::start(
        &ts.url,
        |c| {
            c.rate_limits = RateLimits::busha().scaled(SCALE);
            c.transfer_step = chrono::Duration::seconds(1);
            // Expiring within the custodian's 5-minute margin every minute: several
            // refreshes during the test, each of which must happen exactly once.
            c.access_token_ttl = chrono::Duration::minutes(6);
        },
        // Above the sweep's threshold from the start: the first sweep fires at once.
        NewUser::new("ada").balance("USDT", dec!(6000)),
    )
    .await;
    d.sb.add_bank_account("000013", "0123456789", "ADA LOVELACE");

    // Two scheduled occurrences: the next two minute marks at least 20 s away.
    let first = (Utc::now() + chrono::Duration::seconds(80))
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap();
    let second = first + chrono::Duration::minutes(1);
    let cron = format!(
        "{},{} {},{} * * *",
        first.minute(),
        second.minute(),
        first.hour(),
        second.hour()
    );
    d.add_job("payroll.toml", &batch_job(&cron));
    d.add_job("on-demand.toml", TRIGGER_JOB);
    d.add_job("sweep.toml", SWEEP_JOB);

    let extra = format!(
        r#"
[queue]
backend = "redis"
url = "{redis}"

[pacing]
limits_scale = {SCALE}

[worker]
lease = "10s"
busha_timeout = "3s"
max_pacing_wait = "1s"
queue_heartbeat = "1s"
recovery_interval = "2s"
"#,
        redis = redis.url()
    );
    let mut procs: Vec<Process> = (0..3)
        .map(|i| {
            let port = free_port();
            let config = d.write_config(&format!("p{i}"), port, &extra);
            Process::new(&d, config, port, &[(TRIGGER_ENV, TRIGGER_SECRET)])
        })
        .collect();
    for p in procs.iter_mut() {
        p.start();
    }
    for p in &procs {
        p.wait_up().await;
    }

    // Busha misbehaves on every resource endpoint (not on the token endpoint: a lost
    // refresh response is a disconnect no client can prevent; see design.md §6).
    for endpoint in RESOURCE_ENDPOINTS {
        d.sb.add_fault(Fault::new(endpoint, FaultKind::ServerError(503)).permille(50));
        d.sb.add_fault(Fault::new(endpoint, FaultKind::DropAfterCommit).permille(20));
        d.sb.add_fault(Fault::new(endpoint, FaultKind::RateLimited).permille(20));
    }

    // Chaos until the second occurrence has fired and every trigger is in, killing a
    // random process every 3 s; triggers go to whichever process is up.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    let chaos_until = second + chrono::Duration::seconds(10);
    let mut fired = 0usize;
    let mut kills = 0usize;
    let mut deposited = false;
    let mut next_kill = Instant::now() + Duration::from_secs(3);
    while Utc::now() < chaos_until || fired < TRIGGERS {
        if fired < TRIGGERS {
            let event = format!("evt-{fired}");
            let body = format!(r#"{{"amount": "{}"}}"#, 5 + fired);
            let stamp = d.clock.now().timestamp().to_string();
            let sig = sign_trigger(TRIGGER_SECRET.as_bytes(), &stamp, &event, body.as_bytes());
            let target = &procs[fired % procs.len()];
            if target.is_running()
                && let Ok(res) = http
                    .post(format!("{}/triggers/on-demand", target.base()))
                    .header("x-treasury-timestamp", &stamp)
                    .header("x-treasury-event-id", &event)
                    .header("x-treasury-signature", &sig)
                    .body(body)
                    .send()
                    .await
                && (res.status() == 201 || res.status() == 200)
            {
                fired += 1;
            }
        }
        if !deposited && started.elapsed() > Duration::from_secs(20) {
            // A deposit lifts the balance over the sweep's threshold a second time.
            let now = d.sb.balance(&d.user.id, "USDT").unwrap();
            d.sb.set_balance(&d.user.id, "USDT", now + dec!(3000));
            deposited = true;
        }
        if Instant::now() >= next_kill {
            let i = rand::random::<u32>() as usize % procs.len();
            procs[i].kill9();
            kills += 1;
            tokio::time::sleep(Duration::from_millis(300 + rand::random::<u64>() % 700)).await;
            procs[i].start();
            next_kill = Instant::now() + Duration::from_secs(3);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "chaos: {kills} kills, {fired} triggers in {:.0?}",
        started.elapsed()
    );

    // Calm: Busha behaves, every process stays up, every run reaches a final state.
    d.sb.clear_faults();
    let finals = try_wait_for(Duration::from_secs(180), async || {
        let runs = d.store.list_runs(&RunFilter::default()).await.ok()?;
        // A sweep skipped on a busy wallet is followed by another while the balance
        // stays above the threshold: the end is when none is left to sweep.
        let swept = d.sb.balance(&d.user.id, "USDT")? <= SWEEP_THRESHOLD;
        (swept && runs.len() >= TRIGGERS + 2 * PAYEES && runs.iter().all(|r| r.state.is_final()))
            .then_some(runs)
    })
    .await;
    let Some(runs) = finals else {
        // Say where each unfinished run stands, so that a slow machine and a stuck run
        // can be told apart.
        let runs = d.store.list_runs(&RunFilter::default()).await.unwrap();
        let open: Vec<String> = runs
            .iter()
            .filter(|r| !r.state.is_final())
            .map(|r| {
                format!(
                    "{} {} pending={:?} next_attempt_at={} reason={:?}",
                    r.id, r.state, r.pending, r.next_attempt_at, r.reason
                )
            })
            .collect();
        panic!(
            "timed out waiting for every run final: {} of {} runs (expected {}) still open:\n{}",
            open.len(),
            runs.len(),
            TRIGGERS + 2 * PAYEES,
            open.join("\n")
        );
    };
    for p in procs.iter_mut() {
        let (took, _) = p.terminate();
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
    let runs = {
        // Nothing new may have started between the check and the shutdown.
        let after = d.store.list_runs(&RunFilter::default()).await.unwrap();
        assert!(after.iter().all(|r| r.state.is_final()));
        assert_eq!(after.len(), runs.len());
        after
    };
    let count = |job: &str| runs.iter().filter(|r| r.job_id == job).count();
    assert_eq!(
        count("payroll"),
        2 * PAYEES,
        "two occurrences, one run per payee"
    );
    assert_eq!(count("on-demand"), TRIGGERS, "one run per trigger event");
    // A sweep may be skipped when the payroll spends under its locked quote; it never
    // fails, and one that followed swept what stood above the threshold.
    let settled_sweeps = runs
        .iter()
        .filter(|r| r.job_id == "sweep" && r.state == RunState::Settled)
        .count();
    assert!(
        settled_sweeps >= 1,
        "the balance above the threshold was swept"
    );
    let skipped = |r: &&treasury::runs::Run| {
        r.job_id == "sweep"
            && r.state == RunState::Cancelled
            && r.reason
                .as_deref()
                .is_some_and(|w| w.contains("kept falling"))
    };
    let unsettled: Vec<String> = runs
        .iter()
        .filter(|r| r.state != RunState::Settled && !skipped(r))
        .map(|r| {
            format!(
                "{} {}: {} {:?}",
                r.job_id, r.occurrence_key, r.state, r.reason
            )
        })
        .collect();
    assert!(unsettled.is_empty(), "every run settled: {unsettled:?}");

    // Busha's side: exactly one transfer per settled run, none on an expired quote.
    let ledger = d.sb.ledger();
    let mut transfers_by_quote: BTreeMap<String, usize> = BTreeMap::new();
    for e in &ledger {
        if let LedgerEvent::TransferCreated {
            quote_id,
            quote_expires_at,
            repriced,
            duplicate,
            ..
        } = &e.event
        {
            *transfers_by_quote.entry(quote_id.clone()).or_default() += 1;
            assert!(!repriced && !duplicate, "{:?}", e.event);
            assert!(e.at < *quote_expires_at, "a transfer on an expired quote");
        }
    }
    assert_eq!(transfers_by_quote.values().sum::<usize>(), runs.len());
    assert!(transfers_by_quote.values().all(|n| *n == 1));
    let runs: Vec<_> = runs
        .into_iter()
        .filter(|r| r.state == RunState::Settled)
        .collect();
    let ours: HashSet<String> = runs
        .iter()
        .map(|r| r.quote.as_ref().unwrap().id.clone())
        .collect();
    assert_eq!(
        ours,
        transfers_by_quote.keys().cloned().collect::<HashSet<_>>(),
        "every transfer is one of our settled runs'"
    );

    // No rolling minute held more than the (raised) limit, all processes together.
    let limits = RateLimits::busha().scaled(SCALE);
    let mut by_endpoint: BTreeMap<String, Vec<chrono::DateTime<Utc>>> = BTreeMap::new();
    for r in d.sb.requests() {
        if r.client_id.as_deref() == Some(CLIENT_ID) && r.endpoint.contains(" /v1/") {
            by_endpoint
                .entry(r.endpoint.clone())
                .or_default()
                .push(r.at);
        }
    }
    for (endpoint, mut times) in by_endpoint {
        times.sort();
        let limit = limits.limit_for(&endpoint) as usize;
        let most = (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| **t - times[i] < chrono::Duration::seconds(60))
                    .count()
            })
            .max()
            .unwrap_or(0);
        assert!(
            most <= limit,
            "{endpoint}: {most} in one minute, limit {limit}"
        );
    }

    // Tokens: refreshed as they neared expiry, each exactly once: no refresh token was
    // replayed and no family revoked, through every kill.
    let refreshes = ledger
        .iter()
        .filter(|e| matches!(&e.event, LedgerEvent::TokenIssued { grant, .. } if grant == "refresh_token"))
        .count();
    assert!(
        !ledger.iter().any(|e| matches!(
            e.event,
            LedgerEvent::RefreshReplayed { .. } | LedgerEvent::FamilyRevoked { .. }
        )),
        "no refresh token replayed, no family revoked"
    );
    let minutes = started.elapsed().as_secs() / 60 + 1;
    assert!(
        refreshes >= 1,
        "the token was refreshed as it neared expiry"
    );
    assert!(
        refreshes as u64 <= minutes + 1,
        "{refreshes} refreshes in {minutes} minutes: one per expiry"
    );

    assert!(
        d.store.verify_audit(None).await.unwrap().is_ok(),
        "audit verify"
    );
    eprintln!(
        "chaos: {} runs settled, {refreshes} refreshes, {kills} kills",
        runs.len()
    );
}
