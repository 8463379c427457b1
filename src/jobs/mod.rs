//! Jobs: the finance team's `jobs/*.toml`, parsed at the edge into typed [`Job`]s, and
//! their occurrences turned into run rows.
//!
//! - [`parse`]: one file into a [`Job`], reporting every broken rule with `file:line:col`.
//! - [`spec`]: the typed job ([`JobSpec`]) and the [`PayoutSpec`](crate::runs::PayoutSpec)s
//!   an occurrence freezes into runs ([`Job::runs`], [`JobSpec::payouts`]).
//! - [`schedule`]: cron + IANA zone + the DST policy, and catch-up after downtime.
//! - [`scheduler`]: the tick that creates one run per occurrence, ever (invariant 2).
//! - [`feasible`]: jobs certain to fail: an amount that breaks a limit at every rate.
//! - [`occurrence`]: one occurrence made into its runs in one transaction.
//! - [`in_force`]: the job set in force, which many processes on one store agree on.
//! - [`reload`]: job-file edits picked up without a restart (file watch, `SIGHUP`).
//! - [`plan`]: what `treasury jobs plan` shows: next occurrences, amounts, approval.
//!
//! [`validate`] is `treasury jobs validate`: config and every job file, all errors at once.
//! Nothing here moves money; the scheduler only writes run rows through the store.

pub mod calendar;
pub mod catch_up;
pub mod diff;
pub mod dir;
pub mod feasible;
pub mod in_force;
pub mod occurrence;
pub mod parse;
pub mod plan;
pub mod reload;
pub mod report;
pub mod rolled;
pub mod schedule;
pub mod scheduler;
pub mod spec;
pub mod text;
pub mod toml_words;
pub mod totals;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use parse::{Diagnostic, parse_job, version_of};
pub use schedule::{CatchUp, CronSchedule, DstAdjustment, Fire};
pub use scheduler::{
    HeldJob, OccurrenceError, Scheduler, SchedulerConfig, TickReport, create_occurrence,
    create_occurrence_in, record_versions,
};
pub use spec::{
    Approval, HttpTrigger, Job, JobId, JobSpec, Payee, Payout, PayoutError, PlannedPayout,
    ScheduleSpec, Side, SweepSpec, Trigger,
};

use crate::config::{GrantSpec, Settings};
use crate::store::{Store, StoreError};

/// The default jobs directory, relative to the working directory.
pub const DEFAULT_DIR: &str = "jobs";

/// Job files that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the jobs folder {0} does not exist: create it, or name the right one with --jobs DIR")]
    Missing(String),
    #[error("{0} is not a folder: --jobs names the folder that holds the job files")]
    NotAFolder(String),
    /// Every broken rule, one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

/// `*.toml` in `dir`, sorted by name. A missing directory is an error ([`dir::scan`]).
pub fn job_files(dir: &Path) -> Result<Vec<PathBuf>, JobsError> {
    Ok(dir::scan(dir)?.files)
}

/// Every job file of a directory, parsed, with every error found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub jobs: Vec<Job>,
    pub errors: Vec<Diagnostic>,
    /// Not errors, but worth a reviewer's eye (an empty folder, a likely duplicate).
    pub warnings: Vec<Diagnostic>,
    /// What in the folder is not read, and why.
    pub ignored: Vec<dir::Ignored>,
    pub files: usize,
}

/// Parses every `*.toml` in `dir` and checks what spans files: duplicate job ids.
/// `grants`: the aliases declared in config (`None`: not checked).
pub fn load_dir(dir: &Path, grants: Option<&[GrantSpec]>) -> Result<Loaded, JobsError> {
    load_dir_with(dir, grants, calendar::Calendars::standard())
}

/// As [`load_dir`], with the calendars schedules may name.
pub fn load_dir_with(
    dir: &Path,
    grants: Option<&[GrantSpec]>,
    calendars: &calendar::Calendars,
) -> Result<Loaded, JobsError> {
    let mut loaded = Loaded::default();
    let found = dir::scan(dir)?;
    if found.files.is_empty() {
        loaded.warnings.push(Diagnostic {
            path: dir.display().to_string(),
            line: 0,
            col: 0,
            message: "the jobs folder holds no job files (*.toml): nothing will run".into(),
        });
    }
    loaded.ignored = found.ignored;
    for path in found.files {
        loaded.files += 1;
        let shown = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|source| JobsError::Read {
            path: shown.clone(),
            source,
        })?;
        match parse::parse_job_with(&shown, &bytes, grants, calendars) {
            Ok(mut job) => {
                loaded.warnings.extend(job.warnings.iter().cloned());
                if let Some(grants) = grants {
                    apply_grant_cap(&mut job, grants);
                }
                loaded.jobs.push(job)
            }
            Err(errs) => loaded.errors.extend(errs),
        }
    }
    let mut first: BTreeMap<String, String> = BTreeMap::new();
    for job in &loaded.jobs {
        if let Some(other) = first.get(job.id().as_str()) {
            loaded.errors.push(Diagnostic {
                path: job.path.clone(),
                line: job.id_at.0,
                col: job.id_at.1,
                message: format!(
                    "job id {:?} is also declared in {other}: ids must be unique (runs are keyed by id)",
                    job.id().as_str()
                ),
            });
        } else {
            first.insert(job.id().to_string(), job.path.clone());
        }
    }
    Ok(loaded)
}

/// Gives the job its grant's rolling 24-hour cap in the job's source currency, from
/// `[[grants]] daily_caps`, so that every run it creates carries (and seals) it.
fn apply_grant_cap(job: &mut Job, grants: &[GrantSpec]) {
    let cap = grants
        .iter()
        .find(|g| g.alias == job.spec.grant)
        .and_then(|g| g.daily_caps.get(&job.spec.source_currency));
    job.spec.limits.grant_daily_cap = cap;
}

/// Loads the jobs the worker will run, refusing them all if any file is wrong (a job
/// file, or a calendar beside the config file).
pub fn load(dir: &Path, settings: &Settings) -> Result<Vec<Job>, JobsError> {
    let (calendars, mut errors) = calendar::Calendars::beside(&settings.path);
    let loaded = load_dir_with(dir, Some(&settings.grants), &calendars)?;
    errors.extend(loaded.errors);
    errors.extend(check_declared_scopes(&loaded.jobs, &settings.grants));
    if errors.is_empty() {
        Ok(loaded.jobs)
    } else {
        Err(JobsError::Invalid(errors))
    }
}

fn scope_error(job: &Job, missing: &[&str], whose: &str) -> Diagnostic {
    Diagnostic {
        path: job.path.clone(),
        line: job.grant_at.0,
        col: job.grant_at.1,
        message: format!(
            "grant {:?} {whose} lacks the scopes this job needs: {}",
            job.spec().grant(),
            missing.join(" ")
        ),
    }
}

/// Each job's grant, as declared in config, must ask for the scopes the job needs.
pub fn check_declared_scopes(jobs: &[Job], grants: &[GrantSpec]) -> Vec<Diagnostic> {
    let mut errs = Vec::new();
    for job in jobs {
        let Some(g) = grants.iter().find(|g| g.alias == job.spec().grant()) else {
            continue;
        };
        let missing: Vec<&str> = job
            .spec()
            .required_scopes()
            .into_iter()
            .filter(|s| !g.scopes.iter().any(|h| h == s))
            .collect();
        if !missing.is_empty() {
            errs.push(scope_error(job, &missing, "as declared in config"));
        }
    }
    errs
}

/// Each job's grant, as stored (what the customer actually granted), must hold the
/// scopes the job needs. Grants not connected yet are noted, not errors.
pub async fn check_stored_scopes(
    store: &Store,
    jobs: &[Job],
    grants: &[GrantSpec],
) -> Result<(Vec<Diagnostic>, Vec<String>), StoreError> {
    let mut errs = Vec::new();
    let mut notes = BTreeSet::new();
    for job in jobs {
        let alias = job.spec().grant();
        let provider = grants
            .iter()
            .find(|g| g.alias == alias)
            .map_or("busha", |g| g.provider.as_str());
        let Some(row) = store.grant_by_alias(provider, alias).await? else {
            notes.insert(format!(
                "grant {alias:?} is not connected yet: its granted scopes are checked once it is (`treasury connect {alias}`)"
            ));
            continue;
        };
        let held: Vec<&str> = row.scopes.split_whitespace().collect();
        let missing: Vec<&str> = job
            .spec()
            .required_scopes()
            .into_iter()
            .filter(|s| !held.contains(s))
            .collect();
        if !missing.is_empty() {
            errs.push(scope_error(job, &missing, "as granted (in the store)"));
        }
    }
    Ok((errs, notes.into_iter().collect()))
}

/// Each trigger job's secret in this environment, as `jobs validate` judges it: blank,
/// short or not text is an error; unset is a warning (a fresh clone has no secrets,
/// and `treasury run` refuses to start until each is set).
pub fn check_trigger_secrets(jobs: &[Job]) -> (Vec<Diagnostic>, Vec<String>) {
    use crate::config::{SigningSecretError, signing_secret_from_env};
    let (mut errs, mut warnings) = (Vec::new(), Vec::new());
    for job in jobs {
        let Some(t) = job.spec().http_trigger() else {
            continue;
        };
        match signing_secret_from_env(&t.secret_env, "the trigger secret") {
            Ok(_) => {}
            Err(e @ SigningSecretError::Unset { .. }) => warnings.push(format!(
                "job {}: {e}; `treasury run` refuses to start until it is set",
                job.id()
            )),
            Err(e) => errs.push(Diagnostic {
                path: job.path.clone(),
                line: 0,
                col: 0,
                message: format!("job {} (`trigger.secret_env`): {e}", job.id()),
            }),
        }
    }
    (errs, warnings)
}

/// What `treasury jobs validate` found.
#[derive(Debug, Default)]
pub struct Validation {
    /// Every broken rule, in file order.
    pub errors: Vec<Diagnostic>,
    /// Not errors, but worth a reviewer's eye, with their place.
    pub warnings: Vec<Diagnostic>,
    /// Things worth knowing that are not errors (e.g. the store was not read).
    pub notes: Vec<String>,
    pub jobs: Vec<Job>,
    pub files: usize,
}

/// How `validate` may reach the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreAccess {
    /// Read it if it exists and answers quickly (a fresh clone has none).
    IfPresent,
    /// Do not touch it.
    Never,
}

/// Checks `config` and every job file in `dir`, collecting all errors.
pub async fn validate(config: &Path, dir: &Path, access: StoreAccess) -> Validation {
    let mut v = Validation::default();
    let settings = match Settings::load(config) {
        Ok(s) => Some(s),
        Err(e) => {
            v.errors.extend(config_diagnostics(config, &e));
            v.notes.push(
                "the config could not be read, so grant aliases and scopes were not checked".into(),
            );
            None
        }
    };
    let grants = settings.as_ref().map(|s| s.grants.as_slice());
    let (calendars, calendar_errors) = calendar::Calendars::beside(config);
    v.errors.extend(calendar_errors);
    match load_dir_with(dir, grants, &calendars) {
        Ok(loaded) => {
            v.errors.extend(loaded.errors);
            v.warnings.extend(loaded.warnings);
            v.notes
                .extend(loaded.ignored.iter().map(ToString::to_string));
            v.jobs = loaded.jobs;
            v.files = loaded.files;
        }
        Err(e) => v.errors.push(Diagnostic {
            path: dir.display().to_string(),
            line: 0,
            col: 0,
            message: e.to_string(),
        }),
    }
    if let Some(s) = &settings {
        v.errors.extend(check_declared_scopes(&v.jobs, &s.grants));
        if access == StoreAccess::IfPresent {
            match open_store_for_reading(&s.store.url).await {
                Ok(Some(store)) => match check_stored_scopes(&store, &v.jobs, &s.grants).await {
                    Ok((errs, notes)) => {
                        v.errors.extend(errs);
                        v.notes.extend(notes);
                    }
                    Err(e) => v.notes.push(format!(
                        "the store could not be read ({e}); granted scopes not checked"
                    )),
                },
                Ok(None) => v.notes.push(
                    "no store yet: granted scopes are checked once grants are connected".into(),
                ),
                Err(e) => v.notes.push(format!(
                    "the store could not be opened ({e}); granted scopes not checked"
                )),
            }
        }
    }
    v.errors.sort();
    v.errors.dedup();
    v
}

fn config_diagnostics(config: &Path, e: &crate::config::ConfigError) -> Vec<Diagnostic> {
    use crate::config::ConfigError;
    if let ConfigError::Problems { path, problems } = e {
        return problems
            .iter()
            .map(|p| Diagnostic {
                path: path.clone(),
                line: p.line,
                col: p.col,
                message: p.message.clone(),
            })
            .collect();
    }
    let one = match e {
        ConfigError::Parse {
            path,
            line,
            col,
            message,
        } => Diagnostic {
            path: path.clone(),
            line: *line,
            col: *col,
            message: message.clone(),
        },
        other => Diagnostic {
            path: config.display().to_string(),
            line: 0,
            col: 0,
            message: other
                .to_string()
                .trim_start_matches(&format!("{}: ", config.display()))
                .to_string(),
        },
    };
    vec![one]
}

/// Opens the configured store if it exists: a SQLite file that is not there yet is
/// `None` (validating never creates one), and a server gets five seconds to answer.
pub async fn open_store_for_reading(url: &str) -> Result<Option<Store>, String> {
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let file = rest.trim_start_matches("//");
        let file = file.split('?').next().unwrap_or("");
        if file.is_empty() || file == ":memory:" || !Path::new(file).exists() {
            return Ok(None);
        }
    }
    match tokio::time::timeout(Duration::from_secs(5), Store::connect(url)).await {
        Ok(Ok(store)) => Ok(Some(store)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}
