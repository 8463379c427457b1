//! Job files at their edges: recipient ids in both of Busha's shapes, amounts through
//! the one plain-decimal parser, jobs certain to fail refused with the arithmetic, the
//! payee's name as `jobs plan` can know it, and trigger secrets as `jobs validate`
//! judges them.

use std::path::Path;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use treasury::clock::Clock;
use treasury::jobs::{Diagnostic, Job, parse_job};
use treasury::runs::RecipientSpec;
use treasury::store::SeenRecipient;

use crate::backends::TestStore;
use crate::jobs_files::test_grants;
use crate::on_both_backends;

const WEEKLY: &str = "[schedule]\ncron = \"0 9 * * MON\"\ntimezone = \"Africa/Lagos\"";
const BANK: &str = "[recipient]\nbank_code = \"000013\"\naccount_number = \"0123456789\"\naccount_name = \"ADA LOVELACE\"";

/// A USDT → NGN job: `amount` is the top-level amount line (or nothing), then the
/// recipient, `[guard]` and `[limits]` bodies and the trigger section.
fn job(amount: &str, recipient: &str, guard: &str, limits: &str, trigger: &str) -> String {
    format!(
        "id = \"edge\"\ngrant = \"acme-treasury\"\nowner = \"finance-lead\"\nsource_currency = \"USDT\"\ntarget_currency = \"NGN\"\n{amount}\n\n{recipient}\n\n[guard]\n{guard}\n\n[limits]\n{limits}\n\n{trigger}\n"
    )
}

fn parse(text: &str) -> Result<Job, Vec<Diagnostic>> {
    parse_job("edge.toml", text.as_bytes(), Some(&test_grants()))
}

/// The one error of a job that must be refused.
fn refusal(text: &str) -> Diagnostic {
    let errs = parse(text).expect_err("the job must be refused");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs.into_iter().next().unwrap()
}

// ------------------------------------------------------------------- recipient ids

#[test]
fn a_recipient_id_is_a_uuid_or_24_hex_kept_as_given_and_nothing_else() {
    let by_id = |id: &str| {
        job(
            "target_amount = \"1000\"",
            &format!("[recipient]\nid = \"{id}\""),
            "min_rate = \"1450\"",
            "",
            WEEKLY,
        )
    };
    for id in [
        "3f2b1c9e-8d4a-4e6b-9a7c-1d2e3f4a5b6c",
        "3F2B1C9E-8D4A-4E6B-9A7C-1D2E3F4A5B6C",
        "64ae8c26a1b2c3d4e5f60718",
        "64AE8C26A1B2C3D4E5F60718",
    ] {
        let job = parse(&by_id(id)).unwrap_or_else(|e| panic!("{id}: {e:?}"));
        let treasury::jobs::Payout::Single { recipient, .. } = job.spec().payout() else {
            panic!("a single payout");
        };
        assert_eq!(
            recipient,
            &RecipientSpec::Id { id: id.into() },
            "kept as given"
        );
    }
    for id in [
        "acme-supplies",
        "3f2b1c9e8d4a4e6b9a7c1d2e3f4a5b6c",
        "{3f2b1c9e-8d4a-4e6b-9a7c-1d2e3f4a5b6c}",
        "urn:uuid:3f2b1c9e-8d4a-4e6b-9a7c-1d2e3f4a5b6c",
        "3f2b1c9e-8d4a-4e6b-9a7c-1d2e3f4a5b6",
        "64ae8c26a1b2c3d4e5f6071",
        "64ae8c26a1b2c3d4e5f607189",
        "64ae8c26a1b2c3d4e5f6071z",
    ] {
        let e = refusal(&by_id(id));
        assert_eq!(e.line, 9, "{id}: {e}");
        assert!(
            e.message.contains("a UUID such as") && e.message.contains("or 24 hex digits"),
            "{id}: {e}"
        );
    }
}

// ------------------------------------------------------------------------ amounts

#[test]
fn job_file_amounts_and_rates_are_plain_decimals_only() {
    for (amount, why) in [
        ("1e6", "without an exponent (\"1e3\" is \"1000\")"),
        ("25e-1", "without an exponent"),
        ("1_000", "remove the digit separators"),
        ("2,500", "remove the digit separators"),
        ("+250000", "remove the leading `+` (amounts have no sign)"),
        (" 250000", "remove the spaces around the number"),
        ("250000 ", "remove the spaces around the number"),
        ("250 000", "remove the spaces inside the number"),
        (".5", "put a digit before the point (\"0.5\", not \".5\")"),
        ("250000.", "put a digit after the point, or drop it"),
    ] {
        let text = job(
            &format!("target_amount = \"{amount}\""),
            BANK,
            "min_rate = \"1450\"",
            "",
            WEEKLY,
        );
        let e = refusal(&text);
        assert_eq!(e.line, 6, "{amount:?}: {e}");
        assert!(
            e.message.starts_with(&format!(
                "`target_amount`: {amount:?} is not a plain decimal: "
            )) && e.message.contains(why)
                && e.message.contains("no sign, exponent, `_`, spaces"),
            "{amount:?}: {e}"
        );
    }
    let huge = job(
        "target_amount = \"1000000000000000\"",
        BANK,
        "min_rate = \"1450\"",
        "",
        WEEKLY,
    );
    assert_eq!(
        refusal(&huge).message,
        "`target_amount` \"1000000000000000\" is too large (the largest is 999999999999999.99)"
    );
    let rate = job(
        "target_amount = \"1000\"",
        BANK,
        "min_rate = \"1.45e3\"",
        "",
        WEEKLY,
    );
    assert!(refusal(&rate).message.contains(
        "`guard.min_rate`: \"1.45e3\" is not a plain decimal: write the number out in full"
    ));
}

// ------------------------------------------------------------ jobs certain to fail

#[test]
fn a_delivery_that_breaks_max_per_run_at_the_worst_rate_is_refused_with_the_arithmetic() {
    // The example: 500,000 NGN at min_rate 1450 is 344.83 (344.827…) USDT.
    let text = job(
        "target_amount = \"500000\"",
        BANK,
        "min_rate = \"1450\"",
        "max_per_run = \"300\"",
        WEEKLY,
    );
    let e = refusal(&text);
    assert_eq!(e.line, 17, "at `limits.max_per_run`: {e}");
    assert_eq!(
        e.message,
        "every run breaks `limits.max_per_run` = 300 USDT: deliver 500000 NGN at `guard.min_rate` 1450 is 500000 / 1450 = at least 344.82 USDT, which the guard reserves before any quote"
    );
    // The guard's fees count too.
    let text = job(
        "target_amount = \"435000\"",
        BANK,
        "min_rate = \"1450\"\nmax_fees = \"5\"",
        "max_per_run = \"300\"",
        WEEKLY,
    );
    let e = refusal(&text);
    assert!(
        e.message
            .contains("435000 / 1450 + `guard.max_fees` 5 = at least 305 USDT"),
        "{e}"
    );
    // Just over: 2 places would read 300.00, so the source's precision is shown.
    let text = job(
        "target_amount = \"300001\"",
        BANK,
        "min_rate = \"1000\"",
        "max_per_run = \"300\"",
        WEEKLY,
    );
    assert!(refusal(&text).message.contains("= at least 300.001 USDT"));
    // At the limit exactly, it fits.
    let fits = job(
        "target_amount = \"435000\"",
        BANK,
        "min_rate = \"1450\"",
        "max_per_run = \"300\"",
        WEEKLY,
    );
    assert!(parse(&fits).is_ok());
}

#[test]
fn with_only_max_rate_a_delivery_costs_at_least_target_over_max_rate() {
    let text = job(
        "target_amount = \"600000\"",
        BANK,
        "max_rate = \"1750\"",
        "max_per_run = \"300\"",
        WEEKLY,
    );
    let e = refusal(&text);
    assert!(
        e.message.contains(
            "deliver 600000 NGN costs at least 600000 / 1750 = 342.85 USDT even at `guard.max_rate` 1750"
        ),
        "{e}"
    );
    // Only a drift bound: no least cost, so nothing is certain.
    let drift = job(
        "target_amount = \"600000\"",
        BANK,
        "max_drift_pct = \"2\"",
        "max_per_run = \"300\"",
        WEEKLY,
    );
    assert!(parse(&drift).is_ok());
}

#[test]
fn a_fixed_send_breaks_its_limits_at_any_rate_and_the_daily_cap_counts_alone() {
    let over_max = job(
        "source_amount = \"500\"",
        BANK,
        "min_rate = \"1450\"",
        "max_per_run = \"300\"",
        WEEKLY,
    );
    let e = refusal(&over_max);
    assert!(
        e.message
            == "every run breaks `limits.max_per_run` = 300 USDT: it sends 500 USDT at any rate",
        "{e}"
    );
    let over_cap = job(
        "source_amount = \"500\"",
        BANK,
        "min_rate = \"1450\"",
        "daily_cap = \"400\"",
        WEEKLY,
    );
    let e = refusal(&over_cap);
    assert_eq!(e.line, 17, "at `limits.daily_cap`: {e}");
    assert!(
        e.message
            .starts_with("every run breaks `limits.daily_cap` = 400 USDT"),
        "{e}"
    );
}

#[test]
fn triggers_sweeps_and_batches_are_judged_by_their_least_amounts() {
    let trigger = |min: &str| {
        job(
            "",
            BANK,
            "min_rate = \"1450\"",
            "max_per_run = \"300\"",
            &format!(
                "[trigger]\nside = \"target\"\nmin_amount = \"{min}\"\nmax_amount = \"2000000\"\nsecret_env = \"S\""
            ),
        )
    };
    let e = refusal(&trigger("500000"));
    assert!(
        e.message
            .contains("(`trigger.min_amount`, the smallest a request may ask)"),
        "{e}"
    );
    assert!(
        parse(&trigger("10000")).is_ok(),
        "only some requests break the limit"
    );

    let sweep = |max: &str| {
        job(
            "",
            BANK,
            "min_rate = \"1450\"",
            &format!("max_per_run = \"{max}\""),
            "[sweep]\nbalance = \"USDT\"\nthreshold = \"5000\"\nkeep = \"2000\"",
        )
    };
    let e = refusal(&sweep("3000"));
    assert!(e.message.contains("so it moves more than 3000 USDT"), "{e}");
    assert!(parse(&sweep("3000.01")).is_ok());

    let payee = |key: &str| {
        format!(
            "[[payees]]\nkey = \"{key}\"\nsource_amount = \"200\"\nbank_code = \"000013\"\naccount_number = \"0123456789\"\naccount_name = \"ADA\"\n"
        )
    };
    let batch = |cap: &str| {
        format!(
            "id = \"edge\"\ngrant = \"acme-treasury\"\nowner = \"finance-lead\"\nsource_currency = \"USDT\"\ntarget_currency = \"NGN\"\n\n[guard]\nmin_rate = \"1450\"\n\n[limits]\ndaily_cap = \"{cap}\"\n\n{WEEKLY}\n\n{}\n{}",
            payee("ada"),
            payee("grace")
        )
    };
    let e = refusal(&batch("300"));
    assert!(
        e.message.contains("every occurrence breaks `limits.daily_cap` = 300 USDT: its 2 payees together need at least 400 USDT"),
        "{e}"
    );
    assert!(parse(&batch("400")).is_ok());
}

// ------------------------------------------------------------------ the CLI's view

async fn treasury(args: &[&str]) -> (Result<(), String>, String) {
    let mut argv = vec!["treasury"];
    argv.extend_from_slice(args);
    let cli = treasury::cli::Cli::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    let r = treasury::cli::run(cli, Clock::system(), CancellationToken::new(), &mut out)
        .await
        .map_err(|e| e.to_string());
    (r, String::from_utf8(out).unwrap())
}

/// A config on `store_url` declaring `acme-treasury`, and a jobs directory with `jobs`.
fn workspace(store_url: &str, jobs: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("treasury.toml"),
        format!(
            "[store]\nurl = \"{store_url}\"\n\n[busha]\nissuer_url = \"http://127.0.0.1:1\"\napi_url = \"http://127.0.0.1:1\"\nclient_id = \"treasury-test\"\nredirect_uri = \"http://127.0.0.1:1/cb\"\n\n[[grants]]\nalias = \"acme-treasury\"\nprovider = \"busha\"\nscopes = [\"balances:read\", \"quotes:read\", \"quotes:write\", \"transfers:read\", \"transfers:write\", \"recipients:read\", \"recipients:write\"]\n"
        ),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    for (name, text) in jobs {
        std::fs::write(dir.path().join("jobs").join(name), text).unwrap();
    }
    dir
}

fn paths(dir: &tempfile::TempDir) -> (String, String) {
    let p = |s: &str| dir.path().join(s).display().to_string();
    (p("treasury.toml"), p("jobs"))
}

#[tokio::test]
async fn validate_and_plan_refuse_a_job_certain_to_fail() {
    let text = job(
        "target_amount = \"500000\"",
        BANK,
        "min_rate = \"1450\"",
        "max_per_run = \"300\"",
        WEEKLY,
    );
    let dir = workspace("sqlite://unused.db?mode=rwc", &[("edge.toml", text)]);
    let (config, jobs) = paths(&dir);
    for command in ["validate", "plan"] {
        let mut args = vec!["--config", &config, "jobs", command, "--jobs", &jobs];
        if command == "validate" {
            args.push("--no-store");
        }
        let (r, out) = treasury(&args).await;
        assert!(r.is_err(), "{command}: {out}");
        assert!(
            out.contains("edge.toml:17:15: every run breaks `limits.max_per_run` = 300 USDT")
                && out.contains("at least 344.82 USDT"),
            "{command}: {out}"
        );
    }
}

const PAID_BY_ID: &str = "64ae8c26a1b2c3d4e5f60718";
const NEVER_PAID: &str = "3f2b1c9e-8d4a-4e6b-9a7c-1d2e3f4a5b6c";

async fn plan_shows_the_holder_busha_reported_or_says_it_is_not_yet_known(t: TestStore) {
    // Arrange: a run once resolved one recipient id; another was never paid.
    t.store
        .saw_recipient(
            "acme-treasury",
            PAID_BY_ID,
            &SeenRecipient {
                holder_name: Some("ADA LOVELACE".into()),
                bank_code: Some("000013".into()),
                account_masked: Some("0123456789".into()),
                currency: Some("NGN".into()),
                fetch_refused: false,
            },
            Clock::system().now(),
        )
        .await
        .unwrap();
    let by_id = |id: &str| {
        job(
            "target_amount = \"1000\"",
            &format!("[recipient]\nid = \"{id}\""),
            "min_rate = \"1450\"",
            "",
            WEEKLY,
        )
        .replace("id = \"edge\"", &format!("id = \"job-{}\"", &id[..4]))
    };
    let bank = job(
        "target_amount = \"1000\"",
        BANK,
        "min_rate = \"1450\"",
        "",
        WEEKLY,
    )
    .replace("id = \"edge\"", "id = \"by-bank\"");
    let dir = workspace(
        &t.url,
        &[
            ("paid.toml", by_id(PAID_BY_ID)),
            ("never.toml", by_id(NEVER_PAID)),
            ("bank.toml", bank),
        ],
    );
    let (config, jobs) = paths(&dir);

    // Act
    let (r, out) = treasury(&[
        "--config", &config, "jobs", "plan", "--jobs", &jobs, "--next", "1",
    ])
    .await;

    // Assert
    r.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(
        out.contains(&format!(
            "to ADA LOVELACE (recipient {PAID_BY_ID}; the holder's name as the provider reports it)"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "to recipient {NEVER_PAID} (holder's name not yet known: it is read from the provider at the first run)"
        )),
        "{out}"
    );
    assert!(
        out.contains("to ADA LOVELACE (******6789 at bank 000013; name as the job declares it, not yet confirmed by the provider)"),
        "{out}"
    );
    assert!(!out.contains("0123456789"), "masked: {out}");
}

on_both_backends!(plan_shows_the_holder_busha_reported_or_says_it_is_not_yet_known);

#[tokio::test]
async fn plan_without_a_store_says_every_holder_is_not_yet_known() {
    let text = job(
        "target_amount = \"1000\"",
        &format!("[recipient]\nid = \"{PAID_BY_ID}\""),
        "min_rate = \"1450\"",
        "",
        WEEKLY,
    );
    let dir = workspace(
        "sqlite://does-not-exist.db?mode=rwc",
        &[("edge.toml", text)],
    );
    let (config, jobs) = paths(&dir);
    let (r, out) = treasury(&[
        "--config", &config, "jobs", "plan", "--jobs", &jobs, "--next", "1",
    ])
    .await;
    r.unwrap();
    assert!(
        out.contains(
            "(holder's name not yet known: it is read from the provider at the first run)"
        ),
        "{out}"
    );
    assert!(
        !Path::new("does-not-exist.db").exists(),
        "planning creates no store"
    );
}

#[tokio::test]
async fn validate_refuses_an_empty_or_short_trigger_secret_and_warns_on_an_unset_one() {
    let var = "TREASURY_TRIGGER_SUPPLIER_SECRET";
    let validate = || async {
        treasury(&[
            "--config",
            "config/treasury.toml",
            "jobs",
            "validate",
            "--jobs",
            "jobs",
            "--no-store",
        ])
        .await
    };
    // SAFETY: a current-thread test in a process of its own (nextest); no other thread
    // reads the environment.
    unsafe { std::env::remove_var(var) };
    let (r, out) = validate().await;
    r.unwrap_or_else(|e| panic!("an unset secret only warns: {e}\n{out}"));
    assert!(
        out.contains(&format!(
            "warning: job supplier-on-demand: ${var} is not set"
        )),
        "{out}"
    );
    for (value, why) in [("", "is empty or blank"), ("short", "holds 5 bytes")] {
        unsafe { std::env::set_var(var, value) };
        let (r, out) = validate().await;
        assert_eq!(r.unwrap_err(), "1 error(s) in 1 file(s)", "{out}");
        assert!(
            out.contains(&format!("jobs/supplier-on-demand.toml: job supplier-on-demand (`trigger.secret_env`): ${var} {why}")),
            "{value:?}: {out}"
        );
    }
    unsafe { std::env::set_var(var, "s".repeat(32)) };
    let (r, out) = validate().await;
    r.unwrap();
    assert!(!out.contains("warning:"), "{out}");
}
