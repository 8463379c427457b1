//! The harness of the reload suite: a worker (`treasury run` in process, reloading its
//! jobs folder) on the grants world's store, clock and sandbox, and waits for positive
//! signals (an audit entry, an occurrence's runs).

use std::path::Path;
use std::time::Duration;

use rust_decimal::Decimal;
use tokio_util::sync::CancellationToken;
use treasury::audit::AuditEntry;
use treasury::config::{BushaSettings, GrantSpec, HttpSettings, Settings, StoreSettings};
use treasury::operators::Role;
use treasury::runs::{Amount, Run};
use treasury::service::{Parts, run_reloading};
use treasury::store::RunFilter;

use crate::backends::TestStore;
use crate::grants_harness::{ALIAS, CLIENT_ID, World};
use crate::operators_world::account;
use crate::pipeline_grants::connect_for_payouts;

/// The every-minute job `payroll`, paying each payee key `amount` USDT.
pub fn payroll(amount: &str, payees: &[&str]) -> String {
    let mut text = String::from(
        r#"id = "payroll"
grant = "acme"
owner = "finance-lead"
source_currency = "USDT"
target_currency = "NGN"

[guard]
min_rate = "1000"

[schedule]
cron = "* * * * *"
timezone = "UTC"
"#,
    );
    for (i, key) in payees.iter().enumerate() {
        text.push_str(&format!(
            "\n[[payees]]\nkey = \"{key}\"\nsource_amount = \"{amount}\"\nid = \"5b0e7a0c-3c1d-4f7e-9a61-0c2f4b8d9e0{i}\"\n"
        ));
    }
    text
}

fn settings(w: &World, port: u16) -> Settings {
    Settings {
        path: "test.toml".into(),
        store: StoreSettings {
            url: w.ts.url.clone(),
        },
        baanx: None,
        busha: BushaSettings {
            issuer_url: w.sb.url(),
            api_url: w.sb.url(),
            client_id: CLIENT_ID.into(),
            redirect_uri: w.redirect_uri.clone(),
        },
        http: HttpSettings {
            listen: ([127, 0, 0, 1], port).into(),
            ..HttpSettings::default()
        },
        queue: Default::default(),
        pacing: Default::default(),
        worker: Default::default(),
        alerts: Default::default(),
        audit: Default::default(),
        grants: vec![GrantSpec {
            alias: ALIAS.into(),
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
        }],
    }
}

/// One worker (`treasury run` in process) reloading the job files in `jobs`.
pub struct Worker {
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), String>>,
    pub base: String,
    _queue: tempfile::TempDir,
}

impl Worker {
    pub async fn start(w: &World, jobs: &Path) -> Worker {
        Worker::ticking(w, jobs, Duration::from_millis(100)).await
    }

    /// A worker whose scheduler ticks every `tick`.
    pub async fn ticking(w: &World, jobs: &Path, tick: Duration) -> Worker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = settings(w, port);
        let queue = tempfile::tempdir().unwrap();
        let parts = Parts {
            jobs: treasury::jobs::load(jobs, &settings).unwrap(),
            settings,
            store: w.ts.reopen().await,
            clock: w.clock.clone(),
            keys: w.keys.clone(),
            oauth: w.oauth.clone(),
            busha: w.api.clone(),
            queue: treasury::queue::QueueConfig::sqlite(queue.path().join("queue.db")),
            webhook_secret: None,
            alert_target: None,
            tick,
            sweep_poll: Some(Duration::from_millis(100)),
        };
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(run_reloading(
            parts,
            Some(jobs.to_path_buf()),
            shutdown.clone(),
        ));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Worker {
            shutdown,
            handle,
            base,
            _queue: queue,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

/// Polls (real time, up to 30 s) until `found` answers something.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut found: impl FnMut() -> F,
) -> T {
    for _ in 0..300 {
        if let Some(t) = found().await {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The first audit entry after `after` that `pick` accepts, once there is one.
pub async fn audit_entry(w: &World, what: &str, pick: impl Fn(&AuditEntry) -> bool) -> AuditEntry {
    eventually(what, || async {
        let entries = w.store().audit_entries_after(0, 100_000).await.unwrap();
        entries.into_iter().find(|e| pick(e))
    })
    .await
}

pub async fn runs(w: &World) -> Vec<Run> {
    let mut runs = w.store().list_runs(&RunFilter::default()).await.unwrap();
    runs.retain(|r| r.job_id == "payroll");
    runs.sort_by(|a, b| a.occurrence_key.cmp(&b.occurrence_key));
    runs
}

/// Moves the clock one minute on and waits for the occurrence it makes due; answers
/// that occurrence's runs.
pub async fn next_occurrence(w: &World) -> Vec<Run> {
    let before: std::collections::BTreeSet<String> = runs(w)
        .await
        .into_iter()
        .map(|r| r.occurrence_key)
        .collect();
    w.clock.advance(chrono::Duration::seconds(60));
    eventually("the next occurrence's runs", || async {
        let new: Vec<Run> = runs(w)
            .await
            .into_iter()
            .filter(|r| !before.contains(&r.occurrence_key))
            .collect();
        (!new.is_empty()).then_some(new)
    })
    .await
}

pub fn source_amount(run: &Run) -> Decimal {
    match &run.spec.amount {
        Amount::Source { amount } => *amount,
        other => panic!("a source amount, got {other:?}"),
    }
}

pub async fn world(ts: TestStore) -> World {
    let w = World::start(ts).await;
    connect_for_payouts(&w).await;
    account(&w.store(), &w.clock, "finance-lead", Role::Viewer).await;
    w
}
