//! `treasury grants list|show|refresh|revoke|rekey`: stored grants, never their tokens.

use std::io::Write;

use clap::Subcommand;

use super::{CliError, Context, acting, connect};
use crate::config;
use crate::grants::crypto::MASTER_KEY_ENV;
use crate::grants::rekey::{RekeyReport, rekey};
use crate::grants::{Grant, GrantStatus};
use crate::guards::Operator;

#[derive(Subcommand, Debug)]
pub enum GrantsCommand {
    /// Every declared or stored grant; disconnected ones first and loudly.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One grant in full (never its tokens).
    Show {
        alias: String,
        #[arg(long)]
        json: bool,
    },
    /// Refresh a grant's tokens now.
    Refresh { alias: String },
    /// Revoke a grant at its provider and mark it revoked (on Baanx this ends every
    /// token of this app for the customer).
    Revoke { alias: String },
    /// Re-encrypt every grant under the newest TREASURY_MASTER_KEY version.
    Rekey {
        #[arg(long)]
        json: bool,
    },
}

impl Context {
    async fn grant_named(&self, alias: &str) -> Result<Grant, CliError> {
        let row = self
            .store
            .grant_by_alias(self.provider_of(alias), alias)
            .await
            .map_err(CliError::from)?
            .ok_or_else(|| {
                let hint = if self.settings.grant(alias).is_some() {
                    format!("; connect it with `treasury connect {alias}`")
                } else {
                    " and no such alias is declared in the config".to_string()
                };
                CliError(format!("grant {alias} is not connected{hint}"))
            })?;
        Grant::from_row(&row).map_err(CliError::from)
    }

    /// Runs one `grants` subcommand.
    pub async fn grants(
        &self,
        command: GrantsCommand,
        who: Option<&Operator>,
        out: &mut (dyn Write + Send),
    ) -> Result<(), CliError> {
        let io = |e: std::io::Error| CliError(format!("cannot write output: {e}"));
        match command {
            GrantsCommand::List { json } => {
                let rows = self.store.grants().await.map_err(CliError::from)?;
                let mut grants: Vec<Grant> = rows
                    .iter()
                    .map(Grant::from_row)
                    .collect::<Result<_, _>>()
                    .map_err(CliError::from)?;
                // Unusable grants first: they are what an operator must act on.
                grants.sort_by_key(|g| (g.status.is_usable(), g.alias.clone()));
                let missing: Vec<&config::GrantSpec> = self
                    .settings
                    .grants
                    .iter()
                    .filter(|s| {
                        !grants
                            .iter()
                            .any(|g| g.alias == s.alias && g.provider == s.provider)
                    })
                    .collect();
                if json {
                    let mut items: Vec<serde_json::Value> = grants
                        .iter()
                        .map(|g| {
                            let mut v = serde_json::to_value(g).unwrap_or_default();
                            v["usable"] = g.status.is_usable().into();
                            v
                        })
                        .collect();
                    items.extend(missing.iter().map(|s| {
                        serde_json::json!({"alias": s.alias, "provider": s.provider, "status": "not_connected", "usable": false})
                    }));
                    writeln!(out, "{}", serde_json::Value::Array(items)).map_err(io)?;
                    return Ok(());
                }
                write_list(out, &grants, &missing).map_err(io)
            }
            GrantsCommand::Show { alias, json } => {
                let g = self.grant_named(&alias).await?;
                if json {
                    let mut v = serde_json::to_value(&g).unwrap_or_default();
                    v["usable"] = g.status.is_usable().into();
                    writeln!(out, "{v}").map_err(io)?;
                } else {
                    write_show(out, &g).map_err(io)?;
                }
                Ok(())
            }
            GrantsCommand::Refresh { alias } => {
                let g = self.grant_named(&alias).await?;
                let custodian = self
                    .custodian_for(&g.provider)
                    .await?
                    .acting_for(&acting(who)?.actor());
                custodian.refresh_now(&g.id).await.map_err(CliError::from)?;
                let g = self.grant_named(&alias).await?;
                writeln!(
                    out,
                    "refreshed {alias}: the access token is valid until {}",
                    g.access_expires_at.to_rfc3339()
                )
                .map_err(io)
            }
            GrantsCommand::Revoke { alias } => {
                let g = self.grant_named(&alias).await?;
                let custodian = self.custodian_for(&g.provider).await?;
                let g = custodian
                    .revoke(&g.id, &acting(who)?.actor())
                    .await
                    .map_err(CliError::from)?;
                writeln!(
                    out,
                    "revoked {alias} (status {}); jobs using it are held until `treasury connect {alias}`",
                    g.status.as_str()
                )
                .map_err(io)
            }
            GrantsCommand::Rekey { json } => {
                let keys = self.keys()?;
                let report = rekey(&self.store, &keys, &self.clock, &acting(who)?.actor())
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
                    write_rekey(out, &report).map_err(io)?;
                }
                rekey_outcome(&report)
            }
        }
    }
}

fn write_list(
    out: &mut (dyn Write + Send),
    grants: &[Grant],
    missing: &[&config::GrantSpec],
) -> std::io::Result<()> {
    let held: Vec<&Grant> = grants.iter().filter(|g| !g.status.is_usable()).collect();
    for g in &held {
        writeln!(
            out,
            "!! {} {}: {} -- its jobs are held; reconnect with `treasury connect {}`",
            g.status.as_str().to_uppercase(),
            g.alias,
            g.status_reason.as_deref().unwrap_or("no reason recorded"),
            g.alias
        )?;
    }
    if !held.is_empty() {
        writeln!(out)?;
    }
    writeln!(
        out,
        "{:<20} {:<8} {:<14} {:<38} {:<26} SCOPES",
        "ALIAS", "PROVIDER", "STATUS", "SUBJECT", "ACCESS TOKEN EXPIRES"
    )?;
    for g in grants {
        let status = match g.status {
            GrantStatus::Active => "active".to_string(),
            other => format!("{}!", other.as_str().to_uppercase()),
        };
        writeln!(
            out,
            "{:<20} {:<8} {:<14} {:<38} {:<26} {}",
            g.alias,
            g.provider,
            status,
            g.subject,
            g.access_expires_at.format("%Y-%m-%d %H:%M:%S UTC"),
            g.scopes.join(" ")
        )?;
    }
    for s in missing {
        writeln!(
            out,
            "{:<20} {:<8} {:<14} (declared; run `treasury connect {}`)",
            s.alias, s.provider, "not connected", s.alias
        )?;
    }
    Ok(())
}

fn write_show(out: &mut (dyn Write + Send), g: &Grant) -> std::io::Result<()> {
    let opt =
        |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or("-".to_string(), |t| t.to_rfc3339());
    writeln!(out, "alias:          {}", g.alias)?;
    writeln!(out, "id:             {}", g.id)?;
    writeln!(out, "provider:       {}", g.provider)?;
    writeln!(out, "subject:        {}", g.subject)?;
    writeln!(
        out,
        "status:         {}{}",
        g.status.as_str(),
        if g.status.is_usable() {
            ""
        } else {
            "  (NOT USABLE: jobs are held)"
        }
    )?;
    if let Some(r) = &g.status_reason {
        writeln!(out, "reason:         {r}")?;
    }
    writeln!(out, "scopes:         {}", g.scopes.join(" "))?;
    writeln!(out, "access expires: {}", g.access_expires_at.to_rfc3339())?;
    writeln!(
        out,
        "refresh token:  {}",
        if g.has_refresh_token {
            "held (encrypted)"
        } else {
            "none"
        }
    )?;
    writeln!(out, "key version:    v{}", g.key_version)?;
    writeln!(out, "connected at:   {}", g.connected_at.to_rfc3339())?;
    writeln!(out, "refreshed at:   {}", opt(g.refreshed_at))?;
    if let Some(region) = &g.region {
        writeln!(out, "region:         {region}")?;
    }
    writeln!(out, "refresh dies:   {}", opt(g.refresh_expires_at))?;
    writeln!(out, "updated at:     {}", g.updated_at.to_rfc3339())?;
    match &g.consent {
        Some(c) => connect::write_consent(out, c),
        None => writeln!(
            out,
            "consent:        not recorded (connected before consent records)"
        ),
    }
}

/// A rekey that left any grant it could not open is a failure, naming each grant and
/// the version it is sealed under.
fn rekey_outcome(r: &RekeyReport) -> Result<(), CliError> {
    if r.unopenable.is_empty() {
        return Ok(());
    }
    let each: Vec<String> = r.unopenable.iter().map(|p| format!("  {p}")).collect();
    Err(CliError(format!(
        "rekey failed: {} grant(s) do not open under {MASTER_KEY_ENV} and were left unchanged:\n{}\n\
         list every version the grants are sealed under, newest first (e.g. v2:<new>,v1:<old>), and run rekey again",
        r.unopenable.len(),
        each.join("\n")
    )))
}

fn write_rekey(out: &mut (dyn Write + Send), r: &RekeyReport) -> std::io::Result<()> {
    writeln!(
        out,
        "re-encrypted {} grant(s) under master key v{}; {} already current",
        r.rekeyed.len(),
        r.newest_version,
        r.already_current.len()
    )?;
    if !r.busy.is_empty() {
        writeln!(
            out,
            "busy (refreshing; run rekey again): {}",
            r.busy.join(", ")
        )?;
    }
    if !r.unopenable.is_empty() {
        let names: Vec<String> = r
            .unopenable
            .iter()
            .map(|p| format!("{} (sealed under v{})", p.alias, p.key_version))
            .collect();
        writeln!(out, "do not open (left unchanged): {}", names.join(", "))?;
    }
    Ok(())
}
