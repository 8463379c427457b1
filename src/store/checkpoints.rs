//! SQL for audit checkpoints: the checkpointer's lease, and the chain reads that
//! checkpoint verification needs (one entry's hash, the entries after a checkpoint).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, millis};

/// A held checkpoint lease: the fence proves it was not taken over since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointLease {
    pub holder: String,
    pub fence: i64,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// The hash of entry `seq`, if the chain has it.
    pub async fn audit_hash_at(&self, seq: i64) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT hash FROM audit_log WHERE seq = $1")
            .bind(seq)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| r.try_get(0).map_err(StoreError::from))
            .transpose()
    }

    /// Whether an entry after `seq` has one of `actions` (a halt or an approval that
    /// calls for a checkpoint now).
    pub async fn audit_has_action_after(
        &self,
        seq: i64,
        actions: &[&str],
    ) -> Result<bool, StoreError> {
        for action in actions {
            let found =
                sqlx::query("SELECT 1 FROM audit_log WHERE seq > $1 AND action = $2 LIMIT 1")
                    .bind(seq)
                    .bind(*action)
                    .fetch_optional(self.pool())
                    .await?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Takes the checkpoint lease for `ttl` if it is free, lapsed, or already
    /// `holder`'s; `None` while another holds it.
    pub async fn take_checkpoint_lease(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<Option<CheckpointLease>, StoreError> {
        let expires_at = now + ttl;
        let mut tx = self.begin().await?;
        let taken = sqlx::query(
            "UPDATE audit_checkpoint_lease SET holder = $1, fence = fence + 1, expires_at = $2 \
             WHERE id = 1 AND (holder IS NULL OR holder = $1 OR expires_at <= $3)",
        )
        .bind(holder)
        .bind(millis(expires_at))
        .bind(millis(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if taken != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        let fence: i64 = sqlx::query("SELECT fence FROM audit_checkpoint_lease WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        tx.commit().await?;
        Ok(Some(CheckpointLease {
            holder: holder.to_string(),
            fence,
            expires_at,
        }))
    }

    /// Whether `lease` is still held, unlapsed, at `now`.
    pub async fn checkpoint_lease_held(
        &self,
        lease: &CheckpointLease,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT 1 FROM audit_checkpoint_lease \
             WHERE id = 1 AND holder = $1 AND fence = $2 AND expires_at > $3",
        )
        .bind(&lease.holder)
        .bind(lease.fence)
        .bind(millis(now))
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Gives `lease` up, unless it was taken over meanwhile.
    pub async fn release_checkpoint_lease(
        &self,
        lease: &CheckpointLease,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE audit_checkpoint_lease SET holder = NULL, expires_at = 0 \
             WHERE id = 1 AND holder = $1 AND fence = $2",
        )
        .bind(&lease.holder)
        .bind(lease.fence)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
