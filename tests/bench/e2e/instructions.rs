//! Instructions per run, counted by callgrind: a figure that repeats on a noisy machine.
//!
//! The parent (the bench) keeps the sandbox in its own process, where nothing is
//! counted, and starts this same binary under `valgrind --tool=callgrind` as a child
//! that drives runs against it over loopback: once through the pipeline and the store
//! (SQLite, `synchronous = FULL`), once through the bare loop making the same provider
//! calls. Each child runs on one thread of tokio, one run at a time, so the count does
//! not depend on scheduling. Each path is counted at `n` and at `2n` runs and the
//! difference is divided by `n`: start-up (the runtime, TLS, migrations) cancels out.
//! Callgrind counts user-space instructions only.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use treasury::clock::Clock;
use treasury::provider::AccessToken;
use treasury::provider::busha::{BushaClient, BushaConfig};
use treasury::provider::pacing::EndpointLimits;
use treasury::store::Store;

use crate::world::{Bench, SCALE, bare_run_on, create_runs_on, drain, pipeline_on};

/// The flag that makes this binary a counted child: `--count-child <path> <runs>`.
pub const CHILD_FLAG: &str = "--count-child";
const SANDBOX_ENV: &str = "TREASURY_BENCH_SANDBOX";
const TOKEN_ENV: &str = "TREASURY_BENCH_TOKEN";
const RECIPIENT_ENV: &str = "TREASURY_BENCH_RECIPIENT";

/// What one counted child drives.
#[derive(Clone, Copy, Debug)]
enum Loop {
    /// Runs created and executed through the pipeline and the store.
    Ours,
    /// The same provider calls, no store.
    Bare,
}

impl Loop {
    fn name(self) -> &'static str {
        match self {
            Loop::Ours => "ours",
            Loop::Bare => "bare",
        }
    }
}

/// The child's side: `args` are what follows [`CHILD_FLAG`].
pub fn child(args: &[String]) {
    let path = match args.first().map(String::as_str) {
        Some("ours") => Loop::Ours,
        Some("bare") => Loop::Bare,
        other => panic!("{CHILD_FLAG}: expected `ours` or `bare`, got {other:?}"),
    };
    let runs: usize = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{CHILD_FLAG} {}: expected a number of runs", path.name()));
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let (sandbox, token, recipient) = (env(SANDBOX_ENV), env(TOKEN_ENV), env(RECIPIENT_ENV));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut cfg = BushaConfig::new(url::Url::parse(&sandbox).unwrap());
        cfg.limits = EndpointLimits::busha().scaled(SCALE);
        let busha = BushaClient::new(cfg).unwrap();
        let token = AccessToken::new(token);
        match path {
            Loop::Bare => {
                for _ in 0..runs {
                    bare_run_on(&busha, &token, &recipient).await;
                }
            }
            Loop::Ours => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("count.db").display()
                );
                let store = Store::connect(&url).await.unwrap();
                let clock = Clock::system();
                let ids = create_runs_on(&store, &clock, &recipient, runs, "count").await;
                let p = pipeline_on(&store, &busha, &token, &clock);
                drain(&p, &clock, ids, 1).await;
            }
        }
    });
}

/// Why the figure could not be taken, when it could not.
pub fn unavailable() -> Option<String> {
    match Command::new("valgrind").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("valgrind not found (apt install valgrind)".into()),
    }
}

/// Counts one child of `runs` runs on `path`; returns its instructions.
fn count(b: &Bench, path: Loop, runs: usize, out_dir: &Path) -> Result<u64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = out_dir.join(format!("callgrind.{}.{runs}", path.name()));
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--quiet")
        .arg(exe)
        .args([CHILD_FLAG, path.name(), &runs.to_string()])
        .env(SANDBOX_ENV, b.sb.url().as_str())
        .env(TOKEN_ENV, b.token.secret())
        .env(RECIPIENT_ENV, &b.recipient)
        .env("RUST_LOG", "off")
        .status()
        .map_err(|e| format!("valgrind: {e}"))?;
    if !status.success() {
        return Err(format!(
            "the counted child ({} × {runs}) exited {status}",
            path.name()
        ));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    summary(&text).ok_or_else(|| format!("{}: no `summary:` line", out.display()))
}

/// The total from a callgrind output file (`summary: N`, or `totals: N`).
fn summary(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Instructions per run for ours and the bare loop, and their ratio.
pub async fn measure(b: &Bench, runs: usize) -> Value {
    if let Some(why) = unavailable() {
        return json!({ "not_run": why });
    }
    let dir = tempfile::tempdir().unwrap();
    // Per run: instructions, and the provider calls the sandbox saw, each the
    // difference between the 2n and the n child.
    let per_run = |path: Loop| -> Result<(f64, f64), String> {
        let calls0 = b.sb.requests().len();
        let small = count(b, path, runs, dir.path())?;
        let calls1 = b.sb.requests().len();
        let large = count(b, path, 2 * runs, dir.path())?;
        let calls2 = b.sb.requests().len();
        let calls = (calls2 - calls1).saturating_sub(calls1 - calls0);
        Ok((
            large.saturating_sub(small) as f64 / runs as f64,
            calls as f64 / runs as f64,
        ))
    };
    let counted = tokio::task::block_in_place(|| {
        Ok::<_, String>((per_run(Loop::Ours)?, per_run(Loop::Bare)?))
    });
    match counted {
        Ok(((ours, ours_calls), (bare, bare_calls))) => json!({
            "runs": runs,
            "ours_instructions_per_run": ours,
            "bare_instructions_per_run": bare,
            "ratio": ours / bare.max(1.0),
            "ours_provider_calls_per_run": ours_calls,
            "bare_provider_calls_per_run": bare_calls,
        }),
        Err(e) => json!({ "not_run": e }),
    }
}
