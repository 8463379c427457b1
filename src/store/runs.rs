//! SQL for runs: idempotent creation, a fenced lease per run, fenced saves that carry
//! their audit entries, and the dispatcher's "what is due" query.

use chrono::{DateTime, Duration, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::audit::append_audit_on;
use super::transfers::{NewHeldTransfer, hold_transfer_on};
use super::{Store, StoreError, from_millis, millis};
use crate::audit::NewAuditEntry;
use crate::runs::{LockedQuote, PendingOp, Run, RunId, RunState, TransferStatus};

/// The right to write a run, until `until`. Every write checks `fence`.
#[derive(Clone, Debug)]
pub struct RunLease {
    pub run_id: RunId,
    pub owner: String,
    pub fence: i64,
    /// The lease's end as the store holds it, on the caller's clock.
    pub until: DateTime<Utc>,
    /// A monotonic instant taken before the write that last took or renewed the
    /// lease was sent: the lease runs for its length from here at least, whatever the
    /// wall clock does and however long the write took to commit.
    pub renewed_at: std::time::Instant,
}

macro_rules! run_columns {
    () => {
        "id, job_id, occurrence_key, job_version, spec, state, reason, recipient_id, quote_attempt, \
         quote, transfer_id, transfer_status, pending_op, attempts, next_attempt_at, created_at, updated_at, \
         quote_attempt_base, quote_ask, recipient_name"
    };
}

/// A filter for `treasury runs list`.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub job_id: Option<String>,
    pub state: Option<RunState>,
    pub limit: Option<i64>,
}

impl Store {
    /// Creates `run` unless its occurrence already has one (invariant 2). Returns
    /// whether this call created it; the `run.created` audit entry commits with it.
    pub async fn create_run(&self, run: &Run, audit: NewAuditEntry) -> Result<bool, StoreError> {
        let backend = self.backend;
        let spec = spec_json(run)?;
        // Every run is sealed as it is created, whoever asked for it.
        let audit = self
            .seal_keys()
            .sign(crate::seal::seal_created(run, audit), run.created_at);
        let run = run.clone();
        self.write(Box::new(move |conn, head| {
            let (run, spec, audit) = (run.clone(), spec.clone(), audit.clone());
            Box::pin(async move { insert_run_on(backend, conn, head, &run, spec, audit).await })
        }))
        .await
    }

    pub async fn get_run(&self, id: &RunId) -> Result<Option<Run>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// Takes the run's lease if it is free or lapsed, bumping the fence. `None` means
    /// another executor holds it (or the run is final or unknown).
    pub async fn acquire_run(
        &self,
        id: &RunId,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<(RunLease, Run)>, StoreError> {
        let until = now + lease;
        let (key, holder) = (id.to_string(), owner.to_string());
        let renewed_at = std::time::Instant::now();
        let row = self
            .write(Box::new(move |conn, _| {
                let (key, holder) = (key.clone(), holder.clone());
                Box::pin(async move {
                    let row = sqlx::query(concat!(
                        "UPDATE runs SET lease_owner = $1, lease_until = $2, fence = fence + 1 \
                         WHERE id = $3 AND (lease_until IS NULL OR lease_until < $4) \
                         AND state NOT IN ('settled', 'failed', 'cancelled', 'needs_human') \
                         RETURNING fence, ",
                        run_columns!()
                    ))
                    .bind(holder)
                    .bind(millis(until))
                    .bind(key)
                    .bind(millis(now))
                    .fetch_optional(&mut *conn)
                    .await?;
                    row.map(|row| Ok((row.try_get::<i64, _>(0)?, run_from_row_at(&row, 1)?)))
                        .transpose()
                })
            }))
            .await?;
        Ok(row.map(|(fence, run)| {
            (
                RunLease {
                    run_id: id.clone(),
                    owner: owner.into(),
                    fence,
                    until,
                    renewed_at,
                },
                run,
            )
        }))
    }

    /// Writes `run` and its audit entries in one transaction, and extends the lease,
    /// if and only if `lease` still holds the fence. Otherwise writes nothing and
    /// returns [`StoreError::LeaseLost`].
    pub async fn save_run(
        &self,
        lease: &mut RunLease,
        run: &Run,
        audit: Vec<NewAuditEntry>,
        now: DateTime<Utc>,
        extend: Duration,
    ) -> Result<(), StoreError> {
        self.save_run_holding(lease, run, None, audit, now, extend)
            .await
    }

    /// [`Self::save_run`], recording in the same transaction that `run` now holds
    /// `held`. If another run already holds that transfer id, nothing is written and
    /// the answer is [`StoreError::TransferHeld`].
    pub async fn save_run_holding(
        &self,
        lease: &mut RunLease,
        run: &Run,
        held: Option<NewHeldTransfer>,
        audit: Vec<NewAuditEntry>,
        now: DateTime<Utc>,
        extend: Duration,
    ) -> Result<(), StoreError> {
        let backend = self.backend;
        let until = now + extend;
        let quote = run
            .quote
            .as_ref()
            .map(|q| serde_json::to_string(q).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()?;
        let ask = run
            .quote_ask
            .as_ref()
            .map(|a| serde_json::to_string(a).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()?;
        // The recipient a run pays is sealed as it is resolved (issue 16): a later edit
        // of `runs.recipient_id` no longer matches a MAC'd entry.
        let audit: Vec<NewAuditEntry> = audit
            .into_iter()
            .map(|e| match e.action.as_str() {
                crate::seal::RECIPIENT_RESOLVED => self.seal_keys().sign(e, now),
                _ => e,
            })
            .collect();
        let (run, fence, owner) = (run.clone(), lease.fence, lease.owner.clone());
        let renewed_at = std::time::Instant::now();
        self.write(Box::new(move |conn, head| {
            let (run, quote, ask, owner, audit, held) = (
                run.clone(),
                quote.clone(),
                ask.clone(),
                owner.clone(),
                audit.clone(),
                held.clone(),
            );
            Box::pin(async move {
                let updated = sqlx::query(
                    "UPDATE runs SET state = $1, reason = $2, recipient_id = $3, quote_attempt = $4, quote = $5, \
                     transfer_id = $6, transfer_status = $7, pending_op = $8, attempts = $9, next_attempt_at = $10, \
                     updated_at = $11, lease_until = $12, quote_ask = $16, recipient_name = $17 \
                     WHERE id = $13 AND fence = $14 AND lease_owner = $15",
                )
                .bind(run.state.as_str())
                .bind(&run.reason)
                .bind(&run.recipient_id)
                .bind(i64::from(run.quote_attempt))
                .bind(quote)
                .bind(&run.transfer_id)
                .bind(run.transfer_status.as_deref())
                .bind(run.pending.map(PendingOp::as_str))
                .bind(i64::from(run.attempts))
                .bind(millis(run.next_attempt_at))
                .bind(millis(now))
                .bind(millis(until))
                .bind(run.id.as_str())
                .bind(fence)
                .bind(owner)
                .bind(ask)
                .bind(&run.recipient_name)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if updated != 1 {
                    return Err(StoreError::LeaseLost(run.id.to_string()));
                }
                if let Some(held) = &held {
                    hold_transfer_on(conn, &run.id, held, now).await?;
                }
                for entry in audit {
                    append_audit_on(backend, conn, head, now, entry).await?;
                }
                Ok(())
            })
        }))
        .await?;
        lease.until = until;
        lease.renewed_at = renewed_at;
        Ok(())
    }

    /// Gives the lease back so that the next dispatch need not wait for it to lapse.
    pub async fn release_run(&self, lease: &RunLease) -> Result<(), StoreError> {
        let (key, fence) = (lease.run_id.to_string(), lease.fence);
        self.write(Box::new(move |conn, _| {
            let key = key.clone();
            Box::pin(async move {
                sqlx::query(
                    "UPDATE runs SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND fence = $2",
                )
                .bind(key)
                .bind(fence)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        }))
        .await
    }

    /// Unfinished runs that are due and not leased, oldest first.
    pub async fn due_runs(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<RunId>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM runs WHERE state NOT IN ('settled', 'failed', 'cancelled', 'needs_human', 'awaiting_approval') \
             AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1) \
             ORDER BY next_attempt_at LIMIT $2",
        )
        .bind(millis(now))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                RunId::parse(&r.try_get::<String, _>(0)?)
                    .ok_or_else(|| StoreError::Corrupt("run id".into()))
            })
            .collect()
    }

    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE ($1 IS NULL OR job_id = $1) AND ($2 IS NULL OR state = $2) \
             ORDER BY created_at DESC, id LIMIT $3"
        ))
        .bind(&filter.job_id)
        .bind(filter.state.map(RunState::as_str))
        .bind(filter.limit.unwrap_or(1000))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// The recipient earlier runs resolved for this bank account, if any.
    pub async fn known_recipient(
        &self,
        grant: &str,
        bank_code: &str,
        account_number: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT recipient_id FROM known_recipients WHERE grant_alias = $1 AND bank_code = $2 AND account_number = $3",
        )
        .bind(grant)
        .bind(bank_code)
        .bind(account_number)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| r.try_get(0)).transpose().map_err(Into::into)
    }

    pub async fn remember_recipient(
        &self,
        grant: &str,
        bank_code: &str,
        account_number: &str,
        recipient_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let keys = [grant, bank_code, account_number, recipient_id].map(str::to_string);
        self.write(Box::new(move |conn, _| {
            let [grant, bank_code, account_number, recipient_id] = keys.clone();
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO known_recipients (grant_alias, bank_code, account_number, recipient_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (grant_alias, bank_code, account_number) DO UPDATE SET recipient_id = excluded.recipient_id",
                )
                .bind(grant)
                .bind(bank_code)
                .bind(account_number)
                .bind(recipient_id)
                .bind(millis(now))
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        }))
        .await
    }
}

/// Inserts `run` (already sealed into `audit`) on `conn` unless its occurrence already
/// has one; appends `audit` when it was inserted. Returns whether it was.
pub(super) async fn insert_run_on(
    backend: super::Backend,
    conn: &mut sqlx::AnyConnection,
    head: &mut super::writer::AuditHead,
    run: &Run,
    spec: String,
    audit: NewAuditEntry,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO runs (id, job_id, occurrence_key, job_version, grant_alias, spec, state, reason, \
         quote_attempt, attempts, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, $9, $10, $10) \
         ON CONFLICT DO NOTHING",
    )
    .bind(run.id.as_str())
    .bind(&run.job_id)
    .bind(&run.occurrence_key)
    .bind(&run.job_version)
    .bind(&run.spec.grant)
    .bind(spec)
    .bind(run.state.as_str())
    .bind(&run.reason)
    .bind(millis(run.next_attempt_at))
    .bind(millis(run.created_at))
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        append_audit_on(backend, conn, head, run.created_at, audit).await?;
    }
    Ok(inserted)
}

pub(super) fn spec_json(run: &Run) -> Result<String, StoreError> {
    serde_json::to_string(&run.spec).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn run_from_row(row: &AnyRow) -> Result<Run, StoreError> {
    run_from_row_at(row, 0)
}

/// A run from `run_columns!()`, starting at column `at` of `row`.
fn run_from_row_at(row: &AnyRow, at: usize) -> Result<Run, StoreError> {
    let corrupt =
        |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("run {what}: {e}"));
    let id: String = row.try_get(at)?;
    let spec: String = row.try_get(at + 4)?;
    let state: String = row.try_get(at + 5)?;
    let quote: Option<String> = row.try_get(at + 9)?;
    let pending: Option<String> = row.try_get(at + 12)?;
    let quote: Option<LockedQuote> = quote
        .map(|q| serde_json::from_str(&q))
        .transpose()
        .map_err(|e| corrupt("quote", &e))?;
    Ok(Run {
        id: RunId::parse(&id).ok_or_else(|| corrupt("id", &id))?,
        job_id: row.try_get(at + 1)?,
        occurrence_key: row.try_get(at + 2)?,
        job_version: row.try_get(at + 3)?,
        spec: serde_json::from_str(&spec).map_err(|e| corrupt("spec", &e))?,
        state: state.parse().map_err(|e: String| corrupt("state", &e))?,
        reason: row.try_get(at + 6)?,
        recipient_id: row.try_get(at + 7)?,
        quote_attempt: u32::try_from(row.try_get::<i64, _>(at + 8)?)
            .map_err(|e| corrupt("quote_attempt", &e))?,
        quote,
        transfer_id: row.try_get(at + 10)?,
        // A code this build does not know is kept as `Unrecognised`, never dropped.
        transfer_status: row
            .try_get::<Option<String>, _>(at + 11)?
            .map(|code| TransferStatus::parse(&code)),
        pending: pending
            .map(|p| PendingOp::parse(&p).ok_or_else(|| corrupt("pending_op", &p)))
            .transpose()?,
        attempts: u32::try_from(row.try_get::<i64, _>(at + 13)?)
            .map_err(|e| corrupt("attempts", &e))?,
        next_attempt_at: from_millis(row.try_get(at + 14)?)?,
        created_at: from_millis(row.try_get(at + 15)?)?,
        updated_at: from_millis(row.try_get(at + 16)?)?,
        quote_attempt_base: u32::try_from(row.try_get::<i64, _>(at + 17)?)
            .map_err(|e| corrupt("quote_attempt_base", &e))?,
        quote_ask: row
            .try_get::<Option<String>, _>(at + 18)?
            .map(|a| serde_json::from_str(&a))
            .transpose()
            .map_err(|e| corrupt("quote_ask", &e))?,
        recipient_name: row.try_get(at + 19)?,
    })
}

impl Store {
    /// Makes the runs tracking `transfer_id` due now (a Busha webhook is only a hint:
    /// the run re-fetches the transfer). Returns how many runs woke.
    pub async fn wake_transfer(
        &self,
        transfer_id: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let _gate = self.gate().await;
        let woke = sqlx::query(
            "UPDATE runs SET next_attempt_at = $1 WHERE transfer_id = $2 AND state = 'transfer_submitted' AND next_attempt_at > $1",
        )
        .bind(millis(now))
        .bind(transfer_id)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(woke)
    }

    /// How many runs are in each state.
    pub async fn count_runs_by_state(&self) -> Result<Vec<(RunState, i64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM runs GROUP BY state")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get(0)?;
                let state = state.parse().map_err(StoreError::Corrupt)?;
                Ok((state, r.try_get(1)?))
            })
            .collect()
    }

    /// Runs whose transfer was submitted before `before` and is still not final. The
    /// submission time is the audit entry's (a run's `updated_at` moves with every poll).
    pub async fn stuck_transfers(&self, before: DateTime<Utc>) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE state = 'transfer_submitted' AND EXISTS (SELECT 1 FROM audit_log a \
             WHERE a.run_id = runs.id AND a.action = 'run.transfer.submitted' AND a.at_ms < $1) \
             ORDER BY updated_at LIMIT 100"
        ))
        .bind(millis(before))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(run_from_row).collect()
    }
}
