//! `treasury connect <alias>`: prints the authorization URL, tries to open a browser,
//! and listens on the configured redirect URI for the callback itself; for either
//! provider's browser flow ([`BrowserFlow`]). Baanx's API mode is in [`super::connect_api`].
//!
//! The browser opener is a parameter, so tests drive the whole flow in-process with a
//! scripted "browser" against the sandbox.

use std::io::Write;
use std::time::Duration;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::CliError;
use crate::grants::consent::ConsentRecord;
use crate::grants::{BrowserFlow, CallbackParams, ClientInfo, ConnectError, Connected};

/// Something that shows `url` to the customer (a browser, or a test's script).
pub type Opener = dyn Fn(&Url) + Send + Sync;

/// How long `connect` waits for the callback: Busha's codes live 10 minutes.
pub const WAIT: Duration = Duration::from_secs(15 * 60);

/// Tries the platform's opener; failure is fine (the URL is printed).
pub fn open_browser(url: &Url) {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let _ = std::process::Command::new(program)
        .arg(url.as_str())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// Binds the redirect URI's host and port.
pub async fn bind_redirect(redirect_uri: &Url) -> Result<tokio::net::TcpListener, CliError> {
    let host = redirect_uri.host_str().unwrap_or("localhost").to_string();
    let port = redirect_uri.port_or_known_default().unwrap_or(80);
    tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .map_err(|e| {
            CliError(format!(
                "cannot listen on the redirect URI's address {host}:{port}: {e} (if `treasury serve` is running there, connect through its /oauth/connect/<alias> instead)"
            ))
        })
}

/// What `connect` connects, and who asked for it.
#[derive(Clone, Copy, Debug)]
pub struct Requested<'a> {
    pub alias: &'a str,
    /// The audit actor: the authenticated operator who started the flow.
    pub by: &'a str,
}

#[derive(Clone)]
struct Listener<F> {
    connector: F,
    actor: String,
    expected_state: String,
    results: mpsc::Sender<Result<Connected, ConnectError>>,
}

/// Runs the flow for `alias`: starts the authorization, hands the URL to `opener`,
/// serves the callback on `listener` (at `redirect_uri`'s path), checks its state, and
/// completes the connection. Returns at the first callback that is ours, or on
/// `shutdown`/timeout. A callback with another `state` (or from another issuer) is
/// answered 400 and logged, and the wait goes on: anyone who can reach the listener
/// must not be able to end the command before the customer's browser arrives.
pub async fn connect<F: BrowserFlow>(
    connector: &F,
    requested: Requested<'_>,
    listener: tokio::net::TcpListener,
    redirect_uri: &Url,
    opener: &Opener,
    shutdown: CancellationToken,
    out: &mut (dyn Write + Send),
) -> Result<Connected, ConnectError> {
    let alias = requested.alias;
    let started = connector.begin(alias).await?;
    let (tx, mut rx) = mpsc::channel(1);
    let state = Listener {
        connector: connector.clone(),
        actor: requested.by.to_string(),
        expected_state: started.state.clone(),
        results: tx,
    };
    let router = axum::Router::new()
        .route(redirect_uri.path(), axum::routing::get(callback::<F>))
        .with_state(state);
    let stop = CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(
            async move { crate::http::serve(listener, router, Default::default(), stop).await },
        )
    };
    let _ = writeln!(
        out,
        "Open this URL to connect {alias} (waiting for the callback on {redirect_uri}):\n\n  {}\n",
        started.url
    );
    opener(&started.url);
    let result = tokio::select! {
        r = rx.recv() => r.unwrap_or_else(|| Err(ConnectError::NoCallback("the callback listener stopped".into()))),
        _ = tokio::time::sleep(WAIT) => Err(ConnectError::NoCallback(format!("none within {} minutes", WAIT.as_secs() / 60))),
        _ = shutdown.cancelled() => Err(ConnectError::NoCallback("interrupted".into())),
    };
    stop.cancel();
    let _ = server.await;
    report(out, alias, &result);
    result
}

/// Says how a connect of either provider ended, with its warnings.
pub fn report(out: &mut (dyn Write + Send), alias: &str, result: &Result<Connected, ConnectError>) {
    let done = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = writeln!(out, "Could not connect {alias}: {e}");
            return;
        }
    };
    let provider = crate::grants::provider_name(&done.grant.provider);
    let verb = if done.reconnected {
        "Reconnected"
    } else {
        "Connected"
    };
    let scopes = if done.grant.scopes.is_empty() {
        String::new()
    } else {
        format!(" (scopes: {})", done.grant.scopes.join(" "))
    };
    let _ = writeln!(
        out,
        "{verb} {} to {provider} user {}{scopes}",
        done.grant.alias, done.grant.subject
    );
    match &done.previous_revoked {
        Some(Ok(())) => {
            let _ = writeln!(out, "The grant it replaced was revoked at {provider}.");
        }
        Some(Err(e)) => {
            let _ = writeln!(
                out,
                "WARNING: the grant it replaced could not be revoked at {provider} ({e}); revoke the app's older access from {provider}'s dashboard"
            );
        }
        None => {}
    }
    for w in &done.warnings {
        let _ = writeln!(out, "WARNING: {w}");
    }
}

/// A consent record for `grants show`, each list under its own label.
pub fn write_consent(out: &mut (dyn Write + Send), c: &ConsentRecord) -> std::io::Result<()> {
    let items = |l: &[String]| {
        if l.is_empty() {
            "(none)".to_string()
        } else {
            l.join(" ")
        }
    };
    writeln!(out, "consent:")?;
    writeln!(
        out,
        "  {}: {}",
        c.asked_for.label,
        items(&c.asked_for.items)
    )?;
    writeln!(out, "  {}: {}", c.granted.label, items(&c.granted.items))?;
    writeln!(out, "  the provider's page: {}", c.provider_page)?;
    if let Some(shown) = &c.shown_by_us {
        writeln!(out, "  shown by us ({}):", shown.r#where)?;
        for line in shown.text.lines() {
            writeln!(out, "    | {line}")?;
        }
    }
    writeln!(
        out,
        "  at: {} by {} ({})",
        c.at.to_rfc3339(),
        c.operator,
        c.channel
    )?;
    if c.client_address.is_some() || c.user_agent.is_some() {
        writeln!(
            out,
            "  browser: {} {}",
            c.client_address.as_deref().unwrap_or("-"),
            c.user_agent.as_deref().unwrap_or("-")
        )?;
    }
    if let Some(p) = &c.provider_consent {
        writeln!(
            out,
            "  provider's consent status: {} (termsAndPrivacy {})",
            p.status,
            p.terms_and_privacy.as_deref().unwrap_or("unknown")
        )?;
    }
    if let Some(e) = &c.ended {
        writeln!(
            out,
            "  ended: {} at {}: {}",
            e.how,
            e.at.to_rfc3339(),
            e.reason
        )?;
    }
    Ok(())
}

async fn callback<F: BrowserFlow>(
    State(l): State<Listener<F>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Response {
    if params.state.as_deref() != Some(l.expected_state.as_str()) {
        // Not the customer's browser coming back: refuse it, and keep waiting.
        tracing::warn!(
            "ignored a callback whose state is not the one this `treasury connect` sent"
        );
        let e = ConnectError::StateMismatch(
            "the callback's state is not the one this `treasury connect` sent".into(),
        );
        return page(StatusCode::BAD_REQUEST, &format!("Could not connect: {e}"));
    }
    let client = ClientInfo {
        address: Some(peer.ip().to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(200).collect()),
    };
    let result = l.connector.complete(&params, &l.actor, client).await;
    if let Err(e @ ConnectError::IssuerMismatch { .. }) = &result {
        // Our state, another issuer: a forgery or a mix-up, refused before anything
        // was consumed. The genuine callback can still come.
        tracing::warn!(error = %e, "ignored a callback from another issuer");
        return page(StatusCode::BAD_REQUEST, &format!("Could not connect: {e}"));
    }
    let shown = match &result {
        Ok(done) => (
            StatusCode::OK,
            format!("Connected {}. You can close this window.", done.grant.alias),
        ),
        Err(e) => (StatusCode::BAD_REQUEST, format!("Could not connect: {e}")),
    };
    // Only the first callback of ours counts; later ones find the channel full or closed.
    let _ = l.results.try_send(result);
    page(shown.0, &shown.1)
}

fn page(status: StatusCode, text: &str) -> Response {
    (
        status,
        Html(format!("<!doctype html><p>{}</p>", escape(text))),
    )
        .into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
