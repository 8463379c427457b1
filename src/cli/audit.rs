//! `treasury audit verify|head|export|checkpoint|keygen|public-key`.

use std::io::Write;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Subcommand, ValueEnum};

use super::{CliError, Context};
use crate::store::AuditExport;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute the hash chain, then check every run against its seal and every MAC
    /// (approvals, halts, cap reservations, run creations; needs TREASURY_MASTER_KEY);
    /// exit 1 naming the first bad entry, each run that differs from its seal, and each
    /// entry whose MAC does not prove it.
    Verify {
        /// A head hash recorded earlier (`treasury audit head`): it must still be in
        /// the chain, which proves the chain was not rewritten wholesale.
        #[arg(long)]
        expect_head: Option<String>,
        #[command(flatten)]
        checkpoints: super::audit_checkpoints::CheckpointArgs,
        #[arg(long)]
        json: bool,
    },
    /// Make a signed checkpoint of the chain's head now, into `[audit] checkpoints`.
    Checkpoint {
        #[arg(long)]
        json: bool,
    },
    /// Print a new random signing key (base64 of a 32-byte Ed25519 seed) for
    /// TREASURY_AUDIT_SIGNING_KEY. Needs no config or store.
    Keygen,
    /// Print the public key of TREASURY_AUDIT_SIGNING_KEY (PEM), to hand to auditors.
    PublicKey,
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
            AuditCommand::Verify {
                expect_head,
                checkpoints,
                json,
            } if checkpoints.is_set() => {
                self.verify_checkpoints(expect_head, checkpoints, json, out)
                    .await
            }
            AuditCommand::Checkpoint { json } => self.checkpoint(json, out).await,
            AuditCommand::Keygen | AuditCommand::PublicKey => {
                super::audit_checkpoints::offline(command, out)
            }
            AuditCommand::Verify {
                expect_head, json, ..
            } => {
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
                        super::seals::verify_seals(&self.store, json, out).await
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
}
