//! The HTTP edge: how connections are accepted, bounded and timed out.
//!
//! axum's own `serve` has no header-read timeout, no idle timeout and no connection
//! cap, so silent connections stay open and a few hundred exhaust a small file limit.
//! Here every connection is served by hyper's HTTP/1 server with:
//! - a header-read timeout, which hyper (1.12) starts as soon as it waits for a
//!   request's head: on a new connection and between requests on a kept-alive one, so
//!   it is also the idle timeout;
//! - a cap on open connections: at the cap the server stops accepting, new
//!   connections wait in the kernel's backlog, and each one closed makes room;
//! - a request timeout (408) on the whole handler.
//!
//! On shutdown every connection is asked to finish its request in flight and close.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The bounds on the worker's HTTP connections (`[http]` in the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeLimits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` is cancelled, then
/// lets the requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: EdgeLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let router = router.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        http::StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                // A connection that failed before we saw it (reset, file limit): go on.
                Err(e) => {
                    tracing::warn!(error = %e, "could not accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Handlers may ask who connected (`ConnectInfo`), as with axum's own `serve`.
        let router = router
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            connection(stream, router, limits, shutdown).await;
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

async fn connection(
    stream: tokio::net::TcpStream,
    router: Router,
    limits: EdgeLimits,
    shutdown: CancellationToken,
) {
    let service = TowerToHyperService::new(router);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = ended {
        // Timeouts and resets are the edge doing its job; nothing to alarm anyone.
        tracing::debug!(error = %e, "HTTP connection ended");
    }
}
