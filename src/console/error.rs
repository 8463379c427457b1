//! The one error type of the console's handlers. Each variant is a decision about
//! what the browser sees: back to sign-in, a refusal, a bad form, a missing thing, or
//! a failure of ours (logged, shown without detail beyond its message).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::view;

/// Why a console request did not do what it asked.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No live session (none, ended, timed out, or its account changed): sign in.
    #[error("sign in first: {0}")]
    SignIn(String),
    /// A form without the session's CSRF token.
    #[error("the form's CSRF token is missing or wrong; reload the page and try again")]
    Csrf,
    /// The signed-in account may not do this, or the rules refuse it.
    #[error("{0}")]
    Refused(String),
    /// A field of the request is wrong; the message names it.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// Too many sign-in attempts from one address.
    #[error("too many sign-in attempts from this address; wait a minute")]
    TooMany,
    #[error("{0}")]
    Internal(String),
}

impl ConsoleError {
    /// A failure of the store or another part of ours.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ConsoleError::Internal(e.to_string())
    }

    fn status(&self) -> StatusCode {
        match self {
            ConsoleError::SignIn(_) => StatusCode::SEE_OTHER,
            ConsoleError::Csrf | ConsoleError::Refused(_) => StatusCode::FORBIDDEN,
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::TooMany => StatusCode::TOO_MANY_REQUESTS,
            ConsoleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::store::StoreError> for ConsoleError {
    fn from(e: crate::store::StoreError) -> Self {
        ConsoleError::internal(e)
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ConsoleError::SignIn(why) = &self {
            tracing::debug!(reason = %why, "console: back to sign-in");
            let mut res = status.into_response();
            res.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/signin"));
            return res;
        }
        if let ConsoleError::Internal(e) = &self {
            tracing::error!(error = %e, "console request failed");
        }
        let title = match status {
            StatusCode::FORBIDDEN => "Refused",
            StatusCode::BAD_REQUEST => "Not understood",
            StatusCode::NOT_FOUND => "Not found",
            _ => "Something went wrong",
        };
        (
            status,
            view::respond(view::message_page(title, &self.to_string())),
        )
            .into_response()
    }
}
