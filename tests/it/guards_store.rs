//! The guards' store on SQLite and PostgreSQL: check-and-reserve is atomic across
//! processes, releases and failed runs stop counting, halts cover the right runs and
//! are audited, approvals count distinct approvers and never the owner, and operator
//! commands take the lease from a running executor.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::{Decimal, dec};
use treasury::audit::NewAuditEntry;
use treasury::guards::{Ask, HaltScope, Operator, ask_for};
use treasury::money::Currency;
use treasury::pipeline::GateStep;
use treasury::runs::{
    Amount, ApprovalRule, Limits, PayoutSpec, RecipientSpec, Run, RunId, RunState,
};
use treasury::store::{CapCheck, Store, StoreError};

use crate::backends::TestStore;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-02-02T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn op(name: &str) -> Operator {
    Operator::parse(name).unwrap()
}

fn spec(amount: Decimal, limits: Limits, approval: Option<ApprovalRule>) -> PayoutSpec {
    PayoutSpec {
        grant: "acme".into(),
        source_currency: Currency::new("USDT").unwrap(),
        target_currency: Currency::new("NGN").unwrap(),
        amount: Amount::Source { amount },
        recipient: RecipientSpec::Id { id: "RCP_1".into() },
        guard: Default::default(),
        max_requotes: 3,
        limits,
        approval,
        sweep: None,
    }
}

async fn create(store: &Store, job: &str, occ: &str, spec: PayoutSpec, approval: bool) -> Run {
    let run = Run::new(job, occ, "v1", spec, approval, now());
    let e = NewAuditEntry::new("test", "run.created", serde_json::json!({})).run(run.id.as_str());
    assert!(store.create_run(&run, e).await.unwrap());
    run
}

async fn reserve(store: &Store, run: &Run, at: DateTime<Utc>) -> Result<(), String> {
    let ask = ask_for(run, GateStep::LockQuote);
    store
        .reserve_caps(CapCheck {
            run,
            ask: &ask,
            at,
            actor: "worker:test",
        })
        .await
        .unwrap()
        .map(|_| ())
}

fn capped(job: Decimal, grant: Option<Decimal>) -> Limits {
    Limits {
        max_per_run: None,
        job_daily_cap: Some(job),
        grant_daily_cap: grant,
    }
}

async fn only_one_of_many_racing_reservations_takes_the_last_headroom(ts: TestStore) {
    // Arrange: 8 runs of 60 against a cap of 100, reserved from two pools ("processes").
    let other = ts.reopen().await;
    let mut runs = Vec::new();
    for i in 0..8 {
        runs.push(
            create(
                &ts.store,
                "payroll",
                &format!("occ-{i}"),
                spec(dec!(60), capped(dec!(100), None), None),
                false,
            )
            .await,
        );
    }
    // Act
    let mut tasks = Vec::new();
    for (i, run) in runs.into_iter().enumerate() {
        let store = if i % 2 == 0 {
            ts.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(
            async move { reserve(&store, &run, now()).await },
        ));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(reason) => assert!(reason.contains("60 USDT is already used"), "{reason}"),
        }
    }
    // Assert
    assert_eq!(won, 1);
    let used = ts
        .store
        .cap_usage("payroll", "acme", "USDT", now())
        .await
        .unwrap();
    assert_eq!(used.job, dec!(60));
}

async fn the_grant_cap_spans_jobs_and_the_window_rolls_after_24_hours(ts: TestStore) {
    let s = |job_cap| spec(dec!(60), capped(job_cap, Some(dec!(100))), None);
    let a = create(&ts.store, "vendors", "o1", s(dec!(1000)), false).await;
    let b = create(&ts.store, "salaries", "o1", s(dec!(1000)), false).await;
    reserve(&ts.store, &a, now()).await.unwrap();
    let why = reserve(&ts.store, &b, now()).await.unwrap_err();
    assert!(
        why.contains("grant acme's rolling 24-hour cap of 100 USDT"),
        "{why}"
    );
    // A day later the first reservation no longer counts.
    reserve(
        &ts.store,
        &b,
        now() + Duration::hours(24) + Duration::seconds(1),
    )
    .await
    .unwrap();
}

async fn released_reservations_and_failed_runs_stop_counting(ts: TestStore) {
    let s = || spec(dec!(60), capped(dec!(100), None), None);
    let a = create(&ts.store, "payroll", "o1", s(), false).await;
    let b = create(&ts.store, "payroll", "o2", s(), false).await;
    let c = create(&ts.store, "payroll", "o3", s(), false).await;
    reserve(&ts.store, &a, now()).await.unwrap();
    // Re-reserving the same run (a re-quote) does not count it twice.
    reserve(&ts.store, &a, now()).await.unwrap();
    assert!(reserve(&ts.store, &b, now()).await.is_err());

    assert!(
        ts.store
            .release_caps(&a.id, now(), "worker:test")
            .await
            .unwrap()
    );
    assert!(
        !ts.store
            .release_caps(&a.id, now(), "worker:test")
            .await
            .unwrap(),
        "idempotent"
    );
    reserve(&ts.store, &b, now()).await.unwrap();

    // b's run fails, and the process dies before it can release: b stops counting anyway.
    sqlx_state(&ts, &b.id, RunState::Failed).await;
    reserve(&ts.store, &c, now()).await.unwrap();
    let actions: Vec<String> = ts
        .store
        .audit_entries(None, Some(a.id.as_str()))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions.iter().filter(|a| *a == "run.cap.reserved").count(),
        1
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "run.cap.released").count(),
        1
    );
}

/// Puts a run in `state` as a (now dead) executor would have.
async fn sqlx_state(ts: &TestStore, id: &RunId, state: RunState) {
    let (lease, mut run) = ts
        .store
        .acquire_run(id, "dead", now(), Duration::minutes(2))
        .await
        .unwrap()
        .unwrap();
    let mut lease = lease;
    run.state = state;
    ts.store
        .save_run(&mut lease, &run, vec![], now(), Duration::minutes(2))
        .await
        .unwrap();
}

async fn halts_cover_the_right_runs_and_are_audited_with_the_operator(ts: TestStore) {
    let s = &ts.store;
    assert!(
        s.set_halt(
            &HaltScope::Job("payroll".into()),
            Some("audit"),
            &op("ops"),
            now()
        )
        .await
        .unwrap()
    );
    assert!(
        !s.set_halt(&HaltScope::Job("payroll".into()), None, &op("ops"), now())
            .await
            .unwrap()
    );
    assert_eq!(s.halts_covering("payroll", "acme").await.unwrap().len(), 1);
    assert!(
        s.halts_covering("vendors", "acme")
            .await
            .unwrap()
            .is_empty()
    );
    s.set_halt(&HaltScope::Grant("acme".into()), None, &op("ops"), now())
        .await
        .unwrap();
    assert_eq!(s.halts_covering("vendors", "acme").await.unwrap().len(), 1);
    assert!(
        s.halts_covering("vendors", "other")
            .await
            .unwrap()
            .is_empty()
    );
    s.set_halt(&HaltScope::All, None, &op("ops"), now())
        .await
        .unwrap();
    assert_eq!(s.halts_covering("vendors", "other").await.unwrap().len(), 1);
    assert_eq!(s.halts().await.unwrap().len(), 3);

    assert!(
        s.clear_halt(&HaltScope::All, &op("kemi"), now())
            .await
            .unwrap()
    );
    assert!(
        !s.clear_halt(&HaltScope::All, &op("kemi"), now())
            .await
            .unwrap()
    );
    let log = s.audit_entries(None, None).await.unwrap();
    let on: Vec<_> = log.iter().filter(|e| e.action == "halt.on").collect();
    let off: Vec<_> = log.iter().filter(|e| e.action == "halt.off").collect();
    assert_eq!((on.len(), off.len()), (3, 1));
    assert_eq!(on[0].actor, "operator:ops");
    assert_eq!(on[0].payload["reason"], "audit");
    assert_eq!(off[0].actor, "operator:kemi");
    s.verify_audit(None).await.unwrap().unwrap();
}

async fn approvals_count_distinct_approvers_and_never_the_owner(ts: TestStore) {
    let rule = ApprovalRule {
        approvers: 2,
        owner: "Olu".into(),
    };
    let run = create(
        &ts.store,
        "payroll",
        "o1",
        spec(dec!(5), Limits::default(), Some(rule)),
        true,
    )
    .await;
    let s = &ts.store;
    assert!(
        s.approve_run(&run.id, &op("olu"), now())
            .await
            .unwrap()
            .unwrap_err()
            .contains("owner")
    );
    assert!(
        !s.approve_run(&run.id, &op("ada"), now())
            .await
            .unwrap()
            .unwrap()
            .released
    );
    assert!(
        s.approve_run(&run.id, &op("Ada"), now())
            .await
            .unwrap()
            .is_err()
    );
    assert_eq!(
        s.get_run(&run.id).await.unwrap().unwrap().state,
        RunState::AwaitingApproval
    );
    assert!(s.due_runs(now(), 10).await.unwrap().is_empty());
    let done = s
        .approve_run(&run.id, &op("bola"), now())
        .await
        .unwrap()
        .unwrap();
    assert!(done.released);
    let after = s.get_run(&run.id).await.unwrap().unwrap();
    assert_eq!(after.state, RunState::Created);
    assert_eq!(s.due_runs(now(), 10).await.unwrap(), vec![run.id.clone()]);
    assert_eq!(s.run_approvals(&run.id).await.unwrap().len(), 2);
    // Approving again once released is refused: it no longer awaits approval.
    assert!(
        s.approve_run(&run.id, &op("kemi"), now())
            .await
            .unwrap()
            .is_err()
    );
}

async fn operator_commands_take_the_lease_from_a_running_executor(ts: TestStore) {
    let s = &ts.store;
    let run = create(
        s,
        "payroll",
        "o1",
        spec(dec!(5), Limits::default(), None),
        false,
    )
    .await;
    let (mut lease, mut seen) = s
        .acquire_run(&run.id, "w1", now(), Duration::minutes(2))
        .await
        .unwrap()
        .unwrap();

    assert_eq!(
        s.cancel_run(&run.id, &op("ops"), now()).await.unwrap(),
        Ok(RunState::Created)
    );

    // The executor, unaware, tries to record a step: nothing is written.
    seen.state = RunState::RecipientResolved;
    let err = s
        .save_run(&mut lease, &seen, vec![], now(), Duration::minutes(2))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost(_)), "{err:?}");
    assert_eq!(
        s.get_run(&run.id).await.unwrap().unwrap().state,
        RunState::Cancelled
    );

    // A transfer request in flight (intent persisted): cancel is refused.
    let paying = create(
        s,
        "payroll",
        "o2",
        spec(dec!(5), Limits::default(), None),
        false,
    )
    .await;
    let (mut lease, mut r) = s
        .acquire_run(&paying.id, "w1", now(), Duration::minutes(2))
        .await
        .unwrap()
        .unwrap();
    r.state = RunState::QuoteLocked;
    r.pending = Some(treasury::runs::PendingOp::CreateTransfer);
    s.save_run(&mut lease, &r, vec![], now(), Duration::minutes(2))
        .await
        .unwrap();
    let why = s
        .cancel_run(&paying.id, &op("ops"), now())
        .await
        .unwrap()
        .unwrap_err();
    assert!(why.contains("in flight"), "{why}");

    // Retry restarts a failed run and takes its lease too.
    r.state = RunState::Failed;
    r.pending = None;
    r.recipient_id = Some("RCP_1".into());
    s.save_run(&mut lease, &r, vec![], now(), Duration::minutes(2))
        .await
        .unwrap();
    assert_eq!(
        s.retry_run(&paying.id, &op("ops"), now()).await.unwrap(),
        Ok(RunState::RecipientResolved)
    );
    assert!(matches!(
        s.save_run(&mut lease, &r, vec![], now(), Duration::minutes(2))
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    let again = s.get_run(&paying.id).await.unwrap().unwrap();
    assert_eq!(again.state, RunState::RecipientResolved);
    assert_eq!(again.next_attempt_at, now());
    s.verify_audit(None).await.unwrap().unwrap();
}

async fn an_ask_for_headroom_only_needs_some_left(ts: TestStore) {
    let s = &ts.store;
    let mut a = spec(dec!(60), capped(dec!(100), None), None);
    let first = create(s, "payroll", "o1", a.clone(), false).await;
    reserve(s, &first, now()).await.unwrap();
    a.amount = Amount::Target { amount: dec!(1000) };
    let second = create(s, "payroll", "o2", a.clone(), false).await;
    assert_eq!(ask_for(&second, GateStep::LockQuote), Ask::Headroom);
    reserve(s, &second, now()).await.unwrap();
    let full = create(
        s,
        "payroll",
        "o3",
        spec(dec!(40), capped(dec!(100), None), None),
        false,
    )
    .await;
    reserve(s, &full, now()).await.unwrap();
    let third = create(s, "payroll", "o4", a, false).await;
    let why = reserve(s, &third, now()).await.unwrap_err();
    assert!(why.contains("0 USDT is left"), "{why}");
}

/// Many executors save at once (on SQLite they share commits). One of them lost its
/// lease: that save fails alone with `LeaseLost` and writes nothing; every other save
/// and its audit entry lands, and the chain verifies.
async fn concurrent_saves_land_and_a_lost_lease_fails_alone(t: TestStore) {
    let s = &t.store;
    let mut leased = Vec::new();
    for i in 0..24 {
        let run = create(
            s,
            "payroll",
            &format!("save-{i}"),
            spec(dec!(10), Limits::default(), None),
            false,
        )
        .await;
        let (lease, run) = s
            .acquire_run(&run.id, "w1", now(), Duration::minutes(2))
            .await
            .unwrap()
            .expect("a free run is leased");
        leased.push((lease, run));
    }
    // Another executor takes run 7 once w1's lease has lapsed.
    let stolen = leased[7].1.id.clone();
    s.acquire_run(
        &stolen,
        "w2",
        now() + Duration::minutes(3),
        Duration::minutes(2),
    )
    .await
    .unwrap()
    .expect("a lapsed lease is taken");
    let tasks: Vec<_> = leased
        .into_iter()
        .map(|(mut lease, mut run)| {
            let s = s.clone();
            tokio::spawn(async move {
                run.recipient_id = Some("RCP_1".into());
                run.state = RunState::RecipientResolved;
                let e = NewAuditEntry::new(
                    "worker:w1",
                    "run.recipient.resolved",
                    serde_json::json!({}),
                )
                .run(run.id.as_str());
                let saved = s
                    .save_run(&mut lease, &run, vec![e], now(), Duration::minutes(2))
                    .await;
                (run.id, saved)
            })
        })
        .collect();
    for task in tasks {
        let (id, saved) = task.await.unwrap();
        let stored = s.get_run(&id).await.unwrap().unwrap();
        if id == stolen {
            assert!(matches!(saved, Err(StoreError::LeaseLost(_))), "{saved:?}");
            assert_eq!(
                stored.state,
                RunState::Created,
                "a lost lease writes nothing"
            );
        } else {
            saved.unwrap();
            assert_eq!(stored.state, RunState::RecipientResolved);
        }
    }
    let chain = s
        .verify_audit(None)
        .await
        .unwrap()
        .expect("an intact chain");
    assert_eq!(chain.entries, 24 + 23, "24 creations and 23 saves");
}

crate::on_both_backends!(
    only_one_of_many_racing_reservations_takes_the_last_headroom,
    the_grant_cap_spans_jobs_and_the_window_rolls_after_24_hours,
    released_reservations_and_failed_runs_stop_counting,
    halts_cover_the_right_runs_and_are_audited_with_the_operator,
    approvals_count_distinct_approvers_and_never_the_owner,
    operator_commands_take_the_lease_from_a_running_executor,
    an_ask_for_headroom_only_needs_some_left,
    concurrent_saves_land_and_a_lost_lease_fails_alone,
);
