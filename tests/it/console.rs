//! The two-person rule in a real browser (headless Chromium over WebDriver), against
//! the assembled service and the Busha sandbox: two approvers in two browser sessions,
//! the owner refused, one account counted once; a batch approved from its summary.

use std::time::Duration;

use treasury::config::Secret;
use treasury::operators::Role;
use treasury::operators::secrets::hash_password;
use treasury::runs::RunState;
use treasury::sandbox::LedgerEvent;
use treasury::store::{OperatorChange, RunFilter};

use crate::console_support::{
    App, Driver, body_text, click, screenshot, sign_in, sign_in_with, sign_out,
};
use crate::console_world::{approve, fire, job, until, world};
use crate::operators_world::{ROOT, account};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_approvers_in_two_browsers_release_a_run_that_settles_and_the_owner_is_refused() {
    let w = world().await;
    let store = w.store();
    for name in ["finance-lead", "alice", "bob"] {
        account(&store, &w.clock, name, Role::Approver).await;
    }
    let app = App::start(&w, &job(true)).await;
    fire(&w, &app, "evt-approve", "60").await;
    let run = until(&w, chrono::Duration::zero(), |r| {
        r.state == RunState::AwaitingApproval
    })
    .await;
    let driver = Driver::start().await;
    let first = driver.browser().await;

    // The job's owner, signed in, is refused.
    sign_in(&first, &app, "finance-lead").await;
    let inbox = body_text(&first).await;
    assert!(
        inbox.contains("payroll") && inbox.contains("0 of 2") && inbox.contains("******6789"),
        "{inbox}"
    );
    assert!(
        !inbox.contains("0123456789"),
        "the account number is masked"
    );
    let refused = approve(&first).await;
    assert!(
        refused.contains("finance-lead is the job's owner and may not approve"),
        "{refused}"
    );

    // Alice approves in the same browser after the owner signed out; twice counts once.
    first.goto(&app.url("/")).await.unwrap();
    sign_out(&first).await;
    sign_in(&first, &app, "alice").await;
    let recorded = approve(&first).await;
    assert!(recorded.contains("1 of 2 distinct approvers"), "{recorded}");
    first.goto(&app.url("/")).await.unwrap();
    let inbox = body_text(&first).await;
    assert!(
        inbox.contains("1 of 2") && inbox.contains("alice"),
        "{inbox}"
    );
    assert!(
        inbox.contains("60 USDT → at least 60000 NGN (min rate 1000)"),
        "{inbox}"
    );
    screenshot(&first, "console-inbox").await;
    // Readable on a phone: the same page at a phone's width.
    first.set_window_size(390, 844).await.unwrap();
    first.refresh().await.unwrap();
    screenshot(&first, "console-inbox-phone").await;
    first.set_window_size(1280, 900).await.unwrap();
    first
        .goto(&app.url(&format!("/runs/{}", run.id)))
        .await
        .unwrap();
    let again = approve(&first).await;
    assert!(
        again.contains("alice has already approved") && again.contains("counts once"),
        "{again}"
    );

    // An approver whose password an admin reset may not approve until it is changed.
    let erin = account(&store, &w.clock, "erin", Role::Approver).await;
    let root = account(&store, &w.clock, ROOT, Role::Admin).await;
    let one_time = "one-time password 456";
    let hash = hash_password(&Secret::new(one_time)).unwrap();
    let reset = OperatorChange::Password {
        hash,
        temporary: true,
    };
    store
        .change_operator(&erin, reset, &root, w.clock.now())
        .await
        .unwrap();
    first.goto(&app.url("/")).await.unwrap();
    sign_out(&first).await;
    let text = sign_in_with(&first, &app, "erin", one_time).await;
    assert!(text.contains("one-time password"), "{text}");
    let refused = approve(&first).await;
    assert!(
        refused.contains("operator erin has a one-time password"),
        "{refused}"
    );

    // Bob, in a second browser session, releases it.
    let second = driver.browser().await;
    sign_in(&second, &app, "bob").await;
    let released = approve(&second).await;
    // Both at the same instant of the test clock: the names come in either order.
    assert!(
        (released.contains("by alice and bob: it is due now")
            || released.contains("by bob and alice: it is due now")),
        "{released}"
    );

    // It settles against the sandbox, and its page shows the whole timeline.
    until(&w, chrono::Duration::seconds(1), |r| {
        r.state == RunState::Settled
    })
    .await;
    second
        .goto(&app.url(&format!("/runs/{}", run.id)))
        .await
        .unwrap();
    let page = body_text(&second).await;
    assert!(
        page.contains("State: settled")
            && page.contains("run.approved")
            && page.contains("transfer_id="),
        "{page}"
    );
    screenshot(&second, "console-run").await;

    // The grants page shows the grant; revoking asks first, then revokes at Busha.
    second.goto(&app.url("/grants")).await.unwrap();
    let grants = body_text(&second).await;
    assert!(
        grants.contains("acme") && grants.contains("active") && grants.contains("Reconnect"),
        "{grants}"
    );
    let confirm = click(&second, "tr[data-alias=acme] button").await;
    assert!(confirm.contains("Revoke acme"), "{confirm}");
    let revoked = click(&second, "#confirm-revoke").await;
    assert!(
        revoked.contains("Revoked acme (status revoked)"),
        "{revoked}"
    );
    assert_eq!(
        w.count(|e| matches!(e, LedgerEvent::TransferCreated { .. })),
        1
    );

    // The audit names each account once: the owner's and the repeat click left none.
    let approvals: Vec<String> = store
        .audit_entries(None, Some(run.id.as_str()))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "run.approved")
        .map(|e| e.actor)
        .collect();
    assert_eq!(approvals, ["operator:alice", "operator:bob"]);
    first.close().await.unwrap();
    second.close().await.unwrap();
    app.stop().await;
    assert!(store.verify_audit(None).await.unwrap().is_ok());
}

/// A scheduled batch: two payees at 09:05 UTC, each run needing one approval.
const BATCH: &str = r#"
id = "batch"
grant = "acme"
owner = "finance-lead"
source_currency = "USDT"
target_currency = "NGN"

[guard]
min_rate = "1000"

[approval]
above = "10"
approvers = 1

[schedule]
cron = "5 9 * * *"
timezone = "UTC"

[[payees]]
key = "ada"
source_amount = "20"
bank_code = "000013"
account_number = "0123456789"
account_name = "ADA LOVELACE"

[[payees]]
key = "bola"
source_amount = "30"
bank_code = "000013"
account_number = "2222222222"
account_name = "BOLA ADE"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_occurrence_is_approved_from_its_summary_in_the_inbox_and_both_runs_settle() {
    let w = world().await;
    w.sb.add_bank_account("000013", "2222222222", "BOLA ADE");
    let store = w.store();
    account(&store, &w.clock, "alice", Role::Approver).await;
    let app = App::start(&w, BATCH).await;
    // The scheduler creates the occurrence's two runs once its time comes.
    let mut runs = Vec::new();
    for _ in 0..200 {
        runs = store.list_runs(&RunFilter::default()).await.unwrap();
        if runs.len() == 2 {
            break;
        }
        w.clock.advance(chrono::Duration::seconds(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(runs.len(), 2, "the batch's two runs were created");
    assert!(runs.iter().all(|r| r.state == RunState::AwaitingApproval));
    let driver = Driver::start().await;
    let b = driver.browser().await;
    sign_in(&b, &app, "alice").await;
    let inbox = body_text(&b).await;
    assert!(
        inbox.contains("Occurrence 2026-03-02T09:05:00Z of batch: 2 run(s) awaiting approval")
            && inbox.contains("Total: 50 USDT")
            && inbox.contains("New payees (2)"),
        "{inbox}"
    );
    let done = click(&b, "form.batch button").await;
    assert!(
        done.contains("2 run(s) now due, 0 waiting for more approvers, 0 refused"),
        "{done}"
    );
    for _ in 0..400 {
        let runs = store.list_runs(&RunFilter::default()).await.unwrap();
        if runs.iter().all(|r| r.state == RunState::Settled) {
            break;
        }
        w.clock.advance(chrono::Duration::seconds(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let states: Vec<RunState> = store
        .list_runs(&RunFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(states, [RunState::Settled, RunState::Settled]);
    b.close().await.unwrap();
    app.stop().await;
}
