//! Everything about the sandbox that a test, the demo or a flag can set: OAuth clients,
//! lifetimes, Busha's rate limits, fault injection, and a switch for every behaviour
//! that the reference marks as undocumented.

use std::collections::BTreeMap;

pub use crate::sandbox::core::rate::RateLimits;
use std::net::SocketAddr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;

/// The 12 scopes Busha's OAuth catalogue allows.
pub const SCOPE_CATALOGUE: [&str; 12] = [
    "openid",
    "offline_access",
    "balances:read",
    "transactions:read",
    "quotes:read",
    "quotes:write",
    "transfers:read",
    "transfers:write",
    "addresses:read",
    "addresses:write",
    "recipients:read",
    "recipients:write",
];

/// A registered OAuth client. Its approved scopes equal the scopes it requested.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OAuthClientConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Compared byte for byte with the `redirect_uri` of each request.
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    /// `approved` (default), `pending`, `rejected` or `suspended`.
    #[serde(default = "approved")]
    pub status: String,
}

fn approved() -> String {
    "approved".into()
}

impl OAuthClientConfig {
    /// An approved client with every scope of the catalogue.
    pub fn new(client_id: &str, client_secret: &str, redirect_uri: &str) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uris: vec![redirect_uri.into()],
            scopes: SCOPE_CATALOGUE.iter().map(|s| s.to_string()).collect(),
            status: approved(),
        }
    }
}

/// Undocumented Busha behaviour, as switches. Defaults are the cautious reading.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Behaviour {
    /// A second `POST /v1/transfers` for the same quote.
    pub duplicate_transfers: DuplicateTransfers,
    /// A transfer on a quote past its `expires_at`.
    pub expired_quote_transfers: ExpiredQuoteTransfers,
    /// A quote whose `reference` an earlier quote already used.
    pub quote_reference_reuse: ReferenceReuse,
    /// Access tokens of a revoked family: still valid until `exp` (the docs say access
    /// tokens "cannot be revoked mid-flight"), or rejected at once.
    pub revoked_family_access_tokens: RevokedAccessTokens,
    /// HTTP status for `invalid_grant` (400 per RFC 6749; Hydra sometimes says 401).
    pub invalid_grant_status: u16,
    /// Send `Retry-After` with a 429.
    pub retry_after_header: bool,
    /// A replayed authorization code revokes the tokens it produced (RFC 6749 §4.1.2).
    pub revoke_family_on_code_reuse: bool,
    /// Quotes whose source amount is at least this carry `two_step`.
    pub two_step_from: Option<Decimal>,
    /// The form of new recipient ids. Busha's spec types `GET /v1/recipients/{id}`'s
    /// path as a UUID (and the sandbox refuses anything else there, as the spec says),
    /// while every recipient id in its examples is 24 hex digits.
    pub recipient_ids: RecipientIds,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientIds {
    Uuid,
    /// Like `64ae8c26b1f5b4a1c2d3e4f5`: then fetching one by id is refused.
    Hex24,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            duplicate_transfers: DuplicateTransfers::Refuse,
            expired_quote_transfers: ExpiredQuoteTransfers::Refuse,
            quote_reference_reuse: ReferenceReuse::Allow,
            revoked_family_access_tokens: RevokedAccessTokens::ValidUntilExp,
            invalid_grant_status: 400,
            retry_after_header: true,
            revoke_family_on_code_reuse: true,
            two_step_from: None,
            recipient_ids: RecipientIds::Uuid,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateTransfers {
    Refuse,
    /// The dangerous case: Busha creates a second transfer and pays twice.
    Allow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiredQuoteTransfers {
    Refuse,
    /// Executes at the current market price.
    Reprice,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceReuse {
    Allow,
    Conflict,
    ReturnExisting,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokedAccessTokens {
    ValidUntilExp,
    Rejected,
}

impl RateLimits {
    /// Busha's documented limits (`x-rate-limit` in the spec; 100/min otherwise): the
    /// same table the client's pacer starts from, so the two sides never drift apart.
    pub fn busha() -> Self {
        Self::from(crate::provider::pacing::EndpointLimits::busha())
    }
}

impl From<crate::provider::pacing::EndpointLimits> for RateLimits {
    fn from(l: crate::provider::pacing::EndpointLimits) -> Self {
        Self {
            enabled: true,
            default_per_minute: l.default_per_minute,
            overrides: l.overrides,
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::busha()
    }
}

/// How the next transfer ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferOutcome {
    Delivered,
    Cancelled,
    FundsNotDelivered,
    FundsRefunded,
    /// Never leaves `processing`.
    Stuck,
}

/// A recipient a user saved in their dashboard before we came along, seeded under a
/// known id (`POST /_sandbox/users/{id}/recipients`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedRecipient {
    pub id: String,
    pub currency: String,
    pub bank_code: String,
    pub account_number: String,
    pub account_name: String,
}

/// A user to create, with opening balances.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NewUser {
    pub name: String,
    /// For the HTML login form; defaults to `sandbox`.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub balances: BTreeMap<String, Decimal>,
}

impl NewUser {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.into());
        self
    }
    pub fn balance(mut self, currency: &str, available: Decimal) -> Self {
        self.balances
            .insert(currency.to_ascii_uppercase(), available);
        self
    }
}

/// How to start a sandbox.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The issuer and API base URL to advertise; defaults to `http://{bound address}`.
    pub public_url: Option<url::Url>,
    pub clock: Clock,
    pub clients: Vec<OAuthClientConfig>,
    /// Approve every authorization at once for this user (created if missing).
    pub auto_consent: Option<String>,
    pub behaviour: Behaviour,
    pub rate_limits: RateLimits,
    pub code_ttl: chrono::Duration,
    pub access_token_ttl: chrono::Duration,
    /// Sliding: every refresh restarts it.
    pub refresh_token_ttl: chrono::Duration,
    pub quote_ttl: chrono::Duration,
    /// Time a transfer spends in each status before the next.
    pub transfer_step: chrono::Duration,
    /// Fixed payout fee per target currency, charged on `bank_transfer` pay-outs.
    pub payout_fees: BTreeMap<String, Decimal>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            clock: Clock::system(),
            clients: Vec::new(),
            auto_consent: None,
            behaviour: Behaviour::default(),
            rate_limits: RateLimits::busha(),
            code_ttl: chrono::Duration::minutes(10),
            access_token_ttl: chrono::Duration::hours(1),
            refresh_token_ttl: chrono::Duration::days(30),
            quote_ttl: chrono::Duration::minutes(30),
            transfer_step: chrono::Duration::seconds(5),
            payout_fees: [("NGN".to_string(), Decimal::from(100))]
                .into_iter()
                .collect(),
        }
    }
}
