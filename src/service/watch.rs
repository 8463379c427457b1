//! The service's background watches, each a loop until shutdown that reports when it
//! stops: alerts (from the audit log and stuck transfers) with the seal check, and the
//! grants' keep-alive.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::alerts::AlertWatcher;
use crate::grants::{Custodian, KeepAlive, SealMonitor};

/// How often keep-alive looks at every grant: far inside its 3-day window.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(3600);

/// Alerts from the audit log and stuck transfers; the seal check again, so that a
/// grant rekeyed under a version this process lacks turns readiness off.
pub(super) async fn alerts(
    mut watcher: AlertWatcher,
    mut seals: SealMonitor,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        if let Err(e) = watcher.poll().await {
            tracing::warn!(error = %e, "alert watcher could not read the store");
        }
        if let Err(e) = seals.check().await {
            tracing::warn!(error = %e, "seal check could not read the store");
        }
        tokio::select! { _ = shutdown.cancelled() => break, _ = tokio::time::sleep(Duration::from_secs(10)) => {} }
    }
    tracing::info!("alert watcher stopped");
}

/// Refreshes grants before their refresh tokens die unused, and alerts.
pub(super) async fn keep_alive(custodian: Custodian, shutdown: CancellationToken) {
    let policy = KeepAlive::default();
    while !shutdown.is_cancelled() {
        if let Err(e) = custodian.keep_alive(&policy).await {
            tracing::warn!(error = %e, "keep-alive could not read the grants");
        }
        tokio::select! { _ = shutdown.cancelled() => break, _ = tokio::time::sleep(KEEP_ALIVE_EVERY) => {} }
    }
    tracing::info!("keep-alive stopped");
}
