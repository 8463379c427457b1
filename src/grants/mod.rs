//! Grants: customers' OAuth2 permissions, connected with PKCE + OIDC and kept alive
//! safely (invariants 6 and 7).
//!
//! - [`baanx`]: Baanx's token endpoint (exchange, refresh, revoke) for custody.
//! - [`baanx_connect`]: connecting a Baanx customer, hosted UI or API mode.
//! - [`consent`]: what each connect asked for and was granted, kept with the grant.
//! - [`keepalive`]: refreshing grants before their refresh tokens die unused.
//! - [`crypto`]: tokens at rest, AES-256-GCM under a per-grant HKDF key.
//! - [`oauth`]: Busha's issuer (discovery, authorization URL, code exchange with
//!   id_token verification, refresh, revoke) and what a failed refresh means.
//! - [`custodian`]: [`Custodian::access_token`], the one call that hands out tokens,
//!   with single-flight refresh in a process and a fenced store lease across processes.
//! - [`connect`]: the browser flow shared by `treasury connect` and the HTTP server.
//! - [`seals`]: whether this process's master key opens every active grant (`/readyz`).
//! - [`rekey`]: re-sealing every grant under the newest key, checked before success.
//!
//! Never logs, returns or prints a token; audit entries carry ids and reasons only.

pub mod baanx;
mod baanx_accept;
pub mod baanx_api;
pub mod baanx_connect;
mod cleanup;
pub mod connect;
pub mod consent;
pub mod crypto;
pub mod custodian;
pub mod keepalive;
pub mod oauth;
pub mod rekey;
pub mod seals;
mod token_http;
mod tokens;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use baanx::BaanxTokens;
pub use baanx_api::Prompter;
pub use baanx_connect::{BaanxConnector, ClientInfo};
pub use connect::{BrowserFlow, CallbackParams, ConnectError, Connected, Connector, Started};
pub use crypto::{CryptoError, Keyring, MasterKeyError, RefreshToken};
pub use custodian::{Custodian, CustodyConfig, Usability, usability};
pub use keepalive::{KeepAlive, KeepAliveReport};
pub use oauth::{BushaOAuth, OAuthSettings};
pub use rekey::{RekeyReport, rekey};
pub use seals::{SealMonitor, SealProblem, SealStatus, check_seals};

use crate::store::{GrantRow, StoreError};

/// A provider's name as operators read it (`Busha`, `Baanx`).
pub fn provider_name(provider: &str) -> &'static str {
    match provider {
        "baanx" => "Baanx",
        _ => "Busha",
    }
}

/// Where a grant stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    /// Usable: tokens are handed out and refreshed.
    Active,
    /// Busha refused the refresh token (`invalid_grant`), or the grant cannot be
    /// refreshed: the customer must connect again. Jobs using it are held.
    Disconnected,
    /// An operator revoked it.
    Revoked,
    /// A rotated pair could not be stored: the session is gone; re-consent needed.
    Lost,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disconnected => "disconnected",
            Self::Revoked => "revoked",
            Self::Lost => "lost",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "active" => Self::Active,
            "disconnected" => Self::Disconnected,
            "revoked" => Self::Revoked,
            "lost" => Self::Lost,
            other => return Err(StoreError::Corrupt(format!("grant status {other:?}"))),
        })
    }

    /// Whether jobs may use a grant in this state. Every other state holds them.
    pub fn is_usable(self) -> bool {
        self == Self::Active
    }
}

/// A grant as operators and other modules see it: everything but the tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub id: String,
    pub provider: String,
    pub alias: String,
    pub subject: String,
    pub scopes: Vec<String>,
    pub status: GrantStatus,
    pub status_reason: Option<String>,
    pub key_version: i64,
    pub access_expires_at: DateTime<Utc>,
    pub has_refresh_token: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub connected_at: DateTime<Utc>,
    pub refreshed_at: Option<DateTime<Utc>>,
    /// Baanx's region (`international` or `us`); absent for Busha.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// When the refresh token dies unused, if the provider said.
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// The consent record of the latest connect (`null` for grants connected before
    /// consent records were kept).
    pub consent: Option<consent::ConsentRecord>,
}

impl Grant {
    pub(crate) fn from_row(row: &GrantRow) -> Result<Grant, StoreError> {
        Ok(Grant {
            id: row.id.clone(),
            provider: row.provider.clone(),
            alias: row.alias.clone(),
            subject: row.subject.clone(),
            scopes: row.scopes.split_whitespace().map(str::to_string).collect(),
            status: GrantStatus::parse(&row.status)?,
            status_reason: row.status_reason.clone(),
            key_version: row.key_version,
            access_expires_at: row.access_expires_at,
            has_refresh_token: row.refresh_token_ct.is_some(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            connected_at: row.connected_at,
            refreshed_at: row.refreshed_at,
            region: row.region.clone(),
            refresh_expires_at: row.refresh_expires_at,
            consent: row
                .consent
                .as_deref()
                .and_then(consent::ConsentRecord::parse),
        })
    }
}

/// Why no token could be handed out. Callers branch on `NotUsable`/`Disconnected`/
/// `Lost` (hold the grant's jobs), `Transient` (retry later) and `Unauthorized`
/// (Busha refused a freshly refreshed token). Never holds token material.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("no grant {0}")]
    Unknown(String),
    #[error(
        "grant {alias} is {status}: {reason}; jobs using it are held until the customer connects again (`treasury connect {alias}`)",
        status = status.as_str()
    )]
    NotUsable {
        alias: String,
        status: GrantStatus,
        reason: String,
    },
    #[error(
        "grant {alias} is now disconnected: {reason}; jobs using it are held until the customer connects again (`treasury connect {alias}`)"
    )]
    Disconnected { alias: String, reason: String },
    #[error("grant {alias} is lost: {reason}; the customer must connect again")]
    Lost { alias: String, reason: String },
    #[error("grant {alias}: {reason}; try again later")]
    Transient { alias: String, reason: String },
    #[error(
        "Busha refused a freshly refreshed access token for grant {alias} ({reason}); not retrying"
    )]
    Unauthorized { alias: String, reason: String },
    #[error(
        "grant {alias}: the provider refused the refresh ({reason}); check the OAuth client settings"
    )]
    Refused { alias: String, reason: String },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl GrantError {
    /// True when waiting and retrying can cure it.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transient { .. } => true,
            Self::Store(e) => e.is_transient(),
            _ => false,
        }
    }

    /// True when the grant needs the customer to connect again.
    pub fn needs_reconsent(&self) -> bool {
        matches!(
            self,
            Self::NotUsable { .. } | Self::Disconnected { .. } | Self::Lost { .. }
        )
    }
}
