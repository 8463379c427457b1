//! The signed HTTP trigger, on the example job `jobs/supplier-on-demand.toml`: a replay
//! creates one run; a bad signature, a stale timestamp or an unknown job gets the same
//! 401 and creates none; secrets are read once, through one reader, and refused at
//! start when unset, blank or short; amounts are plain decimals; event ids are bounded.

use std::sync::Arc;

use chrono::Duration;
use treasury::clock::Clock;
use treasury::config::{MIN_SIGNING_SECRET_BYTES, Secret};
use treasury::http::triggers::{TriggerState, trigger_router};
use treasury::store::RunFilter;
use treasury::triggers::{TriggerKeys, sign_trigger};

use crate::backends::TestStore;

const SECRET_ENV: &str = "TREASURY_TRIGGER_SUPPLIER_SECRET";
const SECRET: &str = "procurement-secret-of-at-least-32-bytes";
const JOB: &str = "supplier-on-demand";

fn example_jobs() -> Vec<treasury::jobs::Job> {
    treasury::jobs::load_dir(std::path::Path::new("jobs"), None)
        .unwrap()
        .jobs
}

/// The trigger route on `t`'s store for the example jobs, keyed with `SECRET` for the
/// supplier job; answers the server's base URL.
async fn serve(t: &TestStore) -> String {
    let keys = TriggerKeys::from_secrets([(JOB.to_string(), Secret::new(SECRET))]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = TriggerState {
        store: t.store.clone(),
        clock: Clock::system(),
        jobs: Arc::new(example_jobs()),
        keys: Arc::new(keys),
        actor: "worker:test".into(),
        live: None,
    };
    tokio::spawn(async move { axum::serve(listener, trigger_router(state)).await });
    base
}

/// One signed request: (status, body).
async fn send(
    url: &str,
    ts: i64,
    event: &str,
    body: &str,
    secret: &str,
) -> (u16, serde_json::Value) {
    let ts = ts.to_string();
    let sig = sign_trigger(secret.as_bytes(), &ts, event, body.as_bytes());
    let res = reqwest::Client::new()
        .post(url)
        .header("x-treasury-timestamp", ts)
        .header("x-treasury-event-id", event)
        .header("x-treasury-signature", sig)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(serde_json::Value::Null))
}

fn now() -> i64 {
    Clock::system().now().timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_trigger_creates_one_run_and_bad_signatures_or_stale_timestamps_none() {
    let t = TestStore::sqlite().await;
    let url = format!("{}/triggers/{JOB}", serve(&t).await);
    let body = r#"{"amount": "250000.00"}"#;

    let first = send(&url, now(), "invoice-4711", body, SECRET).await;
    assert_eq!(first.0, 201);
    let replay = send(&url, now() + 30, "invoice-4711", body, SECRET).await;
    assert_eq!(replay.0, 200, "a replay is answered, and creates nothing");
    let bad = send(&url, now(), "invoice-4712", body, "guessed-secret").await;
    assert_eq!(bad.0, 401);
    let stale_at = now() - Duration::minutes(6).num_seconds();
    let stale = send(&url, stale_at, "invoice-4713", body, SECRET).await;
    assert_eq!(stale.0, 401);
    let too_big = r#"{"amount": "5000000.00"}"#;
    let out_of_bounds = send(&url, now(), "invoice-4714", too_big, SECRET).await;
    assert_eq!(out_of_bounds.0, 400);

    let runs = t.store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(
        runs.len(),
        1,
        "one run for the event, none for the refused requests"
    );
    assert_eq!(runs[0].occurrence_key, "invoice-4711");
    assert_eq!(runs[0].job_id, JOB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_job_gets_the_same_401_and_body_as_a_bad_signature_and_no_name_leaks() {
    let t = TestStore::sqlite().await;
    let base = serve(&t).await;
    let body = r#"{"amount": "250000.00"}"#;

    // A bad signature on a real job, and correct-looking requests for jobs that are not
    // ours or not fired by triggers (vendor-weekly is scheduled).
    let bad = send(
        &format!("{base}/triggers/{JOB}"),
        now(),
        "e-1",
        body,
        "guess",
    )
    .await;
    let unknown = send(
        &format!("{base}/triggers/no-such-job"),
        now(),
        "e-1",
        body,
        SECRET,
    )
    .await;
    let scheduled = send(
        &format!("{base}/triggers/vendor-weekly"),
        now(),
        "e-1",
        body,
        SECRET,
    )
    .await;
    assert_eq!(bad.0, 401);
    assert_eq!(unknown, bad, "unknown job and bad signature answer alike");
    assert_eq!(scheduled, bad, "a job not fired by triggers answers alike");

    // The unknown job's request went through the same checks: a stale one says stale,
    // exactly as for the real job.
    let stale_at = now() - 3600;
    let stale_real = send(
        &format!("{base}/triggers/{JOB}"),
        stale_at,
        "e-2",
        body,
        SECRET,
    )
    .await;
    let stale_unknown = send(
        &format!("{base}/triggers/nope"),
        stale_at,
        "e-2",
        body,
        SECRET,
    )
    .await;
    assert_eq!(stale_real.0, 401);
    assert_eq!(stale_unknown, stale_real);

    for (_, answer) in [&bad, &unknown, &scheduled, &stale_real] {
        let text = answer.to_string();
        assert!(
            !text.contains("TREASURY_") && !text.contains(SECRET_ENV),
            "{text}"
        );
        assert!(
            !text.contains("no-such-job") && !text.contains("no job"),
            "{text}"
        );
    }
    assert!(
        t.store
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_amounts_are_plain_decimals_only() {
    let t = TestStore::sqlite().await;
    let url = format!("{}/triggers/{JOB}", serve(&t).await);
    for (i, amount) in [
        "1e6",
        "1E6",
        "1_0000",
        "+10000",
        " 250000",
        "250000 ",
        "250 000",
        ".5",
        "5.",
        "-10000",
        "0x2710",
        "1000000000000000",
    ]
    .into_iter()
    .enumerate()
    {
        let body = serde_json::json!({ "amount": amount }).to_string();
        let (status, answer) = send(&url, now(), &format!("bad-{i}"), &body, SECRET).await;
        assert_eq!(status, 400, "{amount:?}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains("not a plain decimal") || error.contains("too large"),
            "{amount:?}: {error}"
        );
    }
    let as_number = send(&url, now(), "num", r#"{"amount": 250000}"#, SECRET).await;
    assert_eq!(as_number.0, 400, "a JSON number is not a decimal string");
    assert!(
        t.store
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .is_empty()
    );

    let ok = send(&url, now(), "good", r#"{"amount": "250000.50"}"#, SECRET).await;
    assert_eq!(ok.0, 201, "{}", ok.1);
    let runs = t.store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0].spec.amount,
        treasury::runs::Amount::Target {
            amount: rust_decimal::dec!(250000.50)
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_ids_are_at_most_128_printable_ascii_characters() {
    let t = TestStore::sqlite().await;
    let url = format!("{}/triggers/{JOB}", serve(&t).await);
    let body = r#"{"amount": "250000.00"}"#;
    let longest = "e".repeat(128);
    let too_long = "e".repeat(129);
    for bad in [too_long.as_str(), "invoice 4711", "tab\there"] {
        let (status, answer) = send(&url, now(), bad, body, SECRET).await;
        assert_eq!(status, 400, "{bad:?}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("1 to 128 printable ASCII"),
            "{answer}"
        );
    }
    assert!(
        t.store
            .list_runs(&RunFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    for good in [longest.as_str(), "inv/2026-03:4711@acme#1"] {
        let (status, answer) = send(&url, now(), good, body, SECRET).await;
        assert_eq!(status, 201, "{good:?}: {answer}");
    }
}

#[test]
fn every_trigger_secret_must_be_set_non_blank_and_at_least_32_bytes() {
    let jobs = example_jobs();
    let long_enough = "x".repeat(MIN_SIGNING_SECRET_BYTES);
    let short = "x".repeat(MIN_SIGNING_SECRET_BYTES - 1);
    let blank = " ".repeat(MIN_SIGNING_SECRET_BYTES);
    let cases: [(Option<&str>, Option<&str>); 5] = [
        (None, Some("is not set")),
        (Some(""), Some("is empty or blank")),
        (Some(&blank), Some("is empty or blank")),
        (Some(&short), Some("holds 31 bytes")),
        (Some(&long_enough), None),
    ];
    for (value, refusal) in cases {
        // SAFETY: a plain #[test] on the main thread, in a process of its own (nextest).
        unsafe {
            match value {
                Some(v) => std::env::set_var(SECRET_ENV, v),
                None => std::env::remove_var(SECRET_ENV),
            }
        }
        match (TriggerKeys::from_env(&jobs), refusal) {
            (Ok(_), None) => {}
            (Err(e), Some(why)) => {
                assert!(e.contains(&format!("job {JOB}")), "{e}");
                assert!(e.contains(&format!("${SECRET_ENV} {why}")), "{e}");
            }
            (got, want) => panic!("{value:?}: got {got:?}, wanted refusal {want:?}"),
        }
    }
}
