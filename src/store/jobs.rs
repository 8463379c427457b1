//! SQL for jobs: the version each job was last loaded at (audited once per change) and
//! each scheduled job's cursor (compare-and-set, so catch-up survives restarts and two
//! schedulers never decide the same stretch of time twice).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, from_millis, millis};
use crate::audit::NewAuditEntry;

/// A job as the store last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredJobVersion {
    pub job_id: String,
    pub version: String,
    pub path: String,
    pub seen_at: DateTime<Utc>,
    /// The file's text (`None` for versions recorded before the store kept it).
    pub source: Option<String>,
}

impl Store {
    /// Records that `job_id` is now at `version`. When that is new (first sight or a
    /// changed file), `audit(previous)` is appended in the same transaction and `true`
    /// returned; concurrent loaders of one version audit it once between them.
    pub async fn record_job_version(
        &self,
        job_id: &str,
        version: &str,
        path: &str,
        source: &str,
        now: DateTime<Utc>,
        audit: impl FnOnce(Option<String>) -> NewAuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let current: Option<String> =
            sqlx::query("SELECT version FROM job_versions WHERE job_id = $1")
                .bind(job_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
        let changed =
            match &current {
                Some(v) if v == version => false,
                // Conditional on the version read: a concurrent loader that got there first
                // leaves nothing to update.
                Some(previous) => sqlx::query(
                    "UPDATE job_versions SET version = $1, path = $2, seen_at = $3, source = $6 \
                     WHERE job_id = $4 AND version = $5",
                )
                .bind(version)
                .bind(path)
                .bind(millis(now))
                .bind(job_id)
                .bind(previous)
                .bind(source)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1,
                None => {
                    sqlx::query(
                        "INSERT INTO job_versions (job_id, version, path, seen_at, source) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    )
                    .bind(job_id)
                    .bind(version)
                    .bind(path)
                    .bind(millis(now))
                    .bind(source)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        == 1
                }
            };
        if changed {
            self.append_audit_in(&mut tx, now, audit(current)).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// The version a job was last loaded at.
    pub async fn job_version(&self, job_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT version FROM job_versions WHERE job_id = $1")
            .bind(job_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| r.try_get(0)).transpose().map_err(Into::into)
    }

    /// Every job version the store has seen, by job id: what `jobs diff` compares with.
    pub async fn job_versions(&self) -> Result<Vec<StoredJobVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT job_id, version, path, seen_at, source FROM job_versions ORDER BY job_id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredJobVersion {
                    job_id: r.try_get(0)?,
                    version: r.try_get(1)?,
                    path: r.try_get(2)?,
                    seen_at: from_millis(r.try_get(3)?)?,
                    source: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// The job's schedule cursor, starting it at `start` when the job is first seen
    /// (nothing before a job existed is owed).
    pub async fn schedule_cursor(
        &self,
        job_id: &str,
        start: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        let _gate = self.gate().await;
        sqlx::query(
            "INSERT INTO job_schedules (job_id, cursor_at, updated_at) VALUES ($1, $2, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(job_id)
        .bind(millis(start))
        .execute(self.pool())
        .await?;
        let row = sqlx::query("SELECT cursor_at FROM job_schedules WHERE job_id = $1")
            .bind(job_id)
            .fetch_one(self.pool())
            .await?;
        from_millis(row.try_get(0)?)
    }

    /// Moves the cursor from `from` to `to`, if no one moved it meanwhile, with `audit`
    /// (skipped occurrences) in the same transaction. `false`: another scheduler
    /// decided this stretch, or `set` (when given) is no longer the job set in force;
    /// nothing was written. A scheduler on another set must not move a cursor: it
    /// would decide a stretch of time by a schedule that is not in force.
    pub async fn advance_schedule_cursor(
        &self,
        set: Option<&str>,
        job_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        audit: Option<NewAuditEntry>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        if let Some(ours) = set {
            let in_force = super::job_set::in_force_on(self.backend, &mut tx).await?;
            if in_force.as_deref() != Some(ours) {
                return Ok(false);
            }
        }
        let moved = sqlx::query(
            "UPDATE job_schedules SET cursor_at = $1, updated_at = $1 \
             WHERE job_id = $2 AND cursor_at = $3 AND cursor_at < $1",
        )
        .bind(millis(to))
        .bind(job_id)
        .bind(millis(from))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if moved {
            if let Some(entry) = audit {
                self.append_audit_in(&mut tx, to, entry).await?;
            }
        }
        tx.commit().await?;
        Ok(moved)
    }
}
