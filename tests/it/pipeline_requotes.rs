//! Re-quotes and sweeps: only a quote that existed and was refused or went stale uses
//! up a re-quote (crashes and 503s do not, and the same reference is asked again);
//! a sweep that waited never leaves less than `keep`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rust_decimal::{Decimal, dec};
use treasury::pipeline::{CrashPoints, Executed, Pipeline};
use treasury::runs::{Amount, PayoutSpec, RunId, RunState, SweepBound};
use treasury::sandbox::{Fault, FaultKind, LedgerEvent};

use crate::backends::TestStore;
use crate::pipeline_world::*;

/// Crashes the first `times` executions that reach `point`.
struct CrashTimes {
    point: &'static str,
    left: AtomicUsize,
}

impl CrashPoints for CrashTimes {
    fn crash_here(&self, point: &str) -> bool {
        point == self.point
            && self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
    }
}

/// Drives a run whose executions may crash: a crashed executor's lease is waited out.
async fn drive_through_crashes(w: &World, p: &Pipeline, id: &RunId) -> RunState {
    for _ in 0..200 {
        match p.execute(id).await {
            Ok(Executed::Finished(state)) => return state,
            Ok(Executed::Waiting(until)) => w.clock.set(until),
            Err(_) => w
                .clock
                .advance(p.takeover_after() + chrono::Duration::seconds(1)),
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    panic!("run {id} did not finish");
}

fn references(w: &World) -> Vec<String> {
    w.sb.ledger()
        .into_iter()
        .filter_map(|e| match e.event {
            LedgerEvent::QuoteCreated { reference, .. } => Some(reference),
            _ => None,
        })
        .collect()
}

fn no_requotes(mut s: PayoutSpec) -> PayoutSpec {
    s.max_requotes = 0;
    s
}

async fn failed_quote_requests_use_up_no_requote(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    // Three 503s (outcome unknown, reconciled: nothing was created), then a crash
    // between the intent and the send, with no re-quote allowed at all.
    w.sb.add_fault(Fault::new("POST /v1/quotes", FaultKind::ServerError(503)).times(3));
    let id = w.create("unlucky", no_requotes(ngn(dec!(30000)))).await;
    let p = w.pipeline("w").with_crash_points(Arc::new(CrashTimes {
        point: "before POST /v1/quotes",
        left: AtomicUsize::new(1),
    }));

    assert_eq!(drive_through_crashes(&w, &p, &id).await, RunState::Settled);

    assert_eq!(
        references(&w),
        vec![id.quote_reference(1)],
        "one quote, the first reference"
    );
    assert_eq!(w.transfers(), 1);
}

async fn refused_quotes_use_up_requotes_and_the_reason_names_the_refusal(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    let mut s = ngn(dec!(30000));
    s.guard.min_rate = Some(dec!(5000));
    s.max_requotes = 1;
    let id = w.create("picky", s).await;

    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::Failed);

    let reason = w.run(&id).await.reason.unwrap();
    assert!(
        reason.contains("rate 1600 is below the minimum rate 5000"),
        "{reason}"
    );
    assert!(reason.contains("2 quotes"), "{reason}");
    assert_eq!(
        references(&w),
        vec![id.quote_reference(1), id.quote_reference(2)]
    );
    assert_eq!(w.transfers(), 0);
}

fn sweep(approved: Decimal, min_amount: Option<Decimal>) -> PayoutSpec {
    let mut s = spec(Amount::Source { amount: approved });
    s.sweep = Some(SweepBound {
        keep: dec!(2000),
        min_amount,
    });
    s
}

/// Stops the execution right before `POST /v1/transfers`, once.
fn stop_before_transfer(w: &World) -> Pipeline {
    let _ = w;
    w.pipeline("w").with_crash_points(Arc::new(CrashTimes {
        point: "before POST /v1/transfers",
        left: AtomicUsize::new(1),
    }))
}

async fn a_sweep_quotes_at_most_what_leaves_keep(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    // Fired for 1,000 USDT; other payouts left 2,600 by the time it runs.
    let id = w.create("sweep", sweep(dec!(1000), None)).await;
    w.sb.set_balance(&w.user.id, "USDT", dec!(2600));

    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::Settled);

    assert_eq!(w.run(&id).await.quote.unwrap().source_amount, dec!(600));
    assert_eq!(w.sb.balance(&w.user.id, "USDT"), Some(dec!(2000)));
}

async fn a_locked_sweep_quote_that_no_longer_fits_is_abandoned(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    w.sb.set_balance(&w.user.id, "USDT", dec!(3000));
    let id = w.create("sweep", sweep(dec!(1000), None)).await;
    let p = stop_before_transfer(&w);
    assert!(
        p.execute(&id).await.is_err(),
        "stopped with the quote locked"
    );
    assert_eq!(w.run(&id).await.quote.unwrap().source_amount, dec!(1000));

    // 700 USDT of other payouts go out while it waits.
    w.sb.set_balance(&w.user.id, "USDT", dec!(2300));
    w.clock
        .advance(p.takeover_after() + chrono::Duration::seconds(1));
    assert_eq!(drive_through_crashes(&w, &p, &id).await, RunState::Settled);

    let run = w.run(&id).await;
    assert_eq!(run.quote.unwrap().source_amount, dec!(300));
    assert_eq!(w.sb.balance(&w.user.id, "USDT"), Some(dec!(2000)));
    assert_eq!(w.transfers(), 1);
    let stale: Vec<_> = w
        .store
        .audit_entries(None, Some(id.as_str()))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "run.quote.stale")
        .collect();
    assert_eq!(stale.len(), 1);
    assert!(
        stale[0].payload.to_string().contains("keep 2000"),
        "{}",
        stale[0].payload
    );
}

async fn a_sweep_the_balance_keeps_falling_under_ends_skipped_not_failed(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    w.sb.set_balance(&w.user.id, "USDT", dec!(3000));
    let id = w
        .create("sweep", no_requotes(sweep(dec!(1000), None)))
        .await;
    let p = stop_before_transfer(&w);
    assert!(
        p.execute(&id).await.is_err(),
        "stopped with the quote locked"
    );

    // A busy wallet: other payouts spend while the sweep holds its quote, and no
    // re-quote is left.
    w.sb.set_balance(&w.user.id, "USDT", dec!(2900));
    w.clock
        .advance(p.takeover_after() + chrono::Duration::seconds(1));
    assert_eq!(
        drive_through_crashes(&w, &p, &id).await,
        RunState::Cancelled
    );

    let reason = w.run(&id).await.reason.unwrap();
    assert!(reason.starts_with("sweep skipped"), "{reason}");
    assert!(reason.contains("kept falling"), "{reason}");
    assert!(reason.contains("only 900 USDT may go now"), "{reason}");
    assert_eq!(w.transfers(), 0, "the abandoned quote is never used");
    assert_eq!(w.sb.balance(&w.user.id, "USDT"), Some(dec!(2900)));
}

#[tokio::test]
async fn a_sweep_below_its_minimum_is_skipped_with_the_reason() {
    let w = World::new().await;
    w.sb.set_balance(&w.user.id, "USDT", dec!(2300));
    let id = w.create("sweep", sweep(dec!(1000), Some(dec!(500)))).await;

    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::Cancelled);

    let reason = w.run(&id).await.reason.unwrap();
    assert!(reason.starts_with("sweep skipped"), "{reason}");
    assert!(reason.contains("below the minimum sweep 500"), "{reason}");
    assert_eq!(w.quotes(), 0);
}

crate::on_both_backends!(
    failed_quote_requests_use_up_no_requote,
    refused_quotes_use_up_requotes_and_the_reason_names_the_refusal,
    a_sweep_quotes_at_most_what_leaves_keep,
    a_locked_sweep_quote_that_no_longer_fits_is_abandoned,
    a_sweep_the_balance_keeps_falling_under_ends_skipped_not_failed,
);
