//! The one error type of the worker's HTML handlers (the console and the OAuth
//! connect flow). Each variant is a decision about what the browser sees: back to
//! sign-in, an HTTP Basic challenge, a refusal, a bad form, a missing thing, a
//! conflict, a provider that failed us, or a failure of ours (logged, shown without
//! detail beyond its message).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::console::view;

/// Why a request did not do what it asked.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
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
    /// No operator credentials, or wrong ones, for an HTTP Basic route.
    #[error("{0}")]
    Unauthorized(String),
    /// The request lost a race or repeats one already done.
    #[error("{0}")]
    Conflict(String),
    /// A provider failed us.
    #[error("{0}")]
    BadGateway(String),
    /// Too many sign-in attempts from one address.
    #[error("too many sign-in attempts from this address; wait a minute")]
    TooMany,
    #[error("{0}")]
    Internal(String),
}

impl HttpError {
    /// A failure of the store or another part of ours.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        HttpError::Internal(e.to_string())
    }

    fn status(&self) -> StatusCode {
        match self {
            HttpError::SignIn(_) => StatusCode::SEE_OTHER,
            HttpError::Csrf | HttpError::Refused(_) => StatusCode::FORBIDDEN,
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::TooMany => StatusCode::TOO_MANY_REQUESTS,
            HttpError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HttpError::Conflict(_) => StatusCode::CONFLICT,
            HttpError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::store::StoreError> for HttpError {
    fn from(e: crate::store::StoreError) -> Self {
        HttpError::internal(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let HttpError::SignIn(why) = &self {
            tracing::debug!(reason = %why, "console: back to sign-in");
            let mut res = status.into_response();
            res.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/signin"));
            return res;
        }
        if let HttpError::Internal(e) = &self {
            tracing::error!(error = %e, "HTTP request failed");
        }
        let mut res = (
            status,
            view::respond(view::message_page(self.title(), &self.to_string())),
        )
            .into_response();
        if let HttpError::Unauthorized(_) = &self {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"treasury operator\", charset=\"UTF-8\""),
            );
        }
        res
    }
}

impl HttpError {
    fn title(&self) -> &'static str {
        match self.status() {
            StatusCode::FORBIDDEN => "Refused",
            StatusCode::BAD_REQUEST => "Not understood",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::UNAUTHORIZED => "Operator sign-in required",
            StatusCode::CONFLICT => "Already done",
            StatusCode::BAD_GATEWAY => "The provider failed",
            _ => "Something went wrong",
        }
    }
}
