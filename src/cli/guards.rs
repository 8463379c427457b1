//! `treasury halt|resume [--job J | --grant G]` and `treasury halts`: the kill switch.
//!
//! A halt with no flag stops everything; `--job` pauses one job; `--grant` stops every
//! job on one grant. Halts are persisted and audited (`halt.on` / `halt.off`, with the
//! operator). Runs already in flight stop before their next money-moving step, and go
//! on by themselves within the guards' recheck interval (30 s) of a resume.
//!
//! A job id or grant alias nobody knows is refused, with the closest known name: a
//! typo must never look like a kill switch pulled (see [`KnownNames`]).

use std::io::Write;
use std::path::PathBuf;

use clap::{ArgGroup, Args};

use super::CliError;
use crate::clock::Clock;
use crate::config::GrantSpec;
use crate::guards::known::KnownNames;
use crate::guards::{HaltScope, Operator};
use crate::store::Store;

/// Which halt: none of the flags means the global one.
#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("scope").args(["job", "grant"]).multiple(false)))]
pub struct ScopeArgs {
    /// One job (by its `id` key): this is how a job is paused.
    #[arg(long)]
    pub job: Option<String>,
    /// Every job on one grant alias.
    #[arg(long)]
    pub grant: Option<String>,
    /// The jobs directory, where job ids are looked up (besides the store's runs).
    #[arg(long = "jobs", value_name = "DIR", default_value = crate::jobs::DEFAULT_DIR)]
    pub jobs_dir: PathBuf,
}

impl ScopeArgs {
    fn scope(&self) -> Result<HaltScope, CliError> {
        let nonblank = |what: &str, v: &str| {
            let v = v.trim();
            if v.is_empty() {
                Err(CliError(format!("--{what} needs a value")))
            } else {
                Ok(v.to_string())
            }
        };
        Ok(match (&self.job, &self.grant) {
            (Some(j), _) => HaltScope::Job(nonblank("job", j)?),
            (_, Some(g)) => HaltScope::Grant(nonblank("grant", g)?),
            _ => HaltScope::All,
        })
    }

    /// The scope, refused if it names a job or grant that nobody knows.
    async fn known_scope(
        &self,
        store: &Store,
        grants: &[GrantSpec],
    ) -> Result<HaltScope, CliError> {
        let scope = self.scope()?;
        if scope == HaltScope::All {
            return Ok(scope);
        }
        // A broken file elsewhere in the directory hides only its own job: the job's
        // runs, if any, still make it known.
        let file_jobs = crate::jobs::load_dir(&self.jobs_dir, None)
            .map_err(|e| CliError(format!("cannot read the job ids: {e}")))?
            .jobs
            .into_iter()
            .map(|j| j.id().to_string());
        let known = KnownNames::gather(store, file_jobs, grants.iter().map(|g| g.alias.clone()))
            .await
            .map_err(CliError::from)?;
        known.check(&scope).map_err(CliError)?;
        Ok(scope)
    }
}

#[derive(Args, Debug, Clone)]
pub struct HaltArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Why (recorded in the audit log and shown on held runs).
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ResumeArgs {
    #[command(flatten)]
    pub scope: ScopeArgs,
}

fn io(e: std::io::Error) -> CliError {
    CliError(format!("cannot write output: {e}"))
}

/// `treasury halt`. `grants`: the aliases config declares.
pub async fn halt(
    store: &Store,
    clock: &Clock,
    grants: &[GrantSpec],
    args: HaltArgs,
    who: &Operator,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let scope = args.scope.known_scope(store, grants).await?;
    let reason = args
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let new = store
        .set_halt(&scope, reason, who, clock.now())
        .await
        .map_err(CliError::from)?;
    if new {
        tracing::warn!(%scope, operator = %who, "HALT: no new money-moving step starts");
        writeln!(
            out,
            "halted {scope}: no recipient creation, quote lock or transfer starts; runs in flight stop before their next step"
        )
        .map_err(io)
    } else {
        writeln!(out, "{scope} was already halted; nothing changed").map_err(io)
    }
}

/// `treasury resume`. `grants`: the aliases config declares.
pub async fn resume(
    store: &Store,
    clock: &Clock,
    grants: &[GrantSpec],
    args: ResumeArgs,
    who: &Operator,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let scope = args.scope.known_scope(store, grants).await?;
    let lifted = store
        .clear_halt(&scope, who, clock.now())
        .await
        .map_err(CliError::from)?;
    if lifted {
        tracing::warn!(%scope, operator = %who, "resumed");
        let others = store.halts().await.map_err(CliError::from)?;
        writeln!(out, "resumed {scope}: held runs go on at their next check").map_err(io)?;
        if !others.is_empty() {
            let list: Vec<String> = others.iter().map(|h| h.scope.to_string()).collect();
            writeln!(out, "still halted: {}", list.join(", ")).map_err(io)?;
        }
        Ok(())
    } else {
        Err(CliError(format!(
            "{scope} is not halted; nothing to resume"
        )))
    }
}

/// `treasury halts`: every active halt.
pub async fn list(store: &Store, json: bool, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let halts = store.halts().await.map_err(CliError::from)?;
    if json {
        let v = serde_json::to_value(&halts).map_err(CliError::from)?;
        return writeln!(out, "{v}").map_err(io);
    }
    if halts.is_empty() {
        return writeln!(out, "nothing is halted").map_err(io);
    }
    for h in &halts {
        writeln!(
            out,
            "HALTED {:<24} by {} at {}{}",
            h.scope.to_string(),
            h.halted_by,
            h.halted_at.to_rfc3339(),
            h.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        )
        .map_err(io)?;
    }
    Ok(())
}
