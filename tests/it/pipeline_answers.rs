//! Busha's answers checked against the question (invariant 10), through the sandbox's
//! faults that answer wrongly: a quote in other currencies or amounts, a transfer
//! list that ignores its filter, a transfer for another quote, one transfer claimed
//! by two runs. Nothing is locked, adopted or paid on an answer that was not verified.

use std::sync::Arc;

use rust_decimal::dec;
use serde_json::json;
use treasury::pipeline::{CrashPoints, PipelineError};
use treasury::runs::{PendingOp, RunState};
use treasury::sandbox::{Fault, FaultKind, LedgerEvent, Rewrite};

use crate::backends::TestStore;
use crate::pipeline_world::*;

fn rewrite(endpoint: &str, pointer: &str, value: serde_json::Value) -> Fault {
    Fault::new(endpoint, FaultKind::Rewrite(Rewrite::new(pointer, value)))
}

async fn audit_actions(w: &World, id: &treasury::runs::RunId) -> Vec<String> {
    w.store
        .audit_entries(None, Some(id.as_str()))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

/// Abandons the execution right before `POST /v1/transfers`, with the quote locked.
struct StopBeforeTransfer;

impl CrashPoints for StopBeforeTransfer {
    fn crash_here(&self, point: &str) -> bool {
        point == "before POST /v1/transfers"
    }
}

async fn a_quote_in_other_currencies_is_never_locked_or_paid(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    // Asked: 13 USDT -> NGN. Answered: 100 BTC -> 100 BTC.
    for (pointer, value) in [
        ("/data/source_currency", json!("BTC")),
        ("/data/target_currency", json!("BTC")),
        ("/data/source_amount", json!("100")),
        ("/data/target_amount", json!("100")),
    ] {
        w.sb.add_fault(rewrite("POST /v1/quotes", pointer, value));
    }
    let id = w
        .create(
            "wrong-quote",
            spec(treasury::runs::Amount::Source { amount: dec!(13) }),
        )
        .await;

    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::NeedsHuman);

    let run = w.run(&id).await;
    let reason = run.reason.unwrap();
    assert!(reason.contains("provider fault"), "{reason}");
    assert!(
        reason.contains("source currency: asked USDT, got BTC"),
        "{reason}"
    );
    assert!(run.quote.is_none(), "nothing was locked");
    assert_eq!(w.transfers(), 0);
    assert!(
        audit_actions(&w, &id)
            .await
            .contains(&"run.provider_fault".to_string())
    );
}

#[tokio::test]
async fn a_quote_off_by_more_than_its_fees_is_refused() {
    let w = World::new().await;
    // 10 USDT at 1,600 with a 100 NGN fee is 15,900 NGN; 15,700 is 100 NGN short of
    // what its own rate and fees allow.
    w.sb.add_fault(rewrite(
        "POST /v1/quotes",
        "/data/target_amount",
        json!("15700"),
    ));
    let id = w
        .create(
            "short-quote",
            spec(treasury::runs::Amount::Source { amount: dec!(10) }),
        )
        .await;

    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::NeedsHuman);

    let reason = w.run(&id).await.reason.unwrap();
    assert!(
        reason.contains("NGN amount 15700 does not follow from 10 USDT"),
        "{reason}"
    );
    assert_eq!(w.transfers(), 0);
}

#[tokio::test]
async fn a_quote_within_its_fees_is_locked() {
    // The honest answer, for contrast: the band admits it.
    let w = World::new().await;
    let id = w
        .create(
            "honest",
            spec(treasury::runs::Amount::Source { amount: dec!(10) }),
        )
        .await;
    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::Settled);
    assert_eq!(w.run(&id).await.quote.unwrap().target_amount, dec!(15900));
}

async fn a_transfer_list_that_ignores_its_filter_is_never_adopted(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    let p = w.pipeline("w");
    let first = w.create("first", ngn(dec!(30000))).await;
    assert_eq!(w.drive(&p, &first).await, RunState::Settled);
    let foreign = w.run(&first).await.transfer_id.unwrap();

    // From now on the server ignores `quote_id`: every run sees the foreign transfer.
    w.sb.add_fault(Fault::new("GET /v1/transfers", FaultKind::IgnoreFilters));
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(w.create(&format!("second-{i}"), ngn(dec!(30000))).await);
    }
    for id in &ids {
        assert_eq!(w.drive(&p, id).await, RunState::Settled);
    }

    let mut held: Vec<String> = Vec::new();
    for id in &ids {
        let t = w.run(id).await.transfer_id.unwrap();
        assert_ne!(t, foreign, "a run adopted another run's transfer");
        held.push(t);
    }
    held.sort();
    held.dedup();
    assert_eq!(held.len(), 3, "each run holds its own transfer");
    assert_eq!(w.transfers(), 4);
    assert!(w.count(|e| matches!(e, LedgerEvent::FiltersIgnored { .. })) > 0);
}

async fn a_transfer_answered_for_another_quote_stops_the_run_and_blocks_a_retry(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    w.sb.add_fault(rewrite(
        "POST /v1/transfers",
        "/data/quote_id",
        json!("QUO_someone_else"),
    ));
    let id = w.create("other-quote", ngn(dec!(30000))).await;

    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::NeedsHuman);

    let run = w.run(&id).await;
    let reason = run.reason.clone().unwrap();
    assert!(reason.contains("quote: asked"), "{reason}");
    assert!(reason.contains("QUO_someone_else"), "{reason}");
    // The transfer request may have paid: its intent stays, so no retry can pay again
    // without first finding out.
    assert_eq!(run.pending, Some(PendingOp::CreateTransfer));
    assert!(run.transfer_id.is_none());
    let who = treasury::guards::Operator::parse("olu").unwrap();
    let retried = w.store.retry_run(&id, &who, w.clock.now()).await.unwrap();
    assert!(retried.is_err(), "{retried:?}");
    assert_eq!(w.transfers(), 1);
}

async fn one_transfer_is_never_held_by_two_runs(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    let p = w.pipeline("w");
    let first = w.create("first", ngn(dec!(30000))).await;
    assert_eq!(w.drive(&p, &first).await, RunState::Settled);
    let taken = w.run(&first).await.transfer_id.unwrap();

    // The second run, for the same amount, stops with its quote locked.
    let second = w.create("second", ngn(dec!(30000))).await;
    let stopped = p
        .clone()
        .with_crash_points(Arc::new(StopBeforeTransfer))
        .execute(&second)
        .await;
    assert!(
        matches!(stopped, Err(PipelineError::Crashed(_))),
        "{stopped:?}"
    );
    let quote = w.run(&second).await.quote.unwrap();
    // Busha now answers the second run's lookup with the first run's transfer,
    // relabelled as made from the second run's quote (same amounts: it passes the
    // quote check). Only the record of held transfers can tell.
    w.sb.add_fault(Fault::new("GET /v1/transfers", FaultKind::IgnoreFilters));
    w.sb.add_fault(rewrite(
        "GET /v1/transfers",
        "/data/*/quote_id",
        json!(quote.id),
    ));
    w.clock
        .advance(p.takeover_after() + chrono::Duration::seconds(1));

    assert_eq!(w.drive(&p, &second).await, RunState::NeedsHuman);

    let run = w.run(&second).await;
    assert!(run.transfer_id.is_none());
    let reason = run.reason.unwrap();
    assert!(
        reason.contains(&format!("transfer {taken} is already held by run {first}")),
        "{reason}"
    );
    assert_eq!(
        w.store.transfer_holder(&taken).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(w.transfers(), 1);
}

crate::on_both_backends!(
    a_quote_in_other_currencies_is_never_locked_or_paid,
    a_transfer_list_that_ignores_its_filter_is_never_adopted,
    a_transfer_answered_for_another_quote_stops_the_run_and_blocks_a_retry,
    one_transfer_is_never_held_by_two_runs,
);
