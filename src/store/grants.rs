//! SQL for grants and pending browser authorizations.
//!
//! The store sees only ciphertexts (`hex(nonce || AES-256-GCM)`); sealing and opening
//! belong to `grants::crypto`. Every write that replaces tokens carries the fence its
//! writer acquired, so a stale lease holder writes nothing.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, Tx, from_millis, millis};

/// The grant columns in row order (a macro so that queries stay `&'static str`).
macro_rules! grant_columns {
    () => {
        "id, provider, alias, subject, scopes, status, status_reason, key_version, \
         access_token_ct, access_expires_at, refresh_token_ct, fence, lease_owner, \
         lease_until, created_at, updated_at, connected_at, refreshed_at, region, \
         refresh_expires_at, consent, expiry_warned_for"
    };
}

/// One `grants` row, as stored. Status is the raw column; `grants` parses it.
#[derive(Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub id: String,
    pub provider: String,
    pub alias: String,
    pub subject: String,
    /// Space-separated granted scopes.
    pub scopes: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub key_version: i64,
    pub access_token_ct: Option<String>,
    pub access_expires_at: DateTime<Utc>,
    pub refresh_token_ct: Option<String>,
    pub fence: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub connected_at: DateTime<Utc>,
    pub refreshed_at: Option<DateTime<Utc>>,
    /// Baanx's region (`international` or `us`); `None` for Busha.
    pub region: Option<String>,
    /// When the refresh token dies unused, if the provider said.
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// The consent record (JSON), if one was kept.
    pub consent: Option<String>,
    /// The refresh expiry keep-alive last alerted about.
    pub expiry_warned_for: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for GrantRow {
    // Ciphertexts are not secret, but they are noise in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantRow")
            .field("id", &self.id)
            .field("alias", &self.alias)
            .field("status", &self.status)
            .field("fence", &self.fence)
            .field("lease_owner", &self.lease_owner)
            .finish_non_exhaustive()
    }
}

/// The token half of a grant, sealed, as written by a connect or a refresh.
#[derive(Clone, Debug)]
pub struct SealedTokens {
    pub key_version: i64,
    pub access_token_ct: String,
    pub access_expires_at: DateTime<Utc>,
    pub refresh_token_ct: Option<String>,
    /// Space-separated granted scopes.
    pub scopes: String,
    /// When the refresh token dies unused, if the provider said.
    pub refresh_expires_at: Option<DateTime<Utc>>,
}

/// A grant's ciphertexts re-sealed under another key version (rotation).
#[derive(Clone, Debug)]
pub struct Resealed {
    pub key_version: i64,
    pub access_token_ct: Option<String>,
    pub refresh_token_ct: Option<String>,
}

/// A new or re-consented grant.
#[derive(Clone, Debug)]
pub struct ConnectedGrantRow {
    pub id: String,
    pub provider: String,
    pub alias: String,
    pub subject: String,
    pub tokens: SealedTokens,
    /// Baanx's region; `None` for Busha.
    pub region: Option<String>,
    /// The consent record (JSON).
    pub consent: Option<String>,
}

/// A pending browser authorization.
#[derive(Clone, Debug)]
pub struct AuthorizationRow {
    pub state_hash: String,
    pub provider: String,
    pub alias: String,
    pub scopes: String,
    pub key_version: i64,
    pub verifier_ct: String,
    pub nonce: String,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// One grant by id.
    pub async fn grant(&self, id: &str) -> Result<Option<GrantRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            grant_columns!(),
            " FROM grants WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    /// One grant by provider and alias.
    pub async fn grant_by_alias(
        &self,
        provider: &str,
        alias: &str,
    ) -> Result<Option<GrantRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            grant_columns!(),
            " FROM grants WHERE provider = $1 AND alias = $2"
        ))
        .bind(provider)
        .bind(alias)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    /// [`Store::grant_by_alias`] inside a write transaction.
    pub async fn grant_by_alias_in(
        &self,
        tx: &mut Tx,
        provider: &str,
        alias: &str,
    ) -> Result<Option<GrantRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            grant_columns!(),
            " FROM grants WHERE provider = $1 AND alias = $2"
        ))
        .bind(provider)
        .bind(alias)
        .fetch_optional(&mut **tx)
        .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    /// Every grant, by provider and alias.
    pub async fn grants(&self) -> Result<Vec<GrantRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            grant_columns!(),
            " FROM grants ORDER BY provider, alias"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    /// Inserts a grant, or replaces the tokens, subject and status of the grant that
    /// already holds its alias (a re-consent). Replacing bumps the fence and clears
    /// the lease, so that a holder still refreshing the old session writes nothing.
    pub async fn upsert_connected_grant_in(
        &self,
        tx: &mut Tx,
        grant: &ConnectedGrantRow,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let t = &grant.tokens;
        let updated = sqlx::query(
            "UPDATE grants SET subject = $1, scopes = $2, status = 'active', status_reason = NULL, \
             key_version = $3, access_token_ct = $4, access_expires_at = $5, refresh_token_ct = $6, \
             fence = fence + 1, lease_owner = NULL, lease_until = NULL, updated_at = $7, \
             connected_at = $7, refreshed_at = NULL, region = $9, refresh_expires_at = $10, \
             consent = $11 WHERE id = $8",
        )
        .bind(&grant.subject)
        .bind(&t.scopes)
        .bind(t.key_version)
        .bind(&t.access_token_ct)
        .bind(millis(t.access_expires_at))
        .bind(&t.refresh_token_ct)
        .bind(millis(now))
        .bind(&grant.id)
        .bind(&grant.region)
        .bind(t.refresh_expires_at.map(millis))
        .bind(&grant.consent)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if updated == 0 {
            sqlx::query(
                "INSERT INTO grants (id, provider, alias, subject, scopes, status, key_version, \
                 access_token_ct, access_expires_at, refresh_token_ct, fence, created_at, \
                 updated_at, connected_at, region, refresh_expires_at, consent) \
                 VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9, 0, $10, $10, $10, $11, $12, $13)",
            )
            .bind(&grant.id)
            .bind(&grant.provider)
            .bind(&grant.alias)
            .bind(&grant.subject)
            .bind(&t.scopes)
            .bind(t.key_version)
            .bind(&t.access_token_ct)
            .bind(millis(t.access_expires_at))
            .bind(&t.refresh_token_ct)
            .bind(millis(now))
            .bind(&grant.region)
            .bind(t.refresh_expires_at.map(millis))
            .bind(&grant.consent)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Takes the grant's refresh lease for `owner` until `until` with one conditional
    /// UPDATE: it succeeds when the lease is free, lapsed, or already `owner`'s, and
    /// returns the new fence. `None`: someone else holds it.
    pub async fn acquire_grant_lease(
        &self,
        id: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let _gate = self.gate().await;
        let row = sqlx::query(
            "UPDATE grants SET lease_owner = $1, lease_until = $2, fence = fence + 1 \
             WHERE id = $3 AND (lease_until IS NULL OR lease_until < $4 OR lease_owner = $1) \
             RETURNING fence",
        )
        .bind(owner)
        .bind(millis(until))
        .bind(id)
        .bind(millis(now))
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| r.try_get::<i64, _>(0))
            .transpose()
            .map_err(Into::into)
    }

    /// Extends a lease still held under `fence`. False: the lease was lost.
    pub async fn renew_grant_lease(
        &self,
        id: &str,
        fence: i64,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _gate = self.gate().await;
        let n = sqlx::query(
            "UPDATE grants SET lease_until = $1 WHERE id = $2 AND fence = $3 AND lease_owner = $4",
        )
        .bind(millis(until))
        .bind(id)
        .bind(fence)
        .bind(owner)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Releases a lease still held under `fence` (a no-op once the fence moved on).
    pub async fn release_grant_lease(&self, id: &str, fence: i64) -> Result<(), StoreError> {
        let _gate = self.gate().await;
        sqlx::query(
            "UPDATE grants SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND fence = $2",
        )
        .bind(id)
        .bind(fence)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Writes a rotated token pair and releases the lease, only while the writer's
    /// `fence` is current and the grant is active. False: a stale holder, nothing written.
    pub async fn store_refreshed_tokens_in(
        &self,
        tx: &mut Tx,
        id: &str,
        fence: i64,
        tokens: &SealedTokens,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE grants SET scopes = $1, key_version = $2, access_token_ct = $3, \
             access_expires_at = $4, refresh_token_ct = $5, lease_owner = NULL, lease_until = NULL, \
             updated_at = $6, refreshed_at = $6, refresh_expires_at = COALESCE($9, refresh_expires_at) \
             WHERE id = $7 AND fence = $8 AND status = 'active'",
        )
        .bind(&tokens.scopes)
        .bind(tokens.key_version)
        .bind(&tokens.access_token_ct)
        .bind(millis(tokens.access_expires_at))
        .bind(&tokens.refresh_token_ct)
        .bind(millis(now))
        .bind(id)
        .bind(fence)
        .bind(tokens.refresh_expires_at.map(millis))
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Replaces a grant's consent record (its end, once revoked or disconnected).
    pub async fn set_grant_consent_in(
        &self,
        tx: &mut Tx,
        id: &str,
        consent: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE grants SET consent = $1 WHERE id = $2")
            .bind(consent)
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Records that keep-alive alerted about the refresh expiry `dies`.
    pub async fn mark_expiry_warned_in(
        &self,
        tx: &mut Tx,
        id: &str,
        dies: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE grants SET expiry_warned_for = $1 WHERE id = $2")
            .bind(millis(dies))
            .bind(id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The active grants of `provider` whose subject is `subject`, other than `alias`.
    pub async fn other_aliases_of_subject_in(
        &self,
        tx: &mut Tx,
        provider: &str,
        subject: &str,
        alias: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT alias FROM grants WHERE provider = $1 AND subject = $2 AND alias <> $3 \
             AND status = 'active' ORDER BY alias",
        )
        .bind(provider)
        .bind(subject)
        .bind(alias)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    /// Re-seals a grant's tokens (key rotation) when nobody holds its lease and its
    /// fence is still `fence`. False: a refresh got in first; read it again.
    pub async fn reseal_grant_in(
        &self,
        tx: &mut Tx,
        id: &str,
        fence: i64,
        sealed: &Resealed,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE grants SET key_version = $1, access_token_ct = $2, refresh_token_ct = $3, \
             updated_at = $4 WHERE id = $5 AND fence = $6 \
             AND (lease_until IS NULL OR lease_until < $4)",
        )
        .bind(sealed.key_version)
        .bind(&sealed.access_token_ct)
        .bind(&sealed.refresh_token_ct)
        .bind(millis(now))
        .bind(id)
        .bind(fence)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Ends a grant's session: sets `status` (not `active`) with its reason, wipes both
    /// ciphertexts and releases the lease. With `fence`, only while that fence is
    /// current; without, unconditionally (an operator's revoke after taking the lease,
    /// or marking a grant lost). False: nothing written.
    pub async fn end_grant_in(
        &self,
        tx: &mut Tx,
        id: &str,
        fence: Option<i64>,
        status: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE grants SET status = $1, status_reason = $2, access_token_ct = NULL, \
             refresh_token_ct = NULL, lease_owner = NULL, lease_until = NULL, updated_at = $3 \
             WHERE id = $4 AND ($5 IS NULL OR fence = $5)",
        )
        .bind(status)
        .bind(reason)
        .bind(millis(now))
        .bind(id)
        .bind(fence)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Records a browser authorization in flight.
    pub async fn insert_authorization(&self, a: &AuthorizationRow) -> Result<(), StoreError> {
        let _gate = self.gate().await;
        sqlx::query(
            "INSERT INTO grant_authorizations (state_hash, provider, alias, scopes, key_version, \
             verifier_ct, nonce, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&a.state_hash)
        .bind(&a.provider)
        .bind(&a.alias)
        .bind(&a.scopes)
        .bind(a.key_version)
        .bind(&a.verifier_ct)
        .bind(&a.nonce)
        .bind(millis(a.created_at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Consumes the pending authorization for `state_hash` with one conditional UPDATE:
    /// exactly one caller gets it, however many callbacks race. `None`: unknown,
    /// already consumed, or created before `not_before`.
    pub async fn consume_authorization(
        &self,
        state_hash: &str,
        now: DateTime<Utc>,
        not_before: DateTime<Utc>,
    ) -> Result<Option<AuthorizationRow>, StoreError> {
        let _gate = self.gate().await;
        let row = sqlx::query(
            "UPDATE grant_authorizations SET consumed_at = $1 \
             WHERE state_hash = $2 AND consumed_at IS NULL AND created_at >= $3 \
             RETURNING state_hash, provider, alias, scopes, key_version, verifier_ct, nonce, created_at",
        )
        .bind(millis(now))
        .bind(state_hash)
        .bind(millis(not_before))
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(AuthorizationRow {
                state_hash: r.try_get(0)?,
                provider: r.try_get(1)?,
                alias: r.try_get(2)?,
                scopes: r.try_get(3)?,
                key_version: r.try_get(4)?,
                verifier_ct: r.try_get(5)?,
                nonce: r.try_get(6)?,
                created_at: from_millis(r.try_get(7)?)?,
            })
        })
        .transpose()
    }

    /// Whether `state_hash` names an authorization we issued (consumed or not).
    pub async fn authorization_exists(&self, state_hash: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM grant_authorizations WHERE state_hash = $1")
            .bind(state_hash)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }

    /// Deletes authorizations created before `before` (pending or consumed).
    pub async fn purge_authorizations(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let _gate = self.gate().await;
        let n = sqlx::query("DELETE FROM grant_authorizations WHERE created_at < $1")
            .bind(millis(before))
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n)
    }
}

fn grant_from_row(row: &AnyRow) -> Result<GrantRow, StoreError> {
    let opt_time = |i: usize| -> Result<Option<DateTime<Utc>>, StoreError> {
        row.try_get::<Option<i64>, _>(i)?
            .map(from_millis)
            .transpose()
    };
    Ok(GrantRow {
        id: row.try_get(0)?,
        provider: row.try_get(1)?,
        alias: row.try_get(2)?,
        subject: row.try_get(3)?,
        scopes: row.try_get(4)?,
        status: row.try_get(5)?,
        status_reason: row.try_get(6)?,
        key_version: row.try_get(7)?,
        access_token_ct: row.try_get(8)?,
        access_expires_at: from_millis(row.try_get(9)?)?,
        refresh_token_ct: row.try_get(10)?,
        fence: row.try_get(11)?,
        lease_owner: row.try_get(12)?,
        lease_until: opt_time(13)?,
        created_at: from_millis(row.try_get(14)?)?,
        updated_at: from_millis(row.try_get(15)?)?,
        connected_at: from_millis(row.try_get(16)?)?,
        refreshed_at: opt_time(17)?,
        region: row.try_get(18)?,
        refresh_expires_at: opt_time(19)?,
        consent: row.try_get(20)?,
        expiry_warned_for: opt_time(21)?,
    })
}
