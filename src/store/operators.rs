//! SQL for operator accounts and their personal tokens. Every change commits with its
//! audit entry. No password, no token and no hash reaches an audit entry.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, Tx, from_millis, millis};
use crate::audit::NewAuditEntry;
use crate::operators::{Account, MAX_FAILED_SIGN_INS, OperatorId, OperatorName, Role};

/// The account columns in row order (a macro so that queries stay `&'static str`).
macro_rules! columns {
    () => {
        "id, name, role, password_temporary, disabled, locked, credential_version, created_at"
    };
    ($t:literal) => {
        concat!(
            $t,
            ".id, ",
            $t,
            ".name, ",
            $t,
            ".role, ",
            $t,
            ".password_temporary, ",
            $t,
            ".disabled, ",
            $t,
            ".locked, ",
            $t,
            ".credential_version, ",
            $t,
            ".created_at"
        )
    };
}

/// What every account change also sets: a new credential version.
macro_rules! bump {
    () => {
        "credential_version = credential_version + 1, updated_at = $2"
    };
}

/// A new account: its name, role and password hash.
pub struct NewOperator {
    pub name: OperatorName,
    pub role: Role,
    pub password_hash: String,
}

/// What an admin or the account itself changes.
pub enum OperatorChange {
    Disable,
    /// Also unlocks an account locked by failed sign-ins.
    Enable,
    Role(Role),
    /// A new password hash; `temporary` after an admin reset.
    Password {
        hash: String,
        temporary: bool,
    },
}

impl OperatorChange {
    fn action(&self) -> &'static str {
        match self {
            OperatorChange::Disable => "operator.disabled",
            OperatorChange::Enable => "operator.enabled",
            OperatorChange::Role(_) => "operator.role_changed",
            OperatorChange::Password {
                temporary: true, ..
            } => "operator.password_reset",
            OperatorChange::Password { .. } => "operator.password_changed",
        }
    }
}

/// Who made a change: an authenticated account, or nobody for the first admin.
#[derive(Clone, Copy)]
pub enum ChangedBy<'a> {
    Bootstrap,
    Account(&'a Account),
}

impl ChangedBy<'_> {
    fn actor(&self) -> String {
        match self {
            ChangedBy::Bootstrap => "bootstrap:first-admin".into(),
            ChangedBy::Account(a) => a.actor(),
        }
    }
}

impl Store {
    /// How many accounts exist.
    pub async fn operator_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM operators")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Creates an account. Refused (`Conflict`) when its name or a look-alike exists,
    /// and, for `Bootstrap`, when any account exists.
    pub async fn add_operator(
        &self,
        new: NewOperator,
        by: ChangedBy<'_>,
        at: DateTime<Utc>,
    ) -> Result<Account, StoreError> {
        if matches!(by, ChangedBy::Bootstrap) && new.role != Role::Admin {
            return Err(StoreError::Conflict(
                "no account exists yet: the first one must be an admin (`--role admin`)".into(),
            ));
        }
        let mut tx = self.begin().await?;
        if matches!(by, ChangedBy::Bootstrap) && count_in(&mut tx).await? > 0 {
            return Err(StoreError::Conflict(
                "accounts exist: adding one needs an admin (set TREASURY_OPERATOR_AUTH)".into(),
            ));
        }
        let skeleton = new.name.skeleton();
        if let Some(row) = sqlx::query("SELECT name FROM operators WHERE skeleton = $1")
            .bind(&skeleton)
            .fetch_optional(&mut *tx)
            .await?
        {
            let existing: String = row.try_get(0)?;
            return Err(StoreError::Conflict(format!(
                "operator name {:?} is already taken or looks like the existing account {existing:?}",
                new.name.as_str()
            )));
        }
        let id = OperatorId::generate();
        sqlx::query(
            "INSERT INTO operators (id, name, skeleton, role, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(id.as_str())
        .bind(new.name.as_str())
        .bind(&skeleton)
        .bind(new.role.as_str())
        .bind(&new.password_hash)
        .bind(millis(at))
        .execute(&mut *tx)
        .await?;
        let entry = NewAuditEntry::new(
            by.actor(),
            "operator.added",
            json!({ "operator": new.name.as_str(), "operator_id": id.as_str(), "role": new.role.as_str() }),
        );
        self.append_audit_in(&mut tx, at, entry).await?;
        if matches!(by, ChangedBy::Bootstrap) && count_in(&mut tx).await? != 1 {
            return Err(StoreError::Conflict(
                "another first admin was added meanwhile".into(),
            ));
        }
        let account = account_in(&mut tx, id.as_str()).await?;
        tx.commit().await?;
        account.ok_or_else(|| StoreError::Corrupt("the new account vanished".into()))
    }

    /// Every account, by name.
    pub async fn operators(&self) -> Result<Vec<Account>, StoreError> {
        let sql = concat!("SELECT ", columns!(), " FROM operators ORDER BY name");
        let rows = sqlx::query(sql).fetch_all(self.pool()).await?;
        rows.iter().map(account_from_row).collect()
    }

    /// The account with this normalised name, and its password hash.
    pub async fn operator_with_hash(
        &self,
        name: &OperatorName,
    ) -> Result<Option<(Account, String)>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            ", password_hash FROM operators WHERE name = $1"
        );
        let row = sqlx::query(sql)
            .bind(name.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| Ok((account_from_row(&r)?, r.try_get(8)?)))
            .transpose()
    }

    /// The account whose name looks like `skeleton` (see `operators::skeleton`).
    pub async fn operator_by_skeleton(
        &self,
        skeleton: &str,
    ) -> Result<Option<Account>, StoreError> {
        let sql = concat!("SELECT ", columns!(), " FROM operators WHERE skeleton = $1");
        let row = sqlx::query(sql)
            .bind(skeleton)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    /// Counts a sign-in: a success clears the failures; the fifth failure in a row
    /// locks the account (audited). Returns the account as it now stands.
    pub async fn record_sign_in(
        &self,
        id: &OperatorId,
        succeeded: bool,
        at: DateTime<Utc>,
    ) -> Result<Option<Account>, StoreError> {
        let mut tx = self.begin().await?;
        let q = if succeeded {
            sqlx::query(
                "UPDATE operators SET failed_sign_ins = 0 WHERE id = $1 AND locked = 0 \
                 RETURNING locked, failed_sign_ins",
            )
            .bind(id.as_str())
        } else {
            sqlx::query(
                "UPDATE operators SET failed_sign_ins = failed_sign_ins + 1, \
                 locked = CASE WHEN failed_sign_ins + 1 >= $2 THEN 1 ELSE locked END WHERE id = $1 \
                 RETURNING locked, failed_sign_ins",
            )
            .bind(id.as_str())
            .bind(MAX_FAILED_SIGN_INS)
        };
        let locked_now = q
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| -> Result<bool, StoreError> {
                let failed: i64 = r.try_get(1)?;
                Ok(r.try_get::<i64, _>(0)? == 1 && failed == MAX_FAILED_SIGN_INS)
            })
            .transpose()?
            .unwrap_or(false);
        let account = account_in(&mut tx, id.as_str()).await?;
        if let (true, Some(a)) = (locked_now && !succeeded, &account) {
            let entry = NewAuditEntry::new(
                a.actor(),
                "operator.locked",
                json!({ "operator": a.name, "failed_sign_ins": MAX_FAILED_SIGN_INS }),
            );
            self.append_audit_in(&mut tx, at, entry).await?;
        }
        tx.commit().await?;
        Ok(account)
    }

    /// Applies `change` to the account and bumps its credential version, so that its
    /// tokens stop working. Returns the account as it now stands.
    pub async fn change_operator(
        &self,
        target: &Account,
        change: OperatorChange,
        by: &Account,
        at: DateTime<Utc>,
    ) -> Result<Account, StoreError> {
        let mut tx = self.begin().await?;
        let (id, at_ms) = (target.id.as_str(), millis(at));
        let q = match &change {
            OperatorChange::Disable => sqlx::query(concat!(
                "UPDATE operators SET disabled = 1, ",
                bump!(),
                " WHERE id = $1"
            )),
            OperatorChange::Enable => sqlx::query(concat!(
                "UPDATE operators SET disabled = 0, locked = 0, failed_sign_ins = 0, ",
                bump!(),
                " WHERE id = $1"
            )),
            OperatorChange::Role(_) => sqlx::query(concat!(
                "UPDATE operators SET role = $3, ",
                bump!(),
                " WHERE id = $1"
            )),
            OperatorChange::Password { .. } => sqlx::query(concat!(
                "UPDATE operators SET password_hash = $3, password_temporary = $4, failed_sign_ins = 0, ",
                bump!(),
                " WHERE id = $1"
            )),
        }
        .bind(id)
        .bind(at_ms);
        let q = match &change {
            OperatorChange::Role(role) => q.bind(role.as_str()),
            OperatorChange::Password { hash, temporary } => {
                q.bind(hash.as_str()).bind(i64::from(*temporary))
            }
            OperatorChange::Disable | OperatorChange::Enable => q,
        };
        if q.execute(&mut *tx).await?.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "operator {} is gone",
                target.name
            )));
        }
        let mut payload = json!({ "operator": target.name, "operator_id": target.id.as_str() });
        if let OperatorChange::Role(role) = &change {
            payload["role"] = json!(role.as_str());
            payload["previous_role"] = json!(target.role.as_str());
        }
        self.append_audit_in(
            &mut tx,
            at,
            NewAuditEntry::new(by.actor(), change.action(), payload),
        )
        .await?;
        let account = account_in(&mut tx, target.id.as_str()).await?;
        tx.commit().await?;
        account.ok_or_else(|| StoreError::Corrupt("the account vanished".into()))
    }

    /// Stores a personal token's hash for the account, under its current credential
    /// version (audited by token id, never the token).
    pub async fn add_operator_token(
        &self,
        account: &Account,
        token_hash: &str,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let mut tx = self.begin().await?;
        let id = format!("tok_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]);
        sqlx::query(
            "INSERT INTO operator_tokens (id, operator_id, token_hash, credential_version, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(account.id.as_str())
        .bind(token_hash)
        .bind(account.credential_version)
        .bind(millis(at))
        .bind(millis(expires_at))
        .execute(&mut *tx)
        .await?;
        let entry = NewAuditEntry::new(
            account.actor(),
            "operator.token_minted",
            json!({ "operator": account.name, "token_id": id, "expires_at": expires_at }),
        );
        self.append_audit_in(&mut tx, at, entry).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The account a live token belongs to: not expired, minted under the account's
    /// current credential version. A disabled or locked account is returned as such.
    pub async fn operator_by_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Account>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!("o"),
            " FROM operator_tokens t JOIN operators o ON o.id = t.operator_id \
             WHERE t.token_hash = $1 AND t.expires_at > $2 AND t.credential_version = o.credential_version"
        );
        let row = sqlx::query(sql)
            .bind(token_hash)
            .bind(millis(now))
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }
}

async fn count_in(tx: &mut Tx) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) FROM operators")
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.try_get(0)?)
}

async fn account_in(tx: &mut Tx, id: &str) -> Result<Option<Account>, StoreError> {
    let sql = concat!("SELECT ", columns!(), " FROM operators WHERE id = $1");
    let row = sqlx::query(sql).bind(id).fetch_optional(&mut **tx).await?;
    row.as_ref().map(account_from_row).transpose()
}

pub(super) fn account_from_row(r: &AnyRow) -> Result<Account, StoreError> {
    let role: String = r.try_get(2)?;
    Ok(Account {
        id: OperatorId::from_stored(r.try_get(0)?),
        name: r.try_get(1)?,
        role: role
            .parse()
            .map_err(|e: String| StoreError::Corrupt(format!("operators.role: {e}")))?,
        password_temporary: r.try_get::<i64, _>(3)? == 1,
        disabled: r.try_get::<i64, _>(4)? == 1,
        locked: r.try_get::<i64, _>(5)? == 1,
        credential_version: r.try_get(6)?,
        created_at: from_millis(r.try_get(7)?)?,
    })
}
