//! The worker's HTTP server (axum): for now the OAuth connect flow an operator runs
//! from a browser. Later issues add webhooks, triggers, health and metrics.
//!
//! - `GET /oauth/connect/{alias}`: operator-authenticated (HTTP Basic, any user name,
//!   the operator token from `TREASURY_OPERATOR_TOKEN` as password, so a browser
//!   prompts for it); redirects to Busha's authorization page.
//! - `GET /oauth/callback`: completes the flow; a doubled callback exchanges the code
//!   at most once (the authorization is consumed by one conditional UPDATE).
//! - `GET /healthz`.
//!
//! The server binds localhost by default (`[http] listen`). No page or log line shows
//! a token, a code or the operator token. Every response carries the security headers
//! of [`headers`].

pub mod edge;
pub mod headers;
pub mod ops;
pub mod triggers;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use tokio_util::sync::CancellationToken;

use crate::config::Secret;
use crate::grants::{CallbackParams, ConnectError, Connector};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub connector: Connector,
    pub operator_token: Arc<Secret>,
}

/// The router with every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/oauth/connect/{alias}", get(connect))
        .route("/oauth/callback", get(callback))
        .with_state(state)
}

/// Serves `router` on `listener`, within `limits` (see [`edge`]), until `shutdown` is
/// cancelled, with the security headers on every response.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: edge::EdgeLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let router = router.layer(axum::middleware::map_response(headers::secure));
    edge::serve(listener, router, limits, shutdown).await
}

async fn connect(
    State(state): State<AppState>,
    Path(alias): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !operator_authenticated(&headers, &state.operator_token) {
        let mut res = (
            StatusCode::UNAUTHORIZED,
            Html(page(
                "Operator sign-in required",
                "Sign in with the operator token as password.",
            )),
        )
            .into_response();
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"treasury operator\", charset=\"UTF-8\""),
        );
        return res;
    }
    match state.connector.begin(&alias).await {
        Ok(started) => {
            let mut res = StatusCode::FOUND.into_response();
            match HeaderValue::from_str(started.url.as_str()) {
                Ok(v) => {
                    res.headers_mut().insert(header::LOCATION, v);
                    res.headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    res
                }
                Err(_) => error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the authorization URL is not a valid header",
                ),
            }
        }
        Err(e @ ConnectError::UnknownAlias(_)) => error_page(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e) => {
            tracing::error!(grant = %alias, error = %e, "could not start an authorization");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}

async fn callback(State(state): State<AppState>, Query(params): Query<CallbackParams>) -> Response {
    match state.connector.complete(&params, "operator:http").await {
        Ok(done) => {
            let verb = if done.reconnected {
                "reconnected"
            } else {
                "connected"
            };
            (
                StatusCode::OK,
                Html(page(
                    "Grant connected",
                    &format!(
                        "Grant <strong>{}</strong> is {verb} to Busha user {} with scopes: {}.{} You can close this window.",
                        escape(&done.grant.alias),
                        escape(&done.grant.subject),
                        escape(&done.grant.scopes.join(" ")),
                        match &done.previous_revoked {
                            Some(Ok(())) => " The grant it replaced was revoked at Busha.".to_string(),
                            Some(Err(e)) => format!(
                                " WARNING: the grant it replaced could not be revoked at Busha ({}); revoke it from Busha's dashboard.",
                                escape(e)
                            ),
                            None => String::new(),
                        }
                    ),
                )),
            )
                .into_response()
        }
        Err(e) => {
            let status = match &e {
                ConnectError::AccessDenied(_) => StatusCode::FORBIDDEN,
                ConnectError::StateMismatch(_) | ConnectError::IssuerMismatch { .. } => {
                    StatusCode::BAD_REQUEST
                }
                ConnectError::AlreadyUsed => StatusCode::CONFLICT,
                ConnectError::Exchange(_) | ConnectError::Provider { .. } => {
                    StatusCode::BAD_GATEWAY
                }
                ConnectError::Store(_) | ConnectError::Crypto(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                _ => StatusCode::BAD_REQUEST,
            };
            tracing::warn!(error = %e, "OAuth callback failed");
            error_page(status, &e.to_string())
        }
    }
}

/// HTTP Basic with the operator token as password, compared in constant time.
fn operator_authenticated(headers: &HeaderMap, token: &Secret) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let password = match decoded.iter().position(|b| *b == b':') {
        Some(i) => &decoded[i + 1..],
        None => return false,
    };
    constant_time_eq(password, token.expose().as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn error_page(status: StatusCode, message: &str) -> Response {
    (
        status,
        Html(page("Could not connect the grant", &escape(message))),
    )
        .into_response()
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\n<body><h1>{t}</h1>\n<p>{body}</p>\n</body></html>\n",
        t = escape(title)
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
