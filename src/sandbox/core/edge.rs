//! Edge pieces every emulator's middleware uses: picking the faults that fire for a
//! request, a dropped response, a canned response, and rewriting a JSON answer.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;

use super::faults::{CannedResponse, Fault, FaultKind, Rewrite};

/// Faults in `faults` that fire for `endpoint` (`METHOD /route`), consuming their
/// `times`; spent ones are removed.
pub fn pick_faults(faults: &mut Vec<Fault>, endpoint: &str) -> Vec<FaultKind> {
    if faults.is_empty() {
        return Vec::new();
    }
    let mut rng = rand::thread_rng();
    let mut fired = Vec::new();
    for fault in faults.iter_mut() {
        if fault.endpoint != "*" && fault.endpoint != endpoint {
            continue;
        }
        if fault.times == Some(0) {
            continue;
        }
        if let Some(p) = fault.permille {
            if rng.gen_range(0..1000) >= p {
                continue;
            }
        }
        if let Some(n) = fault.times.as_mut() {
            *n -= 1;
        }
        fired.push(fault.kind.clone());
    }
    faults.retain(|f| f.times != Some(0));
    fired
}

/// A response whose body fails at once: hyper closes the connection, so the caller
/// gets no usable answer, exactly as when a response is lost on the way back.
pub fn dropped() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("response dropped by sandbox fault"))
    });
    Response::new(Body::from_stream(stream))
}

/// The answer of a `respond` fault.
pub fn canned_response(canned: &CannedResponse) -> Response {
    let status = StatusCode::from_u16(canned.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = (status, axum::Json(canned.body.clone())).into_response();
    if let Some(secs) = canned.retry_after {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

/// Applies `rewrites` to a JSON answer; returns the new answer and the pointers that
/// changed something. A non-JSON answer passes through unchanged.
pub async fn rewrite_response(res: Response, rewrites: &[Rewrite]) -> (Response, Vec<String>) {
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return (dropped(), Vec::new());
    };
    let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return (Response::from_parts(parts, Body::from(bytes)), Vec::new());
    };
    let applied: Vec<String> = rewrites
        .iter()
        .filter(|r| r.apply(&mut doc))
        .map(|r| r.pointer.clone())
        .collect();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&doc).unwrap_or_else(|_| bytes.to_vec());
    (Response::from_parts(parts, Body::from(body)), applied)
}
