//! SQL for recipients beyond the account → id memory: the lock that serialises
//! recipient creation per (grant, bank, account), and what Busha said of each
//! recipient a run resolved (the holder's name, and whether it can be fetched by id).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError, millis};
use crate::runs::{RunId, mask_account};

/// A bank account at one grant: the unit recipient creation is serialised on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountKey {
    pub grant: String,
    pub bank_code: String,
    pub account_number: String,
}

/// What Busha reported of a recipient a run resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRecipient {
    pub holder_name: Option<String>,
    pub bank_code: Option<String>,
    /// All but the last four digits masked.
    pub account_masked: Option<String>,
    pub currency: Option<String>,
    /// Busha refused `GET /v1/recipients/{id}` for this id as malformed.
    pub fetch_refused: bool,
}

impl Store {
    /// Takes the account's recipient lock for `run` until `until`, if it is free,
    /// lapsed, or already `run`'s. Otherwise answers the run that holds it.
    pub async fn lock_account(
        &self,
        key: &AccountKey,
        run: &RunId,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Result<(), RunId>, StoreError> {
        let (key, run) = (key.clone(), run.clone());
        self.write(Box::new(move |conn, _| {
            let (key, run) = (key.clone(), run.clone());
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO recipient_locks (grant_alias, bank_code, account_number, run_id, until_ms) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (grant_alias, bank_code, account_number) DO UPDATE \
                     SET run_id = excluded.run_id, until_ms = excluded.until_ms \
                     WHERE recipient_locks.run_id = excluded.run_id OR recipient_locks.until_ms < $6",
                )
                .bind(&key.grant)
                .bind(&key.bank_code)
                .bind(&key.account_number)
                .bind(run.as_str())
                .bind(millis(until))
                .bind(millis(now))
                .execute(&mut *conn)
                .await?;
                let holder: String = sqlx::query(
                    "SELECT run_id FROM recipient_locks WHERE grant_alias = $1 AND bank_code = $2 AND account_number = $3",
                )
                .bind(&key.grant)
                .bind(&key.bank_code)
                .bind(&key.account_number)
                .fetch_one(&mut *conn)
                .await?
                .try_get(0)?;
                if holder == run.as_str() {
                    return Ok(Ok(()));
                }
                RunId::parse(&holder)
                    .map(Err)
                    .ok_or_else(|| StoreError::Corrupt(format!("run id {holder:?}")))
            })
        }))
        .await
    }

    /// Gives the account's lock back, if `run` holds it.
    pub async fn unlock_account(&self, key: &AccountKey, run: &RunId) -> Result<(), StoreError> {
        let (key, run) = (key.clone(), run.clone());
        self.write(Box::new(move |conn, _| {
            let (key, run) = (key.clone(), run.clone());
            Box::pin(async move {
                sqlx::query(
                    "DELETE FROM recipient_locks WHERE grant_alias = $1 AND bank_code = $2 \
                     AND account_number = $3 AND run_id = $4",
                )
                .bind(&key.grant)
                .bind(&key.bank_code)
                .bind(&key.account_number)
                .bind(run.as_str())
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        }))
        .await
    }

    /// Records what Busha said of a recipient. `account_number` is stored masked.
    pub async fn saw_recipient(
        &self,
        grant: &str,
        recipient_id: &str,
        seen: &SeenRecipient,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (grant, id, seen) = (grant.to_string(), recipient_id.to_string(), seen.clone());
        self.write(Box::new(move |conn, _| {
            let (grant, id, seen) = (grant.clone(), id.clone(), seen.clone());
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO recipients_seen (grant_alias, recipient_id, holder_name, bank_code, account_masked, \
                     currency, fetch_refused, seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (grant_alias, recipient_id) DO UPDATE SET holder_name = excluded.holder_name, \
                     bank_code = excluded.bank_code, account_masked = excluded.account_masked, \
                     currency = excluded.currency, seen_at = excluded.seen_at, \
                     fetch_refused = CASE WHEN excluded.fetch_refused = 1 THEN 1 ELSE recipients_seen.fetch_refused END",
                )
                .bind(&grant)
                .bind(&id)
                .bind(&seen.holder_name)
                .bind(&seen.bank_code)
                .bind(seen.account_masked.as_deref().map(mask_account))
                .bind(&seen.currency)
                .bind(i64::from(seen.fetch_refused))
                .bind(millis(now))
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        }))
        .await
    }

    /// What Busha last said of a recipient, if a run ever resolved it.
    pub async fn seen_recipient(
        &self,
        grant: &str,
        recipient_id: &str,
    ) -> Result<Option<SeenRecipient>, StoreError> {
        let row = sqlx::query(
            "SELECT holder_name, bank_code, account_masked, currency, fetch_refused FROM recipients_seen \
             WHERE grant_alias = $1 AND recipient_id = $2",
        )
        .bind(grant)
        .bind(recipient_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(SeenRecipient {
                holder_name: r.try_get(0)?,
                bank_code: r.try_get(1)?,
                account_masked: r.try_get(2)?,
                currency: r.try_get(3)?,
                fetch_refused: r.try_get::<i64, _>(4)? != 0,
            })
        })
        .transpose()
    }
}
