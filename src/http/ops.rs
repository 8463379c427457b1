//! Operations routes: `/readyz` (the store answers and every active grant's tokens open
//! under this process's master key), `/metrics` (Prometheus), and
//! `POST /webhooks/busha`, which only wakes the tracking of a transfer: the run
//! re-fetches it, and the payload is never trusted.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use hmac::{Hmac, Mac};
use metrics_exporter_prometheus::PrometheusHandle;
use sha2::Sha256;

use crate::clock::Clock;
use crate::config::Secret;
use crate::grants::SealStatus;
use crate::store::Store;

/// What the operations routes share.
#[derive(Clone)]
pub struct OpsState {
    pub store: Store,
    pub clock: Clock,
    pub metrics: PrometheusHandle,
    /// The webhook secret Busha signs deliveries with (`TREASURY_BUSHA_WEBHOOK_SECRET`);
    /// without it the webhook route refuses every delivery.
    pub webhook_secret: Option<Arc<Secret>>,
    /// The seal check's latest findings (`grants::seals`).
    pub seals: SealStatus,
}

pub fn ops_router(state: OpsState) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/webhooks/busha", post(busha_webhook))
        .with_state(state)
}

async fn readyz(State(s): State<OpsState>) -> Response {
    if let Err(e) = s.store.ping().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}"),
        )
            .into_response();
    }
    let problems = s.seals.problems();
    if problems.is_empty() {
        return (StatusCode::OK, "ready").into_response();
    }
    // Names the grant and the key version; never key material.
    let lines: Vec<String> = problems.iter().map(|p| format!("not ready: {p}")).collect();
    (StatusCode::SERVICE_UNAVAILABLE, lines.join("\n")).into_response()
}

async fn metrics(State(s): State<OpsState>) -> Response {
    let text = crate::metrics::render(&s.metrics, &s.store).await;
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

/// Checks `x-bu-signature`: base64 of HMAC-SHA256 over the raw body, in constant time.
pub fn busha_signature_ok(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(sig) = header.and_then(|h| {
        base64::engine::general_purpose::STANDARD
            .decode(h.trim())
            .ok()
    }) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

async fn busha_webhook(State(s): State<OpsState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = &s.webhook_secret else {
        return (StatusCode::UNAUTHORIZED, "webhooks are not configured").into_response();
    };
    let header = headers.get("x-bu-signature").and_then(|v| v.to_str().ok());
    if !busha_signature_ok(secret.expose().as_bytes(), &body, header) {
        metrics::counter!("treasury_webhooks_total", "result" => "bad_signature").increment(1);
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    // Only the transfer id is read from the payload; its status is never trusted.
    let transfer_id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.pointer("/data/id")
                .and_then(|id| id.as_str())
                .map(str::to_string)
        });
    let Some(transfer_id) = transfer_id else {
        metrics::counter!("treasury_webhooks_total", "result" => "ignored").increment(1);
        return (StatusCode::OK, "ignored").into_response();
    };
    match s.store.wake_transfer(&transfer_id, s.clock.now()).await {
        Ok(woke) => {
            metrics::counter!("treasury_webhooks_total", "result" => "accepted").increment(1);
            tracing::info!(transfer = %transfer_id, woke, "busha webhook: tracking woken");
            (StatusCode::OK, "ok").into_response()
        }
        // Busha retries a failed delivery; the run's own polling covers us anyway.
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}"),
        )
            .into_response(),
    }
}
