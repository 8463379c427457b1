//! The bench's world: an in-process Busha sandbox, a client, a store, and the runs
//! and loops that every figure drives.

use std::sync::Arc;
use std::time::Instant;

use rust_decimal::Decimal;
use serde_json::json;
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
use treasury::sandbox::{NewUser, OAuthClientConfig, RateLimits, Sandbox, SandboxConfig};
use treasury::store::Store;

pub const CLIENT: &str = "bench";
pub const SCALE: u32 = 10_000;

/// CPU seconds (user + system) of this process so far, from /proc/self/stat.
pub fn cpu_seconds() -> f64 {
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
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

pub struct Bench {
    pub sb: Sandbox,
    pub token: AccessToken,
    pub recipient: String,
    pub busha: BushaClient,
    pub store: Store,
    pub clock: Clock,
    pub dir: tempfile::TempDir,
}

pub async fn bench_world(transfer_step_zero: bool) -> Bench {
    bench_world_with(transfer_step_zero, SCALE, None).await
}

/// A sandbox and store: Busha's limits times `scale` in both the sandbox and the
/// pacer; the store on SQLite (FULL) unless `store_url` names another.
pub async fn bench_world_with(
    transfer_step_zero: bool,
    scale: u32,
    store_url: Option<&str>,
) -> Bench {
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

pub fn spec(recipient: &str) -> PayoutSpec {
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

pub async fn create_runs(b: &Bench, n: usize, tag: &str) -> Vec<RunId> {
    create_runs_on(&b.store, &b.clock, &b.recipient, n, tag).await
}

/// `n` runs of [`spec`] paying `recipient`, created as the scheduler creates them.
pub async fn create_runs_on(
    store: &Store,
    clock: &Clock,
    recipient: &str,
    n: usize,
    tag: &str,
) -> Vec<RunId> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let run = Run::new(
            "bench",
            &format!("{tag}-{i}"),
            "v1",
            spec(recipient),
            false,
            clock.now(),
        );
        store
            .create_run(&run, NewAuditEntry::new("bench", "run.created", json!({})))
            .await
            .unwrap();
        ids.push(run.id);
    }
    ids
}

/// Executes every run to a final state with `concurrency` executors; returns seconds.
pub async fn drain(p: &Pipeline, clock: &Clock, ids: Vec<RunId>, concurrency: usize) -> f64 {
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

pub fn pipeline(b: &Bench) -> Pipeline {
    pipeline_on(&b.store, &b.busha, &b.token, &b.clock)
}

pub fn pipeline_on(
    store: &Store,
    busha: &BushaClient,
    token: &AccessToken,
    clock: &Clock,
) -> Pipeline {
    let tokens = Arc::new(StaticTokens::new().with("bench", token.clone()));
    let cfg = PipelineConfig {
        track_base: chrono::Duration::milliseconds(50),
        ..PipelineConfig::default()
    };
    Pipeline::new(store.clone(), busha.clone(), tokens, clock.clone(), cfg)
}

/// The same provider calls as one run, with no store: the bare loop.
pub async fn bare_run(b: &Bench) {
    bare_run_on(&b.busha, &b.token, &b.recipient).await
}

/// One run's provider calls: the recipient (its holder's name is checked), pairs,
/// balance, quote, transfer lookup, transfer, status.
pub async fn bare_run_on(busha: &BushaClient, t: &AccessToken, recipient: &str) {
    busha.get_recipient(t, recipient).await.unwrap();
    busha.list_pairs(Some(t), None, None).await.unwrap();
    busha.get_balance(t, "USDT").await.unwrap();
    let q = busha
        .create_quote(
            t,
            &NewQuote {
                source_currency: Currency::new("USDT").unwrap(),
                target_currency: Currency::new("NGN").unwrap(),
                amount: QuoteAmount::Source(Decimal::from(10)),
                reference: Some(format!("bare-{}", uuid::Uuid::new_v4().simple())),
                pay_out: Some(PayOut::BankTransfer {
                    recipient_id: recipient.to_string(),
                }),
            },
            &treasury::provider::Unleased,
        )
        .await
        .unwrap()
        .value;
    busha
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
    let tr = busha
        .create_transfer(t, &q.id, &treasury::provider::Unleased)
        .await
        .unwrap()
        .value;
    busha.get_transfer(t, &tr.id).await.unwrap();
}
