//! What every public request passes through: an `X-Request-Id`, injected faults, and
//! Busha's per-client, per-endpoint limit over any rolling 60 s (the sliding log of
//! [`core::rate`]).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::faults::{FaultKind, Rewrite};
use super::oauth::{AccessClaims, verify_access_token};
use super::reply::ApiError;
use super::state::{LedgerEvent, RequestRecord};
use super::{ALPHANUMERIC, Sandbox};
use crate::sandbox::core::{
    self,
    edge::{canned_response, dropped},
};

/// The request id given to this request, also sent as `X-Request-Id`.
#[derive(Clone)]
pub struct RequestId(pub String);

/// Verified bearer claims, put in the request's extensions by [`edge`].
#[derive(Clone)]
pub struct Authenticated(pub Arc<AccessClaims>);

pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = format!("req_{}", nanoid::nanoid!(12, &ALPHANUMERIC));
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

pub async fn edge(
    State(sb): State<Sandbox>,
    matched: MatchedPath,
    mut req: Request,
    next: Next,
) -> Response {
    let endpoint = format!("{} {}", req.method(), matched.as_str());
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let claims = bearer(req.headers()).and_then(|t| verify_access_token(&sb, t).ok());
    let client_id = claims
        .as_ref()
        .map(|c| c.client_id.clone())
        .or_else(|| basic_client_id(req.headers()));
    if let Some(claims) = claims {
        req.extensions_mut().insert(Authenticated(Arc::new(claims)));
    }

    let faults = pick_faults(&sb, &endpoint);
    let mut drop_after = false;
    let mut rewrites = Vec::new();
    for fault in faults {
        match fault {
            FaultKind::Latency(d) => tokio::time::sleep(d).await,
            FaultKind::ServerError(status) => {
                let res = ApiError::server(status).into_response();
                return finish(&sb, &endpoint, client_id, &request_id, res, false);
            }
            FaultKind::RateLimited => {
                let (limit, retry_after) = {
                    let st = sb.inner.state.lock();
                    (
                        st.rate_limits.limit_for(&endpoint),
                        st.behaviour.retry_after_header.then_some(1),
                    )
                };
                let res = ApiError::too_many_requests(limit, retry_after).into_response();
                return finish(&sb, &endpoint, client_id, &request_id, res, false);
            }
            FaultKind::DropBeforeCommit => {
                return finish(&sb, &endpoint, client_id, &request_id, dropped(), true);
            }
            FaultKind::DropAfterCommit => drop_after = true,
            FaultKind::Respond(canned) => {
                let res = canned_response(&canned);
                return finish(&sb, &endpoint, client_id, &request_id, res, false);
            }
            FaultKind::IgnoreFilters => {
                strip_filters(&mut req);
                let now = sb.now();
                sb.inner.state.lock().record(
                    now,
                    LedgerEvent::FiltersIgnored {
                        endpoint: endpoint.clone(),
                        request_id: request_id.clone(),
                    },
                );
            }
            FaultKind::Rewrite(rewrite) => rewrites.push(rewrite),
        }
    }

    let key = client_id.clone().unwrap_or_else(|| "anonymous".into());
    if let Err(refused) = take_rate(&sb, &key, &endpoint) {
        let res = refused.into_response();
        return finish(&sb, &endpoint, client_id, &request_id, res, false);
    }

    let mut res = next.run(req).await;
    if !rewrites.is_empty() {
        res = rewrite_response(&sb, &endpoint, &request_id, res, &rewrites).await;
    }
    if drop_after {
        let now = sb.now();
        sb.inner.state.lock().record(
            now,
            LedgerEvent::ResponseDropped {
                endpoint: endpoint.clone(),
                request_id: request_id.clone(),
            },
        );
        return finish(&sb, &endpoint, client_id, &request_id, dropped(), true);
    }
    finish(&sb, &endpoint, client_id, &request_id, res, false)
}

fn finish(
    sb: &Sandbox,
    endpoint: &str,
    client_id: Option<String>,
    request_id: &str,
    res: Response,
    dropped: bool,
) -> Response {
    let record = RequestRecord {
        at: sb.now(),
        client_id,
        endpoint: endpoint.to_string(),
        status: res.status().as_u16(),
        request_id: request_id.to_string(),
        dropped,
    };
    sb.inner.state.lock().requests.push(record);
    res
}

/// Removes every query parameter but the paging ones, as a server that ignores its
/// filters would.
fn strip_filters(req: &mut Request) {
    let uri = req.uri().clone();
    let kept: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .filter(|(k, _)| matches!(k.as_ref(), "cursor" | "limit" | "sort"))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .finish();
    let path_and_query = if query.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{query}", uri.path())
    };
    let mut parts = uri.into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    if let Ok(new) = axum::http::Uri::from_parts(parts) {
        *req.uri_mut() = new;
    }
}

/// Applies `rewrites` to a JSON answer, recording each one that changed something.
async fn rewrite_response(
    sb: &Sandbox,
    endpoint: &str,
    request_id: &str,
    res: Response,
    rewrites: &[Rewrite],
) -> Response {
    let (res, applied) = core::edge::rewrite_response(res, rewrites).await;
    let now = sb.now();
    let mut st = sb.inner.state.lock();
    for pointer in applied {
        st.record(
            now,
            LedgerEvent::ResponseRewritten {
                endpoint: endpoint.to_string(),
                request_id: request_id.to_string(),
                pointer,
            },
        );
    }
    res
}

/// Faults that fire for this request, consuming their `times`.
fn pick_faults(sb: &Sandbox, endpoint: &str) -> Vec<FaultKind> {
    core::edge::pick_faults(&mut sb.inner.state.lock().faults, endpoint)
}

/// Counts this request against the rolling minute, or answers 429.
fn take_rate(sb: &Sandbox, key: &str, endpoint: &str) -> Result<(), ApiError> {
    let now = sb.now();
    let mut st = sb.inner.state.lock();
    let st = &mut *st;
    let retry_after_header = st.behaviour.retry_after_header;
    core::rate::take(&mut st.windows, &st.rate_limits, key, endpoint, now).map_err(
        |(limit, wait)| {
            let retry = retry_after_header.then_some(core::rate::retry_after_secs(wait));
            ApiError::too_many_requests(limit, retry)
        },
    )
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// `client_id:client_secret` from an HTTP Basic header, each part URL-decoded
/// (RFC 6749 §2.3.1).
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

fn basic_client_id(headers: &HeaderMap) -> Option<String> {
    basic_credentials(headers).map(|(id, _)| id)
}
