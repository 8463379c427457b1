//! Baanx's token endpoint as custody sees it: the code exchange, refresh and
//! revocation through the typed client ([`crate::provider::baanx`]), with each
//! failure classified the way Busha's are ([`RefreshFailure`]), so the custodian's
//! single-flight refresh, disconnect and loss handling apply unchanged.
//!
//! Baanx's tokens are opaque and it documents no scopes. A refresh token lives
//! `refresh_token_expires_in` seconds when Baanx says so, and 7 days otherwise
//! (reference §2.6); neither is hard-coded elsewhere.

use std::time::Duration;

use url::Url;

use super::crypto::RefreshToken;
use super::oauth::{RefreshFailure, TokenSet};
use crate::config::{BAANX_SECRET_ENV, BaanxSettings, secret_from_env};
use crate::provider::AccessToken;
use crate::provider::baanx::{self, BaanxClient, BaanxConfig, Grant, Region};
use crate::provider::busha::{ErrorKind, ProviderError};

/// The refresh lifetime assumed when Baanx leaves out `refresh_token_expires_in`.
pub const DEFAULT_REFRESH_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Our Baanx OAuth client: the typed client and the redirect URI registered with Baanx.
#[derive(Clone, Debug)]
pub struct BaanxTokens {
    client: BaanxClient,
    redirect_uri: Url,
    timeout: Duration,
}

impl BaanxTokens {
    pub fn new(client: BaanxClient, redirect_uri: Url, timeout: Duration) -> Self {
        Self {
            client,
            redirect_uri,
            timeout,
        }
    }

    /// From `[baanx]` and the secret key in [`BAANX_SECRET_ENV`].
    pub fn from_settings(b: &BaanxSettings) -> Result<Self, String> {
        let secret = secret_from_env(BAANX_SECRET_ENV, "the Baanx secret key (x-secret-key)")
            .map_err(|e| e.to_string())?;
        let mut config = BaanxConfig::new(b.api_url.clone(), &b.client_key);
        config.secret_key = Some(secret.expose().to_string());
        let timeout = config.timeout;
        let client = BaanxClient::new(config).map_err(|e| e.to_string())?;
        Ok(Self::new(client, b.redirect_uri.clone(), timeout))
    }

    pub fn client(&self) -> &BaanxClient {
        &self.client
    }

    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    /// The whole-call limit of a token call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Exchanges a code once (PKCE verifier, the exact redirect URI).
    pub async fn exchange(
        &self,
        region: Region,
        code: &str,
        verifier: &str,
    ) -> Result<TokenSet, ProviderError> {
        let called = self
            .client
            .exchange_code(region, code, self.redirect_uri.as_str(), verifier)
            .await?;
        Ok(token_set(called.value))
    }

    /// One refresh, classified.
    pub async fn refresh(
        &self,
        region: Region,
        refresh_token: &RefreshToken,
    ) -> Result<TokenSet, RefreshFailure> {
        match self.client.refresh(region, refresh_token.secret()).await {
            Ok(called) => Ok(token_set(called.value)),
            Err(e) => Err(refresh_failure(&e)),
        }
    }

    /// `DELETE /v1/auth/oauth/revoke`: every token of our client for this user dies.
    pub async fn revoke(&self, region: Region, access: &AccessToken) -> Result<(), String> {
        self.client
            .revoke(Grant {
                token: access,
                region,
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn token_set(wire: baanx::TokenSet) -> TokenSet {
    let secs = |s: i64| Duration::from_secs(u64::try_from(s).unwrap_or(0));
    TokenSet {
        access_token: AccessToken::new(wire.access_token.as_str()),
        expires_in: Some(secs(wire.expires_in)),
        refresh_token: Some(RefreshToken::new(wire.refresh_token.as_str())),
        scopes: None,
        refresh_expires_in: Some(
            wire.refresh_token_expires_in
                .map(secs)
                .unwrap_or(DEFAULT_REFRESH_LIFETIME),
        ),
    }
}

/// What a failed Baanx refresh means for the grant.
fn refresh_failure(e: &ProviderError) -> RefreshFailure {
    let text = e.to_string();
    match e.kind() {
        ErrorKind::Rejected { name } if name == "invalid_grant" => RefreshFailure::InvalidGrant {
            description: e.message().unwrap_or("refresh token refused").to_string(),
        },
        ErrorKind::Rejected { name } => RefreshFailure::Refused {
            error: name.clone(),
            description: text,
        },
        ErrorKind::Unauthorized | ErrorKind::Validation { .. } | ErrorKind::NotFound => {
            RefreshFailure::Refused {
                error: "refused".into(),
                description: text,
            }
        }
        ErrorKind::RateLimited { retry_after } => RefreshFailure::Unavailable {
            retry_after: *retry_after,
            detail: text,
        },
        // The client reports a connect failure (nothing sent) as transient.
        ErrorKind::Transient | ErrorKind::Withheld | ErrorKind::InvalidRequest => {
            RefreshFailure::NotSent(text)
        }
        _ => RefreshFailure::OutcomeUnknown(text),
    }
}

/// The stored spelling of a region.
pub fn region_name(region: Region) -> &'static str {
    match region {
        Region::International => "international",
        Region::Us => "us",
    }
}

/// A stored region, read back.
pub fn parse_region(name: Option<&str>) -> Option<Region> {
    match name {
        Some("international") => Some(Region::International),
        Some("us") => Some(Region::Us),
        _ => None,
    }
}
