//! A wrong master key no longer looks healthy, on SQLite and PostgreSQL: the assembled
//! worker opens every active grant's tokens at start, and one it cannot open keeps
//! `/readyz` at 503 naming the grant and the key version, and raises an alert; a
//! process still holding only v1 turns not ready once another rekeys to v2; and
//! `rekey` under a wrong key reports the grant unopened, never "already current".

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio_util::sync::CancellationToken;
use treasury::alerts::{AlertKind, AlertSink};
use treasury::config::{Secret, Settings};
use treasury::grants::rekey::rekey;
use treasury::grants::{Keyring, SealMonitor};
use treasury::service::{Parts, run};

use crate::alerts::{RECEIVER_SECRET, Receiver};
use crate::backends::TestStore;
use crate::grants_harness::{ALIAS, World};
use crate::grants_logs::settings_text;
use crate::on_both_backends;

on_both_backends!(
    a_wrong_master_key_keeps_readyz_not_ready_naming_the_grant_and_version_and_alerts,
    a_process_holding_only_v1_turns_not_ready_once_another_rekeys_to_v2,
    rekey_with_a_wrong_key_reports_the_grant_unopened_and_changes_nothing,
);

fn key(seed: u8) -> String {
    // A fixed key per seed that looks random (a counting pattern is refused as weak).
    let bytes = <sha2::Sha256 as sha2::Digest>::digest([seed]);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The assembled worker (`service::run`) on the world's store, holding `keys`.
pub struct Worker {
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), String>>,
    base: String,
    _dir: tempfile::TempDir,
}

impl Worker {
    /// `extra`: more config (e.g. an `[alerts]` section) after the world's settings.
    pub async fn start(
        w: &World,
        keys: Arc<Keyring>,
        alerts: Option<(url::Url, Secret)>,
        extra: &str,
    ) -> Worker {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let text = format!(
            "{}\n[http]\nlisten = \"127.0.0.1:{port}\"\n{extra}",
            settings_text(w)
        );
        let settings = Settings::parse(std::path::Path::new("test.toml"), &text).unwrap();
        let parts = Parts {
            settings,
            store: w.store(),
            clock: w.clock.clone(),
            keys,
            oauth: w.oauth.clone(),
            busha: w.api.clone(),
            jobs: Vec::new(),
            queue: treasury::queue::QueueConfig::sqlite(dir.path().join("queue.db")),
            webhook_secret: None,
            alert_target: alerts,
            tick: Duration::from_millis(200),
            sweep_poll: None,
        };
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(run(parts, shutdown.clone()));
        let base = format!("http://127.0.0.1:{port}");
        // The seal check runs before the listener opens: any answer comes after it.
        for _ in 0..200 {
            if reqwest::get(format!("{base}/healthz")).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Worker {
            shutdown,
            handle,
            base,
            _dir: dir,
        }
    }

    pub async fn readyz(&self) -> (u16, String) {
        let r = reqwest::get(format!("{}/readyz", self.base)).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

async fn a_wrong_master_key_keeps_readyz_not_ready_naming_the_grant_and_version_and_alerts(
    ts: TestStore,
) {
    // Arrange: a grant sealed under v1 = k1; a worker started with a valid but wrong v1.
    let mut w = World::start(ts).await;
    w.keys = Arc::new(Keyring::parse(&key(1)).unwrap());
    w.connect().await;
    let mut receiver = Receiver::start(RECEIVER_SECRET, &[]).await;
    let wrong = Arc::new(Keyring::parse(&key(77)).unwrap());

    // Act
    let worker = Worker::start(
        &w,
        wrong,
        Some((receiver.url.clone(), Secret::new(RECEIVER_SECRET))),
        "",
    )
    .await;
    let (status, body) = worker.readyz().await;
    let notice = receiver.next().await;
    worker.stop().await;

    // Assert: not ready, naming the grant and the version, never the key.
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!("grant {ALIAS} is sealed under master key v1")),
        "{body}"
    );
    assert!(body.contains("master key is wrong"), "{body}");
    assert!(
        !body.contains(&key(77)) && !body.contains(&key(1)),
        "{body}"
    );
    assert!(notice.signature_ok, "{notice:?}");
    assert_eq!(notice.kind, "grant_undecryptable");
    assert_eq!(notice.subject, ALIAS);
    assert!(notice.message.contains("master key v1"), "{notice:?}");

    // The right key: ready.
    let worker = Worker::start(&w, w.keys.clone(), None, "").await;
    let (status, body) = worker.readyz().await;
    worker.stop().await;
    assert_eq!((status, body.as_str()), (200, "ready"));
}

async fn a_process_holding_only_v1_turns_not_ready_once_another_rekeys_to_v2(ts: TestStore) {
    // Arrange: a grant under v1, and a process holding v1 alone.
    let (k1, k2) = (key(1), key(2));
    let mut w = World::start(ts).await;
    w.keys = Arc::new(Keyring::parse(&format!("v1:{k1}")).unwrap());
    w.connect().await;
    let mut receiver = Receiver::start(RECEIVER_SECRET, &[]).await;
    let sink = AlertSink::new(Some((receiver.url.clone(), Secret::new(RECEIVER_SECRET))));
    let mut monitor = SealMonitor::new(w.store(), w.keys.clone(), sink.clone(), w.clock.clone());
    assert!(monitor.check().await.unwrap().is_empty());
    assert!(monitor.status().problems().is_empty());

    // Act: another process rekeys under v2:…,v1:…; this one checks again (twice).
    let both = Keyring::parse(&format!("v2:{k2},v1:{k1}")).unwrap();
    let report = rekey(&w.store(), &both, &w.clock, "operator:test")
        .await
        .unwrap();
    assert_eq!(report.rekeyed, vec![ALIAS.to_string()]);
    let problems = monitor.check().await.unwrap();
    monitor.check().await.unwrap();
    sink.flush().await;

    // Assert: the problem names v2 and what this process holds; one alert, not two.
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key_version, 2);
    assert_eq!(problems[0].held_versions, vec![1]);
    let shown = monitor.status().problems()[0].to_string();
    assert!(
        shown.contains("sealed under master key v2") && shown.contains("does not hold"),
        "{shown}"
    );
    let notice = receiver.next().await;
    assert_eq!(notice.kind, AlertKind::GrantUndecryptable.as_str());
    assert_eq!(receiver.seen().len(), 1, "{:?}", receiver.seen());
}

async fn rekey_with_a_wrong_key_reports_the_grant_unopened_and_changes_nothing(ts: TestStore) {
    // Arrange: a grant under v1 = k1.
    let (k1, k2, k3) = (key(1), key(2), key(3));
    let mut w = World::start(ts).await;
    w.keys = Arc::new(Keyring::parse(&format!("v1:{k1}")).unwrap());
    let grant = w.connect().await;
    let before = w.store().grant(&grant.id).await.unwrap().unwrap();

    for (spec, says) in [
        // The wrong key under the grant's own version: once "already current".
        (format!("v1:{k3}"), "does not decrypt under master key v1"),
        // A new version with a wrong old one.
        (
            format!("v2:{k2},v1:{k3}"),
            "does not decrypt under master key v1",
        ),
        // The old version dropped too early.
        (format!("v2:{k2}"), "does not hold"),
    ] {
        // Act
        let keys = Keyring::parse(&spec).unwrap();
        let report = rekey(&w.store(), &keys, &w.clock, "operator:test")
            .await
            .unwrap();

        // Assert
        assert!(report.already_current.is_empty(), "{spec}: {report:?}");
        assert!(report.rekeyed.is_empty(), "{spec}: {report:?}");
        assert_eq!(report.unopenable.len(), 1, "{spec}: {report:?}");
        let p = &report.unopenable[0];
        assert_eq!((p.alias.as_str(), p.key_version), (ALIAS, 1));
        assert!(p.reason.contains(says), "{spec}: {}", p.reason);
        let after = w.store().grant(&grant.id).await.unwrap().unwrap();
        assert_eq!(after, before, "{spec}: the grant was changed");
    }
}
