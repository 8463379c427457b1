//! The guards end to end against the sandbox: caps (refusal with the reason, the race
//! for the last headroom, release on failure), the kill switch (global, per job, per
//! grant, and runs in flight), approvals, cancel and retry. Counts come from the
//! sandbox's ledger.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use rust_decimal::dec;
use treasury::guards::{Guards, HaltScope, Operator};
use treasury::pipeline::{Executed, Gate, GateStep, Hold};
use treasury::runs::{Run, RunState};
use treasury::sandbox::TransferOutcome;

use crate::guards_world::{GRANT, JOB, OTHER_GRANT, World, ngn, usdt, with_approval, with_job_cap};

fn op(name: &str) -> Operator {
    Operator::parse(name).unwrap()
}

// ---------------------------------------------------------------------------- caps

#[tokio::test]
async fn a_run_over_the_job_cap_is_refused_with_the_reason_and_locks_no_quote() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    let first = w
        .create("occ-1", with_job_cap(usdt(dec!(60)), dec!(100)))
        .await;
    assert_eq!(w.drive(&p, &first).await, RunState::Settled);

    let second = w
        .create("occ-2", with_job_cap(usdt(dec!(60)), dec!(100)))
        .await;
    assert_eq!(w.drive(&p, &second).await, RunState::Failed);

    let reason = w.run(&second).await.reason.unwrap();
    for part in [
        "job vendor-payout's rolling 24-hour cap of 100 USDT",
        "needs 60 USDT",
        "60 USDT is already used",
        "40 USDT is left",
    ] {
        assert!(reason.contains(part), "{part:?} missing from {reason:?}");
    }
    assert_eq!(w.quotes(), 1, "no quote was locked beyond the cap");
    assert_eq!(w.transfers(), 1);
    assert!(w.actions(&second).await.contains(&"run.failed".to_string()));
    w.audit_verifies().await;
}

#[tokio::test]
async fn two_runs_racing_for_the_last_headroom_exactly_one_gets_it() {
    let w = World::new().await;
    // Two "processes": separate pools on one store, each with its own gate.
    let other = w.ts.reopen().await;
    let p1 = w.pipeline("w1");
    let p2 = w.pipeline_with("w2", other.clone(), Arc::new(w.guards_on(other)));
    let a = w
        .create("occ-a", with_job_cap(usdt(dec!(60)), dec!(100)))
        .await;
    let b = w
        .create("occ-b", with_job_cap(usdt(dec!(60)), dec!(100)))
        .await;

    let (ra, rb) = tokio::join!(w.drive(&p1, &a), w.drive(&p2, &b));

    let mut states = [ra, rb];
    states.sort_by_key(|s| s.as_str());
    assert_eq!(states, [RunState::Failed, RunState::Settled]);
    assert_eq!(w.quotes(), 1, "only the winner locked a quote");
    assert_eq!(w.transfers(), 1);
}

#[tokio::test]
async fn a_grant_cap_counts_what_the_grants_other_jobs_spend_even_without_limits() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    let unlimited = w.create_in("salaries", "occ-1", usdt(dec!(60))).await;
    assert_eq!(w.drive(&p, &unlimited).await, RunState::Settled);

    let mut capped = usdt(dec!(60));
    capped.limits.grant_daily_cap = Some(dec!(100));
    let id = w.create("occ-1", capped).await;
    assert_eq!(w.drive(&p, &id).await, RunState::Failed);
    let reason = w.run(&id).await.reason.unwrap();
    assert!(
        reason.contains("grant acme's rolling 24-hour cap of 100 USDT")
            && reason.contains("60 USDT is already used"),
        "{reason}"
    );
    assert_eq!(w.transfers(), 1);
}

#[tokio::test]
async fn a_run_over_the_per_run_maximum_is_refused_before_any_quote() {
    let w = World::new().await;
    let mut s = usdt(dec!(60));
    s.limits.max_per_run = Some(dec!(50));
    let id = w.create("occ-1", s).await;
    assert_eq!(w.drive(&w.pipeline("w1"), &id).await, RunState::Failed);
    let reason = w.run(&id).await.reason.unwrap();
    assert!(
        reason.contains("per-run maximum")
            && reason.contains("60 USDT")
            && reason.contains("50 USDT"),
        "{reason}"
    );
    assert_eq!((w.quotes(), w.transfers()), (0, 0));
}

#[tokio::test]
async fn a_failed_run_releases_its_reservation_so_a_later_run_fits() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    w.sb.push_transfer_outcome(TransferOutcome::FundsNotDelivered);
    let failed = w
        .create("occ-1", with_job_cap(usdt(dec!(60)), dec!(100)))
        .await;
    assert_eq!(w.drive(&p, &failed).await, RunState::Failed);
    let held = w.store.cap_reservation(&failed).await.unwrap().unwrap();
    assert!(held.released_at.is_some(), "released on failure: {held:?}");

    let later = w
        .create("occ-2", with_job_cap(usdt(dec!(60)), dec!(100)))
        .await;
    assert_eq!(w.drive(&p, &later).await, RunState::Settled);
    assert_eq!(w.transfers(), 2);
    assert!(
        w.actions(&failed)
            .await
            .contains(&"run.cap.released".to_string())
    );
}

#[tokio::test]
async fn a_target_amount_reserves_its_min_rate_estimate_then_the_quotes_real_source_amount() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    // 150,000 NGN at no less than 1,500 NGN/USDT, fees at most 1 USDT: at most 101 USDT.
    let bounded = |cap| {
        let mut s = with_job_cap(ngn(dec!(150000)), cap);
        s.guard.min_rate = Some(dec!(1500));
        s.guard.max_fees = Some(dec!(1));
        s
    };
    let too_big = w.create("occ-1", bounded(dec!(100))).await;
    assert_eq!(w.drive(&p, &too_big).await, RunState::Failed);
    let reason = w.run(&too_big).await.reason.unwrap();
    assert!(reason.contains("estimated 101 USDT"), "{reason}");
    assert_eq!(w.quotes(), 0);

    let fits = w.create("occ-2", bounded(dec!(200))).await;
    assert_eq!(w.drive(&p, &fits).await, RunState::Settled);
    let r = w.store.cap_reservation(&fits).await.unwrap().unwrap();
    // Trued up before the transfer: 150,000 NGN + 100 NGN fee at 1,600 = 93.8125 USDT.
    assert_eq!((r.amount, r.estimated), (dec!(93.8125), false));
}

#[tokio::test]
async fn without_a_min_rate_a_target_amount_is_capped_on_its_quote_before_any_transfer() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    let id = w
        .create("occ-1", with_job_cap(ngn(dec!(150000)), dec!(90)))
        .await;
    assert_eq!(w.drive(&p, &id).await, RunState::Failed);
    let reason = w.run(&id).await.reason.unwrap();
    assert!(reason.contains("needs 93.8125 USDT"), "{reason}");
    assert_eq!(
        (w.quotes(), w.transfers()),
        (1, 0),
        "quoted, never transferred"
    );
}

// ---------------------------------------------------------------------------- halts

#[tokio::test]
async fn a_global_halt_starts_no_money_moving_step_and_a_resume_lets_the_run_finish() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    w.store
        .set_halt(
            &HaltScope::All,
            Some("incident 42"),
            &op("ops"),
            w.clock.now(),
        )
        .await
        .unwrap();
    let id = w.create("occ-1", ngn(dec!(1000))).await;

    let Executed::Waiting(until) = p.execute(&id).await.unwrap() else {
        panic!("held runs wait")
    };
    assert!(until <= w.clock.now() + chrono::Duration::seconds(30));
    // Still halted at the next check: held again, nothing moved.
    w.clock.set(until);
    assert!(matches!(
        p.execute(&id).await.unwrap(),
        Executed::Waiting(_)
    ));
    assert_eq!(w.money_moves(), (0, 0, 0));
    let run = w.run(&id).await;
    assert_eq!(run.state, RunState::Created);
    let reason = run.reason.unwrap();
    assert!(
        reason.contains("everything halted by ops") && reason.contains("incident 42"),
        "{reason}"
    );
    assert!(w.actions(&id).await.contains(&"run.held".to_string()));

    w.store
        .clear_halt(&HaltScope::All, &op("ops"), w.clock.now())
        .await
        .unwrap();
    assert_eq!(w.drive(&p, &id).await, RunState::Settled);
    assert_eq!(w.money_moves(), (1, 1, 1));
}

#[tokio::test]
async fn a_job_halt_pauses_that_job_only() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    w.store
        .set_halt(&HaltScope::Job(JOB.into()), None, &op("ops"), w.clock.now())
        .await
        .unwrap();
    let paused = w.create("occ-1", ngn(dec!(1000))).await;
    let other = w.create_in("salaries", "occ-1", ngn(dec!(2000))).await;

    assert!(matches!(
        p.execute(&paused).await.unwrap(),
        Executed::Waiting(_)
    ));
    assert_eq!(w.drive(&p, &other).await, RunState::Settled);
    assert_eq!(w.transfers(), 1);
    assert_eq!(w.run(&paused).await.state, RunState::Created);

    w.store
        .clear_halt(&HaltScope::Job(JOB.into()), &op("ops"), w.clock.now())
        .await
        .unwrap();
    w.clock.advance(chrono::Duration::seconds(30));
    assert_eq!(w.drive(&p, &paused).await, RunState::Settled);
    assert_eq!(w.transfers(), 2);
}

#[tokio::test]
async fn a_grant_halt_stops_every_job_on_that_grant_only() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    w.store
        .set_halt(
            &HaltScope::Grant(GRANT.into()),
            None,
            &op("ops"),
            w.clock.now(),
        )
        .await
        .unwrap();
    let held = w.create("occ-1", ngn(dec!(1000))).await;
    let mut elsewhere = ngn(dec!(2000));
    elsewhere.grant = OTHER_GRANT.into();
    let free = w.create_in("eu-payout", "occ-1", elsewhere).await;

    assert!(matches!(
        p.execute(&held).await.unwrap(),
        Executed::Waiting(_)
    ));
    assert_eq!(w.drive(&p, &free).await, RunState::Settled);
    assert_eq!(w.transfers(), 1);
    let reason = w.run(&held).await.reason.unwrap();
    assert!(reason.contains("grant acme halted"), "{reason}");

    w.store
        .clear_halt(&HaltScope::Grant(GRANT.into()), &op("ops"), w.clock.now())
        .await
        .unwrap();
    w.clock.advance(chrono::Duration::seconds(30));
    assert_eq!(w.drive(&p, &held).await, RunState::Settled);
}

/// The guards, plus an operator who pulls the kill switch the moment `after` is let
/// through: the run is in flight when the halt lands.
struct HaltMidway {
    guards: Guards,
    after: GateStep,
    ops: Operator,
    clock: treasury::clock::Clock,
    store: treasury::store::Store,
}

impl Gate for HaltMidway {
    fn check<'a>(&'a self, run: &'a Run, step: GateStep) -> BoxFuture<'a, Result<(), Hold>> {
        Box::pin(async move {
            let verdict = self.guards.check(run, step).await;
            if verdict.is_ok() && step == self.after {
                self.store
                    .set_halt(&HaltScope::All, Some("midway"), &self.ops, self.clock.now())
                    .await
                    .unwrap();
            }
            verdict
        })
    }
    fn released<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, ()> {
        self.guards.released(run)
    }
}

#[tokio::test]
async fn runs_in_flight_stop_before_their_next_money_moving_step_and_resume_completes_them() {
    // (halt lands right after this step was let through, the state the run stops in,
    //  what Busha has seen by then)
    let cases = [
        (
            GateStep::CreateRecipient,
            RunState::RecipientResolved,
            (1, 0, 0),
        ),
        (GateStep::LockQuote, RunState::QuoteLocked, (1, 1, 0)),
    ];
    for (after, stopped_in, moved) in cases {
        let w = World::new().await;
        let gate = Arc::new(HaltMidway {
            guards: w.guards(),
            after,
            ops: op("ops"),
            clock: w.clock.clone(),
            store: w.store.clone(),
        });
        let p = w.pipeline_with("w1", w.store.clone(), gate);
        let id = w.create("occ-1", ngn(dec!(1000))).await;

        let Executed::Waiting(until) = p.execute(&id).await.unwrap() else {
            panic!("the run is held after {after:?}")
        };
        let run = w.run(&id).await;
        assert_eq!(run.state, stopped_in, "after {after:?}");
        assert_eq!(w.money_moves(), moved, "after {after:?}");

        w.store
            .clear_halt(&HaltScope::All, &op("ops"), w.clock.now())
            .await
            .unwrap();
        w.clock.set(until);
        // A plain gate now: the operator does not halt again.
        assert_eq!(w.drive(&w.pipeline("w1"), &id).await, RunState::Settled);
        assert_eq!(w.transfers(), 1, "after {after:?}");
        w.audit_verifies().await;
    }
}

// ---------------------------------------------------------------------------- approvals

#[tokio::test]
async fn a_run_awaiting_approval_moves_nothing_until_approved_and_the_owner_cannot_approve() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    let id = w
        .create("occ-1", with_approval(ngn(dec!(1000)), 1, "olu"))
        .await;
    assert_eq!(p.execute(&id).await.unwrap(), Executed::AwaitingApproval);
    assert_eq!(w.money_moves(), (0, 0, 0));

    let owner = w
        .store
        .approve_run(&id, &op("Olu"), w.clock.now())
        .await
        .unwrap();
    assert!(owner.unwrap_err().contains("owner"));
    assert_eq!(p.execute(&id).await.unwrap(), Executed::AwaitingApproval);

    let a = w
        .store
        .approve_run(&id, &op("ada"), w.clock.now())
        .await
        .unwrap()
        .unwrap();
    assert!(a.released);
    assert_eq!(w.drive(&p, &id).await, RunState::Settled);
    assert_eq!(w.money_moves(), (1, 1, 1));
    let approved = w
        .store
        .audit_entries(None, Some(id.as_str()))
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.action == "run.approved")
        .unwrap();
    assert_eq!(approved.actor, "operator:ada");
}

#[tokio::test]
async fn two_distinct_approvers_are_needed_and_one_approver_counts_once() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    let id = w
        .create("occ-1", with_approval(ngn(dec!(1000)), 2, "olu"))
        .await;

    let first = w
        .store
        .approve_run(&id, &op("ada"), w.clock.now())
        .await
        .unwrap()
        .unwrap();
    assert!(!first.released);
    let again = w
        .store
        .approve_run(&id, &op(" ADA "), w.clock.now())
        .await
        .unwrap();
    assert!(again.unwrap_err().contains("already approved"));
    assert_eq!(p.execute(&id).await.unwrap(), Executed::AwaitingApproval);
    assert_eq!(w.money_moves(), (0, 0, 0));

    let second = w
        .store
        .approve_run(&id, &op("bola"), w.clock.now())
        .await
        .unwrap()
        .unwrap();
    assert!(second.released);
    assert_eq!(second.approvers, ["ada", "bola"]);
    assert_eq!(w.drive(&p, &id).await, RunState::Settled);
    assert_eq!(w.transfers(), 1);
}

#[tokio::test]
async fn a_rejected_run_is_cancelled_and_moves_nothing() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    let id = w
        .create("occ-1", with_approval(ngn(dec!(1000)), 1, "olu"))
        .await;
    w.store
        .reject_run(&id, &op("ada"), Some("wrong vendor"), w.clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        p.execute(&id).await.unwrap(),
        Executed::Finished(RunState::Cancelled)
    );
    let run = w.run(&id).await;
    assert_eq!(run.reason.as_deref(), Some("rejected by ada: wrong vendor"));
    assert_eq!(w.money_moves(), (0, 0, 0));
    assert!(
        w.store
            .approve_run(&id, &op("bola"), w.clock.now())
            .await
            .unwrap()
            .is_err()
    );
}

// ---------------------------------------------------------------------------- cancel, retry

#[tokio::test]
async fn cancel_works_before_money_moved_and_is_refused_after() {
    let w = World::new().await;
    let p = w.pipeline("w1");

    // Before anything: cancelled, and the executor finds nothing to do.
    let fresh = w.create("occ-1", ngn(dec!(1000))).await;
    assert_eq!(
        w.store
            .cancel_run(&fresh, &op("ops"), w.clock.now())
            .await
            .unwrap(),
        Ok(RunState::Created)
    );
    assert_eq!(
        p.execute(&fresh).await.unwrap(),
        Executed::Finished(RunState::Cancelled)
    );
    assert_eq!(w.money_moves(), (0, 0, 0));

    // With a quote locked but no transfer: cancelled, and its reservation released.
    let gate = Arc::new(HaltMidway {
        guards: w.guards(),
        after: GateStep::LockQuote,
        ops: op("ops"),
        clock: w.clock.clone(),
        store: w.store.clone(),
    });
    let stopping = w.pipeline_with("w2", w.store.clone(), gate);
    let locked = w
        .create("occ-2", with_job_cap(usdt(dec!(10)), dec!(100)))
        .await;
    assert!(matches!(
        stopping.execute(&locked).await.unwrap(),
        Executed::Waiting(_)
    ));
    assert_eq!(w.run(&locked).await.state, RunState::QuoteLocked);
    assert_eq!(
        w.store
            .cancel_run(&locked, &op("ops"), w.clock.now())
            .await
            .unwrap(),
        Ok(RunState::QuoteLocked)
    );
    let r = w.store.cap_reservation(&locked).await.unwrap().unwrap();
    assert!(r.released_at.is_some());
    w.store
        .clear_halt(&HaltScope::All, &op("ops"), w.clock.now())
        .await
        .unwrap();
    w.clock.advance(chrono::Duration::minutes(1));
    assert_eq!(
        p.execute(&locked).await.unwrap(),
        Executed::Finished(RunState::Cancelled)
    );
    assert_eq!(w.transfers(), 0, "no transfer on a cancelled run");

    // Once a transfer is submitted, and once settled: refused, with the reason.
    let paying = w.create("occ-3", ngn(dec!(1000))).await;
    let Executed::Waiting(_) = p.execute(&paying).await.unwrap() else {
        panic!("the transfer is in flight")
    };
    assert_eq!(w.run(&paying).await.state, RunState::TransferSubmitted);
    let why = w
        .store
        .cancel_run(&paying, &op("ops"), w.clock.now())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        why.contains("was submitted") && why.contains("money may have moved"),
        "{why}"
    );
    assert_eq!(w.drive(&p, &paying).await, RunState::Settled);
    let why = w
        .store
        .cancel_run(&paying, &op("ops"), w.clock.now())
        .await
        .unwrap()
        .unwrap_err();
    assert!(why.contains("settled"), "{why}");
    assert_eq!(w.transfers(), 1);
}

#[tokio::test]
async fn retry_of_a_failed_run_re_quotes_with_a_new_reference_and_completes() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    w.sb.push_transfer_outcome(TransferOutcome::FundsNotDelivered);
    let id = w
        .create("occ-1", with_job_cap(ngn(dec!(1000)), dec!(100)))
        .await;
    assert_eq!(w.drive(&p, &id).await, RunState::Failed);

    let from = w
        .store
        .retry_run(&id, &op("ops"), w.clock.now())
        .await
        .unwrap();
    assert_eq!(from, Ok(RunState::RecipientResolved));
    assert_eq!(w.drive(&p, &id).await, RunState::Settled);

    let refs = w.quote_references();
    assert_eq!(refs, [id.quote_reference(1), id.quote_reference(2)]);
    assert_eq!(w.transfers(), 2, "the failed transfer and the new one");
    assert_eq!(w.recipients(), 1, "the recipient is kept");
    assert!(w.actions(&id).await.contains(&"run.retried".to_string()));
    // Retrying a settled run is refused.
    let again = w
        .store
        .retry_run(&id, &op("ops"), w.clock.now())
        .await
        .unwrap();
    assert!(again.unwrap_err().contains("only failed and needs_human"));
}

#[tokio::test]
async fn retry_of_a_run_that_used_up_its_requotes_gets_a_fresh_allowance() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    // The market is below the job's minimum rate: the first quote and its one re-quote
    // are refused, and the run fails.
    w.sb.set_price("USDT", "NGN", dec!(1560), dec!(1500));
    let mut s = ngn(dec!(1000));
    s.guard.min_rate = Some(dec!(1550));
    s.max_requotes = 1;
    let id = w.create("occ-1", s).await;
    assert_eq!(w.drive(&p, &id).await, RunState::Failed);
    assert_eq!(w.quotes(), 2);

    // The market recovers and an operator retries: the run gets its re-quotes again
    // (with new references), rather than failing at once on the old count.
    w.sb.set_price("USDT", "NGN", dec!(1650), dec!(1600));
    let from = w
        .store
        .retry_run(&id, &op("ops"), w.clock.now())
        .await
        .unwrap();
    assert_eq!(from, Ok(RunState::RecipientResolved));
    assert_eq!(w.drive(&p, &id).await, RunState::Settled);
    assert_eq!(w.quote_references()[2], id.quote_reference(3));
    assert_eq!(w.transfers(), 1);
}

#[tokio::test]
async fn retry_of_a_needs_human_run_re_quotes_with_a_new_reference_and_completes() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    w.sb.update_behaviour(|b| b.two_step_from = Some(dec!(0)));
    let id = w.create("occ-1", ngn(dec!(1000))).await;
    assert_eq!(w.drive(&p, &id).await, RunState::NeedsHuman);
    assert_eq!(w.transfers(), 0);

    // The person did what two-step needed; the operator retries.
    w.sb.update_behaviour(|b| b.two_step_from = None);
    w.store
        .retry_run(&id, &op("ops"), w.clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.drive(&p, &id).await, RunState::Settled);
    assert_eq!(
        w.quote_references(),
        [id.quote_reference(1), id.quote_reference(2)]
    );
    assert_eq!(w.transfers(), 1);
    w.audit_verifies().await;
}
