//! Issue 15 §1: each class of job file that can never do what its author meant is
//! refused (or warned about) with `file:line:col` and plain words, pinned here by a
//! fixture in `tests/fixtures/jobs/`; and the jobs folder itself is checked, in
//! `validate` and in `run`, before any network call.

use std::path::{Path, PathBuf};

use treasury::config::GrantSpec;
use treasury::jobs::{self, Diagnostic, StoreAccess, parse_job};

use crate::jobs_cli::{plan, root, treasury};
use crate::jobs_files::test_grants;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jobs")
}

/// The fixtures' grants, plus one on Baanx.
fn grants() -> Vec<GrantSpec> {
    let mut g = test_grants();
    let mut baanx = g[0].clone();
    baanx.alias = "baanx-wallet".into();
    baanx.provider = "baanx".into();
    g.push(baanx);
    g
}

/// The file's errors, or its warnings when it is valid.
fn parse(file: &str) -> Result<Vec<Diagnostic>, Vec<Diagnostic>> {
    let path = fixtures().join(file);
    let bytes = std::fs::read(&path).unwrap();
    let grants = grants();
    parse_job(&path.display().to_string(), &bytes, Some(&grants)).map(|job| job.warnings().to_vec())
}

/// (fixture, line, the message from its start, or a fragment)
pub const REFUSED: &[(&str, usize, &str)] = &[
    (
        "amount_exponent.toml",
        8,
        "`target_amount`: \"25e-1\" is not a plain decimal: write the number out in full, without an exponent (\"1e3\" is \"1000\")",
    ),
    (
        "amount_leading_plus.toml",
        8,
        "`target_amount`: \"+250000\" is not a plain decimal: remove the leading `+` (amounts have no sign)",
    ),
    (
        "amount_spaces.toml",
        8,
        "`target_amount`: \" 250000 \" is not a plain decimal: remove the spaces around the number",
    ),
    (
        "amount_bare_point.toml",
        8,
        "`target_amount`: \".5\" is not a plain decimal: put a digit before the point (\"0.5\", not \".5\")",
    ),
    (
        "amount_trailing_point.toml",
        8,
        "`target_amount`: \"250000.\" is not a plain decimal: put a digit after the point, or drop it (\"250000\", not \"250000.\")",
    ),
    (
        "amount_too_large.toml",
        8,
        "`target_amount` \"1000000000000000\" is too large (the largest is 999999999999999.99)",
    ),
    (
        "currency_not_listed.toml",
        7,
        "`target_currency`: XYZ is not a currency busha moves (its currencies: NGN, KES, GHS, USD, GBP, USDT, USDC, BTC, ETH)",
    ),
    (
        "baanx_exchange.toml",
        7,
        "Baanx has no currency exchange: a withdrawal sends what the wallet holds, so `source_currency` and `target_currency` must be the same (got USDC and USDT)",
    ),
    (
        "cron_never_fires.toml",
        20,
        "`schedule.cron`: cron \"0 9 30 2 *\" never fires: no date matches its day and month fields",
    ),
    (
        "cron_both_days.toml",
        20,
        "`schedule.cron` \"0 9 1-7 * MON\" restricts both the day of the month and the day of the week: classic cron fires when either matches, so say which you mean with `day_match = \"all\"`",
    ),
    (
        "cron_minute_range.toml",
        20,
        "`schedule.cron`: cron \"60 9 * * MON\": the minute field \"60\" holds 60, out of range: minutes run from 0 to 59",
    ),
    (
        "text_ansi.toml",
        3,
        "`description` holds an escape character (ANSI terminal code) (U+001B) at character 5",
    ),
    (
        "text_bidi.toml",
        5,
        "`owner` holds a bidirectional mark, which reorders what a screen shows (U+202E) at character 8",
    ),
    (
        "text_zero_width.toml",
        13,
        "`recipient.account_name` holds a zero-width (invisible) character (U+200B) at character 4",
    ),
    (
        "nul_byte.toml",
        5,
        "the file holds a NUL byte: a job file is text",
    ),
    (
        "duplicate_toml_key.toml",
        5,
        "TOML syntax: duplicate key `owner`: a key may appear only once in a table",
    ),
];

#[test]
fn each_class_that_can_never_work_is_refused_in_plain_words_at_its_place() {
    let mut failures = Vec::new();
    for (file, line, says) in REFUSED {
        match parse(file) {
            Ok(_) => failures.push(format!("{file}: accepted")),
            Err(errs) => {
                let hit = errs
                    .iter()
                    .any(|e| e.line == *line && e.col > 0 && e.message.starts_with(says));
                if !hit {
                    let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
                    failures.push(format!(
                        "{file}: expected line {line}: {says}\n  got: {}",
                        got.join("\n  ")
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Valid fixtures that carry a warning.
pub const WARNED: &[&str] = &["timezone_fixed_offset.toml", "batch_likely_duplicate.toml"];

#[test]
fn a_fixed_offset_zone_and_a_likely_duplicate_payee_are_warnings() {
    let w = parse("timezone_fixed_offset.toml").expect("valid, with a warning");
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].line, 21);
    assert!(
        w[0].message.starts_with(
            "`schedule.timezone`: timezone \"EST\" is a fixed offset (UTC-05:00) that does not follow daylight saving"
        ),
        "{}",
        w[0]
    );
    let w = parse("batch_likely_duplicate.toml").expect("valid, with a warning");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].line >= 22, "{}", w[0]);
    assert_eq!(
        w[0].message,
        "payees \"ada\" and \"ada-again\" pay the same account the same amount: a likely duplicate (remove one if it is)"
    );
}

#[test]
fn day_match_any_and_all_are_both_accepted_when_both_day_fields_are_restricted() {
    let text = std::fs::read_to_string(fixtures().join("cron_both_days.toml")).unwrap();
    let grants = grants();
    for m in ["all", "any"] {
        let t = format!("{text}day_match = \"{m}\"\n");
        let job = parse_job("j.toml", t.as_bytes(), Some(&grants));
        assert!(job.is_ok(), "{m}: {:?}", job.err());
    }
    let t = format!("{text}day_match = \"either\"\n");
    let errs = parse_job("j.toml", t.as_bytes(), Some(&grants)).unwrap_err();
    assert!(
        errs.iter().any(|e| e.line == 22
            && e.message == "`schedule.day_match` must be \"all\" or \"any\", got \"either\""),
        "{errs:?}"
    );
}

async fn validate(dir: &Path) -> jobs::Validation {
    jobs::validate(
        &root().join("config/treasury.toml"),
        dir,
        StoreAccess::Never,
    )
    .await
}

#[tokio::test]
async fn a_missing_jobs_folder_is_an_error_and_an_empty_one_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("jobz");
    let v = validate(&missing).await;
    assert_eq!(v.errors.len(), 1, "{:?}", v.errors);
    assert_eq!(
        v.errors[0].message,
        format!(
            "the jobs folder {} does not exist: create it, or name the right one with --jobs DIR",
            missing.display()
        )
    );
    let v = validate(tmp.path()).await;
    assert!(v.errors.is_empty(), "{:?}", v.errors);
    assert_eq!(v.warnings.len(), 1);
    assert_eq!(
        v.warnings[0].message,
        "the jobs folder holds no job files (*.toml): nothing will run"
    );
}

#[tokio::test]
async fn files_that_will_be_ignored_are_named_in_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::copy(
        root().join("jobs/vendor-weekly.toml"),
        d.join("vendor.toml"),
    )
    .unwrap();
    std::fs::write(d.join("vendor.toml.bak"), "x").unwrap();
    std::fs::create_dir(d.join("archive")).unwrap();
    std::fs::write(d.join("archive/old.toml"), "x").unwrap();
    std::os::unix::fs::symlink(d.join("gone.toml"), d.join("dangling.toml")).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(d.join("sock.toml")).unwrap();
    let v = validate(d).await;
    assert!(v.errors.is_empty(), "{:?}", v.errors);
    assert_eq!(v.files, 1);
    let shown = |name: &str, why: &str| format!("{} is ignored: {why}", d.join(name).display());
    for note in [
        shown(
            "archive",
            "a sub-folder (only files directly in the jobs folder are read)",
        ),
        shown("dangling.toml", "a link to something that does not exist"),
        shown("sock.toml", "not a regular file"),
        shown("vendor.toml.bak", "not a .toml file"),
    ] {
        assert!(v.notes.contains(&note), "{note}\n{:?}", v.notes);
    }
}

#[tokio::test]
async fn run_checks_config_and_every_job_file_before_any_network_call() {
    let config = root().join("config/treasury.toml");
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope").display().to_string();
    // The config's issuer and store are never reached: the errors come first.
    let (r, out) = treasury(&[
        "--config",
        config.to_str().unwrap(),
        "run",
        "--jobs",
        &missing,
    ])
    .await;
    assert_eq!(
        r.unwrap_err(),
        "1 error(s) in the config or the job files: `treasury run` starts only when all are fixed"
    );
    assert!(
        out.contains(&format!("the jobs folder {missing} does not exist")),
        "{out}"
    );
    for f in ["cron_never_fires.toml", "text_ansi.toml"] {
        std::fs::copy(fixtures().join(f), tmp.path().join(f)).unwrap();
    }
    let dir = tmp.path().display().to_string();
    let (r, out) = treasury(&["--config", config.to_str().unwrap(), "run", "--jobs", &dir]).await;
    assert!(r.unwrap_err().starts_with("2 error(s)"), "{out}");
    assert!(
        out.contains("cron_never_fires.toml:20:8: `schedule.cron`"),
        "{out}"
    );
    assert!(out.contains("text_ansi.toml:3:"), "{out}");
}

// ------------------------------------------------------------------- the config file

const CONFIG: &str = r#"[store]
url = "mysql://db/treasury"

[busha]
issuer_url = "https://login.busha.io"
api_url = "http://api.example.com"
client_id = "c"
redirect_uri = "http://localhost:8787/oauth/callback"

[[grants]]
alias = "acme"
scopes = []

[[grants]]
alias = "acme"
scopes = []
"#;

#[test]
fn every_config_problem_is_reported_in_one_pass_with_its_line() {
    let path = Path::new("config/t.toml");
    let e = treasury::config::Settings::parse(path, CONFIG)
        .unwrap_err()
        .to_string();
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(
        lines,
        [
            "config/t.toml:2:7: [store] url \"mysql://db/treasury\": the scheme \"mysql\" is not supported (use sqlite://PATH?mode=rwc or postgres://user@host/db)",
            "config/t.toml:6:11: [busha] api_url \"http://api.example.com\" is plain http:// to a public host: tokens and money would cross the network unencrypted; use https://",
            "config/t.toml:15:9: grant alias \"acme\" is declared twice (first on line 11): each alias names one grant",
        ],
        "{e}"
    );
}

#[test]
fn a_secret_in_the_config_file_names_the_variable_to_use_instead() {
    let text = CONFIG
        .replace("mysql://db/treasury", "sqlite://t.db?mode=rwc")
        .replace("http://api.example.com", "https://api.busha.io")
        .replace(
            "client_id = \"c\"",
            "client_id = \"c\"\nclient_secret = \"s3cr3t\"",
        );
    let e = treasury::config::Settings::parse(Path::new("t.toml"), &text)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("t.toml:8:1: `busha.client_secret` holds a secret, and secrets never go in a file: remove it and set the environment variable TREASURY_BUSHA_CLIENT_SECRET instead"),
        "{e}"
    );
    assert!(!e.contains("s3cr3t"), "the secret is never echoed: {e}");
    // Loopback http:// (a sandbox) is fine.
    let local = text
        .replace("client_secret = \"s3cr3t\"\n", "")
        .replace("https://api.busha.io", "http://127.0.0.1:9/")
        .replace("alias = \"acme\"\nscopes = []\n\n[[grants]]\n", "");
    let s = treasury::config::Settings::parse(Path::new("t.toml"), &local);
    assert!(s.is_ok(), "{:?}", s.err());
}

#[tokio::test]
async fn validate_json_gives_errors_and_warnings_as_objects_with_codes() {
    let tmp = tempfile::tempdir().unwrap();
    for f in ["text_ansi.toml", "timezone_fixed_offset.toml"] {
        std::fs::copy(fixtures().join(f), tmp.path().join(f)).unwrap();
    }
    let config = root().join("config/treasury.toml");
    let dir = tmp.path().display().to_string();
    let (r, out) = treasury(&[
        "--config",
        config.to_str().unwrap(),
        "jobs",
        "validate",
        "--jobs",
        &dir,
        "--no-store",
        "--json",
    ])
    .await;
    assert_eq!(r.unwrap_err(), "1 error(s)");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["files"], 2);
    let e = &report["errors"][0];
    assert_eq!(e["file"], format!("{dir}/text_ansi.toml"));
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(3), Some(15))
    );
    assert_eq!(e["code"], "hidden_character");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("`description` holds an escape")
    );
    let w = &report["warnings"][0];
    assert_eq!(w["code"], "fixed_timezone");
    assert_eq!(w["line"], 21);
}

#[tokio::test]
async fn plan_down_since_shows_what_a_returning_worker_would_run_skip_or_run_late() {
    let window = [
        "--down-since",
        "2026-03-02T07:00:00Z",
        "--from",
        "2026-03-09T10:00:00Z",
    ];
    let (r, out) = plan(&[&window[..], &["--json"]].concat()).await;
    r.unwrap();
    let sim: serde_json::Value = serde_json::from_str(&out).unwrap();
    let vendor = sim["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == "vendor-weekly")
        .unwrap();
    // Mondays 08:00Z; catch_up = "latest" within 1d.
    assert_eq!(
        vendor["occurrences"],
        serde_json::json!([
            {"occurrence_key": "2026-03-02T08:00:00Z", "verdict": "skipped", "why": "older than max_lateness"},
            {"occurrence_key": "2026-03-09T08:00:00Z", "verdict": "late", "why": "runs now, 2h late"},
        ])
    );
    let (r, out) = plan(&window).await;
    r.unwrap();
    assert!(
        out.contains("  2026-03-09T08:00:00Z  run late: runs now, 2h late\n"),
        "{out}"
    );
    assert!(
        out.contains("salaries-monthly (catch_up = \"all\")\n  no occurrence in that time\n"),
        "{out}"
    );
}
