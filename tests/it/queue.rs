//! The dispatcher's bookkeeping in the store, on both backends: what is sendable, the
//! window's count, re-dispatch after pickup, after a lost message and after the
//! timeout. And the queue's message key.

use chrono::{Duration, Utc};
use rust_decimal::dec;
use treasury::money::Currency;
use treasury::queue::Dispatch;
use treasury::runs::{Amount, PayoutSpec, RateGuard, RecipientSpec, Run, RunId};
use treasury::store::Claimed;

use crate::backends::TestStore;
use crate::on_both_backends;

fn spec() -> PayoutSpec {
    PayoutSpec {
        grant: "acme".into(),
        source_currency: Currency::new("USDT").unwrap(),
        target_currency: Currency::new("NGN").unwrap(),
        amount: Amount::Target { amount: dec!(1000) },
        recipient: RecipientSpec::Bank {
            bank_code: "000013".into(),
            account_number: "0123456789".into(),
            expected_name: "Ada Lovelace".into(),
        },
        guard: RateGuard::default(),
        max_requotes: 3,
        limits: Default::default(),
        approval: None,
        sweep: None,
    }
}

async fn create(t: &TestStore, occurrence: &str, at: chrono::DateTime<Utc>) -> RunId {
    let run = Run::new("payout", occurrence, "v1", spec(), false, at);
    let entry = treasury::audit::NewAuditEntry::new("test", "run.created", serde_json::json!({}))
        .run(run.id.as_str());
    assert!(t.store.create_run(&run, entry).await.unwrap());
    run.id
}

fn ids(c: &[Claimed]) -> Vec<(RunId, i64)> {
    let mut v: Vec<_> = c.iter().map(|c| (c.run_id.clone(), c.generation)).collect();
    v.sort();
    v
}

async fn dispatch_bookkeeping(t: TestStore) {
    let s = &t.store;
    let t0 = Utc::now();
    let timeout = Duration::minutes(10);
    let a = create(&t, "a", t0 - Duration::seconds(3)).await;
    let b = create(&t, "b", t0 - Duration::seconds(2)).await;
    let c = create(&t, "c", t0 - Duration::seconds(1)).await;
    let later = create(&t, "later", t0 + Duration::hours(1)).await;

    // Oldest due first, within the limit; a sent run is not sent twice while queued.
    let first = s.claim_dispatches(t0, 2, timeout).await.unwrap();
    assert_eq!(ids(&first), vec![(a.clone(), 1), (b.clone(), 1)]);
    assert_eq!(s.undelivered_count(t0 - timeout).await.unwrap(), 2);
    let second = s.claim_dispatches(t0, 10, timeout).await.unwrap();
    assert_eq!(ids(&second), vec![(c.clone(), 1)], "not `later`: not due");
    assert!(
        s.claim_dispatches(t0, 10, timeout)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.undelivered_count(t0 - timeout).await.unwrap(), 3);

    // Picked up (the lease bumps the fence) and released: sendable again, generation 2.
    let (lease, _) = s
        .acquire_run(&a, "w", t0, Duration::seconds(30))
        .await
        .unwrap()
        .unwrap();
    assert!(
        s.claim_dispatches(t0, 10, timeout)
            .await
            .unwrap()
            .is_empty(),
        "leased: not sendable"
    );
    s.release_run(&lease).await.unwrap();
    assert_eq!(s.undelivered_count(t0 - timeout).await.unwrap(), 2);
    let again = s.claim_dispatches(t0, 10, timeout).await.unwrap();
    assert_eq!(ids(&again), vec![(a.clone(), 2)]);

    // A lost message: recovery forgets the dispatch, the next claim resends it.
    let undelivered = s
        .undelivered(t0 - timeout, t0 + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(
        ids(&undelivered),
        vec![(a.clone(), 2), (b.clone(), 1), (c.clone(), 1)]
    );
    assert!(
        !s.forget_dispatch(&b, 7).await.unwrap(),
        "not its latest generation"
    );
    assert!(s.forget_dispatch(&b, 1).await.unwrap());
    let resent = s.claim_dispatches(t0, 10, timeout).await.unwrap();
    assert_eq!(ids(&resent), vec![(b.clone(), 2)]);

    // Undelivered past the timeout: sent again under a new generation.
    let late = t0 + timeout + Duration::seconds(1);
    let timed_out = s.claim_dispatches(late, 3, timeout).await.unwrap();
    assert_eq!(
        ids(&timed_out),
        vec![(a.clone(), 3), (b.clone(), 3), (c.clone(), 2)]
    );
    assert_eq!(s.dispatch_generation(&later).await.unwrap(), Some(0));
}

on_both_backends!(dispatch_bookkeeping);

#[test]
fn a_dispatch_key_names_the_run_and_the_generation() {
    let run = RunId::derive("payout", "2026-01-05T09:00:00Z");
    let d = Dispatch::new(run.clone(), 42);
    assert_eq!(d.key(), format!("{run}#42"));
    assert_eq!(Dispatch::parse_key(&d.key()), Some(d));
    assert_eq!(Dispatch::parse_key("run_nothex#1"), None);
    assert_eq!(Dispatch::parse_key(run.as_str()), None);
}
