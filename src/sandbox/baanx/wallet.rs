//! Baanx wallets (reference §3.1–3.4): internal wallets (custodial tenants only),
//! credit and reward wallets (404 until first credited), external wallets, fee
//! estimations, withdrawals and the wallet history.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{Duration, SecondsFormat};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::BaanxSandbox;
use super::auth::authenticate;
use super::config::{Custody, MEMO_CURRENCIES, PlatformWallet, SUPPORTED_PAIRS};
use super::edge::Tenant;
use super::reply::{Message, success};
use super::state::{BaanxEvent, HistoryItem, InternalWallet, User, World};

pub type Reply = Result<Response, Message>;

/// Runs `f` on the caller's user, in the tenant's region.
pub fn with_user<T>(
    sb: &BaanxSandbox,
    tenant: &Tenant,
    headers: &HeaderMap,
    f: impl FnOnce(&mut World, &str) -> Result<T, Message>,
) -> Result<T, Message> {
    let caller = authenticate(sb, tenant, headers)?;
    let mut w = sb.inner.world.lock();
    if !w.region(tenant.region).users.contains_key(&caller.user_id) {
        return Err(Message::not_authenticated());
    }
    f(&mut w, &caller.user_id)
}

pub fn user_mut<'a>(w: &'a mut World, tenant: &Tenant, id: &str) -> Result<&'a mut User, Message> {
    w.region(tenant.region)
        .users
        .get_mut(id)
        .ok_or_else(Message::not_authenticated)
}

fn custodial(tenant: &Tenant) -> Result<(), Message> {
    match tenant.client.custody {
        Custody::Custodial => Ok(()),
        Custody::NonCustodial => Err(Message::custodial_only()),
    }
}

pub fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn internal_json(wallet: &InternalWallet) -> Value {
    json!({
        "id": wallet.id,
        "balance": wallet.balance.to_string(),
        "currency": wallet.currency,
        "address": wallet.address,
        "addressMemo": wallet.memo,
        "addressId": wallet.address_id,
        "type": "INTERNAL",
    })
}

pub async fn list_internal(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
) -> Reply {
    custodial(&tenant)?;
    with_user(&sb, &tenant, &headers, |w, id| {
        let u = user_mut(w, &tenant, id)?;
        let list: Vec<Value> = u.internal.iter().map(internal_json).collect();
        Ok(Json(list).into_response())
    })
}

/// Creates (or finds) the internal wallet of a supported (network, currency).
pub fn ensure_internal<'a>(
    u: &'a mut User,
    network: &str,
    currency: &str,
) -> Option<&'a mut InternalWallet> {
    let (network, currency) = (network.to_ascii_lowercase(), currency.to_ascii_lowercase());
    if !SUPPORTED_PAIRS.contains(&(network.as_str(), currency.as_str())) {
        return None;
    }
    let pos = match u
        .internal
        .iter()
        .position(|w| w.network == network && w.currency == currency)
    {
        Some(pos) => pos,
        None => {
            let memo = MEMO_CURRENCIES
                .contains(&currency.as_str())
                .then(|| format!("{}", rand::random::<u32>() % 1_000_000));
            u.internal.push(InternalWallet {
                id: uuid::Uuid::new_v4().to_string(),
                address: address_for(&network),
                memo,
                address_id: uuid::Uuid::new_v4().to_string(),
                network,
                currency,
                balance: Decimal::ZERO,
                history: Vec::new(),
            });
            u.internal.len() - 1
        }
    };
    u.internal.get_mut(pos)
}

fn address_for(network: &str) -> String {
    let hex: String = uuid::Uuid::new_v4().simple().to_string();
    match network {
        "bitcoin" => format!("bc1q{}", &hex[..30]),
        "xrp" => format!("r{}", &hex[..30]),
        "solana" | "stellar" => format!("S{}{}", &hex, &hex[..11]),
        _ => format!("0x{}{}", hex, &hex[..8]),
    }
}

pub async fn create_internal(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Reply {
    custodial(&tenant)?;
    let wallets = body
        .get("wallets")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Message::bad_request("wallets is required"))?
        .clone();
    with_user(&sb, &tenant, &headers, |w, id| {
        let u = user_mut(w, &tenant, id)?;
        let mut pairs = Vec::new();
        for item in &wallets {
            let field = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or("");
            let (network, currency) = (field("network"), field("currency"));
            if !SUPPORTED_PAIRS.contains(&(network, currency)) {
                return Err(Message::bad_request(format!(
                    "unsupported network/currency pair {network}/{currency}"
                )));
            }
            pairs.push((network.to_string(), currency.to_string()));
        }
        for (network, currency) in pairs {
            ensure_internal(u, &network, &currency);
        }
        Ok(success())
    })
}

fn platform_kind(kind: &str) -> Result<PlatformWallet, Message> {
    match kind {
        "credit" => Ok(PlatformWallet::Credit),
        "reward" => Ok(PlatformWallet::Reward),
        _ => Err(Message::new(404, "Not found")),
    }
}

pub async fn get_platform(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(kind): Path<String>,
) -> Reply {
    let kind = platform_kind(&kind)?;
    with_user(&sb, &tenant, &headers, |w, id| {
        let u = user_mut(w, &tenant, id)?;
        let p = u
            .platform
            .iter()
            .find(|p| p.kind == kind)
            .ok_or_else(Message::wallet_not_found)?;
        Ok(Json(json!({
            "id": p.id,
            "balance": p.balance.to_string(),
            "currency": p.currency,
            "isWithdrawable": p.withdrawable,
            "type": kind.wire(),
        }))
        .into_response())
    })
}

pub async fn estimation(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(kind): Path<String>,
) -> Reply {
    platform_kind(&kind)?;
    with_user(&sb, &tenant, &headers, |_, _| {
        // The union of the documented and the observed shapes (reference §3.4 C).
        Ok(Json(json!({
            "gas": "6219123007416",
            "fee": "0.000006219123007416",
            "wei": "6219123007416",
            "eth": "0.000006219123007416",
            "usdc": "0.0164466644533551831945",
        }))
        .into_response())
    })
}

pub fn positive_amount(body: &Value) -> Result<Decimal, Message> {
    let raw = body
        .get("amount")
        .and_then(Value::as_str)
        .ok_or_else(|| Message::bad_request("amount is required and must be a decimal string"))?;
    raw.parse::<Decimal>()
        .ok()
        .filter(|d| *d > Decimal::ZERO)
        .ok_or_else(|| {
            Message::bad_request(format!("amount must be a positive decimal, got {raw:?}"))
        })
}

pub async fn platform_withdraw(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(kind): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    let kind = platform_kind(&kind)?;
    let amount = positive_amount(&body)?;
    let now = sb.now();
    with_user(&sb, &tenant, &headers, |w, id| {
        let settle = Duration::seconds(w.behaviour.withdraw_settle_secs);
        let u = user_mut(w, &tenant, id)?;
        let recipient = u
            .external
            .first()
            .map(|e| e.address.clone())
            .unwrap_or_default();
        let p = u
            .platform
            .iter_mut()
            .find(|p| p.kind == kind)
            .ok_or_else(Message::wallet_not_found)?;
        if !p.withdrawable {
            return Err(Message::bad_request("Wallet is not withdrawable"));
        }
        if p.balance < amount {
            return Err(Message::new(422, "Insufficient balance"));
        }
        p.balance -= amount;
        let currency = p.currency.clone();
        let name = match kind {
            PlatformWallet::Credit => "Credit withdrawal",
            PlatformWallet::Reward => "Reward withdrawal",
        };
        p.history.push(HistoryItem {
            name: name.into(),
            amount,
            currency: currency.clone(),
            sign: "debit",
            date: now + settle,
        });
        let tx_hash = format!(
            "0x{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let withdrawal_id = w.next_withdrawal_id();
        w.record(
            now,
            BaanxEvent::Withdrawal {
                withdrawal_id,
                user_id: id.to_string(),
                wallet_type: kind.wire().into(),
                currency,
                amount,
                recipient,
                tx_hash: Some(tx_hash.clone()),
            },
        );
        Ok(
            Json(json!({ "txHash": tx_hash, "network": "linea", "confirmed": true }))
                .into_response(),
        )
    })
}

pub async fn list_external(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
) -> Reply {
    with_user(&sb, &tenant, &headers, |w, id| {
        let u = user_mut(w, &tenant, id)?;
        let list: Vec<Value> = u
            .external
            .iter()
            .map(|e| {
                json!({
                    "address": e.address, "currency": e.currency, "network": e.network,
                    "balance": e.balance.to_string(), "allowance": e.allowance.to_string(),
                })
            })
            .collect();
        Ok(Json(list).into_response())
    })
}

/// `GET /v1/wallet/history`: 10 per page, newest first, zero-based pages, no ids.
pub async fn history(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let wallet_id = q
        .get("walletId")
        .ok_or_else(|| Message::bad_request("walletId is required"))?;
    let wallet_type = q
        .get("walletType")
        .ok_or_else(|| Message::bad_request("walletType is required"))?;
    // An invalid or missing page is page 0, as documented.
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let now = sb.now();
    with_user(&sb, &tenant, &headers, |w, id| {
        let u = user_mut(w, &tenant, id)?;
        let items: &[HistoryItem] = match wallet_type.as_str() {
            "INTERNAL" => {
                let currency = q.get("walletCurrency").ok_or_else(|| {
                    Message::bad_request("walletCurrency is required for INTERNAL wallets")
                })?;
                let wallet = u
                    .internal
                    .iter()
                    .find(|x| &x.id == wallet_id && &x.currency == currency)
                    .ok_or_else(Message::wallet_not_found)?;
                &wallet.history
            }
            "CREDIT" | "REWARD" => {
                let p = u
                    .platform
                    .iter()
                    .find(|p| &p.id == wallet_id && p.kind.wire() == wallet_type)
                    .ok_or_else(Message::wallet_not_found)?;
                &p.history
            }
            other => {
                return Err(Message::bad_request(format!(
                    "walletType {other:?} is not one of CREDIT, REWARD, INTERNAL"
                )));
            }
        };
        let mut visible: Vec<&HistoryItem> = items.iter().filter(|h| h.date <= now).collect();
        visible.sort_by_key(|h| std::cmp::Reverse(h.date));
        let list: Vec<Value> = visible
            .into_iter()
            .skip(page * 10)
            .take(10)
            .map(|h| {
                json!({
                    "name": h.name, "amount": h.amount.to_string(), "currency": h.currency,
                    "sign": h.sign, "date": ts(h.date),
                })
            })
            .collect();
        Ok(Json(list).into_response())
    })
}
