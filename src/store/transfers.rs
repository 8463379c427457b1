//! SQL for the transfers runs hold: every transfer id any run ever submitted or
//! adopted, across retries and re-quotes, under a unique key. No two runs can ever
//! hold one transfer, and reconciliation knows every transfer that belongs to a run.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, from_millis, millis};
use crate::runs::RunId;

/// A transfer a run holds or once held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldTransfer {
    pub transfer_id: String,
    pub run_id: RunId,
    /// The quote the run locked and the transfer was made from.
    pub quote_id: String,
    /// `created` (our `POST /v1/transfers`) or `adopted` (found by reconciliation).
    pub how: String,
    pub recorded_at: DateTime<Utc>,
}

/// A transfer that a run is about to record as its own, saved with the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewHeldTransfer {
    pub transfer_id: String,
    pub quote_id: String,
    pub how: String,
}

/// A transfer id that more than one run claims, from the runs table or the record of
/// held transfers (possible only through old data or an edited row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedTransfer {
    pub transfer_id: String,
    pub runs: Vec<RunId>,
}

impl Store {
    /// Every transfer recorded since `since`, oldest first.
    pub async fn held_transfers(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<HeldTransfer>, StoreError> {
        let rows = sqlx::query(
            "SELECT transfer_id, run_id, quote_id, how, recorded_at FROM run_transfers \
             WHERE recorded_at >= $1 ORDER BY recorded_at, transfer_id",
        )
        .bind(millis(since))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(held_from_row).collect()
    }

    /// Every transfer `run` ever held, oldest first.
    pub async fn transfers_of_run(&self, run: &RunId) -> Result<Vec<HeldTransfer>, StoreError> {
        let rows = sqlx::query(
            "SELECT transfer_id, run_id, quote_id, how, recorded_at FROM run_transfers \
             WHERE run_id = $1 ORDER BY recorded_at, transfer_id",
        )
        .bind(run.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(held_from_row).collect()
    }

    /// The run that holds `transfer_id`, if any.
    pub async fn transfer_holder(&self, transfer_id: &str) -> Result<Option<RunId>, StoreError> {
        let row = sqlx::query("SELECT run_id FROM run_transfers WHERE transfer_id = $1")
            .bind(transfer_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| parse_run_id(&r.try_get::<String, _>(0)?))
            .transpose()
    }

    /// Transfer ids claimed by more than one run: two runs whose current transfer is
    /// the same, or a run whose current transfer is recorded as another run's.
    pub async fn shared_transfers(&self) -> Result<Vec<SharedTransfer>, StoreError> {
        let rows = sqlx::query(
            "SELECT transfer_id, run_id FROM ( \
               SELECT transfer_id, id AS run_id FROM runs WHERE transfer_id IS NOT NULL \
               UNION SELECT transfer_id, run_id FROM run_transfers) AS claims \
             WHERE transfer_id IN ( \
               SELECT transfer_id FROM ( \
                 SELECT transfer_id, id AS run_id FROM runs WHERE transfer_id IS NOT NULL \
                 UNION SELECT transfer_id, run_id FROM run_transfers) AS c \
               GROUP BY transfer_id HAVING COUNT(DISTINCT run_id) > 1) \
             ORDER BY transfer_id, run_id",
        )
        .fetch_all(self.pool())
        .await?;
        let mut shared: Vec<SharedTransfer> = Vec::new();
        for row in &rows {
            let transfer_id: String = row.try_get(0)?;
            let run = parse_run_id(&row.try_get::<String, _>(1)?)?;
            match shared.last_mut() {
                Some(s) if s.transfer_id == transfer_id => s.runs.push(run),
                _ => shared.push(SharedTransfer {
                    transfer_id,
                    runs: vec![run],
                }),
            }
        }
        Ok(shared)
    }
}

/// Records `held` as `run`'s, inside the caller's transaction. Fails with
/// [`StoreError::TransferHeld`] if another run already holds that transfer id, so the
/// whole save rolls back.
pub(crate) async fn hold_transfer_on(
    conn: &mut sqlx::AnyConnection,
    run: &RunId,
    held: &NewHeldTransfer,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO run_transfers (transfer_id, run_id, quote_id, how, recorded_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (transfer_id) DO NOTHING",
    )
    .bind(&held.transfer_id)
    .bind(run.as_str())
    .bind(&held.quote_id)
    .bind(&held.how)
    .bind(millis(now))
    .execute(&mut *conn)
    .await?;
    let holder: String = sqlx::query("SELECT run_id FROM run_transfers WHERE transfer_id = $1")
        .bind(&held.transfer_id)
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    if holder != run.as_str() {
        return Err(StoreError::TransferHeld {
            transfer_id: held.transfer_id.clone(),
            holder,
        });
    }
    Ok(())
}

fn parse_run_id(s: &str) -> Result<RunId, StoreError> {
    RunId::parse(s).ok_or_else(|| StoreError::Corrupt(format!("run id {s:?}")))
}

fn held_from_row(row: &AnyRow) -> Result<HeldTransfer, StoreError> {
    Ok(HeldTransfer {
        transfer_id: row.try_get(0)?,
        run_id: parse_run_id(&row.try_get::<String, _>(1)?)?,
        quote_id: row.try_get(2)?,
        how: row.try_get(3)?,
        recorded_at: from_millis(row.try_get(4)?)?,
    })
}
