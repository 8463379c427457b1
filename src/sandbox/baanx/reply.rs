//! Baanx's error bodies (reference §3.8): `{"message"}` on v1 resource endpoints,
//! `{"error", "error_description"}` on the OAuth endpoints, `{"error", "details"}` on
//! consent v2. Each is a type, so a handler cannot mix them up.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A v1 error: `{"message": "..."}`.
#[derive(Debug)]
pub struct Message {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl Message {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn not_authenticated() -> Self {
        Self::new(401, "Not authenticated")
    }
    pub fn not_authorized() -> Self {
        Self::new(403, "Not authorized")
    }
    pub fn missing_client_key() -> Self {
        Self::new(499, "Missing client key")
    }
    pub fn invalid_client_key() -> Self {
        Self::new(498, "Invalid client key")
    }
    pub fn server(status: u16) -> Self {
        Self::new(status, "Internal server error")
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    pub fn wallet_not_found() -> Self {
        Self::new(404, "Wallet not found")
    }
    /// The 429 seen live on Baanx's auth endpoints.
    pub fn too_many(retry_after: Option<u64>) -> Self {
        Self {
            retry_after,
            ..Self::new(429, "Too many requests, please try again later.")
        }
    }
    pub fn custodial_only() -> Self {
        Self::new(403, "This route is only available for CUSTODIAL")
    }
}

impl IntoResponse for Message {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(json!({ "message": self.message }))).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// An OAuth error: `{"error", "error_description"}`.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
    pub fn missing(parameter: &str) -> Self {
        Self::invalid_request(format!("Missing required parameter: {parameter}"))
    }
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }
    pub fn unsupported_grant_type(grant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant_type {grant:?} is not supported"),
        )
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut res = (self.status, axum::Json(body)).into_response();
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// A consent v2 error: `{"error", "details": [...]}`.
#[derive(Debug)]
pub struct ConsentError {
    pub status: StatusCode,
    pub error: &'static str,
    pub details: Vec<String>,
}

impl ConsentError {
    pub fn validation(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "Validation error",
            details: vec![detail.into()],
        }
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            error: "Not found",
            details: vec![detail.into()],
        }
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: "Unauthorized",
            details: vec![detail.into()],
        }
    }
}

impl IntoResponse for ConsentError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "details": self.details });
        (self.status, axum::Json(body)).into_response()
    }
}

/// `{"success": true}`.
pub fn success() -> Response {
    axum::Json(json!({ "success": true })).into_response()
}
