//! Classifying Baanx answers into the Busha client's error classes
//! ([`ErrorKind`]), so callers branch the same way on either provider.
//!
//! Baanx has three error bodies (reference §3.8): `{"message"}` on v1,
//! `{"error", "error_description"}` on OAuth, `{"error", "details"}` on consent v2.
//! 498 and 499 (client key unknown or missing) are our configuration errors, and the
//! message says so.

use std::collections::BTreeMap;

use http::StatusCode;
use serde_json::Value;

use crate::provider::busha::{ErrorKind, ProviderError, retry_after};

/// What a Baanx error body says: (code, message, details).
fn read_body(body: &[u8]) -> (Option<String>, Option<String>, Vec<String>) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (None, None, Vec::new());
    };
    // Baanx's text goes into logs and reasons: one line, whatever it holds.
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(crate::untrusted::one_line)
    };
    let details = v
        .get("details")
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .filter_map(|x| x.as_str().map(crate::untrusted::one_line))
                .collect()
        })
        .unwrap_or_default();
    let message = s("error_description").or_else(|| s("message"));
    (s("error"), message, details)
}

/// Classifies a non-2xx Baanx answer.
pub(crate) fn from_response(
    endpoint: &'static str,
    mutating: bool,
    status: StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
) -> ProviderError {
    let (code, message, details) = read_body(body);
    let kind = classify(
        mutating,
        status,
        headers,
        code.as_deref(),
        message.as_deref(),
        &details,
    );
    let mut err = ProviderError::new(endpoint, kind).with_status(status);
    let message = match status.as_u16() {
        499 => Some("configuration error: the request carried no x-client-key".to_string()),
        498 => Some("configuration error: Baanx does not know this x-client-key (wrong key, wrong environment or wrong region)".to_string()),
        _ => message,
    };
    if let Some(m) = message {
        err = err.with_message(m);
    }
    if let Some(c) = code {
        err = err.with_error_name(c);
    }
    err
}

fn classify(
    mutating: bool,
    status: StatusCode,
    headers: &http::HeaderMap,
    code: Option<&str>,
    message: Option<&str>,
    details: &[String],
) -> ErrorKind {
    match status.as_u16() {
        499 => {
            return ErrorKind::Rejected {
                name: "client_key_missing".into(),
            };
        }
        498 => {
            return ErrorKind::Rejected {
                name: "client_key_invalid".into(),
            };
        }
        _ => {}
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        // A 5xx on a mutation may follow a committed effect: it proves nothing.
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
    if status == StatusCode::UNAUTHORIZED && code != Some("invalid_client") {
        return ErrorKind::Unauthorized;
    }
    if status == StatusCode::NOT_FOUND {
        return ErrorKind::NotFound;
    }
    match code {
        // OAuth: the grant is dead, or our client credentials are wrong.
        Some(
            c @ ("invalid_grant" | "invalid_client" | "unsupported_grant_type" | "access_denied"),
        ) => {
            return ErrorKind::Rejected {
                name: c.to_string(),
            };
        }
        Some("invalid_request") | Some("Validation error") => {
            return validation("request", message, details);
        }
        _ => {}
    }
    match status {
        // Baanx's v1 400s are validation messages ("amount is required").
        StatusCode::BAD_REQUEST => validation("request", message, details),
        s if s.is_client_error() => ErrorKind::Rejected {
            name: format!("http_{}", s.as_u16()),
        },
        _ if mutating => ErrorKind::OutcomeUnknown,
        _ => ErrorKind::Transient,
    }
}

fn validation(field: &str, message: Option<&str>, details: &[String]) -> ErrorKind {
    let mut reasons: Vec<String> = details.to_vec();
    if reasons.is_empty() {
        reasons.extend(message.map(str::to_string));
    }
    let mut fields = BTreeMap::new();
    if !reasons.is_empty() {
        fields.insert(field.to_string(), reasons);
    }
    ErrorKind::Validation { fields }
}
