//! Provider boundary: the only code that speaks HTTP to a payments provider.
//!
//! - [`boundary`]: the provider interface in domain types (typed ids, transfer status,
//!   capabilities) that the pipeline speaks; each provider implements it in its own module.
//! - [`error`]: the one error type every provider client returns, shaped for decisions.
//! - [`busha`]: the typed Busha resource-API client and its wire types.
//! - [`baanx`]: the typed Baanx client (token endpoint and resource API), with the same
//!   error classes as Busha's.
//! - [`pacing`]: client-side rate limiting per endpoint, so that we never discover a
//!   provider's limits by hitting its 429s.
//!
//! What lives here must never persist anything, decide retries, or log a secret.

pub mod baanx;
pub mod boundary;
pub mod busha;
pub mod error;
pub mod pacing;
pub mod pager;

pub use error::{ErrorKind, ProviderError};

use std::fmt;
use std::time::Duration;

/// The HTTP client every provider client uses: no redirects, our user agent, and the
/// call and connect timeouts. Refuses a base URL that cannot take paths.
pub(crate) fn http_client(
    setup: &'static str,
    api_base: &url::Url,
    timeout: Duration,
    connect_timeout: Duration,
) -> Result<reqwest::Client, busha::ProviderError> {
    if api_base.cannot_be_a_base() || !matches!(api_base.scheme(), "http" | "https") {
        return Err(busha::ProviderError::invalid_request(
            setup,
            format!("`{api_base}` is not an http(s) base URL"),
        ));
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("treasury/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            busha::ProviderError::invalid_request(setup, "cannot build the HTTP client")
                .with_source(e.without_url())
        })
}

/// A successful call: the value and the provider's request id, to log and keep with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Called<T> {
    pub value: T,
    pub request_id: Option<String>,
}

impl<T> Called<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Called<U> {
        Called {
            value: f(self.value),
            request_id: self.request_id,
        }
    }
}

/// An OAuth2 bearer access token for one customer's grant.
///
/// The value is private and never printed: `Debug` shows `AccessToken(***)` and there is
/// no `Display`. Read it with [`AccessToken::secret`] only to put it on the wire.
#[derive(Clone)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The raw token, for the `Authorization` header and nothing else.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

/// What a caller promises before a money-moving request leaves the process.
///
/// A caller that holds a lease (a run's executor) can be paused at any instant. The
/// client asks, after any wait in its pacer and right before the request is written
/// to the socket, how much longer the caller's lease covers a call that starts now,
/// measured on a monotonic clock. If that is less than the call's whole timeout, the
/// request is not sent ([`busha::ErrorKind::Withheld`]); the pacer never waits past
/// what the lease can cover either.
pub trait SendCheck: Send + Sync {
    /// How long a call starting now stays covered.
    fn covered_for(&self) -> Duration;
}

/// For callers that hold no lease (an operator's one-off command, a test of the
/// client): every call is covered.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unleased;

impl SendCheck for Unleased {
    fn covered_for(&self) -> Duration {
        Duration::MAX
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_debug_never_shows_the_secret() {
        let token = AccessToken::new("eyJhbGciOiJSUzI1NiJ9.secret-part");
        let shown = format!("{token:?} {:#?}", Some(&token));
        assert!(!shown.contains("secret-part"), "{shown}");
        assert!(shown.contains("AccessToken(***)"));
        assert_eq!(token.secret(), "eyJhbGciOiJSUzI1NiJ9.secret-part");
    }
}
