//! The control-surface conventions every emulator follows under `/_sandbox/`:
//!
//! | route | what |
//! |---|---|
//! | `GET /clock`, `POST /clock/advance {seconds}` | read and move the shared clock |
//! | `POST /faults`, `DELETE /faults` | inject a [`Fault`] on one endpoint, or clear them |
//! | `PUT /rate-limits` | replace the [`RateLimits`] |
//! | `GET /ledger` | everything that happened, oldest first |
//! | `GET /requests` | every request answered or dropped, oldest first |
//!
//! An emulator implements [`Emulator`] and merges [`routes`] into its own control
//! routes, so that one script drives either sandbox the same way.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::faults::Fault;
use super::rate::RateLimits;
use super::requests::RequestRecord;
use crate::clock::Clock;

/// What the shared control routes need from an emulator.
pub trait Emulator: Clone + Send + Sync + 'static {
    fn clock(&self) -> Clock;
    fn add_fault(&self, fault: Fault);
    fn clear_faults(&self);
    fn set_rate_limits(&self, limits: RateLimits);
    /// The ledger as JSON (each emulator has its own event type).
    fn ledger_json(&self) -> serde_json::Value;
    fn requests(&self) -> Vec<RequestRecord>;
}

/// The shared control routes, to be nested under `/_sandbox`.
pub fn routes<S: Emulator>() -> Router<S> {
    Router::new()
        .route("/clock", get(clock::<S>))
        .route("/clock/advance", post(advance_clock::<S>))
        .route("/faults", post(add_fault::<S>).delete(clear_faults::<S>))
        .route("/rate-limits", put(set_rate_limits::<S>))
        .route("/ledger", get(ledger::<S>))
        .route("/requests", get(requests::<S>))
}

async fn clock<S: Emulator>(State(sb): State<S>) -> Response {
    Json(json!({ "now": sb.clock().now() })).into_response()
}

#[derive(Deserialize)]
struct Advance {
    seconds: i64,
}

async fn advance_clock<S: Emulator>(State(sb): State<S>, Json(a): Json<Advance>) -> Response {
    let clock = sb.clock();
    clock.advance(chrono::Duration::seconds(a.seconds));
    Json(json!({ "now": clock.now() })).into_response()
}

async fn add_fault<S: Emulator>(State(sb): State<S>, Json(f): Json<Fault>) -> StatusCode {
    sb.add_fault(f);
    StatusCode::CREATED
}

async fn clear_faults<S: Emulator>(State(sb): State<S>) -> StatusCode {
    sb.clear_faults();
    StatusCode::NO_CONTENT
}

async fn set_rate_limits<S: Emulator>(
    State(sb): State<S>,
    Json(l): Json<RateLimits>,
) -> StatusCode {
    sb.set_rate_limits(l);
    StatusCode::NO_CONTENT
}

async fn ledger<S: Emulator>(State(sb): State<S>) -> Response {
    Json(sb.ledger_json()).into_response()
}

async fn requests<S: Emulator>(State(sb): State<S>) -> Response {
    Json(sb.requests()).into_response()
}
