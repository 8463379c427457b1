//! The worker's HTTP server (axum): for now the OAuth connect flow an operator runs
//! from a browser. Later issues add webhooks, triggers, health and metrics.
//!
//! - `GET /oauth/connect/{alias}`: operator-authenticated (HTTP Basic: an operator
//!   account's name, and its personal token from `treasury operators token` as the
//!   password, so a browser prompts for it; the account needs the operator role);
//!   redirects to Busha's authorization page.
//! - `GET /oauth/callback`: completes the flow; a doubled callback exchanges the code
//!   at most once (the authorization is consumed by one conditional UPDATE).
//! - `GET /healthz`.
//! - The web console at `/` is `crate::console`'s router, merged in by the service
//!   and by `treasury serve`.
//!
//! Handlers fail with the one error type [`HttpError`], which renders the page (or
//! the redirect, or the HTTP Basic challenge) for its status.
//!
//! The server binds localhost by default (`[http] listen`). No page or log line shows
//! a token, a code or the operator token. Every response carries the security headers
//! of [`headers`].

pub mod edge;
pub mod error;
pub mod headers;
pub mod ops;
pub mod triggers;

use axum::Router;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::grants::{
    BaanxConnector, BrowserFlow, CallbackParams, ClientInfo, ConnectError, Connected, Connector,
};
use crate::operators::Role;
use crate::store::Store;

pub use error::HttpError;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Busha's flow (`None` in a worker that speaks only Baanx).
    pub connector: Option<Connector>,
    /// Baanx's hosted flow, when the config has a `[baanx]` section and its secret is
    /// set; its callback is served at the path of `[baanx] redirect_uri`.
    pub baanx: Option<BaanxConnector>,
    /// Where operator accounts and their tokens live.
    pub store: Store,
    pub clock: Clock,
}

/// The router with every route.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/oauth/connect/{alias}", get(connect))
        .route("/oauth/callback", get(busha_callback));
    if let Some(baanx) = &state.baanx {
        let path = baanx.redirect_uri().path().to_string();
        if path == "/oauth/callback" || path.starts_with("/oauth/connect/") {
            tracing::warn!(%path, "[baanx] redirect_uri's path is taken by Busha's routes: Baanx connects only through `treasury connect`");
        } else {
            router = router.route(&path, get(baanx_callback));
        }
    }
    router.with_state(state)
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
) -> Result<Response, HttpError> {
    if let Err(why) = operator_authenticated(&headers, &state).await {
        tracing::warn!(grant = %alias, reason = %why, "refused an HTTP connect");
        return Err(HttpError::Unauthorized(
            "Sign in with your operator name, and your personal token (treasury operators token) as the password.".into(),
        ));
    }
    let started = match (&state.baanx, &state.connector) {
        (Some(baanx), _) if baanx.spec(&alias).is_ok() => baanx.begin(&alias).await,
        (_, Some(busha)) => busha.begin(&alias).await,
        (_, None) => Err(ConnectError::UnknownAlias(alias.clone())),
    };
    let started = started.map_err(|e| match e {
        e @ ConnectError::UnknownAlias(_) => HttpError::NotFound(e.to_string()),
        e => {
            tracing::error!(grant = %alias, error = %e, "could not start an authorization");
            HttpError::Internal(e.to_string())
        }
    })?;
    let location = HeaderValue::from_str(started.url.as_str())
        .map_err(|_| HttpError::Internal("the authorization URL is not a valid header".into()))?;
    let mut res = StatusCode::FOUND.into_response();
    res.headers_mut().insert(header::LOCATION, location);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

async fn busha_callback(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Response {
    let Some(busha) = &state.connector else {
        return HttpError::NotFound("Busha is not configured".into()).into_response();
    };
    let client = client_info(peer, &headers);
    let done = BrowserFlow::complete(busha, &params, "operator:http", client).await;
    callback_page("Busha", done)
}

async fn baanx_callback(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Response {
    let Some(baanx) = &state.baanx else {
        return HttpError::NotFound("Baanx is not configured".into()).into_response();
    };
    let client = client_info(peer, &headers);
    let done = BrowserFlow::complete(baanx, &params, "operator:http", client).await;
    callback_page("Baanx", done)
}

/// Who came back: the address and user agent, for the consent record.
fn client_info(peer: SocketAddr, headers: &HeaderMap) -> ClientInfo {
    ClientInfo {
        address: Some(peer.ip().to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| crate::untrusted::one_line(ua).chars().take(256).collect()),
    }
}

/// The page a callback ends on, for `provider`.
fn callback_page(provider: &str, done: Result<Connected, ConnectError>) -> Response {
    match done {
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
                        "Grant <strong>{}</strong> is {verb} to {provider} user {}{}.{} You can close this window.",
                        escape(&done.grant.alias),
                        escape(&done.grant.subject),
                        if done.grant.scopes.is_empty() {
                            String::new()
                        } else {
                            format!(" with scopes: {}", escape(&done.grant.scopes.join(" ")))
                        },
                        match &done.previous_revoked {
                            Some(Ok(())) => format!(" The grant it replaced was revoked at {provider}."),
                            Some(Err(e)) => format!(
                                " WARNING: the grant it replaced could not be revoked at {provider} ({}); revoke it from {provider}'s dashboard.",
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
            tracing::warn!(error = %e, "OAuth callback failed");
            let message = e.to_string();
            match e {
                ConnectError::AccessDenied(_) => HttpError::Refused(message),
                ConnectError::AlreadyUsed => HttpError::Conflict(message),
                ConnectError::Exchange(_) | ConnectError::Provider { .. } => {
                    HttpError::BadGateway(message)
                }
                ConnectError::Store(_) | ConnectError::Crypto(_) => HttpError::Internal(message),
                _ => HttpError::BadRequest(message),
            }
            .into_response()
        }
    }
}

/// HTTP Basic with an operator account's name and a live personal token of it; the
/// account must hold the operator role. The token is looked up by its SHA-256.
async fn operator_authenticated(headers: &HeaderMap, state: &AppState) -> Result<(), String> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("no credentials")?;
    let (scheme, encoded) = value.split_once(' ').ok_or("malformed credentials")?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err("not HTTP Basic".into());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| "malformed credentials")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "malformed credentials")?;
    let (name, token) = decoded.split_once(':').ok_or("malformed credentials")?;
    let name = crate::operators::OperatorName::new(name)?;
    let hash = crate::operators::secrets::token_hash(token);
    let account = state
        .store
        .operator_by_token(&hash, state.clock.now())
        .await
        .map_err(|e| e.to_string())?
        .filter(|a| a.name == name.as_str())
        .ok_or_else(|| format!("no live token of operator {name}"))?;
    crate::operators::login::permitted(&account, Role::Operator)
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
