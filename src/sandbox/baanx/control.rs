//! The Baanx control surface under `/_sandbox/`: tenants, users, wallets, balances,
//! whitelist entries, disconnection and switches, plus the family's shared routes
//! (clock, faults, rate limits, ledger, requests). Each calls the same
//! [`BaanxSandbox`] method an in-process test would.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;

use super::BaanxSandbox;
use super::config::{
    BaanxBehaviour, BaanxClient, NewBaanxUser, NewWallet, NewWhitelistEntry, PlatformWallet,
};
use super::state::ExternalWallet;

pub fn routes() -> Router<BaanxSandbox> {
    Router::new()
        .route("/clients", post(register_client))
        .route("/users", post(create_user))
        .route("/users/{id}/wallets", post(set_wallet))
        .route("/users/{id}/platform-wallets", post(credit))
        .route("/users/{id}/external-wallets", post(add_external))
        .route("/users/{id}/whitelist", post(add_whitelist))
        .route("/users/{id}/disconnect", post(disconnect))
        .route("/behaviour", get(get_behaviour).put(set_behaviour))
        .merge(crate::sandbox::core::control::routes())
}

async fn register_client(State(sb): State<BaanxSandbox>, Json(c): Json<BaanxClient>) -> StatusCode {
    sb.register_client(c);
    StatusCode::CREATED
}

async fn create_user(State(sb): State<BaanxSandbox>, Json(u): Json<NewBaanxUser>) -> Response {
    (StatusCode::CREATED, Json(sb.create_user(u))).into_response()
}

async fn set_wallet(
    State(sb): State<BaanxSandbox>,
    Path(id): Path<String>,
    Json(w): Json<NewWallet>,
) -> Response {
    match sb.set_wallet(&id, w) {
        Some(info) => (StatusCode::CREATED, Json(info)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "unknown user or unsupported network/currency"})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct Credit {
    kind: PlatformWallet,
    amount: Decimal,
    #[serde(default = "yes")]
    withdrawable: bool,
}

fn yes() -> bool {
    true
}

async fn credit(
    State(sb): State<BaanxSandbox>,
    Path(id): Path<String>,
    Json(c): Json<Credit>,
) -> StatusCode {
    if sb.credit(&id, c.kind, c.amount, c.withdrawable) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn add_external(
    State(sb): State<BaanxSandbox>,
    Path(id): Path<String>,
    Json(e): Json<ExternalWallet>,
) -> StatusCode {
    if sb.add_external_wallet(&id, e) {
        StatusCode::CREATED
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn add_whitelist(
    State(sb): State<BaanxSandbox>,
    Path(id): Path<String>,
    Json(e): Json<NewWhitelistEntry>,
) -> Response {
    match sb.add_whitelist(&id, e) {
        Some(entry_id) => (StatusCode::CREATED, Json(json!({ "id": entry_id }))).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn disconnect(State(sb): State<BaanxSandbox>, Path(id): Path<String>) -> Response {
    Json(json!({ "families_revoked": sb.disconnect_user(&id) })).into_response()
}

async fn get_behaviour(State(sb): State<BaanxSandbox>) -> Json<BaanxBehaviour> {
    Json(sb.behaviour())
}

async fn set_behaviour(
    State(sb): State<BaanxSandbox>,
    Json(b): Json<BaanxBehaviour>,
) -> StatusCode {
    sb.update_behaviour(|current| *current = b);
    StatusCode::NO_CONTENT
}
