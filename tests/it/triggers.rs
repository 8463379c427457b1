//! The signed HTTP trigger, on the example job `jobs/supplier-on-demand.toml`: a replay
//! creates one run; a bad signature or a stale timestamp gets 401 and creates none.

use std::sync::Arc;

use chrono::Duration;
use treasury::clock::Clock;
use treasury::http::triggers::{TriggerState, trigger_router};
use treasury::store::RunFilter;
use treasury::triggers::sign_trigger;

use crate::backends::TestStore;

const SECRET_ENV: &str = "TREASURY_TRIGGER_SUPPLIER_SECRET";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_trigger_creates_one_run_and_bad_signatures_or_stale_timestamps_none() {
    // SAFETY: nextest runs each test in a process of its own; nothing else reads it.
    unsafe { std::env::set_var(SECRET_ENV, "procurement-secret") };
    let t = TestStore::sqlite().await;
    let clock = Clock::system();
    let jobs = treasury::jobs::load_dir(std::path::Path::new("jobs"), None)
        .unwrap()
        .jobs;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/triggers/supplier-on-demand",
        listener.local_addr().unwrap()
    );
    let state = TriggerState {
        store: t.store.clone(),
        clock: clock.clone(),
        jobs: Arc::new(jobs),
        actor: "worker:test".into(),
    };
    tokio::spawn(async move { axum::serve(listener, trigger_router(state)).await });
    let http = reqwest::Client::new();
    let send = |ts: i64, event: &str, body: &str, secret: &str| {
        let ts = ts.to_string();
        let sig = sign_trigger(secret.as_bytes(), &ts, event, body.as_bytes());
        http.post(&url)
            .header("x-treasury-timestamp", ts)
            .header("x-treasury-event-id", event)
            .header("x-treasury-signature", sig)
            .body(body.to_string())
            .send()
    };
    let now = clock.now().timestamp();
    let body = r#"{"amount": "250000.00"}"#;

    let first = send(now, "invoice-4711", body, "procurement-secret")
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let replay = send(now + 30, "invoice-4711", body, "procurement-secret")
        .await
        .unwrap();
    assert_eq!(
        replay.status(),
        200,
        "a replay is answered, and creates nothing"
    );
    let bad = send(now, "invoice-4712", body, "guessed-secret")
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let stale = send(
        now - Duration::minutes(6).num_seconds(),
        "invoice-4713",
        body,
        "procurement-secret",
    )
    .await
    .unwrap();
    assert_eq!(stale.status(), 401);
    let out_of_bounds = send(
        now,
        "invoice-4714",
        r#"{"amount": "5000000.00"}"#,
        "procurement-secret",
    )
    .await
    .unwrap();
    assert_eq!(out_of_bounds.status(), 400);

    let runs = t.store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(
        runs.len(),
        1,
        "one run for the event, none for the refused requests"
    );
    assert_eq!(runs[0].occurrence_key, "invoice-4711");
    assert_eq!(runs[0].job_id, "supplier-on-demand");
}
