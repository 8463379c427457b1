//! Operations: the Busha webhook wakes tracking only with a valid signature, metrics
//! report runs by state, readiness follows the store, and alerts come from the audit
//! log with an optional signed POST.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderMap;
use base64::Engine;
use chrono::Duration;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use rust_decimal::dec;
use serde_json::json;
use sha2::Sha256;
use treasury::alerts::{AlertKind, AlertSink, AlertWatcher, sign};
use treasury::audit::NewAuditEntry;
use treasury::clock::Clock;
use treasury::config::Secret;
use treasury::http::ops::{OpsState, ops_router};
use treasury::money::Currency;
use treasury::runs::{Amount, PayoutSpec, RateGuard, RecipientSpec, Run, RunState};

use crate::backends::TestStore;

fn spec() -> PayoutSpec {
    PayoutSpec {
        grant: "acme".into(),
        source_currency: Currency::new("USDT").unwrap(),
        target_currency: Currency::new("NGN").unwrap(),
        amount: Amount::Source { amount: dec!(10) },
        recipient: RecipientSpec::Id { id: "r1".into() },
        guard: RateGuard::default(),
        max_requotes: 1,
        limits: Default::default(),
        approval: None,
        sweep: None,
    }
}

async fn serve(state: OpsState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, ops_router(state)).await });
    url
}

/// A run tracking `transfer_id`, due in an hour.
pub async fn tracked_run(t: &TestStore, clock: &Clock, transfer_id: &str) -> Run {
    let mut run = Run::new("job", transfer_id, "v1", spec(), false, clock.now());
    t.store
        .create_run(&run, NewAuditEntry::new("test", "run.created", json!({})))
        .await
        .unwrap();
    let (mut lease, _) = t
        .store
        .acquire_run(&run.id, "w", clock.now(), Duration::seconds(60))
        .await
        .unwrap()
        .unwrap();
    run.state = RunState::TransferSubmitted;
    run.transfer_id = Some(transfer_id.into());
    run.next_attempt_at = clock.now() + Duration::hours(1);
    t.store
        .save_run(
            &mut lease,
            &run,
            vec![NewAuditEntry::new("w", "run.transfer.submitted", json!({})).run(run.id.as_str())],
            clock.now(),
            Duration::seconds(60),
        )
        .await
        .unwrap();
    t.store.release_run(&lease).await.unwrap();
    run
}

fn busha_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn a_signed_busha_webhook_wakes_tracking_and_a_bad_signature_is_refused() {
    let t = TestStore::sqlite().await;
    let clock = Clock::system();
    let run = tracked_run(&t, &clock, "TRF_abc").await;
    let url = serve(OpsState {
        store: t.store.clone(),
        clock: clock.clone(),
        metrics: treasury::metrics::install(),
        webhook_secret: Some(Arc::new(Secret::new("whsec"))),
        seals: Default::default(),
    })
    .await;
    // The payload claims delivery; it is only a hint.
    let body = json!({ "business_id": "BUS_1", "event": "transfer.funds_delivered", "data": { "id": "TRF_abc", "status": "funds_delivered" } }).to_string();
    let http = reqwest::Client::new();
    let bad = http
        .post(format!("{url}/webhooks/busha"))
        .header("x-bu-signature", busha_signature("wrong", body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    assert!(
        t.store
            .get_run(&run.id)
            .await
            .unwrap()
            .unwrap()
            .next_attempt_at
            > clock.now() + Duration::minutes(50)
    );
    let good = http
        .post(format!("{url}/webhooks/busha"))
        .header("x-bu-signature", busha_signature("whsec", body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    let woken = t.store.get_run(&run.id).await.unwrap().unwrap();
    assert!(woken.next_attempt_at <= clock.now(), "due now");
    assert_eq!(
        woken.state,
        RunState::TransferSubmitted,
        "the payload's status was not trusted"
    );
    assert_eq!(woken.transfer_status, None);
}

#[tokio::test]
async fn metrics_count_runs_by_state_and_readiness_follows_the_store() {
    let t = TestStore::sqlite().await;
    let clock = Clock::system();
    tracked_run(&t, &clock, "TRF_1").await;
    tracked_run(&t, &clock, "TRF_2").await;
    let url = serve(OpsState {
        store: t.store.clone(),
        clock,
        metrics: treasury::metrics::install(),
        webhook_secret: None,
        seals: Default::default(),
    })
    .await;
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("treasury_runs{state=\"transfer_submitted\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("treasury_runs{state=\"settled\"} 0"),
        "{text}"
    );
    assert_eq!(
        reqwest::get(format!("{url}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    t.store.close().await;
    assert_eq!(
        reqwest::get(format!("{url}/readyz"))
            .await
            .unwrap()
            .status(),
        503
    );
}

#[tokio::test]
async fn alerts_come_from_the_audit_log_and_stuck_transfers_with_a_signed_post() {
    let t = TestStore::sqlite().await;
    let clock = Clock::system();
    // Something before the watcher starts is history, not an alert.
    t.store
        .append_audit(
            clock.now(),
            NewAuditEntry::new("w", "run.failed", json!({ "reason": "old" })).run("run_old"),
        )
        .await
        .unwrap();
    // A receiver that checks the signature.
    let received: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move {
                let ts = headers["x-treasury-timestamp"]
                    .to_str()
                    .unwrap()
                    .to_string();
                let sig = headers["x-treasury-signature"]
                    .to_str()
                    .unwrap()
                    .to_string();
                let ok = sig == format!("sha256={}", sign(b"alert-secret", &ts, &body));
                let kind = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string();
                seen.lock().push((kind, ok));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target =
        url::Url::parse(&format!("http://{}/alerts", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sink = AlertSink::new(Some((target, Secret::new("alert-secret"))));
    let mut watcher = AlertWatcher::new(
        t.store.clone(),
        sink.clone(),
        clock.clone(),
        Duration::minutes(30),
    )
    .await
    .unwrap();

    t.store
        .append_audit(
            clock.now(),
            NewAuditEntry::new("w", "run.failed", json!({ "reason": "over the cap" })).run("run_a"),
        )
        .await
        .unwrap();
    t.store
        .append_audit(
            clock.now(),
            NewAuditEntry::new(
                "w",
                "grant.disconnected",
                json!({ "reason": "invalid_grant" }),
            )
            .grant("g1"),
        )
        .await
        .unwrap();
    t.store
        .append_audit(
            clock.now(),
            NewAuditEntry::new("operator:ops", "halt.on", json!({ "scope": "all" })),
        )
        .await
        .unwrap();
    t.store
        .append_audit(
            clock.now(),
            NewAuditEntry::new("w", "run.quote.locked", json!({})),
        )
        .await
        .unwrap();
    tracked_run(&t, &clock, "TRF_slow").await;
    let first = watcher.poll().await.unwrap();
    let kinds: Vec<AlertKind> = first.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        vec![
            AlertKind::RunFailed,
            AlertKind::GrantDisconnected,
            AlertKind::Halt
        ]
    );
    assert!(first[0].message.contains("over the cap"));

    // Forty minutes on, the submitted transfer is stuck: one alert, not one per poll.
    clock.advance(Duration::minutes(40));
    let stuck = watcher.poll().await.unwrap();
    assert_eq!(
        stuck.iter().map(|a| a.kind).collect::<Vec<_>>(),
        vec![AlertKind::TransferStuck]
    );
    assert!(watcher.poll().await.unwrap().is_empty());
    sink.flush().await;
    let posts = received.lock().clone();
    assert_eq!(posts.len(), 4);
    assert!(
        posts.iter().all(|(_, ok)| *ok),
        "every POST carried a valid signature: {posts:?}"
    );
}
