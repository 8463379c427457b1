//! `POST /triggers/{job}`: a signed event that fires a job's occurrence.
//!
//! The request carries `X-Treasury-Timestamp` (Unix seconds, within ±5 minutes),
//! `X-Treasury-Event-Id` (the occurrence key: a replay names the same run and creates
//! nothing) and `X-Treasury-Signature: sha256=<hex HMAC-SHA256>` over
//! `"{timestamp}.{event id}.{raw body}"`, keyed with the secret in the environment
//! variable the job's `[trigger] secret_env` names. The body is `{"amount": "<decimal>"}`
//! in the currency of the trigger's `side`, within its bounds. A bad signature or a
//! stale timestamp gets 401 and creates no run.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rust_decimal::Decimal;
use serde_json::json;

use crate::clock::Clock;
use crate::jobs::Job;
use crate::jobs::scheduler::{OccurrenceError, create_occurrence};
use crate::store::Store;
use crate::triggers::verify_trigger;

#[derive(Clone)]
pub struct TriggerState {
    pub store: Store,
    pub clock: Clock,
    pub jobs: Arc<Vec<Job>>,
    /// The actor of the runs' `run.created` entries.
    pub actor: String,
}

pub fn trigger_router(state: TriggerState) -> Router {
    Router::new()
        .route("/triggers/{job}", post(fire))
        .with_state(state)
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn fire(
    State(s): State<TriggerState>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(job) = s.jobs.iter().find(|j| j.id().as_str() == job_id) else {
        return reply(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("no job {job_id}") }),
        );
    };
    let Some(trigger) = job.spec().http_trigger() else {
        return reply(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("job {job_id} is not fired by HTTP triggers") }),
        );
    };
    let Ok(secret) = std::env::var(&trigger.secret_env) else {
        tracing::error!(job = %job_id, env = %trigger.secret_env, "trigger secret is not set; refusing triggers");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": format!("the trigger secret ${} is not set", trigger.secret_env) }),
        );
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let event_id = header("x-treasury-event-id");
    if let Err(refused) = verify_trigger(
        secret.as_bytes(),
        header("x-treasury-timestamp"),
        event_id,
        header("x-treasury-signature"),
        &body,
        s.clock.now(),
    ) {
        metrics::counter!("treasury_triggers_total", "result" => "refused").increment(1);
        tracing::warn!(job = %job_id, reason = %refused, "trigger refused");
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({ "error": refused.to_string() }),
        );
    }
    let event_id = event_id.unwrap_or_default();
    let amount = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("amount")
                .and_then(|a| a.as_str())
                .and_then(|a| a.trim().parse::<Decimal>().ok())
        });
    let Some(amount) = amount else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({ "error": "the body must be {\"amount\": \"<decimal string>\"}" }),
        );
    };
    match create_occurrence(
        &s.store,
        job,
        event_id,
        Some(amount),
        &s.actor,
        s.clock.now(),
    )
    .await
    {
        Ok(runs) => {
            let created = runs.iter().any(|(_, c)| *c);
            metrics::counter!("treasury_triggers_total", "result" => if created { "created" } else { "replayed" }).increment(1);
            let runs: Vec<_> = runs
                .iter()
                .map(|(id, c)| json!({ "run_id": id.as_str(), "created": c }))
                .collect();
            reply(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                json!({ "job": job_id, "event_id": event_id, "runs": runs }),
            )
        }
        Err(OccurrenceError::Payout(e)) => {
            reply(StatusCode::BAD_REQUEST, json!({ "error": e.to_string() }))
        }
        Err(OccurrenceError::Store(e)) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": format!("store unavailable: {e}") }),
        ),
    }
}
