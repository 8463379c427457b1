//! `treasury jobs validate|plan` end to end: in-process for the output, and the real
//! binary for the exit status.

use std::path::{Path, PathBuf};

use clap::Parser;
use tokio_util::sync::CancellationToken;
use treasury::cli::{Cli, run};
use treasury::clock::Clock;

use crate::jobs_scheduler::utc;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

pub async fn treasury(args: &[&str]) -> (Result<(), String>, String) {
    let mut argv = vec!["treasury"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    let r = run(
        cli,
        Clock::manual(utc("2026-03-01T00:00:00Z")),
        CancellationToken::new(),
        &mut out,
    )
    .await
    .map_err(|e| e.to_string());
    (r, String::from_utf8(out).unwrap())
}

/// A jobs directory with two broken files and one good one.
fn broken_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = root().join("tests/fixtures/jobs");
    for f in ["negative_amount.toml", "bad_timezone.toml"] {
        std::fs::copy(fixtures.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::copy(
        root().join("jobs/vendor-weekly.toml"),
        dir.path().join("vendor.toml"),
    )
    .unwrap();
    // The same id twice, in another file.
    std::fs::copy(
        root().join("jobs/vendor-weekly.toml"),
        dir.path().join("vendor-copy.toml"),
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn validate_lists_every_error_across_files_and_fails() {
    let dir = broken_dir();
    let config = root().join("config/treasury.toml");
    let jobs = dir.path().display().to_string();
    let (r, out) = treasury(&[
        "--config",
        config.to_str().unwrap(),
        "jobs",
        "validate",
        "--jobs",
        &jobs,
        "--no-store",
    ])
    .await;
    assert_eq!(r.unwrap_err(), "3 error(s) in 3 file(s)", "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.iter().any(
            |l| l.starts_with(&format!("{jobs}/negative_amount.toml:7:"))
                && l.contains("positive decimal")
        ),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{jobs}/bad_timezone.toml:20:")) && l.contains("IANA")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{jobs}/vendor.toml:3:"))
                && l.contains("also declared in")),
        "{out}"
    );
}

#[tokio::test]
async fn validate_reports_a_broken_config_and_still_checks_the_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("treasury.toml");
    let text = std::fs::read_to_string(root().join("config/treasury.toml")).unwrap();
    std::fs::write(&config, text.replace("[http]", "[http]\nport = 1")).unwrap();
    let jobs = broken_dir();
    let (r, out) = treasury(&[
        "--config",
        config.to_str().unwrap(),
        "jobs",
        "validate",
        "--jobs",
        jobs.path().to_str().unwrap(),
    ])
    .await;
    assert!(r.is_err());
    assert!(
        out.contains("treasury.toml:") && out.contains("port"),
        "{out}"
    );
    assert!(out.contains("negative_amount.toml:7:"), "{out}");
}

#[tokio::test]
async fn the_committed_jobs_validate_on_a_fresh_clone() {
    let config = root().join("config/treasury.toml");
    let jobs = root().join("jobs");
    // The config names `sqlite://treasury.db`, relative to a working directory that has
    // none here: validation must neither need nor create it.
    let (r, out) = treasury(&[
        "--config",
        config.to_str().unwrap(),
        "jobs",
        "validate",
        "--jobs",
        jobs.to_str().unwrap(),
    ])
    .await;
    assert!(r.is_ok(), "{r:?}\n{out}");
    assert!(out.contains("4 job file(s)"), "{out}");
}

#[tokio::test]
async fn plan_json_shows_the_next_occurrences_amounts_and_approvals() {
    let config = root().join("config/treasury.toml");
    let jobs = root().join("jobs");
    let (r, out) = treasury(&[
        "--config",
        config.to_str().unwrap(),
        "jobs",
        "plan",
        "--jobs",
        jobs.to_str().unwrap(),
        "--next",
        "3",
        "--from",
        "2026-03-01T00:00:00Z",
        "--json",
    ])
    .await;
    r.unwrap();
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let job = |id: &str| {
        plan["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == id)
            .unwrap()
            .clone()
    };
    // Mondays at 09:00 in Lagos (UTC+1).
    let vendor = job("vendor-weekly");
    let occ = vendor["occurrences"].as_array().unwrap();
    let utcs: Vec<&str> = occ
        .iter()
        .map(|o| o["occurrence_key"].as_str().unwrap())
        .collect();
    assert_eq!(
        utcs,
        [
            "2026-03-02T08:00:00Z",
            "2026-03-09T08:00:00Z",
            "2026-03-16T08:00:00Z"
        ]
    );
    assert_eq!(occ[0]["local"], "2026-03-02T09:00:00+01:00");
    let run = &occ[0]["runs"][0];
    assert_eq!(run["amount"], "250000");
    assert_eq!(run["currency"], "NGN");
    assert_eq!(run["approval_needed"], false);
    assert!(run["recipient"].as_str().unwrap().contains("******6789"));
    assert!(!out.contains("0123456789"), "account numbers are masked");
    assert_eq!(vendor["guard"]["min_rate"], "1450");
    // The batch: one run per payee, the payee in the occurrence key; grace needs approval.
    let salaries = job("salaries-monthly");
    let first = &salaries["occurrences"][0];
    assert_eq!(first["occurrence_key"], "2026-03-25T09:00:00Z");
    let runs = first["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[1]["occurrence_key"], "2026-03-25T09:00:00Z#grace");
    assert_eq!(runs[1]["approval_needed"], true);
    assert_eq!(runs[1]["approvers"], 2);
    // Triggers and sweeps have no occurrences to list, but say how they fire.
    assert_eq!(job("usdt-sweep")["trigger"]["kind"], "sweep");
    assert_eq!(
        job("supplier-on-demand")["trigger"]["max_amount"],
        "2000000"
    );
}

/// `treasury jobs plan` over the repository's own job files, with `extra` arguments.
pub async fn plan(extra: &[&str]) -> (Result<(), String>, String) {
    let config = root().join("config/treasury.toml");
    let jobs = root().join("jobs");
    let mut args = vec![
        "--config",
        config.to_str().unwrap(),
        "jobs",
        "plan",
        "--jobs",
        jobs.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    treasury(&args).await
}

#[tokio::test]
async fn plan_adds_up_each_currency_per_job_and_overall_with_the_approvals_needed() {
    let window = ["--next", "3", "--from", "2026-03-01T00:00:00Z"];
    let (r, out) = plan(&[&window[..], &["--json"]].concat()).await;
    r.unwrap();
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    let t = &shown["totals"];
    // Salaries: three occurrences of ada (450000 NGN), grace (900000 NGN, two
    // approvers) and alan (300 USDT).
    let salaries = &t["jobs"]["salaries-monthly"];
    assert_eq!(salaries["runs"], 9);
    assert_eq!(salaries["runs_needing_approval"], 3);
    assert_eq!(salaries["approvals"], 6);
    assert_eq!(
        salaries["amounts"],
        serde_json::json!([
            {"currency": "NGN", "side": "target", "amount": "4050000"},
            {"currency": "USDT", "side": "source", "amount": "900"},
        ])
    );
    assert_eq!(t["overall"]["runs"], 12);
    assert_eq!(t["overall"]["amounts"][0]["amount"], "4800000");
    let (r, out) = plan(&window).await;
    r.unwrap();
    assert!(
        out.contains("\n  overall: 12 run(s): deliver 4800000 NGN, send 900 USDT; 3 need approval (6 approvals in all)\n"),
        "{out}"
    );
    assert!(
        out.contains("\n  vendor-weekly: 3 run(s): deliver 750000 NGN; no approval needed\n"),
        "{out}"
    );
}

#[test]
fn the_binary_exits_1_when_a_job_file_is_wrong() {
    let dir = broken_dir();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_treasury"))
        .current_dir(root())
        .args(["jobs", "validate", "--no-store", "--jobs"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.contains(".toml:")).count(),
        3,
        "{stdout}"
    );
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_treasury"))
        .current_dir(root())
        .args(["jobs", "validate", "--no-store"])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_checks_the_scopes_the_customer_actually_granted() {
    // Arrange: a store whose grant was consented without recipients:write, which the
    // vendor job (a bank recipient) needs; the config itself declares every scope.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let store = treasury::store::Store::connect(&url).await.unwrap();
    let now = utc("2026-03-01T00:00:00Z");
    crate::jobs_scheduler::connect_grant(&store, now).await;
    let mut tx = store.begin().await.unwrap();
    store
        .upsert_connected_grant_in(
            &mut tx,
            &treasury::store::ConnectedGrantRow {
                id: "grt_test".into(),
                provider: "busha".into(),
                alias: "acme-treasury".into(),
                subject: "user-1".into(),
                tokens: treasury::store::SealedTokens {
                    key_version: 1,
                    access_token_ct: "sealed".into(),
                    access_expires_at: now,
                    refresh_token_ct: None,
                    scopes: "balances:read quotes:read quotes:write transfers:read transfers:write recipients:read".into(),
                    refresh_expires_at: None,
                },
                region: None,
                consent: None,
            },
            now,
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    store.close().await;
    let config = dir.path().join("treasury.toml");
    let text = std::fs::read_to_string(root().join("config/treasury.toml")).unwrap();
    std::fs::write(&config, text.replace("sqlite://treasury.db?mode=rwc", &url)).unwrap();
    // The calendar salaries-monthly names lives beside the config.
    std::fs::create_dir(dir.path().join("calendars")).unwrap();
    std::fs::copy(
        root().join("config/calendars/ng.toml"),
        dir.path().join("calendars/ng.toml"),
    )
    .unwrap();
    let jobs_dir = dir.path().join("jobs");
    std::fs::create_dir(&jobs_dir).unwrap();
    std::fs::copy(
        root().join("jobs/vendor-weekly.toml"),
        jobs_dir.join("vendor.toml"),
    )
    .unwrap();
    std::fs::copy(
        root().join("jobs/salaries-monthly.toml"),
        jobs_dir.join("salaries.toml"),
    )
    .unwrap();

    // Act
    let (r, out) = treasury(&[
        "--config",
        config.to_str().unwrap(),
        "jobs",
        "validate",
        "--jobs",
        jobs_dir.to_str().unwrap(),
    ])
    .await;

    // Assert: both jobs name bank recipients; each is refused at its `grant` line.
    assert!(r.is_err(), "{out}");
    let scope_errors: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.contains(
                "as granted (in the store) lacks the scopes this job needs: recipients:write",
            )
        })
        .collect();
    assert_eq!(scope_errors.len(), 2, "{out}");
    assert!(
        scope_errors.iter().any(|l| l.contains("vendor.toml:5:")),
        "{out}"
    );
    // Without the store, the same files are valid.
    let (r, out) = treasury(&[
        "--config",
        config.to_str().unwrap(),
        "jobs",
        "validate",
        "--no-store",
        "--jobs",
        jobs_dir.to_str().unwrap(),
    ])
    .await;
    assert!(r.is_ok(), "{out}");
}
