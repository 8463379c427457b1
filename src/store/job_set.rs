//! SQL for the job set in force (issue 15 §4): one row naming the whole set of job
//! versions that may create runs, moved only by compare-and-set; and the creation of one
//! occurrence's runs in one transaction that checks that row, so that no occurrence is
//! ever built from two specs.
//!
//! On PostgreSQL the creator reads the row `FOR SHARE`: a proposal's `UPDATE` waits for
//! every creation checked against the old set to commit, and a creation that starts
//! after the proposal committed reads the new set. On SQLite every write transaction is
//! `BEGIN IMMEDIATE`, so the check and the inserts are serialised with any proposal.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::runs::{insert_run_on, spec_json};
use super::writer::AuditHead;
use super::{Backend, Store, StoreError, from_millis, millis};
use crate::audit::NewAuditEntry;
use crate::runs::{Run, RunId};

/// The set in force as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSetRow {
    /// SHA-256 (hex) over every job's id and file version.
    pub version: String,
    /// Grows by one on every change: what a proposal compares and sets.
    pub generation: i64,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
    /// `{"<job id>": "<file version>"}`.
    pub jobs: String,
}

/// What creating one occurrence's runs did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OccurrenceWrite {
    /// Each run's id, and whether this call created it (`false`: it already existed).
    Written(Vec<(RunId, bool)>),
    /// The occurrence already has runs created from another version of the job:
    /// nothing was added to it. These are the runs it has.
    OtherVersion { version: String, runs: Vec<RunId> },
    /// The caller's job set is not the one in force: nothing was written.
    NotInForce { in_force: Option<String> },
}

const IN_FORCE_SQLITE: &str = "SELECT version FROM job_set_in_force WHERE id = 1";
// The share lock makes a concurrent proposal wait until this creation commits.
const IN_FORCE_POSTGRES: &str = "SELECT version FROM job_set_in_force WHERE id = 1 FOR SHARE";

/// The runs of one occurrence: its nominal key, or `key#payee` for a batch.
const OCCURRENCE_RUNS: &str = "SELECT id, job_version FROM runs WHERE job_id = $1 \
     AND (occurrence_key = $2 OR substr(occurrence_key, 1, CAST($3 AS INTEGER)) = $4) \
     ORDER BY id";

/// The version in force, read inside the caller's transaction (locked on PostgreSQL).
pub(super) async fn in_force_on(
    backend: Backend,
    conn: &mut AnyConnection,
) -> Result<Option<String>, StoreError> {
    let sql = match backend {
        Backend::Sqlite => IN_FORCE_SQLITE,
        Backend::Postgres => IN_FORCE_POSTGRES,
    };
    let row = sqlx::query(sql).fetch_optional(&mut *conn).await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// One occurrence to create: its runs (all of one job version) with their entries.
#[derive(Clone)]
struct Pending {
    set: Option<String>,
    job_id: String,
    occurrence: String,
    job_version: String,
    runs: Vec<(Run, String, NewAuditEntry)>,
}

async fn write_occurrence(
    backend: Backend,
    conn: &mut AnyConnection,
    head: &mut AuditHead,
    p: Pending,
) -> Result<OccurrenceWrite, StoreError> {
    if let Some(ours) = &p.set {
        let in_force = in_force_on(backend, conn).await?;
        if in_force.as_deref() != Some(ours.as_str()) {
            return Ok(OccurrenceWrite::NotInForce { in_force });
        }
    }
    let prefix = format!("{}#", p.occurrence);
    let existing = sqlx::query(OCCURRENCE_RUNS)
        .bind(&p.job_id)
        .bind(&p.occurrence)
        .bind(prefix.chars().count() as i64)
        .bind(&prefix)
        .fetch_all(&mut *conn)
        .await?;
    let mut runs = Vec::with_capacity(existing.len());
    let mut other = None;
    for row in &existing {
        let (id, version): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        if version != p.job_version {
            other = Some(version);
        }
        runs.push(
            RunId::parse(&id)
                .ok_or_else(|| StoreError::Corrupt(format!("run id {id:?} is not a run id")))?,
        );
    }
    if let Some(version) = other {
        // Created from another spec: completing it from ours would mix the two.
        return Ok(OccurrenceWrite::OtherVersion { version, runs });
    }
    let mut out = Vec::with_capacity(p.runs.len());
    for (run, spec, audit) in p.runs {
        let created = insert_run_on(backend, conn, head, &run, spec, audit).await?;
        out.push((run.id, created));
    }
    Ok(OccurrenceWrite::Written(out))
}

impl Store {
    /// The set in force, if any process recorded one.
    pub async fn job_set_in_force(&self) -> Result<Option<JobSetRow>, StoreError> {
        let row = sqlx::query(
            "SELECT version, generation, recorded_by, recorded_at, jobs \
             FROM job_set_in_force WHERE id = 1",
        )
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(JobSetRow {
                version: r.try_get(0)?,
                generation: r.try_get(1)?,
                recorded_by: r.try_get(2)?,
                recorded_at: from_millis(r.try_get(3)?)?,
                jobs: r.try_get(4)?,
            })
        })
        .transpose()
    }

    /// Records `version` as the set in force if the row is still at generation `seen`
    /// (`None`: there is no row yet), with `audit` in the same transaction. `false`:
    /// another process moved it first, and nothing was written.
    pub async fn propose_job_set(
        &self,
        seen: Option<i64>,
        version: &str,
        jobs: &str,
        recorded_by: &str,
        now: DateTime<Utc>,
        audit: NewAuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let query = match seen {
            None => sqlx::query(
                "INSERT INTO job_set_in_force (id, version, generation, recorded_by, recorded_at, jobs) \
                 VALUES (1, $1, 1, $2, $3, $4) ON CONFLICT DO NOTHING",
            ),
            Some(_) => sqlx::query(
                "UPDATE job_set_in_force SET version = $1, generation = generation + 1, \
                 recorded_by = $2, recorded_at = $3, jobs = $4 WHERE id = 1 AND generation = $5",
            ),
        };
        let won = query
            .bind(version)
            .bind(recorded_by)
            .bind(millis(now))
            .bind(jobs)
            .bind(seen.unwrap_or(0))
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if won {
            self.append_audit_in(&mut tx, now, audit).await?;
        }
        tx.commit().await?;
        Ok(won)
    }

    /// Creates the runs of one occurrence in one transaction, each with its sealed
    /// `run.created` entry, only if `set` is the job set in force (`None`: not checked)
    /// and the occurrence has no run from another version of the job. All runs share
    /// `job_id` and `occurrence` (the key before any `#payee`).
    pub async fn create_occurrence_runs(
        &self,
        set: Option<&str>,
        occurrence: &str,
        runs: Vec<(Run, NewAuditEntry)>,
    ) -> Result<OccurrenceWrite, StoreError> {
        let Some((first, _)) = runs.first() else {
            return Ok(OccurrenceWrite::Written(Vec::new()));
        };
        let (job_id, job_version) = (first.job_id.clone(), first.job_version.clone());
        if runs
            .iter()
            .any(|(r, _)| r.job_id != job_id || r.job_version != job_version)
        {
            return Err(StoreError::Corrupt(
                "one occurrence's runs must come from one job version".into(),
            ));
        }
        let mut sealed = Vec::with_capacity(runs.len());
        for (run, audit) in runs {
            let spec = spec_json(&run)?;
            // Every run is sealed as it is created, whoever asked for it.
            let audit = self
                .seal_keys()
                .sign(crate::seal::seal_created(&run, audit), run.created_at);
            sealed.push((run, spec, audit));
        }
        let pending = Pending {
            set: set.map(str::to_string),
            job_id,
            occurrence: occurrence.to_string(),
            job_version,
            runs: sealed,
        };
        let backend = self.backend;
        self.write(Box::new(move |conn, head| {
            let p = pending.clone();
            Box::pin(async move { write_occurrence(backend, conn, head, p).await })
        }))
        .await
    }
}
