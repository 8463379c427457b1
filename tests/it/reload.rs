//! A running worker picks up job-file edits without a restart (issue 15 §4), on both
//! store backends: a changed amount is paid from the next occurrence while the run
//! already created keeps its sealed spec; a broken edit is refused whole, audited and
//! alerted with its error, and the old set keeps creating runs; a removed trigger job
//! answers 410; `SIGHUP` reloads what the file watch cannot see (a trigger secret set
//! after the edit). Two workers with different files on one store create runs from the set
//! in force only. Every wait is for a positive signal: an audit entry or a run.

use std::time::Duration;

use rust_decimal::Decimal;
use treasury::alerts::{AlertKind, alert_for};
use treasury::jobs::version_of;
use treasury::store::RunFilter;

use crate::backends::TestStore;
use crate::grants_harness::World;
use crate::on_both_backends;
use crate::reload_harness::{
    Worker, audit_entry, eventually, next_occurrence, payroll, source_amount, world,
};

const TRIGGER_ENV: &str = "TREASURY_TRIGGER_RELOAD_TEST";
const TRIGGER_SECRET: &str = "reload-test-secret-of-at-least-32-bytes";

const ON_DEMAND: &str = r#"id = "on-demand"
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
secret_env = "TREASURY_TRIGGER_RELOAD_TEST"
"#;

async fn a_running_worker_picks_up_a_changed_amount_and_refuses_a_broken_edit(ts: TestStore) {
    // Arrange: a worker running `payroll` at 10 USDT.
    let w = world(ts).await;
    let jobs = tempfile::tempdir().unwrap();
    let file = jobs.path().join("payroll.toml");
    let v1 = payroll("10", &["ada"]);
    std::fs::write(&file, &v1).unwrap();
    let worker = Worker::start(&w, jobs.path()).await;
    let first = next_occurrence(&w).await;
    assert_eq!(source_amount(&first[0]), Decimal::from(10));

    // Act 1: the amount is edited to 25.
    let v2 = payroll("25", &["ada"]);
    std::fs::write(&file, &v2).unwrap();
    let (h1, h2) = (version_of(v1.as_bytes()), version_of(v2.as_bytes()));
    let changed = audit_entry(&w, "job.version of the edit", |e| {
        e.action == "job.version" && e.payload["previous"] == h1.as_str()
    })
    .await;

    // Assert: one job.version entry with both hashes; the next occurrence pays 25;
    // the run created before keeps its sealed spec.
    assert_eq!(changed.payload["version"], h2.as_str());
    assert_eq!(changed.job_id.as_deref(), Some("payroll"));
    let second = next_occurrence(&w).await;
    assert_eq!(source_amount(&second[0]), Decimal::from(25));
    assert_eq!(second[0].job_version, h2);
    let kept = w.store().get_run(&first[0].id).await.unwrap().unwrap();
    assert_eq!(
        (source_amount(&kept), kept.job_version.as_str()),
        (Decimal::from(10), h1.as_str())
    );
    let all = w.store().audit_entries_after(0, 100_000).await.unwrap();
    let versions: Vec<_> = all
        .iter()
        .filter(|e| e.action == "job.version" && e.payload["previous"] == h1.as_str())
        .collect();
    assert_eq!(versions.len(), 1, "one job.version entry per change");

    // Act 2: a broken edit (an amount with an exponent).
    std::fs::write(&file, payroll("1e3", &["ada"])).unwrap();
    let refused = audit_entry(&w, "jobs.reload.refused", |e| {
        e.action == "jobs.reload.refused"
    })
    .await;

    // Assert: refused, naming the file, the place and the fault; alerted; and the old
    // set (25 USDT) keeps creating runs.
    let errors = refused.payload["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = errors[0].as_str().unwrap();
    assert!(
        error.contains("payroll.toml:") && error.contains("1e3"),
        "{error}"
    );
    let alert = alert_for(&refused).expect("a refused reload raises an alert");
    assert_eq!(alert.kind, AlertKind::JobsRefused);
    assert!(alert.message.contains(error), "{}", alert.message);
    let third = next_occurrence(&w).await;
    assert_eq!(source_amount(&third[0]), Decimal::from(25));
    assert_eq!(third[0].job_version, h2);
    worker.stop().await;
}

async fn a_trigger_job_removed_from_the_files_answers_gone(ts: TestStore) {
    // Arrange: a worker running `payroll` and the trigger job `on-demand`.
    // SAFETY: nextest gives this test a process of its own; nothing else reads it.
    unsafe { std::env::set_var(TRIGGER_ENV, TRIGGER_SECRET) };
    let w = world(ts).await;
    let jobs = tempfile::tempdir().unwrap();
    std::fs::write(jobs.path().join("payroll.toml"), payroll("10", &["ada"])).unwrap();
    std::fs::write(jobs.path().join("on-demand.toml"), ON_DEMAND).unwrap();
    let worker = Worker::start(&w, jobs.path()).await;
    let fire = |event: &'static str| fire_on_demand(&worker.base, &w, event);
    assert_eq!(fire("evt-1").await, 201);

    // Act: the trigger job's file is deleted.
    std::fs::remove_file(jobs.path().join("on-demand.toml")).unwrap();
    audit_entry(&w, "the set without on-demand in force", |e| {
        e.action == "jobs.set.in_force" && e.payload["removed"] == serde_json::json!(["on-demand"])
    })
    .await;

    // Assert: a correctly signed trigger is told the job is gone and creates nothing;
    // the scheduled job still runs.
    let answer = eventually("410 for the removed job", || async {
        let status = fire("evt-2").await;
        (status != 201).then_some(status)
    })
    .await;
    assert_eq!(answer, 410);
    let all = w.store().list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(all.iter().filter(|r| r.job_id == "on-demand").count(), 1);
    assert_eq!(
        source_amount(&next_occurrence(&w).await[0]),
        Decimal::from(10)
    );
    worker.stop().await;
}

async fn two_workers_with_different_files_create_runs_from_the_set_in_force_only(ts: TestStore) {
    // Arrange: worker A pays ada and bob 10; worker B, started later on other files,
    // pays ada and cy 20. The newest set loaded is B's.
    let w = world(ts).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (text_a, text_b) = (
        payroll("10", &["ada", "bob"]),
        payroll("20", &["ada", "cy"]),
    );
    std::fs::write(dir_a.path().join("payroll.toml"), &text_a).unwrap();
    std::fs::write(dir_b.path().join("payroll.toml"), &text_b).unwrap();
    // A ticks far more often than B: were A not held back, it would make the runs.
    let a = Worker::ticking(&w, dir_a.path(), Duration::from_millis(20)).await;
    let in_force = |w: &World| {
        let store = w.store();
        async move { store.job_set_in_force().await.unwrap().unwrap().version }
    };
    let set_a = in_force(&w).await;
    let b = Worker::ticking(&w, dir_b.path(), Duration::from_millis(400)).await;
    let set_b = in_force(&w).await;
    assert_ne!(set_a, set_b);

    // Act: five occurrences while both workers tick.
    let mut occurrences = Vec::new();
    for _ in 0..5 {
        occurrences.push(next_occurrence(&w).await);
    }

    // Assert: each occurrence is B's whole spec: ada and cy at 20, one version.
    let hb = version_of(text_b.as_bytes());
    for runs in &occurrences {
        let mut keys: Vec<_> = runs
            .iter()
            .map(|r| r.occurrence_key.rsplit('#').next().unwrap().to_string())
            .collect();
        keys.sort();
        // The two runs of one occurrence commit together: both are there at once.
        assert_eq!(keys, ["ada", "cy"], "{runs:?}");
        assert!(
            runs.iter()
                .all(|r| r.job_version == hb && source_amount(r) == Decimal::from(20))
        );
    }
    a.stop().await;
    b.stop().await;
}

/// A correctly signed trigger for `on-demand`: the answer's status.
async fn fire_on_demand(base: &str, w: &World, event: &str) -> u16 {
    let ts = w.clock.now().timestamp().to_string();
    let body = r#"{"amount": "12.5"}"#;
    let sig =
        treasury::triggers::sign_trigger(TRIGGER_SECRET.as_bytes(), &ts, event, body.as_bytes());
    reqwest::Client::new()
        .post(format!("{base}/triggers/on-demand"))
        .header("x-treasury-timestamp", &ts)
        .header("x-treasury-event-id", event)
        .header("x-treasury-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn sighup_reloads_what_the_file_watch_cannot_see(ts: TestStore) {
    // Arrange: this process handles SIGHUP from the start (tokio keeps the handler), so
    // the signal below can never end the test process. A worker runs `payroll`.
    let _handled = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
    // SAFETY: nextest gives this test a process of its own; nothing else reads it.
    unsafe { std::env::remove_var(TRIGGER_ENV) };
    let w = world(ts).await;
    let jobs = tempfile::tempdir().unwrap();
    std::fs::write(jobs.path().join("payroll.toml"), payroll("10", &["ada"])).unwrap();
    let worker = Worker::start(&w, jobs.path()).await;

    // Act 1: a trigger job is added before its secret is set: the set is refused.
    std::fs::write(jobs.path().join("on-demand.toml"), ON_DEMAND).unwrap();
    let refused = audit_entry(&w, "jobs.reload.refused", |e| {
        e.action == "jobs.reload.refused"
    })
    .await;
    let errors = refused.payload["errors"].to_string();
    assert!(
        errors.contains("on-demand") && errors.contains(TRIGGER_ENV),
        "{errors}"
    );

    // Act 2: the secret is set (no file changes, so the watch sees nothing) and the
    // operator sends SIGHUP.
    // SAFETY: as above.
    unsafe { std::env::set_var(TRIGGER_ENV, TRIGGER_SECRET) };
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());

    // Assert: the set with the trigger job is taken (its first job.version), and the
    // trigger creates its run.
    let added = audit_entry(&w, "job.version of on-demand", |e| {
        e.action == "job.version" && e.job_id.as_deref() == Some("on-demand")
    })
    .await;
    assert!(added.payload["previous"].is_null(), "{:?}", added.payload);
    let status = eventually("the trigger to be served by the new set", || async {
        let status = fire_on_demand(&worker.base, &w, "evt-1").await;
        (status == 201).then_some(status)
    })
    .await;
    assert_eq!(status, 201);
    worker.stop().await;
}

on_both_backends!(
    a_running_worker_picks_up_a_changed_amount_and_refuses_a_broken_edit,
    a_trigger_job_removed_from_the_files_answers_gone,
    two_workers_with_different_files_create_runs_from_the_set_in_force_only,
    sighup_reloads_what_the_file_watch_cannot_see,
);
