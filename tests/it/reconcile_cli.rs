//! `treasury reconcile` as the real binary: its exit status tells findings (1) from
//! "could not check" (3), `--help` says so, and SIGTERM stops it, saying how far it got.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rust_decimal::dec;
use treasury::provider::AccessToken;
use treasury::provider::busha::{
    AccountNumber, BushaClient, BushaConfig, NewQuote, NewRecipient, PayOut, QuoteAmount,
};
use treasury::sandbox::{Fault, FaultKind, NewUser};

use crate::backends::TestStore;
use crate::processes::{CLIENT_ID, CLIENT_SECRET, Deployment, SCOPES, free_port};

async fn deployment() -> (TestStore, Deployment) {
    let ts = TestStore::sqlite().await;
    let url = format!("{}?mode=rwc", ts.url);
    let d = Deployment::start(&url, |_| {}, NewUser::new("ada").balance("USDT", dec!(100))).await;
    (ts, d)
}

fn reconcile(d: &Deployment, extra: &[&str]) -> Command {
    let config = d.write_config("treasury", free_port(), "");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_treasury"));
    cmd.arg("--config")
        .arg(config)
        .args(["reconcile", "--since", "2000-01-01"])
        .args(extra)
        .env("TREASURY_MASTER_KEY", &d.master_key)
        .env("TREASURY_BUSHA_CLIENT_SECRET", CLIENT_SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Money moved on the customer's account outside the worker.
async fn stray_transfer(d: &Deployment) -> String {
    d.sb.add_bank_account("000013", "0123456789", "ADA LOVELACE");
    let token = AccessToken::new(
        d.sb.mint_tokens(CLIENT_ID, &d.user.id, &SCOPES)
            .access_token,
    );
    let api = BushaClient::new(BushaConfig::new(d.sb.url())).unwrap();
    let recipient = NewRecipient::ngn_bank(
        "000013",
        "Guaranty Trust Bank",
        AccountNumber::new("0123456789"),
        "ADA LOVELACE",
    );
    let recipient = api
        .create_recipient(&token, &recipient, &treasury::provider::Unleased)
        .await
        .unwrap()
        .value;
    let quote = NewQuote {
        source_currency: treasury::money::Currency::new("USDT").unwrap(),
        target_currency: treasury::money::Currency::new("NGN").unwrap(),
        amount: QuoteAmount::Source(dec!(5)),
        reference: None,
        pay_out: Some(PayOut::BankTransfer {
            recipient_id: recipient.id,
        }),
    };
    let quote = api
        .create_quote(&token, &quote, &treasury::provider::Unleased)
        .await
        .unwrap()
        .value;
    api.create_transfer(&token, &quote.id, &treasury::provider::Unleased)
        .await
        .unwrap()
        .value
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_exits_0_when_clean_1_on_findings_and_3_when_it_could_not_check() {
    let (_ts, d) = deployment().await;

    let clean = output(reconcile(&d, &[])).await;
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));

    let unchecked = output(reconcile(&d, &["--grant", "nobody"])).await;
    assert_eq!(unchecked.status.code(), Some(3), "{}", text(&unchecked));
    assert!(
        text(&unchecked).contains("UNCHECKED grant nobody"),
        "{}",
        text(&unchecked)
    );

    let stray = stray_transfer(&d).await;
    let found = output(reconcile(&d, &[])).await;
    assert_eq!(found.status.code(), Some(1), "{}", text(&found));
    assert!(
        text(&found).contains(&format!("UNKNOWN   {stray}")),
        "{}",
        text(&found)
    );

    let mut help = Command::new(env!("CARGO_BIN_EXE_treasury"));
    help.args(["reconcile", "--help"]).stdout(Stdio::piped());
    let help = text(&output(help).await);
    assert!(
        help.contains("1 when it found")
            && help.contains("3 when it found nothing but could not check"),
        "{help}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_reconcile_waiting_on_busha_and_it_says_how_far_it_got() {
    // Arrange: Busha takes a minute to list the transfers.
    let (_ts, d) = deployment().await;
    d.sb.add_fault(Fault::new(
        "GET /v1/transfers",
        FaultKind::Latency(Duration::from_secs(60)),
    ));
    let discovered = |d: &Deployment| {
        d.sb.requests()
            .iter()
            .filter(|r| r.endpoint == "GET /.well-known/openid-configuration")
            .count()
    };
    let before = discovered(&d);
    let child = reconcile(&d, &[]).spawn().unwrap();
    // The process is up (it has read discovery) before the signal is sent.
    let started = Instant::now();
    while discovered(&d) == before {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "reconcile never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Act
    let sent = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = tokio::task::spawn_blocking(move || {
        let out = child.wait_with_output().unwrap();
        (out, sent.elapsed())
    })
    .await
    .unwrap();

    // Assert: out well before Busha answers, "could not check", with how far it got.
    let (out, took) = out;
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("INTERRUPTED") && shown.contains("grant acme"),
        "{shown}"
    );
}
