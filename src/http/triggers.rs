//! `POST /triggers/{job}`: a signed event that fires a job's occurrence.
//!
//! The request carries `X-Treasury-Timestamp` (Unix seconds, within ±5 minutes),
//! `X-Treasury-Event-Id` (the occurrence key, 1–128 printable ASCII characters: a
//! replay names the same run and creates nothing) and `X-Treasury-Signature:
//! sha256=<hex HMAC-SHA256>` over `"{timestamp}.{event id}.{raw body}"`, keyed with the
//! secret in the environment variable the job's `[trigger] secret_env` names (read
//! once, at start). The body is `{"amount": "<plain decimal>"}` in the currency of the
//! trigger's `side`, within its bounds.
//!
//! An unauthenticated caller learns nothing: a bad signature, a stale timestamp and a
//! job that does not exist (or is not fired by triggers) all get 401, with the same
//! body for the same fault, after the same HMAC work, and create no run. No answer
//! names a secret's variable.
//!
//! Under `treasury run` the jobs are the live set in force (swapped on a reload): a
//! correctly signed trigger for a job the job files no longer hold gets 410 Gone, and a
//! worker whose set is not the one in force answers 503 and creates nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use crate::clock::Clock;
use crate::jobs::Job;
use crate::jobs::in_force::{JobSet, LiveSet, SetVersion};
use crate::jobs::scheduler::{OccurrenceError, create_occurrence_in};
use crate::money::parse_amount;
use crate::store::Store;
use crate::triggers::{TriggerKeys, TriggerRejection, check_event_id, verify_trigger};

#[derive(Clone)]
pub struct TriggerState {
    pub store: Store,
    pub clock: Clock,
    pub jobs: Arc<Vec<Job>>,
    /// Every trigger job's key, read at start ([`TriggerKeys::from_env`]).
    pub keys: Arc<TriggerKeys>,
    /// The actor of the runs' `run.created` entries.
    pub actor: String,
    /// The job set in force in this process, swapped on a reload (`treasury run`): when
    /// set, its jobs and keys replace `jobs` and `keys`, and runs are created only while
    /// it is the set in force.
    pub live: Option<LiveSet>,
}

/// A signed request's job (`None`: removed by a reload), its event id, and the
/// version of the set the job was taken from.
type Authenticated = (Option<Job>, String, Option<SetVersion>);

/// The jobs and keys a request is judged by: the live set's, or the fixed ones.
fn current(s: &TriggerState) -> (Arc<Vec<Job>>, Arc<TriggerKeys>, Option<Arc<JobSet>>) {
    match &s.live {
        Some(live) => {
            let set = live.borrow().clone();
            (set.jobs.clone(), set.keys.clone(), Some(set))
        }
        None => (s.jobs.clone(), s.keys.clone(), None),
    }
}

pub fn trigger_router(state: TriggerState) -> Router {
    Router::new()
        .route("/triggers/{job}", post(fire))
        .with_state(state)
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Verifies the request against the job's key (or the random key for a job that is
/// not one of ours), then answers the job only if both hold. `Ok(None)`: correctly
/// signed for a trigger job that a reload removed.
fn authenticate(
    s: &TriggerState,
    job_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Authenticated, TriggerRejection> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (jobs, keys, set) = current(s);
    let (key, known) = keys.key_for(job_id);
    let event_id = header("x-treasury-event-id");
    verify_trigger(
        key.expose().as_bytes(),
        header("x-treasury-timestamp"),
        event_id,
        header("x-treasury-signature"),
        body,
        s.clock.now(),
    )?;
    let event_id = event_id.unwrap_or_default().to_string();
    let version = set.as_ref().map(|set| set.version.clone());
    if known && set.is_some_and(|set| set.removed.contains(job_id)) {
        return Ok((None, event_id, version));
    }
    let job = jobs
        .iter()
        .find(|j| j.id().as_str() == job_id && j.spec().http_trigger().is_some())
        .filter(|_| known)
        .ok_or(TriggerRejection::BadSignature)?;
    Ok((Some(job.clone()), event_id, version))
}

async fn fire(
    State(s): State<TriggerState>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (job, event_id, set) = match authenticate(&s, &job_id, &headers, &body) {
        Ok(found) => found,
        Err(refused) => {
            metrics::counter!("treasury_triggers_total", "result" => "refused").increment(1);
            let known = current(&s).1.key_for(&job_id).1;
            tracing::warn!(job = ?job_id, known_job = known, reason = %refused, "trigger refused");
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({ "error": refused.to_string() }),
            );
        }
    };
    let Some(job) = job else {
        return reply(
            StatusCode::GONE,
            json!({ "error": format!("job {job_id} was removed from the job files; it creates no new runs") }),
        );
    };
    let job = &job;
    let event_id = event_id.as_str();
    if let Err(e) = check_event_id(event_id) {
        return reply(StatusCode::BAD_REQUEST, json!({ "error": e }));
    }
    let amount = match body_amount(&body) {
        Ok(a) => a,
        Err(e) => return reply(StatusCode::BAD_REQUEST, json!({ "error": e })),
    };
    match create_occurrence_in(
        &s.store,
        set.as_ref(),
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
        Err(e @ OccurrenceError::NotInForce { .. }) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": e.to_string() }),
        ),
        Err(OccurrenceError::Store(e)) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": format!("store unavailable: {e}") }),
        ),
    }
}

/// The body's amount: `{"amount": "<plain decimal>"}`, through the one amount parser.
fn body_amount(body: &[u8]) -> Result<rust_decimal::Decimal, String> {
    const SHAPE: &str = "the body must be {\"amount\": \"<decimal string>\"}";
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| SHAPE.to_string())?;
    let text = value
        .get("amount")
        .and_then(|a| a.as_str())
        .ok_or_else(|| SHAPE.to_string())?;
    parse_amount(text).map_err(|e| format!("`amount`: {e}"))
}
