//! `treasury audit verify|head|export` and `treasury reconcile`.

use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Subcommand, ValueEnum};

use super::{CliError, Context};
use crate::provider::busha::{BushaClient, BushaConfig};
use crate::runs::mask_account_numbers_in;
use crate::store::AuditExport;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute the hash chain; exit 1 naming the first bad entry.
    Verify {
        /// A head hash recorded earlier (`treasury audit head`): it must still be in
        /// the chain, which proves the chain was not rewritten wholesale.
        #[arg(long)]
        expect_head: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print the latest sequence number and hash, to keep somewhere safe.
    Head {
        #[arg(long)]
        json: bool,
    },
    /// Export entries (oldest first).
    Export {
        /// RFC 3339 time or YYYY-MM-DD (UTC); default: everything.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

/// Parses `--since`: an RFC 3339 instant or a UTC date.
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, CliError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .ok_or_else(|| {
            CliError(format!(
                "--since {s:?}: expected an RFC 3339 time or YYYY-MM-DD"
            ))
        })
}

impl Context {
    pub async fn audit(
        &self,
        command: AuditCommand,
        out: &mut (dyn Write + Send),
    ) -> Result<(), CliError> {
        let io = |e: std::io::Error| CliError(format!("cannot write output: {e}"));
        match command {
            AuditCommand::Verify { expect_head, json } => {
                let verdict = self
                    .store
                    .verify_audit(expect_head)
                    .await
                    .map_err(CliError::from)?;
                match verdict {
                    Ok(chain) => {
                        if json {
                            writeln!(out, "{}", serde_json::json!({ "ok": true, "entries": chain.entries, "head_seq": chain.head_seq, "head_hash": chain.head_hash })).map_err(io)?;
                        } else {
                            writeln!(
                                out,
                                "audit chain verified ({} entries, head {} {})",
                                chain.entries, chain.head_seq, chain.head_hash
                            )
                            .map_err(io)?;
                        }
                        Ok(())
                    }
                    Err(broken) => {
                        if json {
                            writeln!(out, "{}", serde_json::json!({ "ok": false, "first_bad_seq": broken.seq(), "error": broken.to_string() })).map_err(io)?;
                        }
                        Err(CliError(format!("audit chain broken: {broken}")))
                    }
                }
            }
            AuditCommand::Head { json } => {
                let head = self.store.audit_head().await.map_err(CliError::from)?;
                match (head, json) {
                    (Some((seq, hash)), true) => {
                        writeln!(out, "{}", serde_json::json!({ "seq": seq, "hash": hash }))
                    }
                    (Some((seq, hash)), false) => writeln!(out, "{seq} {hash}"),
                    (None, true) => {
                        writeln!(out, "{}", serde_json::json!({ "seq": 0, "hash": null }))
                    }
                    (None, false) => writeln!(out, "0 (the audit log is empty)"),
                }
                .map_err(io)
            }
            AuditCommand::Export { since, format } => {
                let since = since.as_deref().map(parse_since).transpose()?;
                let entries = self
                    .store
                    .audit_entries(since, None)
                    .await
                    .map_err(CliError::from)?;
                let format = match format {
                    ExportFormat::Jsonl => AuditExport::Jsonl,
                    ExportFormat::Csv => AuditExport::Csv,
                };
                format.write(&entries, out).map_err(io)
            }
        }
    }

    /// `treasury reconcile`: read-only; fails (exit 1) if anything disagrees.
    pub async fn reconcile(
        &self,
        since: &str,
        grant: Option<String>,
        json: bool,
        out: &mut (dyn Write + Send),
    ) -> Result<(), CliError> {
        let io = |e: std::io::Error| CliError(format!("cannot write output: {e}"));
        let since = parse_since(since)?;
        let grants: Vec<String> = match grant {
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
        let report =
            crate::reconcile::reconcile(&self.store, &busha, custodian.as_ref(), &grants, since)
                .await
                .map_err(CliError::from)?;
        if json {
            writeln!(
                out,
                "{}",
                serde_json::to_string(&report).unwrap_or_default()
            )
            .map_err(io)?;
        } else {
            writeln!(
                out,
                "checked {} transfers and {} runs since {}",
                report.transfers_checked,
                report.runs_checked,
                since.to_rfc3339()
            )
            .map_err(io)?;
            for t in &report.unknown_transfers {
                writeln!(
                    out,
                    "UNKNOWN  {} on {}: {} -> {} ({}), quote {}, at {}",
                    t.transfer_id,
                    t.grant,
                    t.source,
                    t.target,
                    t.status,
                    t.quote_id,
                    t.created_at.to_rfc3339()
                )
                .map_err(io)?;
            }
            for d in &report.disagreements {
                writeln!(
                    out,
                    "DISAGREE {} ({}): {}",
                    d.run_id,
                    d.transfer_id.as_deref().unwrap_or("no transfer"),
                    d.problem
                )
                .map_err(io)?;
            }
            for u in &report.unreadable {
                writeln!(out, "UNREAD   {}", mask_account_numbers_in(u)).map_err(io)?;
            }
        }
        if report.is_clean() {
            Ok(())
        } else {
            Err(CliError(format!(
                "reconciliation found {} unknown transfers, {} disagreeing runs and {} unreadable grants",
                report.unknown_transfers.len(),
                report.disagreements.len(),
                report.unreadable.len()
            )))
        }
    }
}
