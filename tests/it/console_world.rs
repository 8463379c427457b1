//! The world the console's browser tests run in: a trigger job on the sandbox's
//! connected grant, money to pay with, signed triggers, and waits on the store.

use std::time::Duration;

use fantoccini::Client;
use rust_decimal::dec;
use treasury::runs::Run;
use treasury::store::RunFilter;
use treasury::triggers::sign_trigger;

use crate::backends::TestStore;
use crate::console_support::{App, click};
use crate::grants_harness::World;
use crate::pipeline_grants::connect_for_payouts;

pub const SECRET_ENV: &str = "TREASURY_TRIGGER_CONSOLE_TEST";
pub const SECRET: &str = "console-trigger-secret-of-32-bytes-or-more";

/// A trigger job paying ADA LOVELACE; with `[approval]` above 50 USDT by two people.
pub fn job(approval: bool) -> String {
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
pub async fn world() -> World {
    // SAFETY: nextest gives this test a process of its own; nothing else reads it.
    unsafe { std::env::set_var(SECRET_ENV, SECRET) };
    let w = World::start(TestStore::sqlite().await).await;
    connect_for_payouts(&w).await;
    w.sb.set_balance(&w.user.id, "USDT", dec!(1000));
    w.sb.add_bank_account("000013", "0123456789", "ADA LOVELACE");
    w
}

/// Fires the job's signed trigger for `amount` USDT.
pub async fn fire(w: &World, app: &App, event: &str, amount: &str) {
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
pub async fn until(w: &World, step: chrono::Duration, done: impl Fn(&Run) -> bool) -> Run {
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
pub async fn approve(b: &Client) -> String {
    click(b, "form[action$='/approve'] button").await
}

/// The session cookie's value in `b` (HttpOnly: only WebDriver can read it).
pub async fn session_cookie(b: &Client) -> String {
    b.get_named_cookie("treasury_session")
        .await
        .unwrap()
        .value()
        .to_string()
}
