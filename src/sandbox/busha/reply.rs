//! Busha's envelopes: `{status, message, data}` on success, `{status, message,
//! error{name, message}, fields?, schema?}` on failure, and the RFC 6749 error shape
//! on the OAuth endpoints.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

/// An error from the resource API, in Busha's envelope (boxed: it travels in `Result`s).
#[derive(Debug)]
pub struct ApiError(Box<ApiErrorBody>);

#[derive(Debug)]
struct ApiErrorBody {
    status: StatusCode,
    name: &'static str,
    message: String,
    fields: Option<Value>,
    schema: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    fn new(status: StatusCode, name: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(ApiErrorBody {
            status,
            name,
            message: message.into(),
            fields: None,
            schema: None,
            headers: Vec::new(),
        }))
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn insufficient_scope(scope: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this endpoint requires {scope}"),
        )
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "resource_not_found",
            format!("{what} not found"),
        )
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    /// 400 `request_validation` with a reason for one field.
    pub fn field(field: &str, reason: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "request_validation",
            "Validation error",
        );
        e.0.fields = Some(json!({ field: [ { "reason": reason.into() } ] }));
        e
    }
    /// 400 `schema_validation`, as the spec's example shows it.
    pub fn schema(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "schema_validation",
            "Error Validating Requests",
        );
        e.0.schema = Some(json!([{
            "reason": "The request body does not meet the schema requirements of the specification",
            "fix": "Ensure that the object being submitted matches the schema",
            "schema_validation_error": [detail.into()],
        }]));
        e
    }
    pub fn too_many_requests(limit: u32, retry_after: Option<u64>) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!("rate limit of {limit} requests per minute exceeded"),
        );
        e.0.headers.push(("x-rate-limit", limit.to_string()));
        if let Some(secs) = retry_after {
            e.0.headers.push(("retry-after", secs.to_string()));
        }
        e
    }
    pub fn server(status: u16) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let name = if status == StatusCode::SERVICE_UNAVAILABLE {
            "service_unavailable"
        } else {
            "internal_server_error"
        };
        Self::new(
            status,
            name,
            "Internal Server Error (injected by the sandbox)",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = *self.0;
        let mut body = json!({
            "status": "error",
            "message": e.message,
            "error": { "name": e.name, "message": e.message },
        });
        if let Some(fields) = e.fields {
            body["fields"] = fields;
        }
        if let Some(schema) = e.schema {
            body["schema"] = schema;
        }
        let mut res = (e.status, axum::Json(body)).into_response();
        for (name, value) in e.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                res.headers_mut().insert(name, v);
            }
        }
        res
    }
}

/// `{status: "success", message, data}` with the given HTTP status.
pub fn ok<T: Serialize>(status: StatusCode, message: &str, data: T) -> Response {
    (
        status,
        axum::Json(json!({ "status": "success", "message": message, "data": data })),
    )
        .into_response()
}

/// A list with cursor pagination.
pub fn ok_page(
    message: &str,
    data: Vec<Value>,
    next: Option<String>,
    prev: Option<String>,
) -> Response {
    let mut pagination = json!({ "current_entries_size": data.len() });
    if let Some(n) = next {
        pagination["next_cursor"] = Value::String(n);
    }
    if let Some(p) = prev {
        pagination["previous_cursor"] = Value::String(p);
    }
    axum::Json(json!({
        "status": "success", "message": message, "data": data, "pagination": pagination,
    }))
    .into_response()
}

/// An RFC 6749 §5.2 error from the token or revocation endpoint.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            error,
            description: description.into(),
        }
    }
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", description)
    }
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(401, "invalid_client", description)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut res = (self.status, axum::Json(body)).into_response();
        let h = res.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.error == "invalid_client" {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"busha-sandbox\""),
            );
        }
        res
    }
}
