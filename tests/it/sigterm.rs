//! SIGTERM during a run, on the real `treasury run` binary: it exits within 10 s, and
//! the restart completes the run, with exactly one transfer at Busha.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rust_decimal::dec;
use treasury::clock::Clock;
use treasury::config::{GrantSpec, Secret};
use treasury::grants::{BushaOAuth, Connector, Keyring, OAuthSettings};
use treasury::runs::{PendingOp, RunState};
use treasury::sandbox::{
    Fault, FaultKind, LedgerEvent, NewUser, OAuthClientConfig, Sandbox, SandboxConfig,
};
use treasury::store::{RunFilter, Store};
use treasury::triggers::sign_trigger;

use crate::grants_harness::{Browser, callback_params};

const CLIENT_ID: &str = "busha-oauth2-5e1c0d2a-sigterm-tests-test";
const CLIENT_SECRET: &str = "sigterm-client-secret";
const TRIGGER_ENV: &str = "TREASURY_TRIGGER_SIGTERM_TEST";
const TRIGGER_SECRET: &str = "sigterm-trigger-secret";
const SCOPES: [&str; 7] = [
    "balances:read",
    "quotes:read",
    "quotes:write",
    "transfers:read",
    "transfers:write",
    "recipients:read",
    "recipients:write",
];

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
secret_env = "TREASURY_TRIGGER_SIGTERM_TEST"
"#;

struct Worker {
    child: Child,
}

impl Worker {
    fn start(dir: &Path, master_key: &str) -> Worker {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("worker.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_treasury"))
            .current_dir(dir)
            .args(["--config", "treasury.toml", "run", "--jobs", "jobs"])
            .env("TREASURY_MASTER_KEY", master_key)
            .env("TREASURY_BUSHA_CLIENT_SECRET", CLIENT_SECRET)
            .env(TRIGGER_ENV, TRIGGER_SECRET)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start treasury run");
        Worker { child }
    }

    /// SIGTERM, then how long the process took to exit and whether it exited 0.
    fn terminate(&mut self) -> (Duration, bool) {
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM");
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (started.elapsed(), status.success());
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("treasury run ignored SIGTERM for 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_transfer_exits_within_10s_and_the_restart_pays_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    // One clock for the sandbox and the worker binary: wall time.
    let clock = Clock::system();
    let port = free_port();
    let redirect = url::Url::parse(&format!("http://127.0.0.1:{port}/oauth/callback")).unwrap();
    let sb = Sandbox::start(SandboxConfig {
        clock: clock.clone(),
        auto_consent: Some("ada".into()),
        clients: vec![OAuthClientConfig::new(
            CLIENT_ID,
            CLIENT_SECRET,
            redirect.as_str(),
        )],
        transfer_step: chrono::Duration::milliseconds(500),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let user = sb.create_user(NewUser::new("ada").balance("USDT", dec!(100)));
    sb.add_bank_account("000013", "0123456789", "ADA LOVELACE");

    // Connect the customer into the store the binary will use.
    let store_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("treasury.db").display()
    );
    let store = Store::connect(&store_url).await.unwrap();
    let master_key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    let keys = Arc::new(Keyring::parse(&master_key).unwrap());
    let oauth = Arc::new(
        BushaOAuth::discover(
            &OAuthSettings::new(
                sb.url(),
                CLIENT_ID,
                Secret::new(CLIENT_SECRET.to_string()),
                redirect.clone(),
            ),
            clock.clone(),
        )
        .await
        .unwrap(),
    );
    let grants = vec![GrantSpec {
        alias: "acme".into(),
        provider: "busha".into(),
        scopes: SCOPES.iter().map(|s| s.to_string()).collect(),
    }];
    let connector = Connector::new(store.clone(), keys, oauth, clock.clone(), grants);
    let started = connector.begin("acme").await.unwrap();
    let callback = Browser::new().follow_auto_consent(&started.url).await;
    connector
        .complete(&callback_params(&callback), "test")
        .await
        .unwrap();

    std::fs::write(
        dir.path().join("treasury.toml"),
        format!(
            r#"
[store]
url = "{store_url}"

[busha]
issuer_url = "{sb_url}"
api_url = "{sb_url}"
client_id = "{CLIENT_ID}"
redirect_uri = "{redirect}"

[http]
listen = "127.0.0.1:{port}"

[[grants]]
alias = "acme"
provider = "busha"
scopes = {scopes:?}
"#,
            sb_url = sb.url(),
            scopes = SCOPES,
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    std::fs::write(dir.path().join("jobs/on-demand.toml"), JOB).unwrap();

    // The transfer call hangs for 4 s: SIGTERM lands while it is in flight.
    sb.add_fault(
        Fault::new(
            "POST /v1/transfers",
            FaultKind::Latency(Duration::from_secs(4)),
        )
        .times(1),
    );
    let mut worker = Worker::start(dir.path(), &master_key);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_for(
        "the worker's HTTP server",
        Duration::from_secs(60),
        async || {
            http.get(format!("{base}/healthz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        },
    )
    .await;
    let ts = clock.now().timestamp().to_string();
    let body = r#"{"amount": "25"}"#;
    let fired = http
        .post(format!("{base}/triggers/on-demand"))
        .header("x-treasury-timestamp", &ts)
        .header("x-treasury-event-id", "evt-sigterm")
        .header(
            "x-treasury-signature",
            sign_trigger(
                TRIGGER_SECRET.as_bytes(),
                &ts,
                "evt-sigterm",
                body.as_bytes(),
            ),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(fired.status(), 201);

    // The transfer's intent is persisted and its POST is held up by the latency.
    wait_for(
        "the transfer call in flight",
        Duration::from_secs(60),
        async || {
            let runs = store.list_runs(&RunFilter::default()).await.unwrap();
            runs.iter()
                .any(|r| r.pending == Some(PendingOp::CreateTransfer))
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !sb.ledger()
            .iter()
            .any(|e| matches!(e.event, LedgerEvent::TransferCreated { .. })),
        "SIGTERM lands before the transfer exists"
    );
    let (took, clean) = worker.terminate();
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM to exit took {took:?}\n{}",
        std::fs::read_to_string(dir.path().join("worker.log")).unwrap_or_default()
    );
    assert!(clean, "treasury run exits 0 on SIGTERM");

    // Restart: the run completes, and Busha holds exactly one transfer.
    let mut worker = Worker::start(dir.path(), &master_key);
    let run = wait_for(
        "the run to settle after the restart",
        Duration::from_secs(90),
        async || {
            let runs = store.list_runs(&RunFilter::default()).await.unwrap();
            runs.into_iter().find(|r| r.state.is_final())
        },
    )
    .await;
    let log = std::fs::read_to_string(dir.path().join("worker.log")).unwrap_or_default();
    assert_eq!(run.state, RunState::Settled, "{:?}\n{log}", run.reason);
    let transfers = sb
        .ledger()
        .iter()
        .filter(|e| matches!(e.event, LedgerEvent::TransferCreated { .. }))
        .count();
    assert_eq!(
        transfers, 1,
        "exactly one transfer across the restart\n{log}"
    );
    assert_eq!(
        store.list_runs(&RunFilter::default()).await.unwrap().len(),
        1
    );
    assert!(store.verify_audit(None).await.unwrap().is_ok());
    assert_eq!(sb.balance(&user.id, "USDT"), Some(dec!(75)));
    let (took, _) = worker.terminate();
    assert!(
        took < Duration::from_secs(10),
        "the idle restart stops in {took:?}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
