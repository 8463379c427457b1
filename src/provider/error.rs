//! The one error type of the provider clients (Busha's, and Baanx's classes map to it),
//! shaped for the decisions callers make; the pipeline sees no other.
//!
//! The caller's question is always "what now?": fail the run, wait, retry, or reconcile
//! before anything else. [`ErrorKind`] answers it; the rest (endpoint, HTTP status,
//! `X-Request-Id`, Busha's own error name and message) is for the audit log and support.
//!
//! Nothing in here ever holds a token, an `Authorization` header or a request body.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;

use crate::untrusted::one_line;

/// What went wrong, as far as a caller needs to branch on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 401: the token is missing, expired, revoked or forged. Refresh or reconnect.
    Unauthorized,
    /// 403 `insufficient_scope`: the grant lacks a scope. Needs the customer to reconnect.
    InsufficientScope { required: Option<String> },
    /// 404 `not_found` / `resource_not_found`.
    NotFound,
    /// 400 `request_validation` / `schema_validation`: the request was malformed.
    /// `fields` maps a field (or `"schema"` for schema errors) to the reasons given.
    Validation {
        fields: BTreeMap<String, Vec<String>>,
    },
    /// Any other 4xx: Busha understood and refused (e.g. insufficient balance, quote
    /// already used or expired). `name` is Busha's `error.name`, or `http_<status>`.
    Rejected { name: String },
    /// 429, or our own pacer had no slot within `max_pacing_wait` (then nothing was
    /// sent and there is no status). Wait at least `retry_after` when Busha said how long.
    RateLimited { retry_after: Option<Duration> },
    /// A read failed on the way (5xx, network, timeout), or a mutation failed to connect
    /// so nothing was sent. Safe to retry after a backoff.
    Transient,
    /// A mutating call (POST/DELETE) may or may not have been applied: a timeout, a
    /// connection lost after sending, an unreadable response, or a 5xx. Reconcile (look
    /// for its effect) before doing it again.
    OutcomeUnknown,
    /// Refused locally before anything was sent (precision, reference length, bad URL).
    InvalidRequest,
    /// Not sent: the caller's lease could not cover the whole call (see
    /// [`crate::provider::SendCheck`]). Nothing reached Busha; the caller renews its
    /// lease, or finds it lost, and tries again.
    Withheld,
    /// A 2xx response whose body we could not parse. On a mutating call the effect
    /// happened but we do not know what it created: treat it as [`Self::OutcomeUnknown`].
    Decode { mutating: bool },
}

impl ErrorKind {
    /// True when the call may have changed state at Busha and the caller must look for
    /// its effect before trying again: [`Self::OutcomeUnknown`], or [`Self::Decode`] of
    /// a mutating call.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::OutcomeUnknown | Self::Decode { mutating: true })
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unauthorized => f.write_str("unauthorized"),
            Self::InsufficientScope { required: Some(s) } => {
                write!(f, "insufficient scope (requires {s})")
            }
            Self::InsufficientScope { required: None } => f.write_str("insufficient scope"),
            Self::NotFound => f.write_str("not found"),
            Self::Validation { fields } if fields.is_empty() => f.write_str("validation failed"),
            Self::Validation { fields } => {
                f.write_str("validation failed:")?;
                for (field, reasons) in fields {
                    write!(f, " {field}: {};", reasons.join(", "))?;
                }
                Ok(())
            }
            Self::Rejected { name } => write!(f, "rejected ({name})"),
            Self::RateLimited {
                retry_after: Some(d),
            } => write!(f, "rate limited (retry after {} s)", d.as_secs()),
            Self::RateLimited { retry_after: None } => f.write_str("rate limited"),
            Self::Transient => f.write_str("transient failure"),
            Self::OutcomeUnknown => f.write_str("outcome unknown: the call may have been applied"),
            Self::InvalidRequest => f.write_str("refused locally"),
            Self::Withheld => f.write_str("withheld: the lease could not cover the call"),
            Self::Decode { mutating: true } => {
                f.write_str("unreadable success response: the call was applied")
            }
            Self::Decode { mutating: false } => f.write_str("unreadable response"),
        }
    }
}

/// A failed call to Busha: which endpoint, what kind of failure, and what Busha said.
///
/// Boxed inside, so that `Result<T, ProviderError>` stays one pointer wide.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.0)]
pub struct ProviderError(Box<Repr>);

#[derive(Debug)]
struct Repr {
    endpoint: &'static str,
    kind: ErrorKind,
    status: Option<StatusCode>,
    request_id: Option<String>,
    /// Busha's `error.name`, when it sent one.
    error_name: Option<String>,
    /// Busha's `error.message`, or our own reason for a local failure.
    message: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.endpoint, self.kind)?;
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        // Always the status and the request id, or that there was none: an operator
        // reading "transient failure" must see whether Busha answered, and how.
        let id = self.request_id.as_deref().unwrap_or("none");
        match self.status {
            Some(status) => write!(f, " (HTTP {}, request id {id})", status.as_u16())?,
            None if self.request_id.is_some() => write!(f, " (no HTTP status, request id {id})")?,
            None => f.write_str(" (no HTTP response)")?,
        }
        // The whole cause chain goes into the text (reqwest's own message is only "error
        // sending request"); `source()` stays empty so reporters do not print it twice.
        let mut cause = self.source.as_deref().map(|e| e as &dyn std::error::Error);
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

impl ProviderError {
    pub(crate) fn new(endpoint: &'static str, kind: ErrorKind) -> Self {
        Self(Box::new(Repr {
            endpoint,
            kind,
            status: None,
            request_id: None,
            error_name: None,
            message: None,
            source: None,
        }))
    }

    /// A request refused before anything was sent.
    pub(crate) fn invalid_request(endpoint: &'static str, reason: impl Into<String>) -> Self {
        Self::new(endpoint, ErrorKind::InvalidRequest).with_message(reason)
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.0.status = Some(status);
        self
    }

    pub(crate) fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.0.request_id = request_id;
        self
    }

    /// The provider's own error code (Busha's `error.name`, Baanx's OAuth `error`).
    pub(crate) fn with_error_name(mut self, name: impl Into<String>) -> Self {
        self.0.error_name = Some(name.into());
        self
    }

    pub(crate) fn with_message(mut self, message: impl Into<String>) -> Self {
        self.0.message = Some(message.into());
        self
    }

    /// Keeps the cause. For reqwest errors the caller must strip the URL first
    /// (`without_url`), because query strings can carry account numbers.
    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }

    /// The endpoint as a route template, e.g. `"POST /v1/quotes"`.
    pub fn endpoint(&self) -> &'static str {
        self.0.endpoint
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// The HTTP status, when a response arrived.
    pub fn status(&self) -> Option<StatusCode> {
        self.0.status
    }

    /// Busha's `X-Request-Id`, when a response arrived with one. Quote it to support.
    pub fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// Busha's `error.name`, e.g. `"bad_request"`.
    pub fn error_name(&self) -> Option<&str> {
        self.0.error_name.as_deref()
    }

    /// Busha's `error.message`, or the local reason for [`ErrorKind::InvalidRequest`].
    pub fn message(&self) -> Option<&str> {
        self.0.message.as_deref()
    }

    /// See [`ErrorKind::outcome_unknown`].
    pub fn outcome_unknown(&self) -> bool {
        self.0.kind.outcome_unknown()
    }

    /// Classifies a non-2xx response from its status, headers and (maybe empty) body.
    pub(crate) fn from_response(
        endpoint: &'static str,
        mutating: bool,
        status: StatusCode,
        headers: &http::HeaderMap,
        request_id: Option<String>,
        body: &[u8],
    ) -> Self {
        let envelope = ErrorEnvelope::parse(body);
        let name = envelope.as_ref().map(|e| e.error.name.as_str());
        let kind = classify(mutating, status, headers, envelope.as_ref());
        let mut err = Self::new(endpoint, kind)
            .with_status(status)
            .with_request_id(request_id);
        err.0.error_name = name.filter(|n| !n.is_empty()).map(str::to_string);
        err.0.message = envelope
            .as_ref()
            .map(|e| e.error.message.clone())
            .filter(|m| !m.is_empty());
        err
    }
}

fn classify(
    mutating: bool,
    status: StatusCode,
    headers: &http::HeaderMap,
    envelope: Option<&ErrorEnvelope>,
) -> ErrorKind {
    let name = envelope.map_or("", |e| e.error.name.as_str());
    // Status first for the classes whose meaning never depends on the body; then
    // Busha's error name; then the status family.
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        // A 5xx on a mutation may come after the effect was committed (a crash or a
        // proxy timeout on the way back), so it proves nothing either way.
        return if mutating {
            ErrorKind::OutcomeUnknown
        } else {
            ErrorKind::Transient
        };
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        return ErrorKind::RateLimited {
            retry_after: retry_after(headers),
        };
    }
    if status == StatusCode::UNAUTHORIZED {
        return ErrorKind::Unauthorized;
    }
    match name {
        "insufficient_scope" => {
            return ErrorKind::InsufficientScope {
                required: envelope
                    .and_then(|e| required_scope(&e.error.message))
                    .or_else(|| www_authenticate_scope(headers)),
            };
        }
        "not_found" | "resource_not_found" => return ErrorKind::NotFound,
        "request_validation" | "schema_validation" => {
            return ErrorKind::Validation {
                fields: envelope
                    .map(ErrorEnvelope::field_reasons)
                    .unwrap_or_default(),
            };
        }
        _ => {}
    }
    match status {
        StatusCode::FORBIDDEN if name.is_empty() => ErrorKind::InsufficientScope {
            required: www_authenticate_scope(headers),
        },
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        s if s.is_client_error() => ErrorKind::Rejected {
            name: if name.is_empty() {
                format!("http_{}", s.as_u16())
            } else {
                name.to_string()
            },
        },
        // 1xx or 3xx: we follow no redirects, so nothing answered the request here. On a
        // mutation we cannot prove that, so we do not claim it.
        _ if mutating => ErrorKind::OutcomeUnknown,
        _ => ErrorKind::Transient,
    }
}

/// `Retry-After` in delta-seconds, or as an HTTP date (RFC 7231 IMF-fixdate).
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// "this endpoint requires balances:read" → `balances:read`.
fn required_scope(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("requires")?;
    let scope = rest
        .split_whitespace()
        .next()?
        .trim_matches(|c: char| !(c.is_ascii_alphanumeric() || c == ':' || c == '_'));
    scope.contains(':').then(|| scope.to_string())
}

/// RFC 6750: `WWW-Authenticate: Bearer error="insufficient_scope", scope="a b"`.
fn www_authenticate_scope(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(http::header::WWW_AUTHENTICATE)?.to_str().ok()?;
    let (_, rest) = value.split_once("scope=\"")?;
    let (scope, _) = rest.split_once('"')?;
    (!scope.is_empty()).then(|| scope.to_string())
}

/// Busha's error body. Only `error.name`/`error.message` are relied on; `status` and a
/// top-level `message` may or may not be there; `fields`/`schema` are kept as details.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorEnvelope {
    pub error: ErrorBody,
    #[serde(default)]
    pub fields: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub schema: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub message: String,
}

impl ErrorEnvelope {
    /// Busha's text goes into logs, reasons and the audit log: its name and message
    /// are made one line here, whatever they hold (field reasons in `field_reasons`).
    fn parse(body: &[u8]) -> Option<Self> {
        let mut envelope: Self = serde_json::from_slice(body).ok()?;
        envelope.error.name = one_line(&envelope.error.name);
        envelope.error.message = one_line(&envelope.error.message);
        Some(envelope)
    }

    /// `fields: {"f": [{"reason": "..."}]}` and `schema: [{"reason", "fix",
    /// "schema_validation_error": [..]}]`, flattened into reasons per field.
    fn field_reasons(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (field, value) in self.fields.iter().flatten() {
            let reasons = match value {
                serde_json::Value::Array(items) => items.iter().map(reason_text).collect(),
                other => vec![reason_text(other)],
            };
            out.entry(one_line(field)).or_default().extend(reasons);
        }
        for item in self.schema.iter().flatten() {
            let entry = out.entry("schema".to_string()).or_default();
            if let Some(details) = item
                .get("schema_validation_error")
                .and_then(|v| v.as_array())
            {
                entry.extend(details.iter().map(reason_text));
            }
            if let Some(reason) = item.get("reason").and_then(|v| v.as_str()) {
                entry.push(one_line(reason));
            }
        }
        out
    }
}

fn reason_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => one_line(s),
        serde_json::Value::Object(o) => match o.get("reason") {
            Some(serde_json::Value::String(s)) => one_line(s),
            _ => value.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};

    const EP: &str = "POST /v1/quotes";

    fn err(mutating: bool, status: u16, body: &str) -> ProviderError {
        err_with(mutating, status, HeaderMap::new(), body)
    }

    fn err_with(mutating: bool, status: u16, headers: HeaderMap, body: &str) -> ProviderError {
        ProviderError::from_response(
            EP,
            mutating,
            StatusCode::from_u16(status).unwrap(),
            &headers,
            Some("req_JfPBXEC5rLHc".into()),
            body.as_bytes(),
        )
    }

    #[test]
    fn a_message_with_newlines_cannot_forge_a_log_line() {
        let e = err(
            false,
            400,
            r#"{"error":{"name":"bad\nINFO x","message":"no\r\n2026-01-01 INFO treasury: paid\u001b[2K"}}"#,
        );
        let text = e.to_string();
        assert!(!text.contains(['\n', '\r', '\x1b']), "{text:?}");
        assert!(
            text.contains("no\\r\\n2026-01-01 INFO treasury: paid\\u{1b}[2K"),
            "{text}"
        );
        assert_eq!(e.error_name(), Some("bad\\nINFO x"));
    }

    #[test]
    fn unauthorized_keeps_request_id_status_and_message() {
        let e = err(
            false,
            401,
            r#"{"error":{"name":"unauthorized","message":"Unauthorized request"}}"#,
        );
        assert_eq!(e.kind(), &ErrorKind::Unauthorized);
        assert_eq!(e.request_id(), Some("req_JfPBXEC5rLHc"));
        assert_eq!(e.status(), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(e.error_name(), Some("unauthorized"));
        assert_eq!(e.endpoint(), EP);
        let text = e.to_string();
        assert!(text.starts_with("POST /v1/quotes: unauthorized"), "{text}");
        assert!(
            text.contains("req_JfPBXEC5rLHc") && text.contains("HTTP 401"),
            "{text}"
        );
    }

    #[test]
    fn every_error_shows_its_endpoint_status_and_request_id_or_that_there_was_none() {
        let e = err(false, 503, "");
        assert_eq!(
            e.to_string(),
            "POST /v1/quotes: transient failure (HTTP 503, request id req_JfPBXEC5rLHc)"
        );
        let no_id = ProviderError::new("GET /v1/recipients", ErrorKind::Transient)
            .with_status(StatusCode::BAD_GATEWAY);
        assert_eq!(
            no_id.to_string(),
            "GET /v1/recipients: transient failure (HTTP 502, request id none)"
        );
        let no_response = ProviderError::new("GET /v1/recipients", ErrorKind::Transient)
            .with_message("connection refused");
        assert_eq!(
            no_response.to_string(),
            "GET /v1/recipients: transient failure: connection refused (no HTTP response)"
        );
    }

    #[test]
    fn insufficient_scope_reads_the_oauth_surface_envelope() {
        let e = err(
            false,
            403,
            r#"{"status":"error","message":"Insufficient scope",
                "error":{"name":"insufficient_scope","message":"this endpoint requires balances:read"}}"#,
        );
        assert_eq!(
            e.kind(),
            &ErrorKind::InsufficientScope {
                required: Some("balances:read".into())
            }
        );
    }

    #[test]
    fn insufficient_scope_falls_back_to_www_authenticate() {
        let mut headers = HeaderMap::new();
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="insufficient_scope", scope="quotes:write""#),
        );
        let e = err_with(true, 403, headers, "");
        assert_eq!(
            e.kind(),
            &ErrorKind::InsufficientScope {
                required: Some("quotes:write".into())
            }
        );
    }

    #[test]
    fn both_not_found_names_are_not_found() {
        for name in ["not_found", "resource_not_found"] {
            let body = format!(r#"{{"error":{{"name":"{name}","message":"Resource Not Found"}}}}"#);
            assert_eq!(err(false, 404, &body).kind(), &ErrorKind::NotFound);
        }
        assert_eq!(err(false, 404, "").kind(), &ErrorKind::NotFound);
    }

    #[test]
    fn request_validation_keeps_field_reasons() {
        let e = err(
            true,
            400,
            r#"{"error":{"name":"request_validation","message":"Validation error"},
                "fields":{"source_amount":[{"reason":"One of target and source amount must be set"}],
                          "target_amount":[{"reason":"One of target and source amount must be set"}]}}"#,
        );
        let ErrorKind::Validation { fields } = e.kind() else {
            panic!("{e:?}")
        };
        assert_eq!(
            fields["source_amount"],
            vec!["One of target and source amount must be set"]
        );
        assert_eq!(fields.len(), 2);
        assert!(!e.outcome_unknown());
    }

    #[test]
    fn schema_validation_keeps_schema_details() {
        let e = err(
            true,
            400,
            r#"{"error":{"name":"schema_validation","message":"Error Validating Requests"},
                "schema":[{"reason":"The request body is defined as an object.","fix":"Ensure ...",
                           "schema_validation_error":["minLength: got 3, want 12"]}]}"#,
        );
        let ErrorKind::Validation { fields } = e.kind() else {
            panic!("{e:?}")
        };
        assert!(fields["schema"].contains(&"minLength: got 3, want 12".to_string()));
    }

    #[test]
    fn other_client_errors_are_rejections_by_name() {
        let e = err(
            true,
            400,
            r#"{"error":{"name":"bad_request","message":"insufficient balance"}}"#,
        );
        assert_eq!(
            e.kind(),
            &ErrorKind::Rejected {
                name: "bad_request".into()
            }
        );
        assert_eq!(e.message(), Some("insufficient balance"));
        assert_eq!(
            err(true, 409, "not json").kind(),
            &ErrorKind::Rejected {
                name: "http_409".into()
            }
        );
    }

    #[test]
    fn rate_limited_honours_retry_after_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("17"));
        assert_eq!(
            err_with(true, 429, headers, "").kind(),
            &ErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(17))
            }
        );
        assert_eq!(
            err(
                false,
                429,
                r#"{"error":{"name":"too_many_requests","message":"slow"}}"#
            )
            .kind(),
            &ErrorKind::RateLimited { retry_after: None }
        );
    }

    #[test]
    fn server_errors_are_transient_on_reads_and_unknown_on_mutations() {
        let body =
            r#"{"error":{"name":"internal_server_error","message":"Internal Server Error"}}"#;
        assert_eq!(err(false, 500, body).kind(), &ErrorKind::Transient);
        let e = err(true, 503, body);
        assert_eq!(e.kind(), &ErrorKind::OutcomeUnknown);
        assert!(e.outcome_unknown());
        assert_eq!(
            err(true, 502, "<html>bad gateway</html>").kind(),
            &ErrorKind::OutcomeUnknown
        );
    }

    #[test]
    fn decode_of_a_mutation_counts_as_outcome_unknown() {
        assert!(ErrorKind::Decode { mutating: true }.outcome_unknown());
        assert!(!ErrorKind::Decode { mutating: false }.outcome_unknown());
        assert!(ErrorKind::OutcomeUnknown.outcome_unknown());
        assert!(!ErrorKind::Transient.outcome_unknown());
    }

    #[test]
    fn error_envelope_without_status_or_message_still_parses() {
        let env = ErrorEnvelope::parse(
            br#"{"error":{"name":"bad_request","message":"Invalid request"}}"#,
        )
        .unwrap();
        assert_eq!(env.error.name, "bad_request");
        assert!(ErrorEnvelope::parse(b"{}").is_none());
    }
}
