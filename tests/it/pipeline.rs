//! The transfer pipeline against the sandbox: exactly once under crashes at every step
//! boundary, concurrent executors, dropped responses, expired quotes, guards, name
//! mismatches, failed transfers, lost local writes and a 429 storm. Counts come from
//! the sandbox's ledger, Busha's side of the story.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Duration;
use parking_lot::Mutex;
use rust_decimal::dec;
use treasury::pipeline::{CrashPoints, Executed, Pipeline, PipelineError, StaticTokens};
use treasury::provider::busha::{BushaClient, BushaConfig};
use treasury::provider::pacing::EndpointLimits;
use treasury::runs::{Amount, RecipientSpec, RunState};
use treasury::sandbox::{
    Fault, FaultKind, LedgerEvent, RateLimits, SandboxConfig, TransferOutcome,
};
use treasury::store::Store;

use crate::backends::TestStore;

use crate::pipeline_world::*;

async fn a_bank_payout_resolves_quotes_transfers_and_settles_with_an_audit_trail(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    let id = w.create("2026-01-05T09:00:00Z", ngn(dec!(150000))).await;
    let state = w.drive(&w.pipeline("w1"), &id).await;
    assert_eq!(state, RunState::Settled);
    let run = w.run(&id).await;
    assert!(run.recipient_id.is_some() && run.transfer_id.is_some());
    assert_eq!(run.transfer_status.as_deref(), Some("funds_delivered"));
    assert_eq!(run.quote.as_ref().unwrap().target_amount, dec!(150000));
    assert_eq!((w.recipients(), w.quotes(), w.transfers()), (1, 1, 1));
    // Debited exactly once: 150,000 NGN + 100 NGN fee at 1,600 = 93.8125 USDT.
    assert_eq!(
        w.sb.balance(&w.user.id, "USDT"),
        Some(dec!(10000) - dec!(93.8125))
    );
    let actions: Vec<String> = w
        .store
        .audit_entries(None, Some(id.as_str()))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for expected in [
        "run.created",
        "run.recipient.intent",
        "run.recipient.resolved",
        "run.quote.intent",
        "run.quote.locked",
        "run.transfer.intent",
        "run.transfer.submitted",
        "run.settled",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "missing {expected} in {actions:?}"
        );
    }
    assert!(w.audit_verifies().await >= 8);
}

#[tokio::test]
async fn a_second_run_of_the_job_reuses_the_remembered_recipient() {
    let w = World::new().await;
    let p = w.pipeline("w1");
    let first = w.create("occ-1", ngn(dec!(1000))).await;
    let second = w.create("occ-2", ngn(dec!(2000))).await;
    assert_eq!(w.drive(&p, &first).await, RunState::Settled);
    assert_eq!(w.drive(&p, &second).await, RunState::Settled);
    assert_eq!(w.recipients(), 1);
    assert_eq!(
        w.count(|e| matches!(e, LedgerEvent::NameEnquiry { .. })),
        1,
        "the second run skipped the lookup"
    );
    assert_eq!(w.transfers(), 2);
}

/// Crashes after the `n`th step boundary it is asked about.
struct CrashAt {
    n: usize,
    seen: AtomicUsize,
    point: Mutex<Option<String>>,
}

impl CrashPoints for CrashAt {
    fn crash_here(&self, point: &str) -> bool {
        if self.seen.fetch_add(1, Ordering::SeqCst) == self.n {
            *self.point.lock() = Some(point.to_string());
            return true;
        }
        false
    }
}

async fn a_crash_at_any_step_boundary_still_pays_exactly_once(t: TestStore) {
    let store = t;
    let mut crashed_at = Vec::new();
    for n in 0.. {
        let w = World::with(fast(), Some(&store)).await;
        let id = w.create(&format!("crash-{n}"), ngn(dec!(50000))).await;
        let crash = Arc::new(CrashAt {
            n,
            seen: AtomicUsize::new(0),
            point: Mutex::new(None),
        });
        let crashing = w.pipeline("doomed").with_crash_points(crash.clone());
        let point = loop {
            match crashing.execute(&id).await {
                Err(PipelineError::Crashed(p)) => break Some(p),
                Ok(Executed::Finished(_)) => break None,
                Ok(Executed::Waiting(until)) => w.clock.set(until),
                other => panic!("unexpected {other:?}"),
            }
        };
        let Some(point) = point else {
            // No boundary left to crash at: every one has been tried.
            break;
        };
        crashed_at.push(point.clone());
        let survivor = w.pipeline("survivor");
        if !w.run(&id).await.state.is_final() {
            // The dead executor's lease still holds until it lapses.
            assert_eq!(
                survivor.execute(&id).await.unwrap(),
                Executed::Busy,
                "crash at {point}"
            );
            w.clock
                .advance(survivor.takeover_after() + Duration::seconds(1));
        }
        assert_eq!(
            w.drive(&survivor, &id).await,
            RunState::Settled,
            "crash at {point}"
        );
        assert_eq!(w.transfers(), 1, "transfers after a crash at {point}");
        assert_eq!(w.quotes(), 1, "quotes after a crash at {point}");
        assert_eq!(w.recipients(), 1, "recipients after a crash at {point}");
        w.audit_verifies().await;
    }
    // Every provider call and every store write had a crash before and after it.
    for expected in [
        "before POST /v1/recipients",
        "after POST /v1/recipients",
        "before POST /v1/quotes",
        "after POST /v1/quotes",
        "before POST /v1/transfers",
        "after POST /v1/transfers",
        "before save",
        "after save",
    ] {
        assert!(
            crashed_at.iter().any(|p| p == expected),
            "never crashed at {expected}: {crashed_at:?}"
        );
    }
    assert!(
        crashed_at.len() >= 20,
        "only {} boundaries",
        crashed_at.len()
    );
}

async fn two_executors_started_at_once_produce_one_recipient_one_quote_one_transfer(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    let id = w.create("together", ngn(dec!(75000))).await;
    let a = w.pipeline("a");
    // A second "process": its own client and its own connection pool.
    let mut b = w.pipeline("b");
    let other_store = Store::connect(&w.url).await.unwrap();
    b = Pipeline::new(
        other_store,
        BushaClient::new(BushaConfig::new(w.sb.url())).unwrap(),
        Arc::new(StaticTokens::new().with(GRANT, w.token.clone())),
        w.clock.clone(),
        b.config().clone(),
    );
    // The first call of whichever executor wins the lease takes a second, so that the
    // other one certainly tries while the lease is held.
    w.sb.add_fault(
        Fault::new(
            "GET /v1/recipients",
            FaultKind::Latency(std::time::Duration::from_secs(1)),
        )
        .times(1),
    );
    let (ra, rb) = tokio::join!(a.execute(&id), b.execute(&id));
    let outcomes = [ra.unwrap(), rb.unwrap()];
    assert!(
        outcomes.contains(&Executed::Busy),
        "one of them must find the run leased: {outcomes:?}"
    );
    assert_eq!(w.drive(&a, &id).await, RunState::Settled);
    assert_eq!((w.recipients(), w.quotes(), w.transfers()), (1, 1, 1));
}

async fn responses_dropped_after_commit_create_no_duplicates(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    for endpoint in [
        "POST /v1/recipients",
        "POST /v1/quotes",
        "POST /v1/transfers",
    ] {
        w.sb.add_fault(Fault::new(endpoint, FaultKind::DropAfterCommit).times(1));
    }
    let id = w.create("dropped", ngn(dec!(60000))).await;
    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::Settled);
    assert_eq!(
        w.count(|e| matches!(e, LedgerEvent::ResponseDropped { .. })),
        3,
        "every fault fired"
    );
    assert_eq!((w.recipients(), w.quotes(), w.transfers()), (1, 1, 1));
    w.audit_verifies().await;
}

/// Stops an execution just before the transfer is initiated.
struct StopBeforeTransfer;
impl CrashPoints for StopBeforeTransfer {
    fn crash_here(&self, point: &str) -> bool {
        point == "before POST /v1/transfers"
    }
}

async fn a_quote_that_expires_before_the_transfer_is_replaced_and_never_used(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    let id = w.create("expiring", ngn(dec!(80000))).await;
    let err = w
        .pipeline("w")
        .with_crash_points(Arc::new(StopBeforeTransfer))
        .execute(&id)
        .await
        .unwrap_err();
    assert!(matches!(err, PipelineError::Crashed(_)));
    let stale = w.run(&id).await.quote.unwrap();
    // Thirty-one minutes later the quote has expired.
    w.clock.advance(Duration::minutes(31));
    assert_eq!(w.drive(&w.pipeline("w2"), &id).await, RunState::Settled);
    assert_eq!(w.quotes(), 2, "one re-quote");
    let ledger = w.sb.ledger();
    let transfer = ledger.iter().find_map(|e| match &e.event {
        LedgerEvent::TransferCreated {
            quote_id,
            quote_expires_at,
            ..
        } => Some((e.at, quote_id.clone(), *quote_expires_at)),
        _ => None,
    });
    let (at, quote_id, expires_at) = transfer.expect("one transfer");
    assert_ne!(quote_id, stale.id, "no transfer on the expired quote");
    assert!(
        at < expires_at,
        "the transfer was made before its quote expired"
    );
    assert_eq!(w.transfers(), 1);
}

#[tokio::test]
async fn a_rate_outside_the_guard_makes_no_transfer_and_names_the_rate_and_bound() {
    let w = World::new().await;
    w.sb.set_price("USDT", "NGN", dec!(1560), dec!(1500));
    let mut s = ngn(dec!(100000));
    s.guard.min_rate = Some(dec!(1550));
    s.max_requotes = 2;
    let id = w.create("guarded", s).await;
    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::Failed);
    let reason = w.run(&id).await.reason.unwrap();
    assert!(
        reason.contains("1500") && reason.contains("1550"),
        "{reason}"
    );
    assert_eq!(w.transfers(), 0);
    assert_eq!(w.quotes(), 3, "the first quote and two re-quotes");
}

#[tokio::test]
async fn a_drift_from_the_reference_price_is_refused() {
    let w = World::new().await;
    let mut s = ngn(dec!(100000));
    // The quote comes at the reference price, so a zero-drift guard passes and a
    // fee limit below the 100 NGN fee (0.0625 USDT) refuses.
    s.guard.max_drift_pct = Some(dec!(0));
    s.guard.max_fees = Some(dec!(0.05));
    s.max_requotes = 0;
    let id = w.create("fees", s).await;
    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::Failed);
    let reason = w.run(&id).await.reason.unwrap();
    assert!(
        reason.contains("0.0625") && reason.contains("0.05"),
        "{reason}"
    );
    assert_eq!(w.transfers(), 0);
}

#[tokio::test]
async fn a_name_enquiry_mismatch_creates_no_recipient_and_fails_clearly() {
    let w = World::new().await;
    let mut s = ngn(dec!(10000));
    s.recipient = RecipientSpec::Bank {
        bank_code: BANK.into(),
        account_number: ACCOUNT.into(),
        expected_name: "Grace Hopper".into(),
    };
    let id = w.create("mismatch", s).await;
    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::Failed);
    let reason = w.run(&id).await.reason.unwrap();
    assert!(
        reason.contains("mismatch")
            && reason.contains("ADA LOVELACE")
            && reason.contains("Grace Hopper"),
        "{reason}"
    );
    assert!(
        !reason.contains(ACCOUNT),
        "the account number is masked: {reason}"
    );
    assert_eq!((w.recipients(), w.quotes(), w.transfers()), (0, 0, 0));
}

#[tokio::test]
async fn an_amount_the_balance_cannot_cover_fails_without_a_quote() {
    let w = World::new().await;
    let id = w
        .create(
            "too-much",
            spec(Amount::Source {
                amount: dec!(20000),
            }),
        )
        .await;
    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::Failed);
    assert!(
        w.run(&id)
            .await
            .reason
            .unwrap()
            .contains("insufficient balance")
    );
    assert_eq!(w.quotes(), 0);
}

#[tokio::test]
async fn each_failure_status_ends_the_run_failed_with_the_status_recorded() {
    for (outcome, status) in [
        (TransferOutcome::Cancelled, "cancelled"),
        (TransferOutcome::FundsNotDelivered, "funds_not_delivered"),
        (TransferOutcome::FundsRefunded, "funds_refunded"),
    ] {
        // Transfers reach their last status at once, so the refund is what we observe.
        let config = SandboxConfig {
            transfer_step: Duration::zero(),
            ..fast()
        };
        let w = World::with(config, None).await;
        w.sb.push_transfer_outcome(outcome);
        let id = w.create(status, ngn(dec!(5000))).await;
        assert_eq!(
            w.drive(&w.pipeline("w"), &id).await,
            RunState::Failed,
            "{outcome:?}"
        );
        let run = w.run(&id).await;
        assert_eq!(run.transfer_status.as_deref(), Some(status), "{outcome:?}");
        assert!(run.reason.unwrap().contains(status));
        assert_eq!(w.transfers(), 1);
    }
}

#[tokio::test]
async fn a_two_step_quote_needs_a_human_and_makes_no_transfer() {
    let w = World::new().await;
    w.sb.update_behaviour(|b| b.two_step_from = Some(dec!(0)));
    let id = w.create("2fa", ngn(dec!(5000))).await;
    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::NeedsHuman);
    assert_eq!(w.transfers(), 0);
}

async fn a_lost_local_write_cannot_cause_a_second_payment(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    let id = w.create("amnesia", ngn(dec!(30000))).await;
    let p = w.pipeline("w");
    assert_eq!(w.drive(&p, &id).await, RunState::Settled);
    // The store forgets that a transfer was made (a restored backup, a lost write).
    let admin = sqlx::AnyPool::connect(&w.url).await.unwrap();
    sqlx::query("UPDATE runs SET state = 'quote_locked', transfer_id = NULL, transfer_status = NULL WHERE id = $1")
        .bind(id.as_str())
        .execute(&admin)
        .await
        .unwrap();
    assert_eq!(w.drive(&p, &id).await, RunState::Settled);
    assert_eq!(w.transfers(), 1, "reconciliation found the first transfer");
}

#[tokio::test]
async fn an_unknown_recipient_id_fails_the_run() {
    let w = World::new().await;
    let mut s = ngn(dec!(1000));
    s.recipient = RecipientSpec::Id {
        id: uuid::Uuid::new_v4().to_string(),
    };
    let id = w.create("ghost", s).await;
    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::Failed);
    assert!(w.run(&id).await.reason.unwrap().contains("does not exist"));
}

#[tokio::test]
async fn a_429_storm_completes_every_run_and_no_minute_exceeds_the_limits() {
    // Busha's documented limits, in the sandbox and in the pacer, and injected 429s on
    // top (the first three of each money-moving POST). Six payees with six new bank accounts need six name enquiries, which Busha
    // allows five a minute: the pacer must spread them over more than a minute.
    let config = SandboxConfig {
        transfer_step: Duration::zero(),
        ..SandboxConfig::default()
    };
    let w = World::with(config, None).await;
    // The storm is deterministic: the first three quote and transfer requests get 429.
    for endpoint in ["POST /v1/quotes", "POST /v1/transfers"] {
        w.sb.add_fault(Fault::new(endpoint, FaultKind::RateLimited).times(3));
    }
    let p = w.pipeline_with("storm", EndpointLimits::busha());
    let mut ids = Vec::new();
    for i in 0..6 {
        let account = format!("01234567{i:02}");
        w.sb.add_bank_account(BANK, &account, NAME);
        let mut s = ngn(dec!(1000));
        s.recipient = RecipientSpec::Bank {
            bank_code: BANK.into(),
            account_number: account,
            expected_name: NAME.into(),
        };
        ids.push(w.create(&format!("storm-{i}"), s).await);
    }
    let mut tasks = Vec::new();
    for id in ids {
        let (p, clock) = (p.clone(), w.clock.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                match p.execute(&id).await.unwrap() {
                    Executed::Finished(state) => return state,
                    // A rate limit is a wait on the wall clock.
                    Executed::Waiting(until) => {
                        let wait = (until - clock.now()).to_std().unwrap_or_default();
                        tokio::time::sleep(wait).await;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), RunState::Settled);
    }
    assert_eq!((w.recipients(), w.transfers()), (6, 6));
    if std::env::var("STORM_DEBUG").is_ok() {
        let t0 = w.sb.requests()[0].at;
        for r in w.sb.requests() {
            eprintln!(
                "{:>8} {} {}",
                (r.at - t0).num_milliseconds(),
                r.status,
                r.endpoint
            );
        }
    }
    assert_eq!(
        w.sb.requests().iter().filter(|r| r.status == 429).count(),
        6,
        "the storm happened: three 429s on quotes and three on transfers"
    );
    let limits = RateLimits::busha();
    let requests = w.sb.requests();
    let mut endpoints: Vec<&str> = requests.iter().map(|r| r.endpoint.as_str()).collect();
    endpoints.sort();
    endpoints.dedup();
    for endpoint in endpoints {
        let times: Vec<_> = requests
            .iter()
            .filter(|r| r.endpoint == endpoint && r.status != 429)
            .map(|r| r.at)
            .collect();
        let limit = limits.limit_for(endpoint) as usize;
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::seconds(60))
                .count();
            assert!(
                in_window <= limit,
                "{endpoint}: {in_window} requests in the minute from {t}, limit {limit}"
            );
        }
    }
    let enquiries: Vec<_> = requests
        .iter()
        .filter(|r| r.endpoint.ends_with("resolve-bank-account") && r.status != 429)
        .collect();
    assert!(
        enquiries.last().unwrap().at - enquiries[0].at >= Duration::seconds(60),
        "the sixth enquiry waited for the minute"
    );
}

/// A quote request that Busha answers with 429 (or that our pacer holds back) created
/// nothing: it uses up no re-quote, so a large batch at Busha's limits never fails for
/// pacing. Here the run allows no re-quote at all and meets three 429s first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_quote_requests_use_up_no_requote() {
    let w = World::new().await;
    w.sb.add_fault(Fault::new("POST /v1/quotes", FaultKind::RateLimited).times(3));
    let p = w.pipeline("w");
    let mut s = ngn(dec!(1000));
    s.max_requotes = 0;
    let id = w.create("paced", s).await;
    assert_eq!(
        w.drive(&p, &id).await,
        RunState::Settled,
        "{:?}",
        w.run(&id).await.reason
    );
    let run = w.run(&id).await;
    assert_eq!(
        run.quote_attempt, 1,
        "one quote attempt, after three refusals"
    );
    assert_eq!(run.quote.unwrap().reference, id.quote_reference(1));
    assert_eq!((w.quotes(), w.transfers()), (1, 1));
    let refused =
        w.sb.requests()
            .iter()
            .filter(|r| r.endpoint == "POST /v1/quotes" && r.status == 429)
            .count();
    assert_eq!(refused, 3);
}

// The exactly-once suite on both backends.
crate::on_both_backends!(
    a_bank_payout_resolves_quotes_transfers_and_settles_with_an_audit_trail,
    a_crash_at_any_step_boundary_still_pays_exactly_once,
    two_executors_started_at_once_produce_one_recipient_one_quote_one_transfer,
    responses_dropped_after_commit_create_no_duplicates,
    a_quote_that_expires_before_the_transfer_is_replaced_and_never_used,
    a_lost_local_write_cannot_cause_a_second_payment,
);
