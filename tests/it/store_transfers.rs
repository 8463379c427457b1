//! The record of every transfer a run ever held, on SQLite and PostgreSQL: one
//! transfer id belongs to one run, ever; a run keeps every transfer it held across
//! retries; and two runs that claim one transfer through an edited row are found.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::dec;
use treasury::audit::NewAuditEntry;
use treasury::money::Currency;
use treasury::runs::{Amount, PayoutSpec, RecipientSpec, Run, RunState};
use treasury::store::{NewHeldTransfer, Store, StoreError};

use crate::backends::TestStore;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

async fn create(store: &Store, occ: &str) -> Run {
    let spec = PayoutSpec {
        grant: "acme".into(),
        source_currency: Currency::new("USDT").unwrap(),
        target_currency: Currency::new("NGN").unwrap(),
        amount: Amount::Source { amount: dec!(10) },
        recipient: RecipientSpec::Id { id: "RCP_1".into() },
        guard: Default::default(),
        max_requotes: 3,
        limits: Default::default(),
        approval: None,
        sweep: None,
    };
    let run = Run::new("payout", occ, "v1", spec, false, now());
    let e = NewAuditEntry::new("test", "run.created", serde_json::json!({})).run(run.id.as_str());
    assert!(store.create_run(&run, e).await.unwrap());
    run
}

fn held(transfer: &str, quote: &str) -> Option<NewHeldTransfer> {
    Some(NewHeldTransfer {
        transfer_id: transfer.into(),
        quote_id: quote.into(),
        how: "created".into(),
    })
}

/// Saves `run` as holding `transfer`, under a fresh lease.
async fn hold(store: &Store, run: &Run, transfer: &str, quote: &str) -> Result<(), StoreError> {
    let (mut lease, mut row) = store
        .acquire_run(&run.id, "w", now(), Duration::minutes(2))
        .await
        .unwrap()
        .expect("leasable");
    row.state = RunState::TransferSubmitted;
    row.transfer_id = Some(transfer.into());
    let saved = store
        .save_run_holding(
            &mut lease,
            &row,
            held(transfer, quote),
            vec![],
            now(),
            Duration::minutes(2),
        )
        .await;
    store.release_run(&lease).await.unwrap();
    saved
}

async fn a_transfer_id_belongs_to_one_run_ever(t: TestStore) {
    let store = &t.store;
    let (a, b) = (create(store, "a").await, create(store, "b").await);

    hold(store, &a, "TRF_1", "QUO_1").await.unwrap();
    let second = hold(store, &b, "TRF_1", "QUO_2").await.unwrap_err();

    assert!(
        matches!(&second, StoreError::TransferHeld { transfer_id, holder } if transfer_id == "TRF_1" && holder == a.id.as_str()),
        "{second}"
    );
    // Nothing of the refused save was written.
    let b_now = store.get_run(&b.id).await.unwrap().unwrap();
    assert_eq!(b_now.transfer_id, None);
    assert_eq!(b_now.state, RunState::Created);
    assert_eq!(
        store.transfer_holder("TRF_1").await.unwrap(),
        Some(a.id.clone())
    );
    // The same run recording its own transfer again is no conflict.
    hold(store, &a, "TRF_1", "QUO_1").await.unwrap();
}

async fn a_run_keeps_every_transfer_it_ever_held(t: TestStore) {
    let store = &t.store;
    let run = create(store, "retried").await;

    hold(store, &run, "TRF_refunded", "QUO_1").await.unwrap();
    hold(store, &run, "TRF_settled", "QUO_2").await.unwrap();

    let held: Vec<String> = store
        .transfers_of_run(&run.id)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.transfer_id)
        .collect();
    assert_eq!(held.len(), 2);
    assert!(
        held.contains(&"TRF_refunded".to_string()) && held.contains(&"TRF_settled".to_string())
    );
    assert_eq!(
        store
            .held_transfers(now() - Duration::days(1))
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(store.shared_transfers().await.unwrap().is_empty());
}

async fn two_runs_claiming_one_transfer_through_an_edited_row_are_found(t: TestStore) {
    let store = &t.store;
    let (a, b) = (create(store, "a").await, create(store, "b").await);
    hold(store, &a, "TRF_1", "QUO_1").await.unwrap();

    // Someone with write access points run b at a's transfer.
    let admin = sqlx::AnyPool::connect(&t.url).await.unwrap();
    sqlx::query("UPDATE runs SET transfer_id = 'TRF_1' WHERE id = $1")
        .bind(b.id.as_str())
        .execute(&admin)
        .await
        .unwrap();

    let shared = store.shared_transfers().await.unwrap();
    assert_eq!(shared.len(), 1, "{shared:?}");
    assert_eq!(shared[0].transfer_id, "TRF_1");
    let mut runs = shared[0].runs.clone();
    runs.sort();
    let mut expected = vec![a.id.clone(), b.id.clone()];
    expected.sort();
    assert_eq!(runs, expected);
}

crate::on_both_backends!(
    a_transfer_id_belongs_to_one_run_ever,
    a_run_keeps_every_transfer_it_ever_held,
    two_runs_claiming_one_transfer_through_an_edited_row_are_found,
);
