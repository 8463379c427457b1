//! The typed Baanx client: the JSON token endpoint, revocation, and the resource API
//! the worker uses (profile, wallets, whitelist, withdrawals, history).
//!
//! Every call sends `x-client-key` and the grant's `x-us-env`, waits for the
//! endpoint's pacer (the same machinery as Busha's client, with Baanx's conservative
//! limits), has a timeout, and fails with the Busha client's error classes
//! ([`ErrorKind`]), so callers branch the same way. A mutating call that may have been
//! applied fails with `outcome_unknown()` true: Baanx has no idempotency key and an
//! internal withdrawal answers only `{"success": true}`, so only the wallet's history
//! and balance can tell.
//!
//! Never retries, follows redirects, or puts a token, secret, password, OTP or body
//! in `Debug`, logs or errors.

#[macro_use]
mod request;
mod auth;
mod error;
mod types;

pub use auth::{Authorized, ConsentStatus, Initiate, Login, Session, login_refusal};
pub use types::*;

use request::{Call, Endpoint};

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use url::Url;

use super::busha::{Called, ErrorKind, ProviderError};
use super::pacing::{EndpointLimits, Pacer, SharedPacing};
use super::{AccessToken, SendCheck};
use crate::money::Currency;

/// Where Baanx is, who we are to it, and how long to wait.
#[derive(Clone)]
pub struct BaanxConfig {
    /// e.g. `https://api.baanx.com` or the sandbox's URL.
    pub api_base: Url,
    /// Our tenant's public key (also the OAuth `client_id`).
    pub client_key: String,
    /// Our tenant's secret key, from the environment; sent on the token endpoint only.
    pub secret_key: Option<String>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub limits: EndpointLimits,
    /// The longest a call waits for its pacer before failing as rate-limited with
    /// nothing sent; `None` waits as long as it takes.
    pub max_pacing_wait: Option<Duration>,
    pub shared_pacing: Option<SharedPacing>,
}

impl std::fmt::Debug for BaanxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaanxConfig")
            .field("api_base", &self.api_base.as_str())
            .field("client_key", &self.client_key)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl BaanxConfig {
    /// Baanx's conservative limits, a 30 s call timeout, a 10 s connect timeout and at
    /// most 20 s waiting for the pacer.
    pub fn new(api_base: Url, client_key: &str) -> Self {
        Self {
            api_base,
            client_key: client_key.into(),
            secret_key: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            limits: EndpointLimits::baanx(),
            max_pacing_wait: Some(Duration::from_secs(20)),
            shared_pacing: None,
        }
    }
}

/// The customer a call acts for: their token and their region.
#[derive(Clone, Copy, Debug)]
pub struct Grant<'a> {
    pub token: &'a AccessToken,
    pub region: Region,
}

/// The Baanx client. Cheap to clone; clones share the pool and the pacer.
#[derive(Clone)]
pub struct BaanxClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: BaanxConfig,
    pacer: Pacer,
}

impl std::fmt::Debug for BaanxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaanxClient")
            .field("api_base", &self.inner.config.api_base.as_str())
            .finish_non_exhaustive()
    }
}

endpoint!(TOKEN, "POST", "/v1/auth/oauth/token");
endpoint!(REVOKE, "DELETE", "/v1/auth/oauth/revoke");
endpoint!(USER, "GET", "/v1/user");
endpoint!(INTERNAL, "GET", "/v1/wallet/internal");
endpoint!(CREATE_INTERNAL, "POST", "/v1/wallet/internal");
endpoint!(EXTERNAL, "GET", "/v1/wallet/external");
endpoint!(CREDIT, "GET", "/v1/wallet/credit");
endpoint!(REWARD, "GET", "/v1/wallet/reward");
endpoint!(
    CREDIT_ESTIMATE,
    "GET",
    "/v1/wallet/credit/withdraw-estimation"
);
endpoint!(CREDIT_WITHDRAW, "POST", "/v1/wallet/credit/withdraw");
endpoint!(WHITELIST, "GET", "/v1/wallet/whitelist");
endpoint!(CREATE_WHITELIST, "POST", "/v1/wallet/whitelist");
endpoint!(DELETE_WHITELIST, "DELETE", "/v1/wallet/whitelist");
endpoint!(WITHDRAW, "POST", "/v1/wallet/internal/withdraw");
endpoint!(HISTORY, "GET", "/v1/wallet/history");

impl BaanxClient {
    /// Builds the client. Fails on a base URL that cannot take paths.
    pub fn new(config: BaanxConfig) -> Result<Self, ProviderError> {
        let http = super::http_client(
            "baanx client setup",
            &config.api_base,
            config.timeout,
            config.connect_timeout,
        )?;
        let pacer = match config.shared_pacing.clone() {
            Some(shared) => Pacer::shared(config.limits.clone(), shared),
            None => Pacer::new(config.limits.clone()),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                pacer,
            }),
        })
    }

    /// The pacer this client waits on before every call.
    pub fn pacer(&self) -> &Pacer {
        &self.inner.pacer
    }

    // --- OAuth ------------------------------------------------------------------------

    /// Exchanges an authorization code (PKCE) for tokens.
    pub async fn exchange_code(
        &self,
        region: Region,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<Called<TokenSet>, ProviderError> {
        let body = json!({ "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier });
        self.token_call(region, body).await
    }

    /// Refreshes a grant. Baanx may rotate the refresh token: store the new pair first.
    pub async fn refresh(
        &self,
        region: Region,
        refresh_token: &str,
    ) -> Result<Called<TokenSet>, ProviderError> {
        let body = json!({ "grant_type": "refresh_token", "refresh_token": refresh_token });
        self.token_call(region, body).await
    }

    async fn token_call(
        &self,
        region: Region,
        body: Value,
    ) -> Result<Called<TokenSet>, ProviderError> {
        let call = Call {
            grant: None,
            region,
            query: Vec::new(),
            body: Some(body),
            secret: true,
            check: None,
        };
        self.json(TOKEN, &["v1", "auth", "oauth", "token"], call)
            .await
    }

    /// Kills every token of our client for this user (`{"success": true}`).
    pub async fn revoke(&self, grant: Grant<'_>) -> Result<Called<()>, ProviderError> {
        self.success(REVOKE, &["v1", "auth", "oauth", "revoke"], Call::as_(grant))
            .await
    }

    // --- Resources --------------------------------------------------------------------

    pub async fn user(&self, grant: Grant<'_>) -> Result<Called<UserProfile>, ProviderError> {
        self.json(USER, &["v1", "user"], Call::as_(grant)).await
    }

    pub async fn internal_wallets(
        &self,
        grant: Grant<'_>,
    ) -> Result<Called<Vec<InternalWallet>>, ProviderError> {
        self.json(INTERNAL, &["v1", "wallet", "internal"], Call::as_(grant))
            .await
    }

    /// Creates internal wallets per (network, currency); idempotent at Baanx.
    pub async fn create_internal_wallets(
        &self,
        grant: Grant<'_>,
        pairs: &[(&str, &Currency)],
    ) -> Result<Called<()>, ProviderError> {
        let wallets: Vec<Value> = pairs
            .iter()
            .map(|(n, c)| json!({ "network": n.to_ascii_lowercase(), "currency": c.as_str().to_ascii_lowercase() }))
            .collect();
        let call = Call::as_(grant).body(json!({ "wallets": wallets }));
        self.success(CREATE_INTERNAL, &["v1", "wallet", "internal"], call)
            .await
    }

    pub async fn external_wallets(
        &self,
        grant: Grant<'_>,
    ) -> Result<Called<Vec<ExternalWallet>>, ProviderError> {
        self.json(EXTERNAL, &["v1", "wallet", "external"], Call::as_(grant))
            .await
    }

    /// The credit wallet; one not credited yet (Baanx's 404) reads as a zero balance.
    pub async fn credit_wallet(
        &self,
        grant: Grant<'_>,
    ) -> Result<Called<PlatformWallet>, ProviderError> {
        self.platform(CREDIT, "credit", grant).await
    }

    /// The reward wallet; a 404 reads as a zero balance.
    pub async fn reward_wallet(
        &self,
        grant: Grant<'_>,
    ) -> Result<Called<PlatformWallet>, ProviderError> {
        self.platform(REWARD, "reward", grant).await
    }

    async fn platform(
        &self,
        ep: Endpoint,
        kind: &str,
        grant: Grant<'_>,
    ) -> Result<Called<PlatformWallet>, ProviderError> {
        match self
            .json(ep, &["v1", "wallet", kind], Call::as_(grant))
            .await
        {
            Err(e) if e.kind() == &ErrorKind::NotFound => {
                let currency = Currency::new("USDC")
                    .map_err(|m| ProviderError::invalid_request(ep.key, m.to_string()))?;
                let empty = PlatformWallet {
                    id: None,
                    balance: rust_decimal::Decimal::ZERO,
                    currency,
                    is_withdrawable: false,
                };
                Ok(Called {
                    value: empty,
                    request_id: None,
                })
            }
            other => other,
        }
    }

    pub async fn credit_estimation(
        &self,
        grant: Grant<'_>,
    ) -> Result<Called<Estimation>, ProviderError> {
        self.json(
            CREDIT_ESTIMATE,
            &["v1", "wallet", "credit", "withdraw-estimation"],
            Call::as_(grant),
        )
        .await
    }

    /// Withdraws from the credit wallet to the registered external wallet (Linea).
    pub async fn credit_withdraw(
        &self,
        grant: Grant<'_>,
        amount: rust_decimal::Decimal,
        check: &dyn SendCheck,
    ) -> Result<Called<ChainWithdrawal>, ProviderError> {
        let call = Call::as_(grant)
            .body(json!({ "amount": amount.to_string() }))
            .checked(check);
        self.json(
            CREDIT_WITHDRAW,
            &["v1", "wallet", "credit", "withdraw"],
            call,
        )
        .await
    }

    /// The approved whitelist entries of one currency (pending ones are not listed).
    pub async fn whitelist(
        &self,
        grant: Grant<'_>,
        currency: &Currency,
    ) -> Result<Called<Vec<WhitelistEntry>>, ProviderError> {
        let call = Call::as_(grant).query("currency", currency.as_str().to_ascii_lowercase());
        self.json(WHITELIST, &["v1", "wallet", "whitelist"], call)
            .await
    }

    pub async fn add_to_whitelist(
        &self,
        grant: Grant<'_>,
        entries: &[NewWhitelistEntry],
    ) -> Result<Called<()>, ProviderError> {
        let body = json!({ "wallets": entries });
        self.success(
            CREATE_WHITELIST,
            &["v1", "wallet", "whitelist"],
            Call::as_(grant).body(body),
        )
        .await
    }

    pub async fn remove_from_whitelist(
        &self,
        grant: Grant<'_>,
        ids: &[&str],
    ) -> Result<Called<()>, ProviderError> {
        let body = json!({ "walletIds": ids });
        self.success(
            DELETE_WHITELIST,
            &["v1", "wallet", "whitelist"],
            Call::as_(grant).body(body),
        )
        .await
    }

    /// An internal withdrawal. Baanx answers only `{"success": true}`: no id, no hash.
    pub async fn withdraw(
        &self,
        grant: Grant<'_>,
        withdrawal: &InternalWithdrawal,
        check: &dyn SendCheck,
    ) -> Result<Called<()>, ProviderError> {
        let body = serde_json::to_value(withdrawal).map_err(|e| {
            ProviderError::invalid_request(WITHDRAW.key, "withdrawal could not be serialised")
                .with_source(e)
        })?;
        let call = Call::as_(grant).body(body).checked(check);
        self.success(WITHDRAW, &["v1", "wallet", "internal", "withdraw"], call)
            .await
    }

    /// One page (zero-based, 10 items, newest first) of a wallet's history.
    pub async fn history(
        &self,
        grant: Grant<'_>,
        of: &HistoryOf,
        page: u32,
    ) -> Result<Called<Vec<HistoryItem>>, ProviderError> {
        let call = Call::as_(grant);
        let call = match of {
            HistoryOf::Internal {
                wallet_id,
                currency,
            } => call
                .query("walletId", wallet_id)
                .query("walletType", "INTERNAL")
                .query("walletCurrency", currency.as_str().to_ascii_lowercase()),
            HistoryOf::Credit { wallet_id } => call
                .query("walletId", wallet_id)
                .query("walletType", "CREDIT"),
            HistoryOf::Reward { wallet_id } => call
                .query("walletId", wallet_id)
                .query("walletType", "REWARD"),
        };
        self.json(
            HISTORY,
            &["v1", "wallet", "history"],
            call.query("page", page),
        )
        .await
    }
}
