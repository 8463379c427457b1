//! Where the pipeline gets access tokens. The grants custodian implements this for
//! real; [`StaticTokens`] serves fixed tokens (for tools that hold one token).

use std::collections::HashMap;

use futures_util::future::BoxFuture;

use crate::provider::AccessToken;

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    pub message: String,
}

/// Hands out access tokens per grant alias.
pub trait TokenSource: Send + Sync {
    /// A token that is valid now (refreshed if near expiry).
    fn access_token<'a>(&'a self, grant: &'a str)
    -> BoxFuture<'a, Result<AccessToken, TokenError>>;
    /// Busha answered 401 to `rejected`: refresh once (unless already replaced).
    fn token_rejected<'a>(
        &'a self,
        grant: &'a str,
        rejected: &'a AccessToken,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>>;
}

/// Fixed tokens by grant alias. A 401 has no cure here.
#[derive(Default)]
pub struct StaticTokens(HashMap<String, AccessToken>);

impl StaticTokens {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with(mut self, grant: &str, token: AccessToken) -> Self {
        self.0.insert(grant.to_string(), token);
        self
    }
}

impl TokenSource for StaticTokens {
    fn access_token<'a>(
        &'a self,
        grant: &'a str,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(async move {
            self.0.get(grant).cloned().ok_or_else(|| TokenError {
                message: format!("no token for grant {grant}"),
            })
        })
    }
    fn token_rejected<'a>(
        &'a self,
        grant: &'a str,
        _: &'a AccessToken,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(async move {
            Err(TokenError {
                message: format!("the token for grant {grant} was refused and cannot be refreshed"),
            })
        })
    }
}
