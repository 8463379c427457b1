//! `treasury run` assembled: a signed trigger reaches the HTTP server, the queue and
//! the worker take the run through guards, the custodian's tokens and the pipeline, and
//! it settles with exactly one transfer. Then the service shuts down in bounded time.

use std::time::Duration;

use rust_decimal::dec;
use tokio_util::sync::CancellationToken;
use treasury::config::{BushaSettings, GrantSpec, HttpSettings, Settings, StoreSettings};
use treasury::runs::{Amount, RunState};
use treasury::sandbox::{LedgerEvent, TransferOutcome};
use treasury::service::{Application, Parts, run};
use treasury::store::RunFilter;
use treasury::triggers::sign_trigger;

use crate::backends::TestStore;
use crate::grants_harness::{ALIAS, CLIENT_ID, World};
use crate::pipeline_grants::connect_for_payouts;

const SECRET_ENV: &str = "TREASURY_TRIGGER_SERVICE_TEST";

const JOB: &str = r#"
id = "on-demand"
grant = "acme"
owner = "finance-lead"
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
secret_env = "TREASURY_TRIGGER_SERVICE_TEST"
"#;

/// The assembled service on the world's store, clock and sandbox, running `job`.
struct Service {
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), String>>,
    base: String,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Started zero2prod style: on a listener bound to port 0 first, so no port is
    /// raced for (`[http] listen` is not used).
    async fn start(w: &World, job: &str) -> Service {
        let (parts, _, dir) = Service::parts(w, job);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = Application::build(parts, listener).unwrap();
        let base = format!("http://{}", app.address().unwrap());
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Service {
            shutdown,
            handle,
            base,
            _dir: dir,
        }
    }

    /// The service's parts for `job` on the world, the port it will listen on, and the
    /// directory holding the job and the queue.
    fn parts(w: &World, job: &str) -> (Parts, u16, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("job.toml"), job).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = Settings {
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
        };
        let jobs = treasury::jobs::load(dir.path(), &settings).unwrap();
        let parts = Parts {
            settings,
            store: w.store(),
            clock: w.clock.clone(),
            keys: w.keys.clone(),
            oauth: w.oauth.clone(),
            busha: w.api.clone(),
            jobs,
            queue: treasury::queue::QueueConfig::sqlite(dir.path().join("queue.db")),
            webhook_secret: None,
            alert_target: None,
            tick: Duration::from_millis(200),
            sweep_poll: Some(Duration::from_millis(100)),
        };
        (parts, port, dir)
    }

    /// Stops the service and checks that it stopped in bounded time.
    async fn stop(self) {
        let started = std::time::Instant::now();
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "bounded shutdown"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_trigger_runs_through_the_assembled_service_to_one_settled_transfer() {
    // SAFETY: nextest gives this test a process of its own; nothing else reads it.
    unsafe { std::env::set_var(SECRET_ENV, "service-secret-of-at-least-32-bytes") };
    let w = World::start(TestStore::sqlite().await).await;
    connect_for_payouts(&w).await;
    w.sb.set_balance(&w.user.id, "USDT", dec!(100));
    w.sb.add_bank_account("000013", "0123456789", "ADA LOVELACE");
    let service = Service::start(&w, JOB).await;
    let http = reqwest::Client::new();
    let base = service.base.clone();

    // Fire the trigger.
    let ts = w.clock.now().timestamp().to_string();
    let body = r#"{"amount": "12.5"}"#;
    let fired = http
        .post(format!("{base}/triggers/on-demand"))
        .header("x-treasury-timestamp", &ts)
        .header("x-treasury-event-id", "evt-1")
        .header(
            "x-treasury-signature",
            sign_trigger(
                b"service-secret-of-at-least-32-bytes",
                &ts,
                "evt-1",
                body.as_bytes(),
            ),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(fired.status(), 201);

    // The sandbox's transfers move with its clock: nudge it while the worker works.
    let mut settled = false;
    for _ in 0..300 {
        let runs = w.store().list_runs(&RunFilter::default()).await.unwrap();
        if runs.len() == 1 && runs[0].state == RunState::Settled {
            settled = true;
            break;
        }
        w.clock.advance(chrono::Duration::seconds(2));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        settled,
        "the triggered run settled: {:?}",
        w.store()
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.state, r.reason.clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        w.count(|e| matches!(e, LedgerEvent::TransferCreated { .. })),
        1
    );

    service.stop().await;
    assert!(w.store().verify_audit(None).await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_job_with_a_short_secret_stops_the_service_before_it_listens() {
    // SAFETY: nextest gives this test a process of its own; nothing else reads it.
    unsafe { std::env::set_var(SECRET_ENV, "too-short") };
    let w = World::start(TestStore::sqlite().await).await;
    let (parts, port, _dir) = Service::parts(&w, JOB);

    let started = tokio::time::timeout(
        Duration::from_secs(10),
        run(parts, CancellationToken::new()),
    )
    .await
    .expect("refused at once");

    let err = started.expect_err("the service must not start");
    assert!(
        err.contains("job on-demand: $TREASURY_TRIGGER_SERVICE_TEST holds 9 bytes")
            && err.contains("at least 32 bytes"),
        "{err}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens: no request was ever accepted"
    );
}

const SWEEP: &str = r#"
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
threshold = "1000"
keep = "200"
interval = "1m"
min_interval = "30m"
debounce = "0s"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balance_above_the_threshold_sweeps_once_and_no_second_sweep_starts_while_it_is_in_flight()
 {
    let w = World::start(TestStore::sqlite().await).await;
    connect_for_payouts(&w).await;
    w.sb.set_balance(&w.user.id, "USDT", dec!(900));
    w.sb.add_bank_account("000013", "0123456789", "ADA LOVELACE");
    // The sweep's transfer never leaves `processing`: it stays in flight.
    w.sb.push_transfer_outcome(TransferOutcome::Stuck);
    let service = Service::start(&w, SWEEP).await;
    let sweeps = || async { w.store().list_runs(&RunFilter::default()).await.unwrap() };

    // Below the threshold: many polls, no sweep.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(sweeps().await.is_empty(), "900 is below the threshold");

    // A deposit takes it above: one sweep of available - keep.
    w.sb.set_balance(&w.user.id, "USDT", dec!(1500.25));
    let mut submitted = None;
    for _ in 0..200 {
        let runs = sweeps().await;
        if let Some(r) = runs.iter().find(|r| r.state == RunState::TransferSubmitted) {
            submitted = Some(r.clone());
            break;
        }
        w.clock.advance(chrono::Duration::seconds(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = submitted.expect("the sweep reached its transfer");
    assert_eq!(
        run.spec.amount,
        Amount::Source {
            amount: dec!(1300.25)
        }
    );
    assert_eq!(w.sb.balance(&w.user.id, "USDT"), Some(dec!(200.00)));

    // Another deposit while the first sweep is in flight: still one sweep, even past
    // the minimum interval.
    w.sb.set_balance(&w.user.id, "USDT", dec!(5000));
    for _ in 0..20 {
        w.clock.advance(chrono::Duration::minutes(2));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let runs = sweeps().await;
    assert_eq!(runs.len(), 1, "no second sweep while one is in flight");
    assert_eq!(
        w.count(|e| matches!(e, LedgerEvent::QuoteCreated { .. })),
        1
    );
    assert_eq!(
        w.count(|e| matches!(e, LedgerEvent::TransferCreated { .. })),
        1
    );
    service.stop().await;
    assert!(w.store().verify_audit(None).await.unwrap().is_ok());
}
