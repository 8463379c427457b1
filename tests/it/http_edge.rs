//! The HTTP edge holds (issue 14 §3): silent connections below the cap leave
//! `/healthz` answering; past the cap, the header-read timeout closes the idle ones
//! and `/healthz` answers again. No assertion is timed: every wait is for an event
//! (a byte, an EOF, an answer), bounded only so that a broken edge fails the test.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use treasury::http::edge::{EdgeLimits, serve};

const CAP: usize = 32;

/// Raises this process's soft file limit to its hard limit, so that the test's own
/// connections are not what runs out.
fn raise_file_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let hard = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|h| h.parse::<u64>().ok())
        .unwrap_or(4096);
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={hard}:{hard}"),
        ])
        .status();
    assert!(
        status.map(|s| s.success()).unwrap_or(false),
        "prlimit could not raise the file limit"
    );
    hard
}

async fn healthz(addr: std::net::SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    Ok(body)
}

/// Bounded only so that a broken edge fails rather than hangs.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within 60 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_starve_healthz_and_the_header_timeout_closes_them() {
    let hard = raise_file_limit();
    let limits = EdgeLimits {
        header_read_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        max_connections: CAP,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, router, limits, stop.clone()));

    // Below the cap: silent connections held, /healthz still answers.
    let mut idle = Vec::new();
    for _ in 0..CAP - 1 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let body = within("healthz below the cap", healthz(addr))
        .await
        .unwrap();
    assert!(
        body.starts_with("HTTP/1.1 200") && body.ends_with("ok"),
        "{body}"
    );

    // Past the cap: more silent connections than it allows; /healthz waits in the
    // backlog until the header-read timeout closes the silent ones, then answers.
    for _ in 0..CAP {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let started = Instant::now();
    let body = within("healthz past the cap", healthz(addr)).await.unwrap();
    let waited = started.elapsed();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    // Every one of the first connections was closed by the server (EOF), not by us.
    let mut closed = 0;
    for s in idle.iter_mut().take(CAP - 1) {
        let mut b = [0u8; 1];
        if within("an idle connection to close", s.read(&mut b))
            .await
            .map(|n| n == 0)
            .unwrap_or(true)
        {
            closed += 1;
        }
    }
    assert_eq!(
        closed,
        CAP - 1,
        "every idle connection was closed by the header-read timeout"
    );
    eprintln!(
        "file limit {hard}; cap {CAP}; {} idle connections held; /healthz answered past the cap after {waited:?} (header-read timeout {:?})",
        2 * CAP - 1,
        limits.header_read_timeout
    );
    stop.cancel();
}
