//! Per-grant rolling 24-hour caps from `[[grants]] daily_caps`, on SQLite and
//! PostgreSQL: every job on the grant carries the cap of its source currency into its
//! runs, and two reservations racing for the grant's last headroom from two jobs and
//! two connection pools ("processes") cannot both pass.

use std::path::Path;

use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, dec};
use treasury::audit::NewAuditEntry;
use treasury::config::Settings;
use treasury::guards::ask_for;
use treasury::money::Currency;
use treasury::pipeline::GateStep;
use treasury::runs::{Amount, Limits, PayoutSpec, RecipientSpec, Run};
use treasury::store::{CapCheck, Store};

use crate::backends::TestStore;
use crate::on_both_backends;

on_both_backends!(
    two_jobs_racing_for_the_grants_last_headroom_from_two_processes_cannot_both_pass,
    the_grant_cap_in_config_binds_every_job_on_the_grant_in_its_currency,
);

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-02-02T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A run of `job` on grant `acme` for `amount` USDT, under the grant's cap only.
async fn grant_capped_run(store: &Store, job: &str, amount: Decimal, cap: Decimal) -> Run {
    let spec = PayoutSpec {
        grant: "acme".into(),
        source_currency: Currency::new("USDT").unwrap(),
        target_currency: Currency::new("NGN").unwrap(),
        amount: Amount::Source { amount },
        recipient: RecipientSpec::Id { id: "RCP_1".into() },
        guard: Default::default(),
        max_requotes: 3,
        limits: Limits {
            grant_daily_cap: Some(cap),
            ..Limits::default()
        },
        approval: None,
        sweep: None,
    };
    let run = Run::new(job, "occ-1", "v1", spec, false, now());
    let e = NewAuditEntry::new("test", "run.created", serde_json::json!({})).run(run.id.as_str());
    assert!(store.create_run(&run, e).await.unwrap());
    run
}

async fn reserve(store: &Store, run: &Run) -> Result<(), String> {
    let ask = ask_for(run, GateStep::LockQuote);
    store
        .reserve_caps(CapCheck {
            run,
            ask: &ask,
            at: now(),
            actor: "worker:test",
        })
        .await
        .unwrap()
        .map(|_| ())
}

async fn two_jobs_racing_for_the_grants_last_headroom_from_two_processes_cannot_both_pass(
    ts: TestStore,
) {
    // Arrange: eight jobs on one grant, 60 USDT each, against the grant's 100; no job
    // cap, so only the grant's lock and count stand between them.
    let other = ts.reopen().await;
    let mut runs = Vec::new();
    for i in 0..8 {
        runs.push(grant_capped_run(&ts.store, &format!("job-{i}"), dec!(60), dec!(100)).await);
    }

    // Act: all at once, alternating between the two pools.
    let mut tasks = Vec::new();
    for (i, run) in runs.into_iter().enumerate() {
        let store = if i % 2 == 0 {
            ts.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move { reserve(&store, &run).await }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(why) => assert!(
                why.contains("grant acme's rolling 24-hour cap of 100 USDT")
                    && why.contains("60 USDT is already used"),
                "{why}"
            ),
        }
    }

    // Assert
    assert_eq!(won, 1);
    let used = ts
        .store
        .cap_usage("job-0", "acme", "USDT", now())
        .await
        .unwrap();
    assert_eq!(used.grant, dec!(60));
}

const SCOPES: &str = r#"["balances:read", "quotes:read", "quotes:write", "transfers:read", "transfers:write", "recipients:read", "recipients:write"]"#;

fn job_file(id: &str, source: &str, amount: &str) -> String {
    format!(
        r#"
id = "{id}"
grant = "acme"
owner = "finance-lead"
source_currency = "{source}"
target_currency = "NGN"
source_amount = "{amount}"

[recipient]
bank_code = "000013"
account_number = "0123456789"
account_name = "ADA LOVELACE"

[guard]
min_rate = "1000"

[schedule]
cron = "0 9 * * MON"
timezone = "Africa/Lagos"
"#
    )
}

async fn the_grant_cap_in_config_binds_every_job_on_the_grant_in_its_currency(ts: TestStore) {
    // Arrange: `daily_caps = { USDT = "100" }` on grant acme; two USDT jobs and one
    // in BTC, which has no cap.
    let config = format!(
        r#"
[busha]
issuer_url = "https://login.busha.io"
api_url = "https://api.busha.io"
client_id = "busha-oauth2-x-test"
redirect_uri = "http://localhost:8787/oauth/callback"

[[grants]]
alias = "acme"
provider = "busha"
scopes = {SCOPES}
daily_caps = {{ USDT = "100", NGN = "150000" }}
"#
    );
    let settings = Settings::parse(Path::new("config/t.toml"), &config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (id, source, amount) in [
        ("vendors", "USDT", "60"),
        ("salaries", "USDT", "60"),
        ("btc-out", "BTC", "0.01"),
    ] {
        std::fs::write(
            dir.path().join(format!("{id}.toml")),
            job_file(id, source, amount),
        )
        .unwrap();
    }
    let jobs = treasury::jobs::load(dir.path(), &settings).unwrap();
    let job = |id: &str| jobs.iter().find(|j| j.id().as_str() == id).unwrap();

    // Act: one occurrence of each, then the two USDT runs reserve.
    let mut runs = Vec::new();
    for id in ["vendors", "salaries", "btc-out"] {
        let run = job(id)
            .runs("2026-02-02T08:00:00Z", None, now())
            .unwrap()
            .remove(0);
        let e =
            NewAuditEntry::new("test", "run.created", serde_json::json!({})).run(run.id.as_str());
        assert!(ts.store.create_run(&run, e).await.unwrap());
        runs.push(run);
    }
    let first = reserve(&ts.store, &runs[0]).await;
    let second = reserve(&ts.store, &runs[1]).await;

    // Assert: the cap travels with each run; the second job finds the grant's cap used.
    assert_eq!(runs[0].spec.limits.grant_daily_cap, Some(dec!(100)));
    assert_eq!(runs[1].spec.limits.grant_daily_cap, Some(dec!(100)));
    assert_eq!(runs[2].spec.limits.grant_daily_cap, None, "no BTC cap");
    first.unwrap();
    let why = second.unwrap_err();
    assert!(
        why.contains("grant acme's rolling 24-hour cap of 100 USDT"),
        "{why}"
    );
    reserve(&ts.store, &runs[2]).await.unwrap();
}

#[test]
fn daily_caps_must_be_decimal_strings_in_known_shapes_with_the_place_named() {
    for (caps, says) in [
        ("{ USDT = 5000 }", "invalid type"),
        (
            "{ USDT = \"1e6\" }",
            "daily_caps.USDT: \"1e6\" is not a plain decimal: write the number out in full",
        ),
        ("{ USDT = \"0\" }", "must be positive"),
        ("{ \"US-DT\" = \"5\" }", "is not a currency code"),
        ("{ USDT = \"1.1234567\" }", "decimal places"),
    ] {
        let text = format!(
            "[busha]\nissuer_url = \"https://l/\"\napi_url = \"https://a/\"\nclient_id = \"c\"\nredirect_uri = \"http://localhost/cb\"\n\n[[grants]]\nalias = \"acme\"\nprovider = \"busha\"\nscopes = []\ndaily_caps = {caps}\n"
        );
        let err = Settings::parse(Path::new("config/t.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config/t.toml:11:"), "{caps}: {err}");
        assert!(err.contains(says), "{caps}: {err}");
    }
}
