//! `treasury connect <alias>`: prints the authorization URL, tries to open a browser,
//! and listens on the configured redirect URI for the callback itself.
//!
//! The browser opener is a parameter, so tests drive the whole flow in-process with a
//! scripted "browser" against the sandbox.

use std::io::Write;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::CliError;
use crate::grants::{CallbackParams, ConnectError, Connected, Connector};

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

#[derive(Clone)]
struct Listener {
    connector: Connector,
    expected_state: String,
    results: mpsc::Sender<Result<Connected, ConnectError>>,
}

/// Runs the flow for `alias`: starts the authorization, hands the URL to `opener`,
/// serves the callback on `listener` (at `redirect_uri`'s path), checks its state, and
/// completes the connection. Returns at the first callback that is ours, or on
/// `shutdown`/timeout. A callback with another `state` (or from another issuer) is
/// answered 400 and logged, and the wait goes on: anyone who can reach the listener
/// must not be able to end the command before the customer's browser arrives.
pub async fn connect(
    connector: &Connector,
    alias: &str,
    listener: tokio::net::TcpListener,
    redirect_uri: &Url,
    opener: &Opener,
    shutdown: CancellationToken,
    out: &mut (dyn Write + Send),
) -> Result<Connected, ConnectError> {
    let started = connector.begin(alias).await?;
    let (tx, mut rx) = mpsc::channel(1);
    let state = Listener {
        connector: connector.clone(),
        expected_state: started.state.clone(),
        results: tx,
    };
    let router = axum::Router::new()
        .route(redirect_uri.path(), axum::routing::get(callback))
        .with_state(state);
    let stop = CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move { crate::http::serve(listener, router, Default::default(), stop).await })
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
    match &result {
        Ok(done) => {
            let _ = writeln!(
                out,
                "{} {} to Busha user {} (scopes: {})",
                if done.reconnected {
                    "Reconnected"
                } else {
                    "Connected"
                },
                done.grant.alias,
                done.grant.subject,
                done.grant.scopes.join(" ")
            );
            match &done.previous_revoked {
                Some(Ok(())) => {
                    let _ = writeln!(out, "The grant it replaced was revoked at Busha.");
                }
                Some(Err(e)) => {
                    let _ = writeln!(
                        out,
                        "WARNING: the grant it replaced could not be revoked at Busha ({e}); revoke the app's older access from Busha's dashboard"
                    );
                }
                None => {}
            }
        }
        Err(e) => {
            let _ = writeln!(out, "Could not connect {alias}: {e}");
        }
    }
    result
}

async fn callback(State(l): State<Listener>, Query(params): Query<CallbackParams>) -> Response {
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
    let result = l.connector.complete(&params, "operator:cli").await;
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
