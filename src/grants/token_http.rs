//! The HTTP client the OAuth crate uses for Busha's token endpoint, with one change:
//! a 5xx or a 429 is an error of its own, [`TokenHttpError::Unavailable`], before the
//! crate ever reads the body.
//!
//! Left to itself the crate reads any non-200 answer that carries an OAuth JSON body
//! (`{"error": "server_error"}`, `temporarily_unavailable`) as a refusal by the server,
//! which would make a busy issuer look like a broken client configuration, and drop
//! its `Retry-After`. A 5xx or 429 says the server did not serve the request; whether a
//! 5xx came before or after its effect is unknown, and that is the caller's to handle.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::{AsyncHttpClient, HttpClientError, HttpRequest, HttpResponse};

use crate::untrusted::one_line;

/// `reqwest`, with 5xx and 429 taken out (see the module docs). Cheap to clone.
#[derive(Clone)]
pub(super) struct TokenHttp(pub reqwest::Client);

/// A token-endpoint call that did not get a usable answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum TokenHttpError {
    /// 5xx or 429, with or without a body.
    #[error("{}", unavailable_text(*.status, .retry_after, .error.as_deref()))]
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
        /// The OAuth `error` (and `error_description`) of the body, if it had one.
        error: Option<String>,
    },
    /// No answer at all (connect, timeout, cut off), or one we could not take in.
    #[error(transparent)]
    Http(#[from] HttpClientError<reqwest::Error>),
}

/// `HTTP 503: temporarily_unavailable (try later); Busha asks to retry after 2 s`.
pub(super) fn unavailable_text(
    status: u16,
    retry_after: &Option<Duration>,
    error: Option<&str>,
) -> String {
    let mut text = format!("HTTP {status}");
    if let Some(e) = error {
        text.push_str(&format!(": {e}"));
    }
    if let Some(d) = retry_after {
        text.push_str(&format!("; Busha asks to retry after {} s", d.as_secs()));
    }
    text
}

impl<'c> AsyncHttpClient<'c> for TokenHttp {
    type Error = TokenHttpError;
    type Future =
        Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + Sync + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.0.call(request).await?;
            let status = response.status();
            if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
                return Err(TokenHttpError::Unavailable {
                    status: status.as_u16(),
                    retry_after: crate::provider::busha::retry_after(response.headers()),
                    error: oauth_error(response.body()),
                });
            }
            Ok(response)
        })
    }
}

/// `error` and `error_description` of an RFC 6749 §5.2 body; nothing else of it.
fn oauth_error(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Body {
        error: String,
        #[serde(default)]
        error_description: Option<String>,
    }
    let b: Body = serde_json::from_slice(body).ok()?;
    let description: String = b
        .error_description
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    let (error, description) = (one_line(&b.error), one_line(&description));
    Some(if description.is_empty() {
        error
    } else {
        format!("{error} ({description})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oauth_body_gives_its_error_and_description_only() {
        assert_eq!(
            oauth_error(br#"{"error":"temporarily_unavailable","error_description":"busy"}"#),
            Some("temporarily_unavailable (busy)".into())
        );
        assert_eq!(
            oauth_error(br#"{"error":"server_error"}"#),
            Some("server_error".into())
        );
        assert_eq!(oauth_error(b"<html>bad gateway</html>"), None);
        assert_eq!(
            oauth_error(
                br#"{"error":"server_error\nX","error_description":"busy\n2026 INFO forged"}"#
            ),
            Some("server_error\\nX (busy\\n2026 INFO forged)".into())
        );
    }

    #[test]
    fn the_text_names_the_status_and_the_wait() {
        assert_eq!(
            unavailable_text(503, &Some(Duration::from_secs(2)), Some("server_error")),
            "HTTP 503: server_error; Busha asks to retry after 2 s"
        );
        assert_eq!(unavailable_text(429, &None, None), "HTTP 429");
    }
}
