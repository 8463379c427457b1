//! Our own supervisor for queue consumers: apalis workers exit on any transient
//! backend error (a lock timeout, a failed heartbeat), `Monitor::should_restart`
//! hot-loops, and a restart under the same name is refused until the old heartbeat
//! ages out. So every start gets a new name and restarts back off.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{Stats, WorkerConfig};
use crate::queue::{Handler, Queue};

/// Runs consumer slot `slot` until `token` is cancelled, restarting it when it dies.
pub(super) async fn supervise(
    slot: usize,
    queue: Queue,
    handler: Handler,
    cfg: WorkerConfig,
    stats: Arc<Stats>,
    token: CancellationToken,
) {
    let pid = std::process::id();
    let mut backoff = cfg.restart_backoff_min;
    loop {
        // Unique per process and per start (the counter is process-wide).
        let n = stats.starts.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{pid}-{n}", cfg.host);
        if let Some(s) = stats.consumers.lock().get_mut(slot) {
            s.clone_from(&name);
        }
        tracing::info!(part = "consumer", slot, consumer = %name, "queue consumer starting");
        let started = Instant::now();
        let outcome = queue.consume(&name, handler.clone(), token.clone()).await;
        if token.is_cancelled() {
            if let Err(e) = outcome {
                tracing::warn!(part = "consumer", slot, consumer = %name, error = %e, "queue consumer stopped with an error during shutdown");
            }
            break;
        }
        let reason = match outcome {
            Ok(()) => "exited without being asked".to_string(),
            Err(e) => e.to_string(),
        };
        if started.elapsed() >= cfg.restart_healthy {
            backoff = cfg.restart_backoff_min;
        }
        stats.restarts.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            part = "consumer",
            slot,
            consumer = %name,
            %reason,
            lived = ?started.elapsed(),
            restart_in = ?backoff,
            "queue consumer exited; restarting under a new name"
        );
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(cfg.restart_backoff_max);
    }
    tracing::info!(
        part = "consumer",
        slot,
        "queue consumer stopped: shutting down"
    );
}
