//! Alert notices against a real local receiver that checks each signature: a forged
//! one is refused, a 5xx is retried with backoff, a notice that never gets through is
//! given up after bounded attempts and counted, a kind switched off in `[alerts.kinds]`
//! sends nothing, and `[alerts]` is read from the config file.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde_json::json;
use sha2::Sha256;
use tokio::sync::mpsc;
use treasury::alerts::{Alert, AlertKind, AlertSink, AlertWatcher, Retry, SinkOptions};
use treasury::audit::NewAuditEntry;
use treasury::clock::Clock;
use treasury::config::{AlertKinds, Secret, Settings};

use crate::backends::TestStore;

pub const RECEIVER_SECRET: &str = "alerts-receiver-secret-0123456789abcdef";

/// One POST as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub kind: String,
    pub subject: String,
    pub message: String,
    pub body: Bytes,
    pub signature_ok: bool,
    pub status: u16,
}

#[derive(Clone)]
struct ReceiverState {
    secret: Vec<u8>,
    /// Statuses to answer, in order; then 200.
    script: Arc<Mutex<VecDeque<u16>>>,
    seen: Arc<Mutex<Vec<Received>>>,
    tx: mpsc::UnboundedSender<Received>,
}

/// A notification receiver on port 0 that checks `x-treasury-signature` in constant
/// time (and the timestamp's age), answering 401 to a bad one.
pub struct Receiver {
    pub url: url::Url,
    seen: Arc<Mutex<Vec<Received>>>,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    pub async fn start(secret: &str, script: &[u16]) -> Receiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let seen = Arc::default();
        let state = ReceiverState {
            secret: secret.as_bytes().to_vec(),
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            seen: Arc::clone(&seen),
            tx,
        };
        let app = axum::Router::new()
            .route("/alerts", axum::routing::post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url =
            url::Url::parse(&format!("http://{}/alerts", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, seen, rx }
    }

    /// The next POST to arrive (fails after 10 s: a bound, not a wait for absence).
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("a notice arrives")
            .expect("the receiver runs")
    }

    pub fn seen(&self) -> Vec<Received> {
        self.seen.lock().clone()
    }
}

fn signature_ok(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(ts), Some(sig)) = (
        header("x-treasury-timestamp"),
        header("x-treasury-signature"),
    ) else {
        return false;
    };
    let fresh = ts
        .parse::<i64>()
        .is_ok_and(|t| (Utc::now().timestamp() - t).abs() <= 300);
    let Some(hex) = sig.strip_prefix("sha256=") else {
        return false;
    };
    let Some(bytes) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    fresh && mac.verify_slice(&bytes).is_ok()
}

async fn receive(State(s): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature_ok = signature_ok(&s.secret, &headers, &body);
    let status = if signature_ok {
        s.script.lock().pop_front().unwrap_or(200)
    } else {
        401
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let got = Received {
        kind: text("kind"),
        subject: text("subject"),
        message: text("message"),
        body: body.clone(),
        signature_ok,
        status,
    };
    s.seen.lock().push(got.clone());
    let _ = s.tx.send(got);
    StatusCode::from_u16(status).unwrap()
}

fn alert(kind: AlertKind, subject: &str) -> Alert {
    Alert {
        kind,
        subject: subject.into(),
        message: format!("{} for {subject}", kind.as_str()),
        at: Utc::now(),
        audit_seq: None,
    }
}

fn fast_retry(attempts: u32) -> Retry {
    Retry {
        attempts,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(80),
        timeout: Duration::from_secs(5),
    }
}

fn sink(url: &url::Url, secret: &str, kinds: AlertKinds, retry: Retry) -> AlertSink {
    AlertSink::with(SinkOptions {
        target: Some((url.clone(), Secret::new(secret))),
        kinds,
        retry,
    })
}

/// The value of one counter line in the Prometheus text, or 0.
fn counter(rendered: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    rendered
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_accepts_a_signed_notice_and_refuses_a_forged_one_which_is_not_retried() {
    // Arrange
    let metrics = treasury::metrics::install();
    let mut receiver = Receiver::start(RECEIVER_SECRET, &[]).await;
    let genuine = sink(
        &receiver.url,
        RECEIVER_SECRET,
        AlertKinds::default(),
        fast_retry(4),
    );
    let forged = sink(
        &receiver.url,
        "someone-else-entirely-0123456789abcdef",
        AlertKinds::default(),
        fast_retry(4),
    );

    // Act
    assert!(genuine.emit(&alert(AlertKind::RunFailed, "run_genuine")));
    let first = receiver.next().await;
    assert!(forged.emit(&alert(AlertKind::Halt, "all")));
    forged.flush().await;
    genuine.flush().await;

    // Assert: the genuine one checks out; the forged one is refused once, and given up.
    assert!(first.signature_ok && first.status == 200, "{first:?}");
    assert_eq!(first.kind, "run_failed");
    assert_eq!(first.subject, "run_genuine");
    let seen = receiver.seen();
    let forged_posts: Vec<_> = seen.iter().filter(|r| r.kind == "halt").collect();
    assert_eq!(forged_posts.len(), 1, "a 401 is final: {seen:?}");
    assert!(!forged_posts[0].signature_ok && forged_posts[0].status == 401);
    let rendered = metrics.render();
    let n = |kind, result| {
        counter(
            &rendered,
            "treasury_alert_notices_total",
            &[("kind", kind), ("result", result)],
        )
    };
    assert!(n("run_failed", "delivered") >= 1.0, "{rendered}");
    assert!(n("halt", "failed") >= 1.0, "{rendered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_answered_5xx_is_retried_with_the_same_body_until_the_receiver_takes_it() {
    // Arrange: the receiver answers 503, 500, then 200.
    let mut receiver = Receiver::start(RECEIVER_SECRET, &[503, 500]).await;
    let sink = sink(
        &receiver.url,
        RECEIVER_SECRET,
        AlertKinds::default(),
        fast_retry(4),
    );

    // Act
    sink.emit(&alert(AlertKind::TransferStuck, "run_slow"));
    let tries = [
        receiver.next().await,
        receiver.next().await,
        receiver.next().await,
    ];

    // Assert
    assert_eq!(
        tries.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![503, 500, 200]
    );
    assert!(
        tries
            .iter()
            .all(|r| r.signature_ok && r.body == tries[0].body)
    );
    assert_eq!(tries[2].kind, "transfer_stuck");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_that_never_gets_through_is_given_up_after_its_attempts_and_counted() {
    // Arrange: the receiver always fails; three attempts in all.
    let metrics = treasury::metrics::install();
    let receiver = Receiver::start(RECEIVER_SECRET, &[500; 10]).await;
    let sink = sink(
        &receiver.url,
        RECEIVER_SECRET,
        AlertKinds::default(),
        fast_retry(3),
    );
    let before = counter(
        &metrics.render(),
        "treasury_alert_notices_total",
        &[("kind", "grant_disconnected"), ("result", "failed")],
    );

    // Act: the emit returns at once; the flush waits for the courier to give up.
    let started = std::time::Instant::now();
    sink.emit(&alert(AlertKind::GrantDisconnected, "acme"));
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "emit never waits"
    );
    sink.flush().await;

    // Assert
    assert_eq!(receiver.seen().len(), 3);
    let after = counter(
        &metrics.render(),
        "treasury_alert_notices_total",
        &[("kind", "grant_disconnected"), ("result", "failed")],
    );
    assert_eq!(after - before, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_switched_off_in_the_config_sends_nothing_and_the_next_kind_on_arrives_first() {
    // Arrange: `[alerts.kinds] halt = false`, read from a config file.
    let settings = Settings::parse(
        Path::new("config/t.toml"),
        &format!("{BASE}\n[alerts]\nstuck_after = \"5m\"\n\n[alerts.kinds]\nhalt = false\n"),
    )
    .unwrap();
    assert!(!settings.alerts.kinds.halt && settings.alerts.kinds.run_failed);
    let t = TestStore::sqlite().await;
    let clock = Clock::system();
    let mut receiver = Receiver::start(RECEIVER_SECRET, &[]).await;
    let sink = sink(
        &receiver.url,
        RECEIVER_SECRET,
        settings.alerts.kinds,
        fast_retry(2),
    );
    let mut watcher = AlertWatcher::new(
        t.store.clone(),
        sink.clone(),
        clock.clone(),
        chrono::Duration::from_std(settings.alerts.stuck_after).unwrap(),
    )
    .await
    .unwrap();

    // Act: a halt (off), then a failed run (on).
    for entry in [
        NewAuditEntry::new("operator:ops", "halt.on", json!({ "scope": "all" })),
        NewAuditEntry::new("w", "run.failed", json!({ "reason": "over the cap" })).run("run_a"),
    ] {
        t.store.append_audit(clock.now(), entry).await.unwrap();
    }
    let emitted = watcher.poll().await.unwrap();

    // Assert: notices go out in order, so the first to arrive would be the halt.
    let first = receiver.next().await;
    assert_eq!(first.kind, "run_failed", "{first:?}");
    assert!(first.message.contains("over the cap"));
    assert_eq!(
        emitted.iter().map(|a| a.kind).collect::<Vec<_>>(),
        vec![AlertKind::RunFailed]
    );
    sink.flush().await;
    assert_eq!(receiver.seen().len(), 1);
}

const BASE: &str = r#"
[busha]
issuer_url = "https://login.busha.io"
api_url = "https://api.busha.io"
client_id = "busha-oauth2-x-test"
redirect_uri = "http://localhost:8787/oauth/callback"
"#;

#[test]
fn alerts_settings_are_read_and_unknown_or_inconsistent_keys_are_refused_with_where() {
    let text = format!(
        "{BASE}\n[alerts]\nurl = \"https://ops.example.com/hook\"\nsecret_env = \"TREASURY_ALERTS_SECRET\"\nstuck_after = \"45m\"\n\n[alerts.kinds]\ntransfer_stuck = false\n"
    );
    let s = Settings::parse(Path::new("config/t.toml"), &text).unwrap();
    assert_eq!(
        s.alerts.url.as_ref().unwrap().as_str(),
        "https://ops.example.com/hook"
    );
    assert_eq!(
        s.alerts.secret_env.as_deref(),
        Some("TREASURY_ALERTS_SECRET")
    );
    assert_eq!(s.alerts.stuck_after, Duration::from_secs(45 * 60));
    assert!(!s.alerts.kinds.transfer_stuck && s.alerts.kinds.grant_undecryptable);
    let defaults = Settings::parse(Path::new("t.toml"), BASE).unwrap();
    assert_eq!(defaults.alerts.url, None, "without [alerts]: the log only");
    assert_eq!(defaults.alerts.stuck_after, Duration::from_secs(30 * 60));

    for (extra, says) in [
        (
            "[alerts.kinds]\ntransfer_stuk = false\n",
            "config/t.toml:9:1: ",
        ),
        ("[alerts.kinds]\ntransfer_stuk = false\n", "transfer_stuk"),
        ("[alerts]\nsecret = \"x\"\n", "secret"),
        ("[alerts]\nurl = \"https://x/\"\n", "needs `secret_env`"),
        ("[alerts]\nsecret_env = \"X\"\n", "`url`, which is not set"),
        (
            "[alerts]\nurl = \"https://x/\"\nsecret_env = \"a secret value\"\n",
            "must be an environment variable name",
        ),
        (
            "[alerts]\nurl = \"ftp://x/\"\nsecret_env = \"X\"\n",
            "http or https",
        ),
        (
            "[alerts]\nstuck_after = \"soon\"\n",
            "[alerts] stuck_after = \"soon\"",
        ),
    ] {
        let err = Settings::parse(Path::new("config/t.toml"), &format!("{BASE}\n{extra}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{extra:?}: {err}");
    }
}

#[test]
fn the_signing_secret_comes_from_the_named_variable_and_a_short_one_is_refused_by_name() {
    let var = format!("TREASURY_ALERTS_TEST_{}", std::process::id());
    let text =
        format!("{BASE}\n[alerts]\nurl = \"http://127.0.0.1:9/hook\"\nsecret_env = \"{var}\"\n");
    let s = Settings::parse(Path::new("t.toml"), &text).unwrap();
    let err = s.alerts.target().unwrap_err().to_string();
    assert!(err.contains(&var) && err.contains("not set"), "{err}");
    // SAFETY: the variable's name is unique to this process and test.
    unsafe { std::env::set_var(&var, "too-short-secret") };
    let err = s.alerts.target().unwrap_err().to_string();
    assert!(err.contains(&var) && err.contains("at least 32"), "{err}");
    assert!(
        !err.contains("too-short-secret"),
        "the error echoes the secret: {err}"
    );
    unsafe { std::env::set_var(&var, RECEIVER_SECRET) };
    let (url, secret) = s.alerts.target().unwrap().unwrap();
    assert_eq!(url.as_str(), "http://127.0.0.1:9/hook");
    assert_eq!(secret.expose(), RECEIVER_SECRET);
}

crate::on_both_backends!(the_worker_takes_stuck_after_from_its_config_and_posts_the_stuck_transfer);

async fn the_worker_takes_stuck_after_from_its_config_and_posts_the_stuck_transfer(ts: TestStore) {
    // Arrange: a transfer submitted ten minutes ago, and `[alerts] stuck_after = "5m"`
    // (the default, 30 minutes, would not call it stuck yet).
    let w = crate::grants_harness::World::start(ts).await;
    let run = crate::ops::tracked_run(&w.ts, &w.clock, "TRF_slow").await;
    w.clock.advance(chrono::Duration::minutes(10));
    let mut receiver = Receiver::start(RECEIVER_SECRET, &[]).await;

    // Act: the assembled worker, with its sink aimed at the receiver.
    let worker = crate::grants_seals::Worker::start(
        &w,
        w.keys.clone(),
        Some((receiver.url.clone(), Secret::new(RECEIVER_SECRET))),
        "[alerts]\nstuck_after = \"5m\"\n",
    )
    .await;
    let notice = receiver.next().await;
    worker.stop().await;

    // Assert
    assert!(notice.signature_ok, "{notice:?}");
    assert_eq!(notice.kind, "transfer_stuck");
    assert_eq!(notice.subject, run.id.to_string());
    assert!(notice.message.contains("TRF_slow"), "{notice:?}");
}
