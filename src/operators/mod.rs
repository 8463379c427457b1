//! Operators are accounts, never typed names (issue 14).
//!
//! - An account has a normalised name ([`names`]), a role, an argon2id password hash
//!   ([`secrets`]) and a credential version. Changing its password, role or status
//!   bumps the version, and every token minted under an older one stops working.
//! - Roles are ordered: a viewer reads; an operator may also halt, resume, retry,
//!   cancel, connect and revoke grants; an approver may also approve and reject; an
//!   admin also manages operators.
//! - The CLI authenticates every state-changing command ([`login`]): a personal token
//!   from `TREASURY_OPERATOR_AUTH=<name>:<token>`, or name and password at a prompt.

pub mod login;
pub mod names;
pub mod secrets;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use login::{Login, OPERATOR_AUTH_ENV};
pub use names::{OperatorName, skeleton};

/// What an account may do. Each role may do everything the ones below it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Approver,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Approver, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// What the role adds, for messages.
    pub fn grants(self) -> &'static str {
        match self {
            Role::Viewer => "read",
            Role::Operator => "halt, resume, retry, cancel, connect and revoke grants",
            Role::Approver => "approve and reject runs",
            Role::Admin => "manage operators",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| format!("{s:?} is not a role (viewer, operator, approver or admin)"))
    }
}

/// An account's id, `opr_` and 24 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct OperatorId(String);

impl OperatorId {
    pub fn generate() -> Self {
        Self(format!(
            "opr_{}",
            uuid::Uuid::new_v4().simple().to_string()[..24].to_owned()
        ))
    }

    /// Only the store reads ids back.
    pub(crate) fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An account as the store holds it (without its password hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: OperatorId,
    pub name: String,
    pub role: Role,
    pub password_temporary: bool,
    pub disabled: bool,
    pub locked: bool,
    pub credential_version: i64,
    pub created_at: DateTime<Utc>,
}

impl Account {
    /// The audit actor, `operator:<name>`.
    pub fn actor(&self) -> String {
        format!("operator:{}", self.name)
    }

    /// Whether the account may act at all, and why not.
    pub fn usable(&self) -> Result<(), String> {
        if self.disabled {
            return Err(format!("operator {} is disabled", self.name));
        }
        if self.locked {
            return Err(format!(
                "operator {} is locked after {MAX_FAILED_SIGN_INS} failed sign-ins; an admin unlocks it with `treasury operators enable {}`",
                self.name, self.name
            ));
        }
        Ok(())
    }
}

/// Failed sign-ins in a row after which an account locks.
pub const MAX_FAILED_SIGN_INS: i64 = 5;

/// How long a personal token lives unless asked otherwise, and at most.
pub const DEFAULT_TOKEN_DAYS: u32 = 30;
pub const MAX_TOKEN_DAYS: u32 = 365;

/// The least length of a password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Whether `admin` may disable `target` or change its role (`enabling: false`), or
/// enable it: never one's own account but to enable it, so that an admin cannot lock
/// the last admin out by mistake (the CLI and the console ask the same).
pub fn may_change(admin: &Account, target: &Account, enabling: bool) -> Result<(), String> {
    if target.id == admin.id && !enabling {
        return Err(format!(
            "{} is your own account: another admin must disable it or change its role",
            target.name
        ));
    }
    Ok(())
}
