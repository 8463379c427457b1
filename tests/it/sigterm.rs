//! SIGTERM during a run, on the real `treasury run` binary: it exits within 10 s, and
//! the restart completes the run, with exactly one transfer at Busha.

use std::time::Duration;

use rust_decimal::dec;
use treasury::runs::{PendingOp, RunState};
use treasury::sandbox::{Fault, FaultKind, LedgerEvent, NewUser};
use treasury::store::RunFilter;
use treasury::triggers::sign_trigger;

use crate::backends::TestStore;
use crate::processes::{Deployment, Process, free_port, wait_for};

const TRIGGER_ENV: &str = "TREASURY_TRIGGER_SIGTERM_TEST";
const TRIGGER_SECRET: &str = "sigterm-trigger-secret-of-at-least-32-bytes";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_transfer_exits_within_10s_and_the_restart_pays_exactly_once() {
    let ts = TestStore::sqlite().await;
    let url = format!("{}?mode=rwc", ts.url);
    let d = Deployment::start(
        &url,
        |c| c.transfer_step = chrono::Duration::milliseconds(500),
        NewUser::new("ada").balance("USDT", dec!(100)),
    )
    .await;
    d.sb.add_bank_account("000013", "0123456789", "ADA LOVELACE");
    d.add_job("on-demand.toml", JOB);
    let port = free_port();
    let config = d.write_config("treasury", port, "");
    let mut worker = Process::new(&d, config, port, &[(TRIGGER_ENV, TRIGGER_SECRET)]);

    // The transfer call hangs for 4 s: SIGTERM lands while it is in flight.
    d.sb.add_fault(
        Fault::new(
            "POST /v1/transfers",
            FaultKind::Latency(Duration::from_secs(4)),
        )
        .times(1),
    );
    worker.start();
    worker.wait_up().await;
    let http = reqwest::Client::new();
    let ts = d.clock.now().timestamp().to_string();
    let body = r#"{"amount": "25"}"#;
    let fired = http
        .post(format!("{}/triggers/on-demand", worker.base()))
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
            let runs = d.store.list_runs(&RunFilter::default()).await.unwrap();
            runs.iter()
                .any(|r| r.pending == Some(PendingOp::CreateTransfer))
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !d.sb
            .ledger()
            .iter()
            .any(|e| matches!(e.event, LedgerEvent::TransferCreated { .. })),
        "SIGTERM lands before the transfer exists"
    );
    let (took, clean) = worker.terminate();
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM to exit took {took:?}\n{}",
        worker.log()
    );
    assert!(clean, "treasury run exits 0 on SIGTERM");

    // Restart: the run completes, and Busha holds exactly one transfer.
    worker.start();
    let run = wait_for(
        "the run to settle after the restart",
        Duration::from_secs(90),
        async || {
            let runs = d.store.list_runs(&RunFilter::default()).await.unwrap();
            runs.into_iter().find(|r| r.state.is_final())
        },
    )
    .await;
    assert_eq!(
        run.state,
        RunState::Settled,
        "{:?}\n{}",
        run.reason,
        worker.log()
    );
    let transfers =
        d.sb.ledger()
            .iter()
            .filter(|e| matches!(e.event, LedgerEvent::TransferCreated { .. }))
            .count();
    assert_eq!(transfers, 1, "exactly one transfer across the restart");
    assert_eq!(
        d.store
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(d.store.verify_audit(None).await.unwrap().is_ok());
    assert_eq!(d.sb.balance(&d.user.id, "USDT"), Some(dec!(75)));
    let (took, _) = worker.terminate();
    assert!(
        took < Duration::from_secs(10),
        "the idle restart stops in {took:?}"
    );
}
