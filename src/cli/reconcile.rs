//! `treasury reconcile`: read-only; exit 1 on findings, 3 when it could not check
//! everything (see [`crate::reconcile`]). Stops on SIGINT/SIGTERM, saying how far it got.

use std::io::Write;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::audit::parse_since;
use super::{CliError, Context, Failure};
use crate::provider::busha::{BushaClient, BushaConfig};
use crate::reconcile::{EXIT_FINDINGS, EXIT_UNCHECKED, Report, Scope};
use crate::runs::mask_account_numbers_in;

/// What `treasury reconcile` was asked.
#[derive(Clone, Debug)]
pub struct ReconcileArgs {
    pub since: String,
    pub grant: Option<String>,
    pub json: bool,
    pub max_pages: u32,
}

impl Context {
    /// `treasury reconcile`: prints the report; fails with [`EXIT_FINDINGS`] or
    /// [`EXIT_UNCHECKED`] unless it is clean.
    pub async fn reconcile(
        &self,
        args: ReconcileArgs,
        shutdown: &CancellationToken,
        out: &mut (dyn Write + Send),
    ) -> Result<(), Failure> {
        let since = parse_since(&args.since)?;
        let grants: Vec<String> = match args.grant {
            Some(g) => vec![g],
            None => self
                .settings
                .grants
                .iter()
                .map(|g| g.alias.clone())
                .collect(),
        };
        let custodian = Arc::new(self.custodian().await?);
        let busha = BushaClient::new(BushaConfig::new(self.settings.busha.api_url.clone()))
            .map_err(CliError::from)?;
        let scope = Scope {
            max_pages: args.max_pages,
            ..Scope::new(grants, since)
        };
        let report = crate::reconcile::reconcile_until(
            &self.store,
            &busha,
            custodian.as_ref(),
            &scope,
            shutdown,
        )
        .await
        .map_err(CliError::from)?;
        let io = |e: std::io::Error| CliError(format!("cannot write output: {e}"));
        if args.json {
            let text = serde_json::to_string(&report).unwrap_or_default();
            writeln!(out, "{}", mask_account_numbers_in(&text)).map_err(io)?;
        } else {
            write_report(out, &report, &since.to_rfc3339()).map_err(io)?;
        }
        verdict(&report)
    }
}

fn write_report(out: &mut (dyn Write + Send), r: &Report, since: &str) -> std::io::Result<()> {
    writeln!(
        out,
        "checked {} transfers and {} runs since {since}",
        r.transfers_checked, r.runs_checked
    )?;
    for t in &r.unknown_transfers {
        writeln!(
            out,
            "UNKNOWN   {} on {}: {} -> {} ({}), quote {}, at {}",
            t.transfer_id,
            t.grant,
            t.source,
            t.target,
            t.status,
            t.quote_id,
            t.created_at.to_rfc3339()
        )?;
    }
    for d in &r.disagreements {
        let transfer = d.transfer_id.as_deref().unwrap_or("no transfer");
        writeln!(out, "DISAGREE  {} ({transfer}): {}", d.run_id, d.problem)?;
    }
    for s in &r.shared_transfers {
        let runs = s.run_ids.join(", ");
        writeln!(out, "SHARED    {} is claimed by runs {runs}", s.transfer_id)?;
    }
    for u in &r.unchecked {
        writeln!(out, "UNCHECKED {}", mask_account_numbers_in(u))?;
    }
    if let Some(why) = &r.interrupted {
        writeln!(out, "INTERRUPTED {why}")?;
    }
    Ok(())
}

fn verdict(r: &Report) -> Result<(), Failure> {
    if r.has_findings() {
        return Err(Failure::exit(
            EXIT_FINDINGS,
            format!(
                "reconciliation found {} unknown transfers, {} disagreeing runs and {} shared transfers{}",
                r.unknown_transfers.len(),
                r.disagreements.len(),
                r.shared_transfers.len(),
                if r.is_complete() {
                    ""
                } else {
                    " (and could not check everything)"
                }
            ),
        ));
    }
    if let Some(why) = &r.interrupted {
        return Err(Failure::exit(
            EXIT_UNCHECKED,
            format!("reconciliation stopped: {why}"),
        ));
    }
    if !r.unchecked.is_empty() {
        return Err(Failure::exit(
            EXIT_UNCHECKED,
            format!(
                "reconciliation found nothing but could not check {} thing(s); see UNCHECKED",
                r.unchecked.len()
            ),
        ));
    }
    Ok(())
}
