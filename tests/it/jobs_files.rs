//! Job files at the edge: every malformed fixture in `tests/fixtures/jobs/` is refused
//! with the expected `file:line` and rule; the committed example jobs are valid; and a
//! file with several mistakes reports them all.

use std::path::Path;

use treasury::config::GrantSpec;
use treasury::jobs::{self, Diagnostic, Payout, Trigger, parse_job};

/// Every scope a payout job can need.
const ALL_SCOPES: [&str; 7] = [
    "balances:read",
    "quotes:read",
    "quotes:write",
    "transfers:read",
    "transfers:write",
    "recipients:read",
    "recipients:write",
];

/// The aliases the fixtures are checked against: one complete, one without
/// `recipients:write`.
pub fn test_grants() -> Vec<GrantSpec> {
    let all: Vec<String> = ALL_SCOPES.iter().map(|s| s.to_string()).collect();
    vec![
        GrantSpec {
            alias: "acme-treasury".into(),
            provider: "busha".into(),
            scopes: all.clone(),
            ..Default::default()
        },
        GrantSpec {
            alias: "read-mostly".into(),
            provider: "busha".into(),
            scopes: all
                .into_iter()
                .filter(|s| s != "recipients:write")
                .collect(),
            ..Default::default()
        },
    ]
}

/// Parses one file as `validate` does: the file's own rules, then the declared scopes.
fn check(path: &Path) -> Vec<Diagnostic> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).unwrap();
    let grants = test_grants();
    match parse_job(&shown, &bytes, Some(&grants)) {
        Ok(job) => jobs::check_declared_scopes(&[job], &grants),
        Err(errs) => errs,
    }
}

/// (fixture, line of the error, fragment of its message)
const MALFORMED: &[(&str, usize, &str)] = &[
    ("syntax_error.toml", 4, "TOML syntax"),
    ("duplicate_toml_key.toml", 5, "TOML syntax"),
    ("unknown_top_key.toml", 5, "unknown key `colour`"),
    ("unknown_guard_key.toml", 16, "unknown key `guard.max_rat`"),
    ("missing_id.toml", 1, "missing required key `id`"),
    ("bad_id.toml", 2, "`id` \"Vendor Weekly\" must be"),
    (
        "undeclared_grant.toml",
        3,
        "grant alias \"nobody\" is not declared in config",
    ),
    (
        "negative_amount.toml",
        7,
        "`target_amount` must be a positive decimal, got \"-5\"",
    ),
    (
        "zero_amount.toml",
        7,
        "`source_amount` must be a positive decimal",
    ),
    (
        "too_precise_amount.toml",
        7,
        "more than 2 decimal places, the precision of NGN",
    ),
    ("float_amount.toml", 7, "must be a decimal string in quotes"),
    (
        "not_a_decimal.toml",
        7,
        "`target_amount`: \"lots\" is not a plain decimal",
    ),
    ("both_amounts.toml", 8, "not both"),
    (
        "no_amount.toml",
        1,
        "needs exactly one of `source_amount` or `target_amount`",
    ),
    ("bad_currency.toml", 5, "is not a currency code"),
    (
        "cron_out_of_range.toml",
        19,
        "`schedule.cron`: cron \"0 25 * * *\": the hour field \"25\" holds 25, out of range: hours run from 0 to 23",
    ),
    ("cron_six_fields.toml", 19, "must have 5 fields"),
    ("bad_timezone.toml", 20, "not an IANA time zone"),
    (
        "bad_catch_up.toml",
        21,
        "must be \"skip\", \"latest\" or \"all\"",
    ),
    ("bad_max_lateness.toml", 21, "is not a duration"),
    ("two_triggers.toml", 22, "exactly one trigger"),
    ("no_trigger.toml", 1, "needs exactly one trigger"),
    ("recipient_both_forms.toml", 10, "not both"),
    (
        "recipient_id_not_uuid.toml",
        10,
        "`recipient.id` must be a Busha recipient id: a UUID such as",
    ),
    (
        "recipient_missing_name.toml",
        9,
        "missing required key `recipient.account_name`",
    ),
    (
        "bad_account_number.toml",
        11,
        "`recipient.account_number` must be 6-20 digits",
    ),
    ("no_recipient.toml", 1, "missing [recipient]"),
    (
        "duplicate_payee_key.toml",
        25,
        "payee key \"ada\" is used twice",
    ),
    (
        "payee_without_amount.toml",
        24,
        "[[payees]] entry 2 needs exactly one of",
    ),
    (
        "batch_with_top_amount.toml",
        7,
        "is per payee in a batch job",
    ),
    ("payees_on_trigger.toml", 19, "only for scheduled jobs"),
    (
        "trigger_with_amount.toml",
        7,
        "takes its amount from the request",
    ),
    (
        "trigger_min_above_max.toml",
        19,
        "`trigger.min_amount` 3000000 is above `trigger.max_amount` 2000000",
    ),
    (
        "trigger_bad_secret_env.toml",
        21,
        "must name an environment variable",
    ),
    (
        "trigger_missing_bounds.toml",
        17,
        "missing required key `trigger.max_amount`",
    ),
    (
        "sweep_keep_above_threshold.toml",
        20,
        "must be below `sweep.threshold`",
    ),
    (
        "sweep_wrong_balance.toml",
        18,
        "must be the job's `source_currency`",
    ),
    ("sweep_with_amount.toml", 7, "available - keep"),
    (
        "guard_min_above_max.toml",
        15,
        "`guard.min_rate` 1800 is above `guard.max_rate` 1750",
    ),
    ("guard_no_rate_bound.toml", 14, "needs a rate bound"),
    ("missing_guard.toml", 1, "missing required key `guard`"),
    (
        "too_many_requotes.toml",
        17,
        "`guard.max_requotes` must be a whole number from 0 to 10",
    ),
    (
        "three_approvers.toml",
        24,
        "`approval.approvers` must be a whole number from 1 to 2",
    ),
    ("approval_without_min_rate.toml", 21, "set `guard.min_rate`"),
    (
        "limits_per_run_above_cap.toml",
        23,
        "`limits.max_per_run` 500 is above `limits.daily_cap` 400",
    ),
    (
        "scopes_missing.toml",
        3,
        "lacks the scopes this job needs: recipients:write",
    ),
];

#[test]
fn every_malformed_job_file_is_refused_with_its_line_and_rule() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jobs");
    assert!(MALFORMED.len() >= 25);
    let mut failures = Vec::new();
    for (file, line, fragment) in MALFORMED {
        let errs = check(&dir.join(file));
        let hit = errs
            .iter()
            .any(|e| e.line == *line && e.message.contains(fragment));
        if !hit {
            failures.push(format!(
                "{file}: expected line {line} with {fragment:?}, got:\n  {}",
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
        // The printed form is `path:line:col: rule`.
        if let Some(e) = errs.iter().find(|e| e.line == *line) {
            let shown = e.to_string();
            let prefix = format!("{}:{line}:", dir.join(file).display());
            assert!(shown.starts_with(&prefix), "{shown}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_fixture_file_is_in_the_table() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jobs");
    let refusals = crate::jobs_refusals::REFUSED.iter().map(|(f, _, _)| *f);
    let listed: Vec<&str> = MALFORMED
        .iter()
        .map(|(f, _, _)| *f)
        .chain(refusals)
        .chain(crate::jobs_refusals::WARNED.iter().copied())
        .collect();
    for path in jobs::job_files(&dir).unwrap() {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(listed.contains(&name), "{name} has no expectation");
    }
}

#[test]
fn a_file_with_several_mistakes_reports_each_of_them() {
    let text = r#"id = "many"
grant = "acme-treasury"
owner = "finance-lead"
source_currency = "USDT"
target_currency = "NGN"
target_amount = "-1"
colour = "red"

[recipient]
id = "5b0e7a0c-3c1d-4f7e-9a61-0c2f4b8d9e11"

[guard]
min_rate = "1450"
max_drift_pct = "250"

[schedule]
cron = "61 * * * *"
timezone = "Mars/Olympus"
"#;
    let errs = parse_job("many.toml", text.as_bytes(), Some(&test_grants())).unwrap_err();
    let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
    assert_eq!(lines, [6, 7, 14, 17, 18], "{errs:#?}");
}

#[test]
fn the_example_jobs_are_valid_and_say_what_the_issue_asks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let settings = treasury::config::Settings::load(root.join("config/treasury.toml")).unwrap();
    let jobs = jobs::load(&root.join("jobs"), &settings).unwrap();
    let by_id = |id: &str| {
        jobs.iter()
            .find(|j| j.id().as_str() == id)
            .unwrap_or_else(|| panic!("no example job {id}"))
    };
    // A weekly vendor payout: a fixed NGN target amount from USDT to a bank recipient.
    let vendor = by_id("vendor-weekly").spec();
    assert!(vendor.schedule().is_some());
    assert_eq!(vendor.source_currency().as_str(), "USDT");
    assert!(matches!(
        vendor.payout(),
        Payout::Single {
            amount: Some(treasury::runs::Amount::Target { .. }),
            recipient: treasury::runs::RecipientSpec::Bank { .. }
        }
    ));
    // A monthly salary batch.
    assert!(matches!(
        by_id("salaries-monthly").spec().payout(),
        Payout::Batch(p) if p.len() >= 2
    ));
    // A USDT balance sweep and a signed-HTTP payout.
    assert!(
        matches!(by_id("usdt-sweep").spec().trigger(), Trigger::Sweep(s) if s.balance.as_str() == "USDT")
    );
    assert!(by_id("supplier-on-demand").spec().http_trigger().is_some());
}

#[test]
fn renaming_a_file_changes_neither_the_job_nor_its_run_ids() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(root.join("jobs/vendor-weekly.toml")).unwrap();
    let grants = test_grants();
    let a = parse_job("jobs/vendor-weekly.toml", &bytes, Some(&grants)).unwrap();
    let b = parse_job("jobs/renamed.toml", &bytes, Some(&grants)).unwrap();
    assert_eq!(a.id(), b.id());
    assert_eq!(a.version(), b.version());
    let now = chrono::Utc::now();
    let ra = a.runs("2026-03-09T08:00:00Z", None, now).unwrap();
    let rb = b.runs("2026-03-09T08:00:00Z", None, now).unwrap();
    assert_eq!(ra[0].id, rb[0].id);
    // A changed file is a new version; a changed id is a new job.
    let edited = String::from_utf8(bytes.clone())
        .unwrap()
        .replace("250000.00", "260000.00");
    let c = parse_job("x.toml", edited.as_bytes(), Some(&grants)).unwrap();
    assert_ne!(c.version(), a.version());
    let renamed = String::from_utf8(bytes)
        .unwrap()
        .replace("id = \"vendor-weekly\"", "id = \"vendor-weekly-2\"");
    let d = parse_job("x.toml", renamed.as_bytes(), Some(&grants)).unwrap();
    assert_ne!(
        d.runs("2026-03-09T08:00:00Z", None, now).unwrap()[0].id,
        ra[0].id
    );
}

#[test]
fn triggers_and_sweeps_build_their_runs_from_the_occurrence_amount() {
    use rust_decimal::dec;
    use treasury::runs::{Amount, RunState};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let grants = test_grants();
    let load = |f: &str| {
        let bytes = std::fs::read(root.join("jobs").join(f)).unwrap();
        parse_job(f, &bytes, Some(&grants)).unwrap()
    };
    let now = chrono::Utc::now();

    // A trigger: the request's amount, on the trigger's side, within the bounds.
    let trigger = load("supplier-on-demand.toml");
    let runs = trigger.runs("evt_1", Some(dec!(50000.00)), now).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].occurrence_key, "evt_1");
    assert_eq!(
        runs[0].spec.amount,
        Amount::Target {
            amount: dec!(50000)
        }
    );
    assert_eq!(runs[0].state, RunState::Created);
    assert_eq!(runs[0].job_version, trigger.version());
    // 1,500,000 NGN at the worst rate (1450) may be 1034 USDT > 700: approval.
    let big = trigger.runs("evt_2", Some(dec!(1500000)), now).unwrap();
    assert_eq!(big[0].state, RunState::AwaitingApproval);
    assert_eq!(
        big[0].spec.approval.as_ref().unwrap().owner,
        "procurement-lead"
    );
    for bad in [dec!(9999.99), dec!(2000000.01), dec!(100.001)] {
        assert!(trigger.runs("evt_3", Some(bad), now).is_err(), "{bad}");
    }
    assert!(trigger.runs("evt_4", None, now).is_err());

    // A sweep: `available - keep`, source side.
    let sweep = load("usdt-sweep.toml");
    let runs = sweep.runs("tick_1", Some(dec!(1234.5)), now).unwrap();
    assert_eq!(
        runs[0].spec.amount,
        Amount::Source {
            amount: dec!(1234.5)
        }
    );
    assert!(sweep.runs("tick_2", Some(dec!(0)), now).is_err());

    // A schedule takes no amount from outside.
    let vendor = load("vendor-weekly.toml");
    assert!(
        vendor
            .runs("2026-03-09T08:00:00Z", Some(dec!(1)), now)
            .is_err()
    );
}
