//! The job set in force against a real store (both backends): two schedulers on one
//! database holding different versions of one batch job never build one occurrence
//! from two specs, even while the set in force flips under their ticks; a set not in
//! force creates nothing and moves no cursor; an occurrence created from one version
//! is never completed from another; proposals are compare-and-set.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;
use treasury::clock::Clock;
use treasury::jobs::in_force::{Proposal, SetVersion, propose};
use treasury::jobs::{Job, OccurrenceError, Scheduler, create_occurrence_in};
use treasury::store::Store;

use crate::backends::TestStore;
use crate::jobs_scheduler::{config, connect_grant, job, job_text, runs_of, utc};
use crate::on_both_backends;

const JOB: &str = "payroll-every-minute";

/// The every-minute batch job with one payee per key, each paid `amount` USDT.
fn batch(amount: &str, payees: &[&str]) -> Job {
    let payees: String = payees
        .iter()
        .enumerate()
        .map(|(i, key)| {
            format!(
                "\n[[payees]]\nkey = \"{key}\"\nsource_amount = \"{amount}\"\nid = \"5b0e7a0c-3c1d-4f7e-9a61-0c2f4b8d9e0{i}\"\n"
            )
        })
        .collect();
    job(&job_text(
        JOB,
        "cron = \"* * * * *\"\ntimezone = \"UTC\"",
        &payees,
    ))
}

/// Every nominal occurrence (the key before `#payee`) with the job versions of its runs
/// and how many runs it has.
async fn occurrences(store: &Store) -> BTreeMap<String, (BTreeSet<String>, usize)> {
    let mut out: BTreeMap<String, (BTreeSet<String>, usize)> = BTreeMap::new();
    for run in runs_of(store, JOB).await {
        let nominal = run.occurrence_key.split('#').next().unwrap().to_string();
        let entry = out.entry(nominal).or_default();
        entry.0.insert(run.job_version.clone());
        entry.1 += 1;
    }
    out
}

async fn started(store: Store, j: &Job, clock: &Clock) -> Scheduler {
    Scheduler::start(
        store,
        vec![j.clone()],
        config(Duration::minutes(2)),
        clock.now(),
    )
    .await
    .unwrap()
    .gated_by(SetVersion::of(std::slice::from_ref(j)))
}

async fn two_processes_with_different_files_never_build_one_occurrence_from_two_specs(
    ts: TestStore,
) {
    // Arrange: two pools on one database ("two processes"), each with its own version
    // of the same batch job: A pays a and b 10, B pays a and c 20.
    let clock = Clock::manual(utc("2026-03-02T09:00:30Z"));
    connect_grant(&ts.store, clock.now()).await;
    let (ja, jb) = (batch("10", &["a", "b"]), batch("20", &["a", "c"]));
    let (va, vb) = (
        SetVersion::of(std::slice::from_ref(&ja)),
        SetVersion::of(std::slice::from_ref(&jb)),
    );
    let other = ts.reopen().await;
    let a = started(ts.store.clone(), &ja, &clock).await;
    let b = started(other.clone(), &jb, &clock).await;

    // Act 1: A's set in force. A creates the occurrence; B, on other files, creates
    // nothing and leaves the cursor alone.
    let proposed = propose(
        &ts.store,
        std::slice::from_ref(&ja),
        &va,
        "worker:a",
        clock.now(),
    )
    .await;
    assert_eq!(proposed.unwrap(), Proposal::Recorded);
    clock.advance(Duration::seconds(60));
    let rb = b.tick(clock.now()).await.unwrap();
    assert!(rb.not_in_force && rb.created.is_empty(), "{rb:?}");
    let ra = a.tick(clock.now()).await.unwrap();
    assert!(!ra.not_in_force && ra.created.len() == 2, "{ra:?}");
    let first = occurrences(&ts.store).await;
    let (first_key, (versions, count)) = first.iter().next().unwrap();
    assert_eq!(
        (versions, *count),
        (&BTreeSet::from([ja.version().to_string()]), 2)
    );

    // Act 2: B's set in force. The occurrence A created is not completed from B's spec
    // (no run for c); its runs are answered as existing. A now creates nothing.
    let proposed = propose(
        &other,
        std::slice::from_ref(&jb),
        &vb,
        "worker:b",
        clock.now(),
    )
    .await;
    assert_eq!(proposed.unwrap(), Proposal::Recorded);
    let again = create_occurrence_in(
        &other,
        Some(&vb),
        &jb,
        first_key,
        None,
        "worker:b",
        clock.now(),
    )
    .await
    .unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|(_, created)| !created), "{again:?}");
    let stale = create_occurrence_in(
        &ts.store,
        Some(&va),
        &ja,
        "2026-03-02T09:30:00Z",
        None,
        "worker:a",
        clock.now(),
    )
    .await;
    assert!(
        matches!(stale, Err(OccurrenceError::NotInForce { .. })),
        "{stale:?}"
    );
    clock.advance(Duration::seconds(60));
    let ra = a.tick(clock.now()).await.unwrap();
    assert!(ra.not_in_force && ra.created.is_empty(), "{ra:?}");
    // Nor may A move the shared cursor: it would decide time by a schedule not in force.
    let cursor = ts.store.schedule_cursor(JOB, clock.now()).await.unwrap();
    let later = clock.now() + Duration::minutes(10);
    let moved = ts
        .store
        .advance_schedule_cursor(Some(va.as_str()), JOB, cursor, later, None)
        .await
        .unwrap();
    assert!(!moved);
    assert_eq!(
        ts.store.schedule_cursor(JOB, clock.now()).await.unwrap(),
        cursor
    );
    let rb = b.tick(clock.now()).await.unwrap();
    assert_eq!(rb.created.len(), 2, "{rb:?}");

    // Act 3: the set in force flips back and forth while both tick at once.
    for i in 0..30 {
        clock.advance(Duration::seconds(30));
        let now = clock.now();
        let (store, jobs, version) = if i % 2 == 0 {
            (&ts.store, std::slice::from_ref(&ja), &va)
        } else {
            (&other, std::slice::from_ref(&jb), &vb)
        };
        let (ra, rb, p) = tokio::join!(
            a.tick(now),
            b.tick(now),
            propose(store, jobs, version, "worker:flip", now)
        );
        ra.unwrap();
        rb.unwrap();
        p.unwrap();
    }
    // Then each set in force in turn, with no race: its holder creates the next
    // occurrence, whatever the flips above left behind.
    for (store, jobs, version, sched) in [
        (&ts.store, std::slice::from_ref(&ja), &va, &a),
        (&other, std::slice::from_ref(&jb), &vb, &b),
    ] {
        clock.advance(Duration::seconds(60));
        propose(store, jobs, version, "worker:last", clock.now())
            .await
            .unwrap();
        let r = sched.tick(clock.now()).await.unwrap();
        assert!(!r.not_in_force && !r.created.is_empty(), "{r:?}");
    }

    // Assert: every occurrence has runs of one version only, and all of that
    // version's payees; both versions created some.
    let all = occurrences(&ts.store).await;
    assert!(all.len() >= 3, "{all:?}");
    let mut seen = BTreeSet::new();
    for (key, (versions, count)) in &all {
        assert_eq!(
            versions.len(),
            1,
            "occurrence {key} built from two specs: {versions:?}"
        );
        assert_eq!(*count, 2, "occurrence {key} is incomplete or mixed");
        seen.extend(versions.iter().cloned());
    }
    assert_eq!(
        seen,
        BTreeSet::from([ja.version().to_string(), jb.version().to_string()])
    );
}

async fn concurrent_proposals_from_one_state_record_one_set(ts: TestStore) {
    // Arrange: two processes that loaded different sets at the same moment.
    let now = utc("2026-03-02T09:00:30Z");
    let (ja, jb) = (batch("10", &["a"]), batch("20", &["a"]));
    let (va, vb) = (
        SetVersion::of(std::slice::from_ref(&ja)),
        SetVersion::of(std::slice::from_ref(&jb)),
    );
    let other = ts.reopen().await;
    propose(&ts.store, std::slice::from_ref(&ja), &va, "worker:a", now)
        .await
        .unwrap();

    // Act: both propose at once from the same generation.
    let (pa, pb) = tokio::join!(
        propose(&ts.store, std::slice::from_ref(&jb), &vb, "worker:a2", now),
        propose(&other, std::slice::from_ref(&jb), &vb, "worker:b", now)
    );

    // Assert: one recorded it, the other found it in force; one audit entry for it.
    let mut outcomes = vec![pa.unwrap(), pb.unwrap()];
    outcomes.sort_by_key(|p| format!("{p:?}"));
    assert_eq!(outcomes, vec![Proposal::AlreadyInForce, Proposal::Recorded]);
    let row = ts.store.job_set_in_force().await.unwrap().unwrap();
    assert_eq!((row.version.as_str(), row.generation), (vb.as_str(), 2));
    let entries: Vec<_> = ts
        .store
        .audit_entries_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "jobs.set.in_force")
        .collect();
    assert_eq!(entries.len(), 2, "{entries:#?}");
    assert_eq!(entries[1].payload["version"], vb.as_str());
    assert_eq!(entries[1].payload["previous"], va.as_str());
    assert_eq!(entries[1].payload["changed"], serde_json::json!([JOB]));
}

on_both_backends!(
    two_processes_with_different_files_never_build_one_occurrence_from_two_specs,
    concurrent_proposals_from_one_state_record_one_set,
);
