//! The control surface under `/_sandbox/`, for tests and demos driving a standalone
//! sandbox over HTTP. Each endpoint calls the same [`Sandbox`] method an in-process
//! test would; the clock, faults, rate limits, ledger and request log follow the
//! family's conventions ([`crate::sandbox::core::control`]).

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;

use super::config::{Behaviour, NewUser, OAuthClientConfig, SavedRecipient, TransferOutcome};
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
        .route("/keys/rotate", post(rotate_keys))
        .route("/behaviour", get(get_behaviour).put(set_behaviour))
        .route("/transfer-outcomes", post(push_outcome))
        .merge(crate::sandbox::core::control::routes())
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

#[derive(Deserialize, Default)]
struct Rotate {
    #[serde(default)]
    retire_old: bool,
}

async fn rotate_keys(State(sb): State<Sandbox>, body: Option<Json<Rotate>>) -> Response {
    let retire = body.map(|Json(r)| r.retire_old).unwrap_or_default();
    Json(json!({ "kid": sb.rotate_keys(retire) })).into_response()
}

async fn get_behaviour(State(sb): State<Sandbox>) -> Json<Behaviour> {
    Json(sb.inner.state.lock().behaviour.clone())
}

async fn set_behaviour(State(sb): State<Sandbox>, Json(b): Json<Behaviour>) -> StatusCode {
    sb.update_behaviour(|current| *current = b);
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
