//! `treasury audit verify`'s seal check: every MAC'd entry (approvals, halts, cap
//! reservations, run creations) must carry the worker's MAC, and every run's row must
//! match its seal. Each bad MAC is named by its entry's seq, each mismatch by run id.

use std::io::Write;

use super::CliError;
use crate::seal::KeyOrigin;
use crate::store::Store;

/// Checks the store against its seals; prints what it found and fails on any problem.
pub(super) async fn verify_seals(
    store: &Store,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError(format!("cannot write output: {e}"));
    let report = store.verify_seals().await.map_err(CliError::from)?;
    if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({ "seals_ok": report.problems.is_empty(), "seals": report })
        )
        .map_err(io)?;
    }
    if report.problems.is_empty() {
        if !json {
            writeln!(
                out,
                "seals verified ({} runs match their seals, {} MACs valid)",
                report.runs_checked, report.macs_checked
            )
            .map_err(io)?;
        }
        return Ok(());
    }
    let mut lines: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    if store.seal_keys().origin() == KeyOrigin::Process {
        lines.push(
            "TREASURY_MASTER_KEY is not set (or not valid) here: MACs were checked against this process's own key; set it to check the worker's"
                .into(),
        );
    }
    Err(CliError(format!(
        "seals broken ({} problems):\n  {}",
        report.problems.len(),
        lines.join("\n  ")
    )))
}
