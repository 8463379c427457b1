//! The control surface under `/_sandbox/`, for tests and demos driving a standalone
//! sandbox over HTTP. Each endpoint calls the same [`Sandbox`] method an in-process
//! test would.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;

use super::config::{
    Behaviour, NewUser, OAuthClientConfig, RateLimits, SavedRecipient, TransferOutcome,
};
use super::faults::Fault;
use super::{Sandbox, SandboxUser};

pub fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/clients", post(register_client))
        .route("/users", post(create_user))
        .route("/users/{id}/balances/{currency}", put(set_balance))
        .route("/users/{id}/disconnect", post(disconnect))
        .route("/users/{id}/recipients", post(add_saved_recipient))
        .route("/bank-accounts", post(add_bank_account))
        .route("/prices", put(set_price))
        .route("/clock", get(clock))
        .route("/clock/advance", post(advance_clock))
        .route("/keys/rotate", post(rotate_keys))
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/behaviour", get(get_behaviour).put(set_behaviour))
        .route("/rate-limits", put(set_rate_limits))
        .route("/transfer-outcomes", post(push_outcome))
        .route("/ledger", get(ledger))
        .route("/requests", get(requests))
}

async fn register_client(State(sb): State<Sandbox>, Json(c): Json<OAuthClientConfig>) -> Response {
    sb.register_client(c);
    StatusCode::CREATED.into_response()
}

async fn create_user(
    State(sb): State<Sandbox>,
    Json(u): Json<NewUser>,
) -> (StatusCode, Json<SandboxUser>) {
    (StatusCode::CREATED, Json(sb.create_user(u)))
}

#[derive(Deserialize)]
struct BalanceBody {
    available: Decimal,
}

async fn set_balance(
    State(sb): State<Sandbox>,
    Path((id, currency)): Path<(String, String)>,
    Json(b): Json<BalanceBody>,
) -> StatusCode {
    if sb.set_balance(&id, &currency, b.available) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn disconnect(State(sb): State<Sandbox>, Path(id): Path<String>) -> Response {
    Json(json!({ "families_revoked": sb.disconnect_user(&id) })).into_response()
}

async fn add_saved_recipient(
    State(sb): State<Sandbox>,
    Path(id): Path<String>,
    Json(r): Json<SavedRecipient>,
) -> StatusCode {
    if sb.add_saved_recipient(&id, r) {
        StatusCode::CREATED
    } else {
        StatusCode::NOT_FOUND
    }
}

#[derive(Deserialize)]
struct BankAccount {
    bank_code: String,
    account_number: String,
    account_name: String,
}

async fn add_bank_account(State(sb): State<Sandbox>, Json(a): Json<BankAccount>) -> StatusCode {
    sb.add_bank_account(&a.bank_code, &a.account_number, &a.account_name);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct PriceBody {
    base: String,
    counter: String,
    buy: Decimal,
    sell: Decimal,
}

async fn set_price(State(sb): State<Sandbox>, Json(p): Json<PriceBody>) -> StatusCode {
    sb.set_price(&p.base, &p.counter, p.buy, p.sell);
    StatusCode::NO_CONTENT
}

async fn clock(State(sb): State<Sandbox>) -> Response {
    Json(json!({ "now": sb.now() })).into_response()
}

#[derive(Deserialize)]
struct Advance {
    seconds: i64,
}

async fn advance_clock(State(sb): State<Sandbox>, Json(a): Json<Advance>) -> Response {
    sb.clock().advance(chrono::Duration::seconds(a.seconds));
    Json(json!({ "now": sb.now() })).into_response()
}

#[derive(Deserialize, Default)]
struct Rotate {
    #[serde(default)]
    retire_old: bool,
}

async fn rotate_keys(State(sb): State<Sandbox>, body: Option<Json<Rotate>>) -> Response {
    let retire = body.map(|Json(r)| r.retire_old).unwrap_or_default();
    Json(json!({ "kid": sb.rotate_keys(retire) })).into_response()
}

async fn add_fault(State(sb): State<Sandbox>, Json(f): Json<Fault>) -> StatusCode {
    sb.add_fault(f);
    StatusCode::CREATED
}

async fn clear_faults(State(sb): State<Sandbox>) -> StatusCode {
    sb.clear_faults();
    StatusCode::NO_CONTENT
}

async fn get_behaviour(State(sb): State<Sandbox>) -> Json<Behaviour> {
    Json(sb.inner.state.lock().behaviour.clone())
}

async fn set_behaviour(State(sb): State<Sandbox>, Json(b): Json<Behaviour>) -> StatusCode {
    sb.update_behaviour(|current| *current = b);
    StatusCode::NO_CONTENT
}

async fn set_rate_limits(State(sb): State<Sandbox>, Json(l): Json<RateLimits>) -> StatusCode {
    sb.set_rate_limits(l);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct OutcomeBody {
    outcome: TransferOutcome,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

async fn push_outcome(State(sb): State<Sandbox>, Json(o): Json<OutcomeBody>) -> StatusCode {
    for _ in 0..o.count {
        sb.push_transfer_outcome(o.outcome);
    }
    StatusCode::NO_CONTENT
}

async fn ledger(State(sb): State<Sandbox>) -> Response {
    Json(sb.ledger()).into_response()
}

async fn requests(State(sb): State<Sandbox>) -> Response {
    Json(sb.requests()).into_response()
}
