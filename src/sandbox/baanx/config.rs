//! What a test, the demo or a flag can set on the Baanx emulator: tenants (client
//! keys), users, lifetimes, rate limits, and a switch for every behaviour that
//! `baanx-api.md` marks unknown ([I]).

use std::net::SocketAddr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::sandbox::core::rate::RateLimits;

/// Baanx's two independent backends, chosen per request by `x-us-env: true` (or
/// `region=us`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    International,
    Us,
}

impl Region {
    pub fn index(self) -> usize {
        match self {
            Region::International => 0,
            Region::Us => 1,
        }
    }
}

/// Whether a tenant holds its users' funds. Non-custodial tenants refuse the
/// internal-wallet routes (reference §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Custody {
    Custodial,
    NonCustodial,
}

/// A tenant: one client key (which is also the OAuth `client_id`), its secret key,
/// its redirect URIs, its custody model and the regions it is served in.
#[derive(Clone, Serialize, Deserialize)]
pub struct BaanxClient {
    pub client_key: String,
    pub secret_key: String,
    /// The app's name on the consent screen.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// Compared byte for byte with `redirect_uri`.
    pub redirect_uris: Vec<String>,
    #[serde(default = "custodial")]
    pub custody: Custody,
    /// `None`: served in both regions. In another region its key is unknown (498).
    #[serde(default)]
    pub region: Option<Region>,
}

fn default_app_name() -> String {
    "Treasury".into()
}

fn custodial() -> Custody {
    Custody::Custodial
}

impl std::fmt::Debug for BaanxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaanxClient")
            .field("client_key", &self.client_key)
            .field("secret_key", &"***")
            .field("redirect_uris", &self.redirect_uris)
            .field("custody", &self.custody)
            .field("region", &self.region)
            .finish()
    }
}

impl BaanxClient {
    /// A custodial tenant served in both regions.
    pub fn new(client_key: &str, secret_key: &str, redirect_uri: &str) -> Self {
        Self {
            client_key: client_key.into(),
            secret_key: secret_key.into(),
            app_name: default_app_name(),
            redirect_uris: vec![redirect_uri.into()],
            custody: Custody::Custodial,
            region: None,
        }
    }
}

/// Undocumented Baanx behaviour, as switches. Defaults are the strict reading.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct BaanxBehaviour {
    /// Refresh-token rotation (reference §2.6, §7.7).
    pub refresh_rotation: RefreshRotation,
    /// Whether a rotation starts a fresh refresh lifetime.
    pub refresh_lifetime: RefreshLifetime,
    /// OAuth access-token lifetime (`expires_in`), seconds.
    pub access_token_secs: i64,
    /// Refresh-token lifetime, seconds: 7 days here, 184 days in Baanx's reference.
    pub refresh_token_secs: i64,
    /// Send `refresh_token_expires_in` in token answers (Pera treats it as optional).
    pub refresh_expires_in_field: bool,
    /// The token endpoint's `x-secret-key`: optional (a wrong one is still refused) or
    /// required.
    pub secret_key: SecretKeyRule,
    /// Check the redirect-URI allow-list in API mode too (the guide says it is
    /// "required but not used" there).
    pub api_mode_checks_redirect_allow_list: bool,
    /// New whitelist entries are approved after this many seconds (0: at once). Until
    /// then they are absent from `GET /v1/wallet/whitelist` and cannot be paid.
    pub whitelist_approval_secs: i64,
    /// Internal withdrawals must go to an approved whitelist entry.
    pub whitelist_enforced: bool,
    /// Seconds before a withdrawal shows in the wallet's history.
    pub withdraw_settle_secs: i64,
    /// Failed logins per email within 15 minutes before login answers 429.
    pub login_failures_before_lockout: u32,
    /// Send `Retry-After` with a 429.
    pub retry_after_header: bool,
}

impl Default for BaanxBehaviour {
    fn default() -> Self {
        Self {
            refresh_rotation: RefreshRotation::Rotate,
            refresh_lifetime: RefreshLifetime::Sliding,
            access_token_secs: 21_600,
            refresh_token_secs: REFRESH_7_DAYS,
            refresh_expires_in_field: true,
            secret_key: SecretKeyRule::Optional,
            api_mode_checks_redirect_allow_list: false,
            whitelist_approval_secs: 0,
            whitelist_enforced: true,
            withdraw_settle_secs: 10,
            login_failures_before_lockout: 5,
            retry_after_header: true,
        }
    }
}

/// 7 days, the seed's refresh lifetime (the sandbox's default).
pub const REFRESH_7_DAYS: i64 = 7 * 86_400;
/// 184 days (15,897,600 s), Baanx's reference page.
pub const REFRESH_184_DAYS: i64 = 15_897_600;

impl BaanxBehaviour {
    /// Baanx's reference profile: 184-day refresh tokens.
    pub fn reference_profile() -> Self {
        Self {
            refresh_token_secs: REFRESH_184_DAYS,
            ..Self::default()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshRotation {
    /// Every refresh returns a new refresh token and retires the old one; presenting
    /// a retired one is a replay: `invalid_grant`, and the whole family dies.
    Rotate,
    /// The same refresh token comes back and stays valid until it expires.
    NonRotating,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshLifetime {
    /// Each refresh starts a fresh lifetime.
    Sliding,
    /// The lifetime runs from the first grant; refreshing does not extend it.
    Absolute,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretKeyRule {
    Optional,
    Required,
}

impl RateLimits {
    /// Baanx documents no limits; the client's conservative table
    /// ([`crate::provider::pacing::EndpointLimits::baanx`]), so the two never drift apart.
    pub fn baanx() -> Self {
        let l = crate::provider::pacing::EndpointLimits::baanx();
        Self {
            enabled: true,
            default_per_minute: l.default_per_minute,
            overrides: l.overrides,
        }
    }
}

/// A user to create.
#[derive(Clone, Serialize, Deserialize)]
pub struct NewBaanxUser {
    pub email: String,
    pub password: String,
    /// The fixed SMS code this user's OTP step accepts; `None`: no OTP step.
    #[serde(default)]
    pub otp: Option<String>,
    #[serde(default = "default_phone")]
    pub phone_number: String,
    /// `UNVERIFIED`, `PENDING`, `VERIFIED` (default) or `REJECTED`.
    #[serde(default = "verified")]
    pub verification_state: String,
    /// Onboarding phase; `None` once onboarding is complete.
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default = "international")]
    pub region: Region,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
}

fn default_phone() -> String {
    "+447700900123".into()
}
fn verified() -> String {
    "VERIFIED".into()
}
fn international() -> Region {
    Region::International
}

impl std::fmt::Debug for NewBaanxUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewBaanxUser")
            .field("email", &self.email)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl NewBaanxUser {
    /// A verified, fully onboarded international user without OTP.
    pub fn new(email: &str, password: &str) -> Self {
        Self {
            email: email.into(),
            password: password.into(),
            otp: None,
            phone_number: default_phone(),
            verification_state: verified(),
            phase: None,
            region: Region::International,
            first_name: None,
            last_name: None,
        }
    }
    pub fn otp(mut self, code: &str) -> Self {
        self.otp = Some(code.into());
        self
    }
    pub fn region(mut self, region: Region) -> Self {
        self.region = region;
        self
    }
    pub fn verification(mut self, state: &str) -> Self {
        self.verification_state = state.into();
        self
    }
    pub fn phase(mut self, phase: &str) -> Self {
        self.phase = Some(phase.into());
        self
    }
}

/// A whitelist entry seeded through the control surface (approved at once).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewWhitelistEntry {
    pub currency: String,
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub memo: Option<String>,
}

/// Which platform wallet: credit or reward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformWallet {
    Credit,
    Reward,
}

impl PlatformWallet {
    pub fn wire(self) -> &'static str {
        match self {
            PlatformWallet::Credit => "CREDIT",
            PlatformWallet::Reward => "REWARD",
        }
    }
}

/// An internal wallet seeded through the control surface, with its balance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewWallet {
    pub network: String,
    pub currency: String,
    pub balance: Decimal,
}

/// How to start a Baanx sandbox.
#[derive(Clone, Debug)]
pub struct BaanxConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The base URL to advertise (API and hosted UI); defaults to `http://{bound}`.
    pub public_url: Option<url::Url>,
    pub clock: Clock,
    pub clients: Vec<BaanxClient>,
    /// Approve every hosted-UI authorization at once for this user's email.
    pub auto_consent: Option<String>,
    pub behaviour: BaanxBehaviour,
    pub rate_limits: RateLimits,
}

impl Default for BaanxConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            clock: Clock::system(),
            clients: Vec::new(),
            auto_consent: None,
            behaviour: BaanxBehaviour::default(),
            rate_limits: RateLimits::baanx(),
        }
    }
}

/// OAuth session, authorization-code and login-token lifetimes: documented, fixed.
pub const SESSION_SECS: i64 = 600;
pub const CODE_SECS: i64 = 600;
pub const LOGIN_TOKEN_SECS: i64 = 21_600;
/// How long an SMS code sent by `POST /v1/auth/login/otp` stays usable ("a few
/// minutes" in the docs).
pub const OTP_SECS: i64 = 300;

/// What the consent screen says the app may do (the quickstart's consent text).
pub const CONSENT_TEXT: [&str; 5] = [
    "View your account balances",
    "View your transaction history",
    "Initiate transactions on your behalf",
    "Manage your cards and wallets",
    "Access your account settings",
];

/// Internal-wallet (network, currency) pairs Baanx supports (reference §3.2).
pub const SUPPORTED_PAIRS: [(&str, &str); 10] = [
    ("linea", "usdc"),
    ("linea", "usdt"),
    ("ethereum", "usdc"),
    ("ethereum", "usdt"),
    ("solana", "usdc"),
    ("solana", "usdt"),
    ("solana", "sol"),
    ("xrp", "xrp"),
    ("bitcoin", "btc"),
    ("stellar", "xlm"),
];

/// Currencies whose withdrawals need a memo (destination tag).
pub const MEMO_CURRENCIES: [&str; 2] = ["xrp", "xlm"];
