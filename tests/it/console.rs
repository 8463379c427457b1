//! The web console in a real browser (headless Chromium over WebDriver), against the
//! assembled service and the Busha sandbox: the two-person rule, sessions, the kill
//! switch and the payments report.

use std::collections::BTreeSet;
use std::time::Duration;

use fantoccini::{Client, Locator};
use rust_decimal::dec;
use treasury::operators::Role;
use treasury::runs::{Run, RunState};
use treasury::sandbox::LedgerEvent;
use treasury::store::{OperatorChange, RunFilter};
use treasury::triggers::sign_trigger;

use crate::backends::TestStore;
use crate::console_support::{
    App, Driver, body_text, click, screenshot, sign_in, sign_in_with, sign_out,
};
use crate::grants_harness::World;
use crate::operators_world::{PASSWORD, ROOT, account};
use crate::pipeline_grants::connect_for_payouts;

const SECRET_ENV: &str = "TREASURY_TRIGGER_CONSOLE_TEST";
const SECRET: &str = "console-trigger-secret-of-32-bytes-or-more";

/// A trigger job paying ADA LOVELACE; with `[approval]` above 50 USDT by two people.
fn job(approval: bool) -> String {
    let mut job = format!(
        r#"
id = "payroll"
grant = "acme"
owner = "finance-lead"
source_currency = "USDT"
target_currency = "NGN"

[recipient]
bank_code = "000013"
account_number = "0123456789"
account_name = "ADA LOVELACE"

[guard]
min_rate = "1000"

[trigger]
side = "source"
min_amount = "1"
max_amount = "100"
secret_env = "{SECRET_ENV}"
"#
    );
    if approval {
        job.push_str("\n[approval]\nabove = \"50\"\napprovers = 2\n");
    }
    job
}

/// A world with the grant connected and money to pay with.
async fn world() -> World {
    // SAFETY: nextest gives this test a process of its own; nothing else reads it.
    unsafe { std::env::set_var(SECRET_ENV, SECRET) };
    let w = World::start(TestStore::sqlite().await).await;
    connect_for_payouts(&w).await;
    w.sb.set_balance(&w.user.id, "USDT", dec!(1000));
    w.sb.add_bank_account("000013", "0123456789", "ADA LOVELACE");
    w
}

/// Fires the job's signed trigger for `amount` USDT.
async fn fire(w: &World, app: &App, event: &str, amount: &str) {
    let ts = w.clock.now().timestamp().to_string();
    let body = format!(r#"{{"amount": "{amount}"}}"#);
    let res = reqwest::Client::new()
        .post(app.url("/triggers/payroll"))
        .header("x-treasury-timestamp", &ts)
        .header("x-treasury-event-id", event)
        .header(
            "x-treasury-signature",
            sign_trigger(SECRET.as_bytes(), &ts, event, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
}

/// Waits (moving the world's clock `step` at a time) until the only run satisfies
/// `done`, and returns it.
async fn until(w: &World, step: chrono::Duration, done: impl Fn(&Run) -> bool) -> Run {
    for _ in 0..400 {
        let runs = w.store().list_runs(&RunFilter::default()).await.unwrap();
        if let [run] = runs.as_slice()
            && done(run)
        {
            return run.clone();
        }
        w.clock.advance(step);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let runs = w.store().list_runs(&RunFilter::default()).await.unwrap();
    panic!(
        "the run never got there: {:?}",
        runs.iter()
            .map(|r| (r.state, r.reason.clone()))
            .collect::<Vec<_>>()
    );
}

/// Clicks the approve button of the inbox's (or run page's) first run.
async fn approve(b: &Client) -> String {
    click(b, "form[action$='/approve'] button").await
}

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

/// The session cookie's value in `b` (HttpOnly: only WebDriver can read it).
async fn session_cookie(b: &Client) -> String {
    b.get_named_cookie("treasury_session")
        .await
        .unwrap()
        .value()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_refuse_forms_without_csrf_time_out_lock_after_five_failures_and_end_when_disabled()
 {
    let w = world().await;
    let store = w.store();
    account(&store, &w.clock, "alice", Role::Approver).await;
    let dave = account(&store, &w.clock, "dave", Role::Approver).await;
    let carol = account(&store, &w.clock, "carol", Role::Viewer).await;
    let app = App::start(&w, &job(false)).await;
    let driver = Driver::start().await;
    let b = driver.browser().await;

    // A form posted without its CSRF token is refused, and changes nothing.
    sign_in(&b, &app, "alice").await;
    b.goto(&app.url("/halts")).await.unwrap();
    b.execute(
        "document.querySelectorAll('#halt-form input[name=csrf]').forEach(e => e.remove())",
        vec![],
    )
    .await
    .unwrap();
    let refused = click(&b, "#halt").await;
    assert!(
        refused.contains("CSRF token is missing or wrong"),
        "{refused}"
    );
    assert!(store.halts().await.unwrap().is_empty());

    // Signing in again rotates the session: the old cookie no longer works.
    let before = session_cookie(&b).await;
    sign_in(&b, &app, "alice").await;
    let after = session_cookie(&b).await;
    assert_ne!(before, after);
    let old = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/"))
        .header("cookie", format!("treasury_session={before}"))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 303, "the rotated-away session signs in again");

    // The inbox's own refresh does not count as use: past the idle timeout (an hour
    // here) since the last real request, back to sign-in.
    w.clock.advance(chrono::Duration::minutes(40));
    b.goto(&app.url("/?auto=1")).await.unwrap();
    assert_eq!(
        b.current_url().await.unwrap().path(),
        "/",
        "40 minutes idle is within the hour"
    );
    w.clock.advance(chrono::Duration::minutes(21));
    b.goto(&app.url("/")).await.unwrap();
    assert_eq!(b.current_url().await.unwrap().path(), "/signin");

    // Five wrong passwords lock the account; then even the right one is refused.
    for i in 1..=5 {
        let text = sign_in_with(&b, &app, "dave", "not the password at all").await;
        assert!(
            text.contains("wrong operator name or password"),
            "{i}: {text}"
        );
    }
    let locked = sign_in_with(&b, &app, "dave", PASSWORD).await;
    assert!(
        locked.contains("locked after 5 failed sign-ins"),
        "{locked}"
    );
    assert_eq!(b.current_url().await.unwrap().path(), "/signin");
    let dave_now = store
        .operator_with_hash(&treasury::operators::OperatorName::new("dave").unwrap())
        .await
        .unwrap()
        .unwrap()
        .0;
    assert!(dave_now.locked, "{dave:?} is locked now");

    // A viewer may not see the operators page.
    sign_in(&b, &app, "carol").await;
    b.goto(&app.url("/operators")).await.unwrap();
    let refused = body_text(&b).await;
    assert!(refused.contains("this needs the admin role"), "{refused}");

    // An admin, in another browser, disables carol: her session stops working at its
    // next request.
    let root = account(&store, &w.clock, ROOT, Role::Admin).await;
    let admin = driver.browser().await;
    sign_in(&admin, &app, ROOT).await;
    admin.goto(&app.url("/operators")).await.unwrap();
    let done = click(&admin, "tr[data-name=carol] button").await;
    assert!(done.contains("carol is disabled"), "{done}");
    b.goto(&app.url("/runs")).await.unwrap();
    assert_eq!(b.current_url().await.unwrap().path(), "/signin");
    let carol_now = store
        .operator_with_hash(&treasury::operators::OperatorName::new("carol").unwrap())
        .await
        .unwrap()
        .unwrap()
        .0;
    assert!(carol_now.disabled && carol_now.credential_version > carol.credential_version);
    admin.close().await.unwrap();

    // After an admin's reset, the one-time password is changed in the console; the
    // change ends the session, and the new password signs in.
    let erin = account(&store, &w.clock, "erin", Role::Approver).await;
    let one_time = "one-time password 123";
    let hash =
        treasury::operators::secrets::hash_password(&treasury::config::Secret::new(one_time))
            .unwrap();
    let change = OperatorChange::Password {
        hash,
        temporary: true,
    };
    store
        .change_operator(&erin, change, &root, w.clock.now())
        .await
        .unwrap();
    let text = sign_in_with(&b, &app, "erin", one_time).await;
    assert!(
        text.contains("Your password is a one-time password"),
        "{text}"
    );
    b.goto(&app.url("/password")).await.unwrap();
    for (id, value) in [
        ("current", one_time),
        ("new", "erin's own new password"),
        ("repeat", "erin's own new password"),
    ] {
        b.find(Locator::Id(id))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    let changed = click(&b, "#change").await;
    assert!(changed.contains("Your password is changed"), "{changed}");
    b.goto(&app.url("/")).await.unwrap();
    assert_eq!(b.current_url().await.unwrap().path(), "/signin");
    let text = sign_in_with(&b, &app, "erin", "erin's own new password").await;
    assert!(
        text.contains("Inbox") && !text.contains("one-time password"),
        "{text}"
    );
    b.close().await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_from_the_browser_holds_the_next_run_and_resume_lets_it_settle_and_the_csv_matches_the_list()
 {
    let w = world().await;
    let store = w.store();
    account(&store, &w.clock, "olga", Role::Operator).await;
    let app = App::start(&w, &job(false)).await;
    let driver = Driver::start().await;
    let b = driver.browser().await;
    sign_in(&b, &app, "olga").await;

    // A typo'd job name is refused, with the name it was probably meant to be.
    b.goto(&app.url("/halts")).await.unwrap();
    b.find(Locator::Css("#scope option[value=job]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.find(Locator::Id("target"))
        .await
        .unwrap()
        .send_keys("payrol")
        .await
        .unwrap();
    let typo = click(&b, "#halt").await;
    assert!(
        typo.contains("no job \"payrol\"") && typo.contains("did you mean \"payroll\"?"),
        "{typo}"
    );
    assert!(store.halts().await.unwrap().is_empty());

    // Halt everything, with a reason.
    b.goto(&app.url("/halts")).await.unwrap();
    b.find(Locator::Id("reason"))
        .await
        .unwrap()
        .send_keys("incident 42")
        .await
        .unwrap();
    let halted = click(&b, "#halt").await;
    assert!(halted.contains("Halted everything"), "{halted}");

    // The next run is held before any quote is locked.
    fire(&w, &app, "evt-halt", "20").await;
    let held = until(&w, chrono::Duration::seconds(1), |r| {
        r.reason
            .as_deref()
            .is_some_and(|why| why.contains("held before the"))
    })
    .await;
    assert!(held.reason.unwrap().contains("halted by olga"));
    assert_eq!(
        w.count(|e| matches!(e, LedgerEvent::QuoteCreated { .. })),
        0
    );
    b.goto(&app.url("/halts")).await.unwrap();
    let page = body_text(&b).await;
    assert!(
        page.contains("everything by olga") && page.contains("incident 42"),
        "{page}"
    );

    // Resume lets it settle.
    let resumed = click(&b, "#halts button").await;
    assert!(resumed.contains("Resumed everything"), "{resumed}");
    let settled = until(&w, chrono::Duration::seconds(5), |r| {
        r.state == RunState::Settled
    })
    .await;

    // The payments CSV for the period lists exactly the runs the list shows.
    let day = w.clock.now().date_naive().format("%Y-%m-%d").to_string();
    let query = format!("from={day}&to={day}");
    b.goto(&app.url(&format!("/runs?{query}"))).await.unwrap();
    let mut listed = BTreeSet::new();
    for row in b.find_all(Locator::Css("#runs tr.run")).await.unwrap() {
        listed.insert(row.attr("data-run").await.unwrap().unwrap());
    }
    assert_eq!(listed, BTreeSet::from([settled.id.to_string()]));
    let csv = reqwest::Client::new()
        .get(app.url(&format!("/runs.csv?{query}")))
        .header(
            "cookie",
            format!("treasury_session={}", session_cookie(&b).await),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .map(|c| c.trim_matches('"').to_string())
                .collect()
        })
        .collect();
    let in_csv: BTreeSet<String> = rows.iter().map(|r| r[1].clone()).collect();
    assert_eq!(in_csv, listed, "{csv}");
    let row = &rows[0];
    assert_eq!(row[11], "settled", "{csv}");
    assert_eq!(Some(row[10].as_str()), settled.transfer_id.as_deref());
    assert!(
        row[3].contains("******6789") && !csv.contains("0123456789"),
        "{csv}"
    );
    // The jobs page shows the loaded job's plan, the audit page a verified chain.
    b.goto(&app.url("/jobs")).await.unwrap();
    let jobs = body_text(&b).await;
    assert!(
        jobs.contains("payroll") && jobs.contains("******6789"),
        "{jobs}"
    );
    b.goto(&app.url("/audit")).await.unwrap();
    let audit = body_text(&b).await;
    assert!(audit.contains("Audit chain verified"), "{audit}");
    // A period with no runs: an empty list.
    b.goto(&app.url("/runs?from=2000-01-01&to=2000-01-31"))
        .await
        .unwrap();
    assert!(
        b.find_all(Locator::Css("#runs tr.run"))
            .await
            .unwrap()
            .is_empty()
    );
    b.close().await.unwrap();
    app.stop().await;
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
