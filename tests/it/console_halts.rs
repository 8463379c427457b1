//! The kill switch and the payments report in a real browser: a halt holds the next
//! run before any quote, resume lets it settle, a typo is refused; the CSV for a period
//! lists exactly the runs the list shows.

use std::collections::BTreeSet;

use fantoccini::Locator;
use treasury::operators::Role;
use treasury::runs::RunState;
use treasury::sandbox::LedgerEvent;

use crate::console_support::{App, Driver, body_text, click, sign_in};
use crate::console_world::{fire, job, session_cookie, until, world};
use crate::operators_world::account;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_from_the_browser_holds_the_next_run_and_resume_lets_it_settle_and_the_csv_matches_the_list()
 {
    let w = world().await;
    let store = w.store();
    account(&store, &w.clock, "olga", Role::Operator).await;
    // A daily cap on the job, which the jobs page shows with what is used and left.
    let capped = format!("{}\n[limits]\ndaily_cap = \"900\"\n", job(false));
    let app = App::start(&w, &capped).await;
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
    // The settled run counts against the cap: used + left = the cap, used > 0.
    let cap_cell = jobs
        .lines()
        .find(|l| l.contains(" left of 900"))
        .unwrap_or_else(|| panic!("the caps table shows the job's cap:\n{jobs}"));
    let number = |before: &str| -> rust_decimal::Decimal {
        let head = &cap_cell[..cap_cell.find(before).unwrap()];
        head.split_whitespace().last().unwrap().parse().unwrap()
    };
    let (used, left) = (number(" used,"), number(" left of"));
    assert!(used > rust_decimal::Decimal::ZERO, "{cap_cell}");
    assert_eq!(used + left, rust_decimal::Decimal::from(900), "{cap_cell}");
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
