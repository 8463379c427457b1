//! `treasury jobs validate|plan`: checks job files and shows what they will do. Neither
//! moves money; `validate` works on a fresh clone with no store.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;

use super::CliError;
use crate::clock::Clock;
use crate::jobs::{self, StoreAccess};

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Check the config and every job file; list all errors as file:line:col; exit 1 if any.
    Validate {
        /// The jobs directory.
        #[arg(long, default_value = jobs::DEFAULT_DIR)]
        jobs: PathBuf,
        /// Do not read the store (skip the check of granted scopes).
        #[arg(long)]
        no_store: bool,
        /// Print errors and warnings as JSON objects (file, line, column, code, message).
        #[arg(long)]
        json: bool,
    },
    /// Show each job's next occurrences, amounts, recipients (masked), guards and approvals.
    Plan {
        #[arg(long, default_value = jobs::DEFAULT_DIR)]
        jobs: PathBuf,
        /// How many occurrences per scheduled job.
        #[arg(long, default_value_t = 5)]
        next: usize,
        /// Start from this instant (RFC 3339, or a date for midnight UTC) instead of now.
        #[arg(long)]
        from: Option<String>,
        /// Instead of the plan: what a worker down since this instant (RFC 3339 or a
        /// date) and back now (or at --from) would run, skip or run late.
        #[arg(long)]
        down_since: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Compare the job files with the versions the store last saw: new, changed and gone
    /// jobs, field by field, and what that does to the next occurrences.
    Diff {
        #[arg(long, default_value = jobs::DEFAULT_DIR)]
        jobs: PathBuf,
        /// How many occurrences per scheduled job to compare.
        #[arg(long, default_value_t = 3)]
        next: usize,
        /// Compare occurrences from this instant (RFC 3339, or a date) instead of now.
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn io(e: std::io::Error) -> CliError {
    CliError(format!("cannot write output: {e}"))
}

/// Parses an instant given to `flag` (`--from`, `--down-since`): RFC 3339, or
/// `YYYY-MM-DD` for midnight UTC.
pub fn parse_from(flag: &str, s: &str) -> Result<DateTime<Utc>, CliError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            CliError(format!(
                "{flag} {s:?} is not an RFC 3339 instant (2026-03-08T09:00:00Z) or a date (2026-03-08)"
            ))
        })
}

/// The holders' names runs have read, from the store if there is one; without a store
/// (a fresh clone) every holder is shown as not yet known. The note says why none
/// could be read.
async fn read_holders(config: &Path, jobs: &[jobs::Job]) -> (jobs::plan::Holders, Option<String>) {
    let unknown = jobs::plan::Holders::unknown;
    let url = match crate::config::Settings::load(config) {
        Ok(s) => s.store.url,
        Err(e) => {
            return (
                unknown(),
                Some(format!("the config could not be read ({e})")),
            );
        }
    };
    let store = match jobs::open_store_for_reading(&url).await {
        Ok(Some(store)) => store,
        Ok(None) => return (unknown(), None),
        Err(e) => {
            return (
                unknown(),
                Some(format!("the store could not be opened ({e})")),
            );
        }
    };
    match jobs::plan::Holders::read(&store, jobs).await {
        Ok(h) => (h, None),
        Err(e) => (
            unknown(),
            Some(format!("the store could not be read ({e})")),
        ),
    }
}

/// `validate --json`: the report on stdout; exit 1 when it holds an error.
fn write_json(
    out: &mut (dyn Write + Send),
    v: &jobs::Validation,
    warnings: &[String],
) -> Result<(), CliError> {
    let report = jobs::report::report(v, warnings);
    let text = serde_json::to_string_pretty(&report)
        .map_err(|e| CliError(format!("cannot encode the report: {e}")))?;
    writeln!(out, "{text}").map_err(io)?;
    if report.ok {
        Ok(())
    } else {
        Err(CliError(format!("{} error(s)", report.errors.len())))
    }
}

/// What `treasury run` checks before it makes any network call (the store, the
/// issuer): the whole config and every job file, every error shown at once.
pub async fn preflight(
    config: &Path,
    dir: &Path,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let v = jobs::validate(config, dir, StoreAccess::Never).await;
    if v.errors.is_empty() {
        return Ok(());
    }
    for e in &v.errors {
        writeln!(out, "{e}").map_err(io)?;
    }
    Err(CliError(format!(
        "{} error(s) in the config or the job files: `treasury run` starts only when all are fixed",
        v.errors.len()
    )))
}

/// Runs one `jobs` subcommand. It reads the config itself, so that a broken config is
/// reported like any other error instead of stopping the command.
pub async fn run(
    config: &Path,
    command: JobsCommand,
    clock: &Clock,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    match command {
        JobsCommand::Diff {
            jobs,
            next,
            from,
            json,
        } => {
            let from = match from {
                Some(s) => parse_from("--from", &s)?,
                None => clock.now(),
            };
            diff(config, &jobs, from, next, json, out).await
        }
        JobsCommand::Validate {
            jobs,
            no_store,
            json,
        } => {
            let access = if no_store {
                StoreAccess::Never
            } else {
                StoreAccess::IfPresent
            };
            let mut v = jobs::validate(config, &jobs, access).await;
            let (secret_errors, warnings) = jobs::check_trigger_secrets(&v.jobs);
            v.errors.extend(secret_errors);
            v.errors.sort();
            if json {
                return write_json(out, &v, &warnings);
            }
            for e in &v.errors {
                writeln!(out, "{e}").map_err(io)?;
            }
            for w in &v.warnings {
                writeln!(out, "warning: {w}").map_err(io)?;
            }
            for w in &warnings {
                writeln!(out, "warning: {w}").map_err(io)?;
            }
            for n in &v.notes {
                writeln!(out, "note: {n}").map_err(io)?;
            }
            if v.errors.is_empty() {
                writeln!(
                    out,
                    "ok: {} and {} job file(s) in {} are valid",
                    config.display(),
                    v.files,
                    jobs.display()
                )
                .map_err(io)?;
                Ok(())
            } else {
                let files: std::collections::BTreeSet<&str> =
                    v.errors.iter().map(|e| e.path.as_str()).collect();
                Err(CliError(format!(
                    "{} error(s) in {} file(s)",
                    v.errors.len(),
                    files.len()
                )))
            }
        }
        JobsCommand::Plan {
            jobs,
            next,
            from,
            down_since,
            json,
        } => {
            let from = match from {
                Some(s) => parse_from("--from", &s)?,
                None => clock.now(),
            };
            let v = jobs::validate(config, &jobs, StoreAccess::Never).await;
            if !v.errors.is_empty() {
                for e in &v.errors {
                    writeln!(out, "{e}").map_err(io)?;
                }
                return Err(CliError(format!(
                    "{} error(s): fix them (`treasury jobs validate`) before planning",
                    v.errors.len()
                )));
            }
            if let Some(since) = down_since {
                let sim =
                    jobs::catch_up::simulate(&v.jobs, parse_from("--down-since", &since)?, from);
                return if json {
                    let text = serde_json::to_string_pretty(&sim)
                        .map_err(|e| CliError(format!("cannot encode the simulation: {e}")))?;
                    writeln!(out, "{text}").map_err(io)
                } else {
                    jobs::catch_up::write_text(out, &sim).map_err(io)
                };
            }
            let (holders, why) = read_holders(config, &v.jobs).await;
            let plan = jobs::plan::plan_with(&v.jobs, from, next, &holders);
            if let (Some(why), false) = (why, json) {
                writeln!(out, "note: {why}; holders' names are not shown").map_err(io)?;
            }
            if json {
                let text = serde_json::to_string_pretty(&plan)
                    .map_err(|e| CliError(format!("cannot encode the plan: {e}")))?;
                writeln!(out, "{text}").map_err(io)
            } else {
                jobs::plan::write_text(out, &plan).map_err(io)
            }
        }
    }
}

/// `jobs diff`: the files must be valid; a store that does not exist yet has seen no
/// job, so every job is new.
async fn diff(
    config: &Path,
    dir: &Path,
    from: DateTime<Utc>,
    next: usize,
    json: bool,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    let v = jobs::validate(config, dir, StoreAccess::Never).await;
    if !v.errors.is_empty() {
        for e in &v.errors {
            writeln!(out, "{e}").map_err(io)?;
        }
        return Err(CliError(format!(
            "{} error(s): fix them (`treasury jobs validate`) before diffing",
            v.errors.len()
        )));
    }
    let settings = crate::config::Settings::load(config).map_err(|e| CliError(e.to_string()))?;
    let stored = match jobs::open_store_for_reading(&settings.store.url).await {
        Ok(Some(store)) => {
            let rows = store.job_versions().await;
            store.close().await;
            rows.map_err(|e| CliError(format!("cannot read the job versions: {e}")))?
        }
        Ok(None) => {
            if !json {
                writeln!(out, "note: no store yet: every job is new").map_err(io)?;
            }
            Vec::new()
        }
        Err(e) => return Err(CliError(format!("cannot open the store: {e}"))),
    };
    let (calendars, _) = jobs::calendar::Calendars::beside(config);
    let d = jobs::diff::diff(
        &v.jobs,
        &stored,
        &calendars,
        Some(&settings.grants),
        from,
        next,
    );
    if json {
        let text = serde_json::to_string_pretty(&d)
            .map_err(|e| CliError(format!("cannot encode the diff: {e}")))?;
        writeln!(out, "{text}").map_err(io)
    } else {
        jobs::diff::write_text(out, &d).map_err(io)
    }
}
