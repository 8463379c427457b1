//! DST: a scheduler ticking through spring-forward and fall-back days in New York and
//! London creates exactly one run per intended local occurrence. A skipped local time
//! runs once at the next valid instant; a repeated local time runs once, at its first
//! instance.

use chrono::{DateTime, Duration, Utc};
use treasury::clock::Clock;
use treasury::jobs::{CronSchedule, DstAdjustment, Scheduler};

use crate::backends::TestStore;
use crate::jobs_scheduler::{
    ONE_RECIPIENT, config, connect_grant, job, job_text, keys, runs_of, utc,
};

/// Ticks a scheduler for `job_id` (cron in `tz`) every 7 minutes from `from` to `to`,
/// and returns the occurrence keys of the runs it created.
async fn ticked(job_id: &str, cron: &str, tz: &str, from: &str, to: &str) -> Vec<String> {
    let ts = TestStore::sqlite().await;
    let (from, to) = (utc(from), utc(to));
    let clock = Clock::manual(from);
    connect_grant(&ts.store, from).await;
    let j = job(&job_text(
        job_id,
        &format!("cron = \"{cron}\"\ntimezone = \"{tz}\""),
        ONE_RECIPIENT,
    ));
    let s = Scheduler::start(
        ts.store.clone(),
        vec![j],
        config(Duration::minutes(10)),
        from,
    )
    .await
    .unwrap();
    while clock.now() < to {
        clock.advance(Duration::minutes(7));
        let r = s.tick(clock.now()).await.unwrap();
        assert!(
            r.skipped.is_empty(),
            "ticks every 7 minutes miss nothing: {r:?}"
        );
    }
    let runs = runs_of(&ts.store, job_id).await;
    keys(&runs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_york_spring_forward_runs_a_skipped_0230_once_at_0300() {
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT. 02:30 does not exist that day.
    let got = ticked(
        "ny-0230",
        "30 2 * * *",
        "America/New_York",
        "2026-03-06T00:00:00Z",
        "2026-03-10T00:00:00Z",
    )
    .await;
    assert_eq!(
        got,
        [
            "2026-03-06T07:30:00Z", // 02:30 EST
            "2026-03-07T07:30:00Z", // 02:30 EST
            "2026-03-08T07:00:00Z", // 03:00 EDT: the next valid instant
            "2026-03-09T06:30:00Z", // 02:30 EDT
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_york_fall_back_runs_a_repeated_0130_once() {
    // 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    let got = ticked(
        "ny-0130",
        "30 1 * * *",
        "America/New_York",
        "2026-10-30T12:00:00Z",
        "2026-11-03T00:00:00Z",
    )
    .await;
    assert_eq!(
        got,
        [
            "2026-10-31T05:30:00Z", // 01:30 EDT
            "2026-11-01T05:30:00Z", // 01:30 EDT, the first of the two; not 06:30Z
            "2026-11-02T06:30:00Z", // 01:30 EST
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_york_fall_back_runs_each_local_half_hour_of_the_repeated_hour_once() {
    let got = ticked(
        "ny-hourly",
        "30 * * * *",
        "America/New_York",
        "2026-11-01T04:00:00Z",
        "2026-11-01T08:00:00Z",
    )
    .await;
    // 00:30 EDT, 01:30 EDT, (01:30 EST repeats: no run), 02:30 EST.
    assert_eq!(
        got,
        [
            "2026-11-01T04:30:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T07:30:00Z"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn london_spring_forward_runs_a_skipped_0130_once_at_0200() {
    // 2026-03-29: 01:00 GMT jumps to 02:00 BST.
    let got = ticked(
        "ldn-0130",
        "30 1 * * *",
        "Europe/London",
        "2026-03-27T12:00:00Z",
        "2026-03-31T00:00:00Z",
    )
    .await;
    assert_eq!(
        got,
        [
            "2026-03-28T01:30:00Z", // 01:30 GMT
            "2026-03-29T01:00:00Z", // 02:00 BST: the next valid instant
            "2026-03-30T00:30:00Z", // 01:30 BST
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn london_fall_back_runs_a_repeated_0130_once() {
    // 2026-10-25: 02:00 BST falls back to 01:00 GMT.
    let got = ticked(
        "ldn-0130-autumn",
        "30 1 * * *",
        "Europe/London",
        "2026-10-23T12:00:00Z",
        "2026-10-27T00:00:00Z",
    )
    .await;
    assert_eq!(
        got,
        [
            "2026-10-24T00:30:00Z", // 01:30 BST
            "2026-10-25T00:30:00Z", // 01:30 BST, the first; not 01:30Z
            "2026-10-26T01:30:00Z", // 01:30 GMT
        ]
    );
}

#[test]
fn fires_say_how_dst_moved_them() {
    let s = CronSchedule::new("30 2 * * *", "America/New_York").unwrap();
    let after: DateTime<Utc> = utc("2026-03-08T00:00:00Z");
    let f = s.after(after).next().unwrap();
    assert_eq!(f.dst, DstAdjustment::MovedPastGap);
    assert_eq!(f.local.to_rfc3339(), "2026-03-08T03:00:00-04:00");
    let s = CronSchedule::new("30 1 * * *", "Europe/London").unwrap();
    let f = s.after(utc("2026-10-25T00:00:00Z")).next().unwrap();
    assert_eq!(f.dst, DstAdjustment::FirstOfRepeated);
    assert_eq!(f.local.to_rfc3339(), "2026-10-25T01:30:00+01:00");
    // Asking from within the second 01:30 hour finds the next day, not a second run.
    let f = s.after(utc("2026-10-25T01:10:00Z")).next().unwrap();
    assert_eq!(f.occurrence_key(), "2026-10-26T01:30:00Z");
}
