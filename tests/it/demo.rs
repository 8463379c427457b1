//! `treasury demo`, the README's first command, as a user runs it: the real binary,
//! from the repository's own `config/` and `jobs/`, with no environment set up.

use std::path::Path;
use std::process::Command;

fn demo(args: &[&str]) -> (bool, String, String) {
    demo_logging(args, "warn")
}

fn demo_logging(args: &[&str], rust_log: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_treasury"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .arg("demo")
        .args(args)
        // Zero setup: none of the worker's secrets, and the trigger's left unset too.
        .env_remove("TREASURY_MASTER_KEY")
        .env_remove("TREASURY_BUSHA_CLIENT_SECRET")
        .env_remove("TREASURY_TRIGGER_SUPPLIER_SECRET")
        .env("RUST_LOG", rust_log)
        .output()
        .expect("the treasury binary runs");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn the_demo_settles_every_example_job_and_ends_on_a_verified_audit_chain() {
    let kept = tempfile::tempdir().unwrap();
    let dir = kept.path().join("demo");
    let (ok, stdout, stderr) = demo_logging(
        &["--occurrences", "4", "--keep", dir.to_str().unwrap()],
        "info",
    );
    assert!(ok, "the demo exits 0\nstdout:\n{stdout}\nstderr:\n{stderr}");
    the_kept_folder_serves_the_store(&dir, &stdout, &stderr);
    let last = stdout.lines().last().unwrap_or_default();
    let entries: u64 = last
        .strip_prefix("audit chain verified (")
        .and_then(|r| r.strip_suffix(" entries)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the last line is the audit line, got {last:?}"));
    assert!(entries > 20, "every step is audited: {entries} entries");

    // The run table: a header, then one row per run.
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("JOB "))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    for job in [
        "vendor-weekly",
        "salaries-monthly",
        "supplier-on-demand",
        "usdt-sweep",
    ] {
        assert!(
            table.iter().any(|row| row.starts_with(job)),
            "{job} ran in the demo:\n{stdout}"
        );
    }
    assert!(
        table.iter().all(|row| row.contains(" settled ")),
        "every run settled:\n{stdout}"
    );
    // Three salary payees, one trigger, one sweep, and at least one vendor payout.
    assert!(table.len() >= 6, "{stdout}");
    let summary = format!(
        "{0} of {0} runs settled; Busha's ledger holds {0} transfers",
        table.len()
    );
    assert!(stdout.contains(&summary), "missing {summary:?}:\n{stdout}");
    // The salary batch's large payment needed (and got) two distinct approvers.
    assert!(
        stdout.contains("demo-approver-1 and demo-approver-2"),
        "{stdout}"
    );
    // The replayed trigger created nothing.
    assert!(stdout.contains("no second run"), "{stdout}");
    // Account numbers stay masked in CLI output.
    for number in ["0123456789", "2233445566"] {
        assert!(!stdout.contains(number), "{number} is masked:\n{stdout}");
        assert!(!stderr.contains(number), "{number} is masked:\n{stderr}");
    }
}

#[test]
fn the_demo_refuses_a_broken_job_directory_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jobs");
    std::fs::copy(
        fixtures.join("negative_amount.toml"),
        dir.path().join("negative_amount.toml"),
    )
    .unwrap();
    let (ok, stdout, stderr) = demo(&["--jobs", dir.path().to_str().unwrap()]);
    assert!(!ok, "a broken job file fails the demo\n{stdout}");
    assert!(
        stderr.contains("negative_amount.toml:"),
        "the error names the file and line: {stderr}"
    );
    assert!(!stdout.contains("audit chain verified"), "{stdout}");
}

/// `--keep`: the store, config, key and sandbox state stay; the accounts' passwords and
/// the serve command are printed; the logs are in the folder, not on the terminal; and
/// the kept store opens with the kept key and config.
fn the_kept_folder_serves_the_store(dir: &Path, stdout: &str, stderr: &str) {
    for file in [
        "treasury.db",
        "treasury.toml",
        "master-key",
        "sandbox-state.json",
        "demo.log",
    ] {
        assert!(
            dir.join(file).is_file(),
            "{file} is kept in {}",
            dir.display()
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("master-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the key is the owner's only: {mode:o}");
    }
    let log = std::fs::read_to_string(dir.join("demo.log")).unwrap();
    assert!(log.contains(" INFO "), "the logs go to demo.log:\n{log}");
    assert!(
        !stderr.contains(" WARN ") && !stderr.contains(" INFO "),
        "logs stay off the terminal without -v:\n{stderr}"
    );
    let state = std::fs::read_to_string(dir.join("sandbox-state.json")).unwrap();
    assert!(state.contains("transfer_created"), "{state}");
    assert!(
        !state.contains("0123456789"),
        "account numbers masked in the state"
    );
    for account in ["demo-admin", "demo-approver-1", "demo-approver-2"] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(account)),
            "{account}'s password is printed:\n{stdout}"
        );
    }
    assert!(stdout.contains("treasury serve --config"), "{stdout}");

    // The kept store opens with the kept key: its chain and seals verify.
    let key = std::fs::read_to_string(dir.join("master-key")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_treasury"))
        .arg("--config")
        .arg(dir.join("treasury.toml"))
        .args(["audit", "verify"])
        .env("TREASURY_MASTER_KEY", key.trim())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("seals verified"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A kept demo is never overwritten.
    let (ok, again, err) = demo(&["--keep", dir.to_str().unwrap()]);
    assert!(!ok, "{again}");
    assert!(err.contains("not empty"), "{err}");
    assert!(dir.join("treasury.db").is_file());
}
