//! Provider boundary: the only code that speaks HTTP to a payments provider.
//!
//! - [`busha`]: the typed Busha resource-API client, its wire types and its one error type.
//! - [`pacing`]: client-side rate limiting per endpoint, so that we never discover a
//!   provider's limits by hitting its 429s.
//!
//! What lives here must never persist anything, decide retries, or log a secret.

pub mod busha;
pub mod pacing;

use std::fmt;

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
