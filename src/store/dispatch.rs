//! SQL for the dispatcher: which runs to send out, and which sent-out runs the queue
//! still owes an execution (invariant 1: the store, not the queue, is the record).
//!
//! A run is *undelivered* while `dispatch_fence = fence`: it was sent out and no
//! executor has taken its lease since (taking the lease bumps the fence). A run is
//! *sendable* when it is unfinished, due, unleased, not awaiting approval, and not
//! undelivered — or undelivered for longer than the re-dispatch timeout (its message
//! was lost or is stuck). Sending it bumps `dispatch_gen`, which names the message.

use chrono::{DateTime, Duration, Utc};
use sqlx::Row;

use super::{Store, StoreError, millis};
use crate::runs::RunId;

/// The states a dispatch never sends out: final, or waiting for a human.
macro_rules! unsendable {
    () => {
        "('settled', 'failed', 'cancelled', 'needs_human', 'awaiting_approval')"
    };
}

/// The eligibility test, shared by the inner pick and the outer re-check (so that on
/// PostgreSQL a row changed by a concurrent dispatcher is re-evaluated, not re-sent).
/// `$1` = now, `$2` = undelivered-since cutoff for re-dispatch.
macro_rules! sendable {
    () => {
        concat!(
            "state NOT IN ",
            unsendable!(),
            " AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1) \
             AND (dispatched_at IS NULL OR dispatch_fence IS NULL OR dispatch_fence <> fence \
                  OR dispatched_at < $2)"
        )
    };
}

/// A run the dispatcher just marked as sent, with the generation that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    pub run_id: RunId,
    pub generation: i64,
}

impl Store {
    /// Marks up to `limit` sendable runs as dispatched (oldest due first) and returns
    /// them. A run whose last dispatch has been undelivered since before
    /// `now - redispatch_after` is sendable again, under a new generation.
    pub async fn claim_dispatches(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        redispatch_after: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let rows = sqlx::query(concat!(
            "UPDATE runs SET dispatch_gen = dispatch_gen + 1, dispatched_at = $1, dispatch_fence = fence \
             WHERE id IN (SELECT id FROM runs WHERE ",
            sendable!(),
            " ORDER BY next_attempt_at LIMIT $3) AND ",
            sendable!(),
            " RETURNING id, dispatch_gen"
        ))
        .bind(millis(now))
        .bind(millis(now - redispatch_after))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                Ok(Claimed {
                    run_id: RunId::parse(&id)
                        .ok_or_else(|| StoreError::Corrupt(format!("run id {id:?}")))?,
                    generation: r.try_get(1)?,
                })
            })
            .collect()
    }

    /// How many runs were sent out at or after `since` and not yet picked up: the
    /// dispatcher's window.
    pub async fn undelivered_count(&self, since: DateTime<Utc>) -> Result<i64, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT COUNT(*) FROM runs WHERE dispatch_fence = fence AND dispatched_at >= $1 \
             AND state NOT IN ",
            unsendable!()
        ))
        .bind(millis(since))
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Runs sent out between `since` and `before` and not yet picked up, with the
    /// generation they were sent under: recovery compares them with what the queue
    /// still holds.
    pub async fn undelivered(
        &self,
        since: DateTime<Utc>,
        before: DateTime<Utc>,
    ) -> Result<Vec<Claimed>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT id, dispatch_gen FROM runs WHERE dispatch_fence = fence \
             AND dispatched_at >= $1 AND dispatched_at < $2 AND state NOT IN ",
            unsendable!()
        ))
        .bind(millis(since))
        .bind(millis(before))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                Ok(Claimed {
                    run_id: RunId::parse(&id)
                        .ok_or_else(|| StoreError::Corrupt(format!("run id {id:?}")))?,
                    generation: r.try_get(1)?,
                })
            })
            .collect()
    }

    /// Forgets a dispatch the queue lost, so that the next tick sends the run out
    /// again. Only if that dispatch is still the run's latest and still undelivered.
    pub async fn forget_dispatch(&self, run: &RunId, generation: i64) -> Result<bool, StoreError> {
        let _gate = self.gate().await;
        let done = sqlx::query(
            "UPDATE runs SET dispatched_at = NULL \
             WHERE id = $1 AND dispatch_gen = $2 AND dispatch_fence = fence",
        )
        .bind(run.as_str())
        .bind(generation)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// The run's latest dispatch generation (0: never sent out).
    pub async fn dispatch_generation(&self, run: &RunId) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT dispatch_gen FROM runs WHERE id = $1")
            .bind(run.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| r.try_get(0)).transpose().map_err(Into::into)
    }
}
