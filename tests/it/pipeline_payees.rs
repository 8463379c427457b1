//! Who gets paid: every path that yields a recipient (remembered, found, adopted
//! after an unknown create, created) checks the holder's name against the job's
//! before any quote is locked; two runs paying one new account create one recipient;
//! and recipient ids in both of Busha's forms work.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use futures_util::future::BoxFuture;
use rust_decimal::dec;
use serde_json::json;
use tokio::sync::Notify;
use treasury::pipeline::{CrashPoints, Executed};
use treasury::runs::{RecipientSpec, RunId, RunState};
use treasury::sandbox::{Fault, FaultKind, RecipientIds, Rewrite, SavedRecipient};

use crate::backends::TestStore;
use crate::pipeline_world::*;

const DECLARED: &str = "SOSANYA DICKSON OLUMIDE";

fn paying(account: &str, name: &str) -> treasury::runs::PayoutSpec {
    let mut s = ngn(dec!(20000));
    s.recipient = RecipientSpec::Bank {
        bank_code: BANK.into(),
        account_number: account.into(),
        expected_name: name.into(),
    };
    s
}

fn assert_names_both(reason: &str, holder: &str) {
    for part in [holder, DECLARED, "******6789", "bank 000013"] {
        assert!(reason.contains(part), "{part:?} missing from {reason:?}");
    }
    assert!(
        !reason.contains(ACCOUNT),
        "the account number is shown in full: {reason}"
    );
}

#[tokio::test]
async fn a_remembered_recipient_of_another_holder_fails_the_run_before_any_quote() {
    let w = World::new().await;
    let p = w.pipeline("w");
    let first = w.create("first", paying(ACCOUNT, "Ada Lovelace")).await;
    assert_eq!(w.drive(&p, &first).await, RunState::Settled);
    assert_eq!(w.run(&first).await.recipient_name.as_deref(), Some(NAME));

    // A job that mistyped its payee's account lands on Ada's remembered recipient.
    let second = w.create("second", paying(ACCOUNT, DECLARED)).await;
    assert_eq!(w.drive(&p, &second).await, RunState::Failed);

    assert_names_both(&w.run(&second).await.reason.unwrap(), NAME);
    assert_eq!(w.quotes(), 1, "no quote was locked for the wrong payee");
}

#[tokio::test]
async fn a_found_recipient_of_another_holder_fails_the_run() {
    let w = World::new().await;
    w.sb.add_saved_recipient(
        &w.user.id,
        SavedRecipient {
            id: uuid::Uuid::new_v4().to_string(),
            currency: "NGN".into(),
            bank_code: BANK.into(),
            account_number: ACCOUNT.into(),
            account_name: "ADA LOVELACE".into(),
        },
    );
    let id = w.create("found", paying(ACCOUNT, DECLARED)).await;

    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::Failed);

    assert_names_both(&w.run(&id).await.reason.unwrap(), "ADA LOVELACE");
    assert_eq!((w.recipients(), w.quotes()), (0, 0));
}

#[tokio::test]
async fn an_adopted_recipient_of_another_holder_fails_the_run() {
    let w = World::new().await;
    // The create lands, its answer is lost; the search then shows another holder.
    w.sb.add_fault(Fault::new("POST /v1/recipients", FaultKind::DropAfterCommit).times(1));
    w.sb.add_fault(Fault::new(
        "GET /v1/recipients",
        FaultKind::Rewrite(Rewrite::new("/data/*/account_name", json!("GRACE HOPPER"))),
    ));
    let mut s = paying(ACCOUNT, "Ada Lovelace");
    s.recipient = RecipientSpec::Bank {
        bank_code: BANK.into(),
        account_number: ACCOUNT.into(),
        expected_name: "Ada Lovelace".into(),
    };
    let id = w.create("adopted", s).await;

    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::Failed);

    let reason = w.run(&id).await.reason.unwrap();
    assert!(
        reason.contains("GRACE HOPPER") && reason.contains("Ada Lovelace"),
        "{reason}"
    );
    assert_eq!((w.recipients(), w.quotes()), (1, 0));
}

#[tokio::test]
async fn a_created_recipient_answered_under_another_name_fails_the_run() {
    let w = World::new().await;
    w.sb.add_fault(Fault::new(
        "POST /v1/recipients",
        FaultKind::Rewrite(Rewrite::new("/data/account_name", json!("GRACE HOPPER"))),
    ));
    let id = w.create("created", paying(ACCOUNT, "Ada Lovelace")).await;

    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::Failed);

    let reason = w.run(&id).await.reason.unwrap();
    assert!(reason.contains("GRACE HOPPER"), "{reason}");
    assert_eq!(w.quotes(), 0);
}

#[tokio::test]
async fn a_created_recipient_for_another_account_is_a_provider_fault() {
    let w = World::new().await;
    w.sb.add_fault(Fault::new(
        "POST /v1/recipients",
        FaultKind::Rewrite(Rewrite::new("/data/account_number", json!("9999996789"))),
    ));
    let id = w
        .create("other-account", paying(ACCOUNT, "Ada Lovelace"))
        .await;

    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::NeedsHuman);

    let reason = w.run(&id).await.reason.unwrap();
    assert!(
        reason.contains("provider fault") && reason.contains("account"),
        "{reason}"
    );
    assert!(!reason.contains("9999996789"), "masked: {reason}");
    assert_eq!(w.quotes(), 0);
}

/// Freezes an execution right before it creates a recipient, until released.
struct FreezeBeforeCreate(Arc<Notify>);

impl CrashPoints for FreezeBeforeCreate {
    fn crash_here(&self, _: &str) -> bool {
        false
    }
    fn pause_at(&self, point: &str) -> Option<BoxFuture<'static, ()>> {
        (point == "before POST /v1/recipients").then(|| {
            let release = self.0.clone();
            Box::pin(async move { release.notified().await }) as BoxFuture<'static, ()>
        })
    }
}

async fn wait_until_creating(w: &World, id: &RunId) {
    for _ in 0..400 {
        if w.run(id).await.pending == Some(treasury::runs::PendingOp::CreateRecipient) {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    panic!("the first run never started creating its recipient");
}

async fn two_runs_paying_one_new_account_create_one_recipient(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    let a = w.create("a", paying(ACCOUNT, "Ada Lovelace")).await;
    let b = w.create("b", paying(ACCOUNT, "Ada Lovelace")).await;
    let release = Arc::new(Notify::new());
    let first = w
        .pipeline("w1")
        .with_crash_points(Arc::new(FreezeBeforeCreate(release.clone())));
    let frozen = tokio::spawn({
        let a = a.clone();
        async move { first.execute(&a).await }
    });
    wait_until_creating(&w, &a).await;

    // The second run finds the account being resolved by the first, and waits.
    let second = w.pipeline("w2");
    let waited = second.execute(&b).await.unwrap();
    assert!(matches!(waited, Executed::Waiting(_)), "{waited:?}");
    assert!(w.run(&b).await.reason.unwrap().contains(a.as_str()));

    release.notify_one();
    assert!(!matches!(
        frozen.await.unwrap().unwrap(),
        Executed::LeaseLost
    ));
    assert_eq!(w.drive(&second, &a).await, RunState::Settled);
    assert_eq!(w.drive(&second, &b).await, RunState::Settled);

    assert_eq!(w.recipients(), 1);
    assert_eq!(w.run(&a).await.recipient_id, w.run(&b).await.recipient_id);
}

async fn recipient_ids_of_24_hex_digits_are_listed_not_fetched(t: TestStore) {
    let w = World::with(fast(), Some(&t)).await;
    w.sb.update_behaviour(|b| b.recipient_ids = RecipientIds::Hex24);
    let p = w.pipeline("w");
    let first = w.create("first", paying(ACCOUNT, "Ada Lovelace")).await;
    assert_eq!(w.drive(&p, &first).await, RunState::Settled);
    let rid = w.run(&first).await.recipient_id.unwrap();
    assert_eq!(rid.len(), 24, "{rid}");

    // Remembered, refused by id (the spec's UUID path), found in the list; the third
    // run does not ask by id again.
    for occ in ["second", "third"] {
        let id = w.create(occ, paying(ACCOUNT, "Ada Lovelace")).await;
        assert_eq!(w.drive(&p, &id).await, RunState::Settled);
        assert_eq!(w.run(&id).await.recipient_id.as_deref(), Some(rid.as_str()));
    }
    let by_id =
        w.sb.requests()
            .iter()
            .filter(|r| r.endpoint == "GET /v1/recipients/{id}")
            .count();
    assert_eq!(by_id, 1);
    assert_eq!(w.recipients(), 1);

    // A job that names a saved recipient by its 24-hex id pays it, and keeps the
    // holder's name as Busha reports it.
    let saved = "64ae8c26b1f5b4a1c2d3e4f5";
    w.sb.add_saved_recipient(
        &w.user.id,
        SavedRecipient {
            id: saved.into(),
            currency: "NGN".into(),
            bank_code: "000014".into(),
            account_number: "2233445566".into(),
            account_name: "GRACE HOPPER".into(),
        },
    );
    let mut s = ngn(dec!(20000));
    s.recipient = RecipientSpec::Id { id: saved.into() };
    let named = w.create("by-id", s).await;
    assert_eq!(w.drive(&p, &named).await, RunState::Settled);
    assert_eq!(
        w.run(&named).await.recipient_name.as_deref(),
        Some("GRACE HOPPER")
    );
    let seen = w.store.seen_recipient(GRANT, saved).await.unwrap().unwrap();
    assert_eq!(seen.holder_name.as_deref(), Some("GRACE HOPPER"));
    assert_eq!(seen.account_masked.as_deref(), Some("******5566"));
}

crate::on_both_backends!(
    two_runs_paying_one_new_account_create_one_recipient,
    recipient_ids_of_24_hex_digits_are_listed_not_fetched,
);

#[tokio::test]
async fn an_unreadable_recipient_of_another_account_does_not_stop_the_run() {
    let w = World::new().await;
    w.sb.add_saved_recipient(
        &w.user.id,
        SavedRecipient {
            id: uuid::Uuid::new_v4().to_string(),
            currency: "NGN".into(),
            bank_code: "000014".into(),
            account_number: "2233445566".into(),
            account_name: "GRACE HOPPER".into(),
        },
    );
    // The server ignores the account filter, and Grace's recipient carries a currency
    // we cannot read: it is not the payee's, so it is skipped.
    w.sb.add_fault(Fault::new("GET /v1/recipients", FaultKind::IgnoreFilters));
    w.sb.add_fault(Fault::new(
        "GET /v1/recipients",
        FaultKind::Rewrite(Rewrite::new("/data/*/currency", json!("USDT-TRC20"))),
    ));
    let id = w.create("skip", paying(ACCOUNT, "Ada Lovelace")).await;

    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::Settled);
}

#[tokio::test]
async fn an_unreadable_recipient_that_may_be_the_payees_stops_the_run_instead_of_looping() {
    let w = World::new().await;
    w.sb.add_saved_recipient(
        &w.user.id,
        SavedRecipient {
            id: uuid::Uuid::new_v4().to_string(),
            currency: "NGN".into(),
            bank_code: BANK.into(),
            account_number: ACCOUNT.into(),
            account_name: NAME.into(),
        },
    );
    w.sb.add_fault(Fault::new(
        "GET /v1/recipients",
        FaultKind::Rewrite(Rewrite::new("/data/*/currency", json!("USDT-TRC20"))),
    ));
    let id = w
        .create("maybe-ours", paying(ACCOUNT, "Ada Lovelace"))
        .await;

    assert_eq!(w.drive(&w.pipeline("w"), &id).await, RunState::NeedsHuman);

    let reason = w.run(&id).await.reason.unwrap();
    assert!(reason.contains("unreadable item"), "{reason}");
    assert!(!reason.contains(ACCOUNT), "{reason}");
    assert_eq!(w.recipients(), 0, "no second recipient for the account");
}

#[tokio::test]
async fn a_provider_error_in_a_runs_reason_names_the_status_and_request_id() {
    let w = World::new().await;
    w.sb.add_fault(Fault::new("GET /v1/recipients", FaultKind::ServerError(503)).times(1));
    let id = w.create("status", paying(ACCOUNT, "Ada Lovelace")).await;

    let waited = w.pipeline("w").execute(&id).await.unwrap();

    assert!(matches!(waited, Executed::Waiting(_)), "{waited:?}");
    let reason = w.run(&id).await.reason.unwrap();
    assert!(reason.contains("GET /v1/recipients"), "{reason}");
    assert!(reason.contains("HTTP 503"), "{reason}");
    assert!(reason.contains("request id req_"), "{reason}");
}
