//! The custodian as the pipeline's [`TokenSource`]: runs name grants by alias; the
//! custodian hands out (and refreshes) their tokens.

use futures_util::future::BoxFuture;

use super::{Custodian, GrantError};
use crate::pipeline::{TokenError, TokenSource};
use crate::provider::AccessToken;

impl Custodian {
    async fn id_of(&self, alias: &str) -> Result<String, TokenError> {
        match self.grant_by_alias(alias).await {
            Ok(Some(g)) if g.status.is_usable() => Ok(g.id),
            Ok(Some(g)) => Err(TokenError {
                message: format!(
                    "grant {alias} is {}{}: reconnect it with `treasury connect {alias}`",
                    g.status.as_str(),
                    g.status_reason
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
            }),
            Ok(None) => Err(TokenError {
                message: format!("grant {alias} is not connected: `treasury connect {alias}`"),
            }),
            Err(e) => Err(token_error(alias, e)),
        }
    }
}

fn token_error(alias: &str, e: GrantError) -> TokenError {
    TokenError {
        message: format!("grant {alias}: {e}"),
    }
}

impl TokenSource for Custodian {
    fn access_token<'a>(
        &'a self,
        grant: &'a str,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(async move {
            let id = self.id_of(grant).await?;
            Custodian::access_token(self, &id)
                .await
                .map_err(|e| token_error(grant, e))
        })
    }

    fn token_rejected<'a>(
        &'a self,
        grant: &'a str,
        rejected: &'a AccessToken,
    ) -> BoxFuture<'a, Result<AccessToken, TokenError>> {
        Box::pin(async move {
            let id = self.id_of(grant).await?;
            self.force_refresh(&id, rejected)
                .await
                .map_err(|e| token_error(grant, e))
        })
    }
}
