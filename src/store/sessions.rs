//! SQL for web console sessions (`console_sessions`). A session is stored as the
//! SHA-256 of its cookie token, never the token; it is live only under the account's
//! current credential version, so a password, role or status change ends it. Sign-in
//! and sign-out are audited under the account's name.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::Row;

use super::operators::account_from_row;
use super::{Store, StoreError, from_millis, millis};
use crate::audit::NewAuditEntry;
use crate::operators::Account;

/// A live session and the account it belongs to, as the store holds them now.
#[derive(Clone, Debug)]
pub struct ConsoleSession {
    pub id: String,
    pub account: Account,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// The account columns (as `store::operators` reads them) and the session's own.
const SESSION_SQL: &str = "SELECT o.id, o.name, o.role, o.password_temporary, o.disabled, o.locked, \
     o.credential_version, o.created_at, s.id, s.created_at, s.last_seen_at \
     FROM console_sessions s JOIN operators o ON o.id = s.operator_id \
     WHERE s.token_hash = $1 AND s.ended_at IS NULL AND s.credential_version = o.credential_version";

impl Store {
    /// Opens a session for `account` under its current credential version. The
    /// session the browser held before (`replaces`, by token hash), if any, ends in
    /// the same transaction: a sign-in always rotates the session. The account's ended
    /// sessions, and those opened before `forget_before`, are deleted.
    pub async fn open_console_session(
        &self,
        account: &Account,
        token_hash: &str,
        replaces: Option<&str>,
        forget_before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let mut tx = self.begin().await?;
        // The account's sessions that can never be live again go: ended ones, and any
        // older than the longest a session lives.
        sqlx::query(
            "DELETE FROM console_sessions WHERE operator_id = $1 AND (ended_at IS NOT NULL OR created_at < $2)",
        )
        .bind(account.id.as_str())
        .bind(millis(forget_before))
        .execute(&mut *tx)
        .await?;
        if let Some(old) = replaces {
            sqlx::query(
                "UPDATE console_sessions SET ended_at = $2 WHERE token_hash = $1 AND ended_at IS NULL",
            )
            .bind(old)
            .bind(millis(at))
            .execute(&mut *tx)
            .await?;
        }
        let id = format!("ses_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]);
        sqlx::query(
            "INSERT INTO console_sessions (id, token_hash, operator_id, credential_version, created_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&id)
        .bind(token_hash)
        .bind(account.id.as_str())
        .bind(account.credential_version)
        .bind(millis(at))
        .execute(&mut *tx)
        .await?;
        let entry = NewAuditEntry::new(
            account.actor(),
            "console.signed_in",
            json!({ "operator": account.name, "session_id": id }),
        );
        self.append_audit_in(&mut tx, at, entry).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The live session whose token hashes to `token_hash`, with its account as it
    /// stands (a disabled or locked account is returned as such: the caller refuses
    /// it). `None` when unknown, ended, or opened under an older credential version.
    pub async fn console_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        let Some(r) = sqlx::query(SESSION_SQL)
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(ConsoleSession {
            account: account_from_row(&r)?,
            id: r.try_get(8)?,
            created_at: from_millis(r.try_get(9)?)?,
            last_seen_at: from_millis(r.try_get(10)?)?,
        }))
    }

    /// Records that the session was used at `at` (its idle timeout counts from here).
    pub async fn touch_console_session(
        &self,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE console_sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2",
        )
        .bind(id)
        .bind(millis(at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Ends a session: at sign-out (audited as `by`), or when it timed out (`None`).
    pub async fn end_console_session(
        &self,
        id: &str,
        by: Option<&Account>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE console_sessions SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL",
        )
        .bind(id)
        .bind(millis(at))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if let (1, Some(account)) = (n, by) {
            let entry = NewAuditEntry::new(
                account.actor(),
                "console.signed_out",
                json!({ "operator": account.name, "session_id": id }),
            );
            self.append_audit_in(&mut tx, at, entry).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
