//! The scheduler against a real store: two schedulers never make two runs of one
//! occurrence (both backends), catch-up after downtime follows the job's policy and
//! survives restarts, a held grant creates nothing, approval thresholds, and job
//! versions audited once per change.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::dec;
use treasury::clock::Clock;
use treasury::jobs::{Job, Scheduler, SchedulerConfig, parse_job};
use treasury::runs::{Amount, Run, RunState};
use treasury::store::{ConnectedGrantRow, RunFilter, SealedTokens, Store};

use crate::backends::TestStore;
use crate::jobs_files::test_grants;
use crate::on_both_backends;

pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A job file for the tests: `trigger` is the `[schedule]` body, `extra` more TOML.
pub fn job_text(id: &str, schedule: &str, extra: &str) -> String {
    format!(
        r#"id = "{id}"
grant = "acme-treasury"
owner = "finance-lead"
source_currency = "USDT"
target_currency = "NGN"
{extra}
[guard]
min_rate = "1450"
max_rate = "1750"

[schedule]
{schedule}
"#
    )
}

pub const ONE_RECIPIENT: &str = r#"source_amount = "100"

[recipient]
id = "5b0e7a0c-3c1d-4f7e-9a61-0c2f4b8d9e01"
"#;

pub fn job(text: &str) -> Job {
    parse_job("test.toml", text.as_bytes(), Some(&test_grants()))
        .unwrap_or_else(|e| panic!("{e:#?}"))
}

/// Stores an active grant `acme-treasury` (ciphertexts are placeholders: the scheduler
/// only reads the status).
pub async fn connect_grant(store: &Store, now: DateTime<Utc>) {
    let mut tx = store.begin().await.unwrap();
    store
        .upsert_connected_grant_in(
            &mut tx,
            &ConnectedGrantRow {
                id: "grt_test".into(),
                provider: "busha".into(),
                alias: "acme-treasury".into(),
                subject: "user-1".into(),
                tokens: SealedTokens {
                    key_version: 1,
                    access_token_ct: "sealed".into(),
                    access_expires_at: now + Duration::hours(1),
                    refresh_token_ct: Some("sealed".into()),
                    scopes: "balances:read quotes:read quotes:write transfers:read transfers:write recipients:read recipients:write".into(),
                    refresh_expires_at: None,
                },
                region: None,
                consent: None,
            },
            now,
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

pub fn config(grace: Duration) -> SchedulerConfig {
    SchedulerConfig {
        actor: "worker:test".into(),
        grace,
    }
}

pub async fn runs_of(store: &Store, job_id: &str) -> Vec<Run> {
    let mut runs = store
        .list_runs(&RunFilter {
            job_id: Some(job_id.into()),
            state: None,
            limit: Some(100_000),
        })
        .await
        .unwrap();
    runs.sort_by(|a, b| a.occurrence_key.cmp(&b.occurrence_key));
    runs
}

pub fn keys(runs: &[Run]) -> Vec<String> {
    runs.iter().map(|r| r.occurrence_key.clone()).collect()
}

async fn second_scheduler_cannot_create_a_duplicate_run(ts: TestStore) {
    // Arrange: two pools on one database ("two processes"), one shared manual clock, an
    // every-minute batch job with three payees and an every-minute single job.
    let clock = Clock::manual(utc("2026-03-02T09:00:30Z"));
    connect_grant(&ts.store, clock.now()).await;
    let batch = job(&job_text(
        "payroll-every-minute",
        "cron = \"* * * * *\"\ntimezone = \"Africa/Lagos\"",
        r#"
[[payees]]
key = "a"
source_amount = "10"
id = "5b0e7a0c-3c1d-4f7e-9a61-0c2f4b8d9e0a"

[[payees]]
key = "b"
source_amount = "20"
id = "5b0e7a0c-3c1d-4f7e-9a61-0c2f4b8d9e0b"

[[payees]]
key = "c"
target_amount = "30000.00"
bank_code = "000013"
account_number = "0123456789"
account_name = "ADA LOVELACE"
"#,
    ));
    let single = job(&job_text(
        "vendor-every-minute",
        "cron = \"* * * * *\"\ntimezone = \"America/New_York\"",
        ONE_RECIPIENT,
    ));
    let other = ts.reopen().await;
    let jobs = vec![batch, single];
    let a = Scheduler::start(
        ts.store.clone(),
        jobs.clone(),
        config(Duration::minutes(2)),
        clock.now(),
    )
    .await
    .unwrap();
    let b = Scheduler::start(other, jobs, config(Duration::minutes(2)), clock.now())
        .await
        .unwrap();

    // Act: 60 minutes of ticks, both schedulers at once, twice a minute.
    let (mut created, mut existed) = (0, 0);
    for _ in 0..120 {
        clock.advance(Duration::seconds(30));
        let now = clock.now();
        let (ra, rb) = tokio::join!(a.tick(now), b.tick(now));
        for r in [ra.unwrap(), rb.unwrap()] {
            assert!(r.held.is_empty() && r.failed.is_empty() && r.skipped.is_empty());
            created += r.created.len();
            existed += r.already_existed;
        }
    }

    // Assert: exactly one run per occurrence (and payee), none missing.
    let expected: Vec<String> = (1..=60)
        .map(|m| {
            treasury::jobs::schedule::occurrence_key(
                utc("2026-03-02T09:00:00Z") + Duration::minutes(m),
            )
        })
        .collect();
    let batch_runs = runs_of(&ts.store, "payroll-every-minute").await;
    let want: BTreeSet<String> = expected
        .iter()
        .flat_map(|k| ["a", "b", "c"].map(|p| format!("{k}#{p}")))
        .collect();
    assert_eq!(batch_runs.len(), 180);
    assert_eq!(keys(&batch_runs).into_iter().collect::<BTreeSet<_>>(), want);
    let single_runs = runs_of(&ts.store, "vendor-every-minute").await;
    assert_eq!(keys(&single_runs), expected);
    // Every creation was counted by exactly one scheduler.
    assert_eq!(created, 240);
    assert!(existed <= 240, "{existed}");
    assert!(ts.store.verify_audit(None).await.unwrap().is_ok());
}

async fn catch_up_survives_a_restart_and_follows_the_policy(ts: TestStore) {
    // Hourly at :00 UTC. Seen at 09:10, then down until 14:40: 10:00..14:00 were missed,
    // and with max_lateness 3h only 12:00, 13:00 and 14:00 are within reach.
    let start = utc("2026-03-02T09:10:00Z");
    let back = utc("2026-03-02T14:40:00Z");
    connect_grant(&ts.store, start).await;
    for (policy, want) in [
        ("skip", vec![]),
        ("latest", vec!["2026-03-02T14:00:00Z"]),
        (
            "all",
            vec![
                "2026-03-02T12:00:00Z",
                "2026-03-02T13:00:00Z",
                "2026-03-02T14:00:00Z",
            ],
        ),
    ] {
        let id = format!("hourly-{policy}");
        let j = job(&job_text(
            &id,
            &format!(
                "cron = \"0 * * * *\"\ntimezone = \"UTC\"\ncatch_up = \"{policy}\"\nmax_lateness = \"3h\""
            ),
            ONE_RECIPIENT,
        ));
        let first = Scheduler::start(
            ts.store.clone(),
            vec![j.clone()],
            config(Duration::minutes(2)),
            start,
        )
        .await
        .unwrap();
        assert!(first.tick(start).await.unwrap().created.is_empty());

        // A new process (a new pool) after the downtime.
        let store = ts.reopen().await;
        let second = Scheduler::start(store, vec![j], config(Duration::minutes(2)), back)
            .await
            .unwrap();
        let report = second.tick(back).await.unwrap();
        assert_eq!(keys(&runs_of(&ts.store, &id).await), want, "{policy}");
        assert_eq!(report.created.len(), want.len(), "{policy}");
        assert_eq!(report.skipped.len(), 5 - want.len(), "{policy}");
        // Nothing is decided twice.
        assert!(second.tick(back).await.unwrap().created.is_empty());
        // Back on time: 15:00 runs whatever the policy.
        let on_time = utc("2026-03-02T15:00:20Z");
        assert_eq!(
            second.tick(on_time).await.unwrap().created.len(),
            1,
            "{policy}"
        );
    }
    // The skipped occurrences are in the audit log.
    let skipped: Vec<_> = ts
        .store
        .audit_entries(None, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "job.occurrences.skipped")
        .collect();
    assert_eq!(skipped.len(), 3);
    assert_eq!(skipped[0].job_id.as_deref(), Some("hourly-skip"));
    assert_eq!(skipped[0].payload["count"], 5);
}

async fn a_job_whose_grant_is_not_usable_is_held_and_catches_up_on_reconnect(ts: TestStore) {
    let t0 = utc("2026-03-02T08:59:00Z");
    let j = job(&job_text(
        "held-hourly",
        "cron = \"0 * * * *\"\ntimezone = \"UTC\"\ncatch_up = \"latest\"\nmax_lateness = \"6h\"",
        ONE_RECIPIENT,
    ));
    let s = Scheduler::start(ts.store.clone(), vec![j], config(Duration::minutes(2)), t0)
        .await
        .unwrap();
    // Not connected: held, counted, nothing created.
    let r = s.tick(t0).await.unwrap();
    assert_eq!(r.held.len(), 1);
    assert!(r.held[0].reason.contains("not connected"), "{:?}", r.held);
    connect_grant(&ts.store, t0).await;
    assert!(s.tick(t0).await.unwrap().held.is_empty());
    assert_eq!(
        s.tick(utc("2026-03-02T09:00:10Z"))
            .await
            .unwrap()
            .created
            .len(),
        1
    );

    // Disconnected (invalid_grant on refresh): held, no runs for 10:00 and 11:00.
    let mut tx = ts.store.begin().await.unwrap();
    assert!(
        ts.store
            .end_grant_in(
                &mut tx,
                "grt_test",
                None,
                "disconnected",
                "invalid_grant",
                t0
            )
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    for t in ["2026-03-02T10:00:10Z", "2026-03-02T11:00:10Z"] {
        let r = s.tick(utc(t)).await.unwrap();
        assert!(r.created.is_empty());
        assert!(r.held[0].reason.contains("disconnected"), "{:?}", r.held);
    }
    // Reconnected at 11:30: catch-up `latest` runs 11:00 only.
    connect_grant(&ts.store, t0).await;
    let r = s.tick(utc("2026-03-02T11:30:00Z")).await.unwrap();
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(
        keys(&runs_of(&ts.store, "held-hourly").await),
        ["2026-03-02T09:00:00Z", "2026-03-02T11:00:00Z"]
    );
}

async fn runs_record_the_job_version_and_changes_are_audited_once(ts: TestStore) {
    let t0 = utc("2026-03-02T08:59:00Z");
    connect_grant(&ts.store, t0).await;
    let v1 = job(&job_text(
        "versioned",
        "cron = \"0 9 * * *\"\ntimezone = \"Africa/Lagos\"",
        &format!("{ONE_RECIPIENT}\n[approval]\nabove = \"50\"\napprovers = 2\n"),
    ));
    // Two workers load v1 at once: one `job.version` entry.
    let other = ts.reopen().await;
    let (a, b) = tokio::join!(
        Scheduler::start(
            ts.store.clone(),
            vec![v1.clone()],
            config(Duration::minutes(2)),
            t0
        ),
        Scheduler::start(other, vec![v1.clone()], config(Duration::minutes(2)), t0),
    );
    let (a, _b) = (a.unwrap(), b.unwrap());
    let created = a
        .tick(utc("2026-03-02T08:00:05Z") + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(created.created.len(), 1);
    let run = &runs_of(&ts.store, "versioned").await[0];
    assert_eq!(run.job_version, v1.version());
    // 100 USDT is above the 50 USDT threshold: the run waits for two approvers, never
    // the owner.
    assert_eq!(run.state, RunState::AwaitingApproval);
    let rule = run.spec.approval.as_ref().unwrap();
    assert_eq!((rule.approvers, rule.owner.as_str()), (2, "finance-lead"));
    assert_eq!(run.spec.amount, Amount::Source { amount: dec!(100) });

    // The file changes: loading it audits the new version with the previous one.
    let v2 = job(&job_text(
        "versioned",
        "cron = \"0 9 * * *\"\ntimezone = \"Africa/Lagos\"",
        ONE_RECIPIENT,
    ));
    Scheduler::start(
        ts.store.clone(),
        vec![v2.clone()],
        config(Duration::minutes(2)),
        t0,
    )
    .await
    .unwrap();
    Scheduler::start(
        ts.store.clone(),
        vec![v2.clone()],
        config(Duration::minutes(2)),
        t0,
    )
    .await
    .unwrap();
    let versions: Vec<_> = ts
        .store
        .audit_entries(None, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "job.version")
        .collect();
    assert_eq!(versions.len(), 2, "{versions:#?}");
    assert_eq!(versions[0].payload["version"], v1.version());
    assert!(versions[0].payload["previous"].is_null());
    assert_eq!(versions[1].payload["version"], v2.version());
    assert_eq!(versions[1].payload["previous"], v1.version());
    assert_eq!(
        ts.store.job_version("versioned").await.unwrap().as_deref(),
        Some(v2.version())
    );
}

on_both_backends!(
    second_scheduler_cannot_create_a_duplicate_run,
    catch_up_survives_a_restart_and_follows_the_policy,
    a_job_whose_grant_is_not_usable_is_held_and_catches_up_on_reconnect,
    runs_record_the_job_version_and_changes_are_audited_once,
);
