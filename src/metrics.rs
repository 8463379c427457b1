//! Prometheus metrics: runs by state (read from the store at scrape time, so every
//! process reports the same truth), provider latency and 429s (from the client), token
//! refreshes (from the custodian) and alerts.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::runs::RunState;
use crate::store::Store;

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests); ours still renders.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Refreshes the run gauges from the store and renders the exposition text.
pub async fn render(handle: &PrometheusHandle, store: &Store) -> String {
    match store.count_runs_by_state().await {
        Ok(counts) => {
            for state in RunState::ALL {
                let n = counts
                    .iter()
                    .find(|(s, _)| *s == state)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("treasury_runs", "state" => state.as_str())
                    .set(u32::try_from(n).unwrap_or(u32::MAX));
            }
            metrics::gauge!("treasury_store_up").set(1u8);
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot count runs");
            metrics::gauge!("treasury_store_up").set(0u8);
        }
    }
    handle.render()
}
