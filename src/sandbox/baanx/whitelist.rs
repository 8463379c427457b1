//! The withdrawal whitelist (reference §3.5) and the internal withdrawal it guards
//! (§3.4 A). Baanx's list carries no status field, so an entry awaiting approval (the
//! pending switch) is simply absent from the list, and cannot be paid, until its
//! approval time: the sandbox's choice where Baanx is silent.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use chrono::Duration;
use serde_json::{Value, json};

use super::BaanxSandbox;
use super::config::{Custody, MEMO_CURRENCIES};
use super::edge::Tenant;
use super::reply::{Message, success};
use super::state::{BaanxEvent, HistoryItem, WhitelistRec};
use super::wallet::{Reply, positive_amount, ts, user_mut, with_user};

pub async fn list(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let currency = q
        .get("currency")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Message::new(422, "currency is required"))?
        .to_ascii_lowercase();
    let now = sb.now();
    with_user(&sb, &tenant, &headers, |w, id| {
        let u = user_mut(w, &tenant, id)?;
        let list: Vec<Value> = u
            .whitelist
            .iter()
            .filter(|e| e.currency == currency && e.approved_at <= now)
            .map(|e| {
                json!({
                    "id": e.id, "name": e.name,
                    "beneficiaryFirstName": e.first_name, "beneficiaryLastName": e.last_name,
                    "walletAddress": e.address, "walletMemo": e.memo, "currency": e.currency,
                    "lastUsedAt": e.last_used_at.map(ts), "createdAt": ts(e.created_at),
                })
            })
            .collect();
        Ok(Json(list).into_response())
    })
}

fn parse_entry(item: &Value, i: usize) -> Result<[String; 5], Message> {
    let field = |k: &str| {
        item.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| Message::bad_request(format!("wallets[{i}].{k} is required")))
    };
    Ok([
        field("currency")?.to_ascii_lowercase(),
        field("name")?,
        field("beneficiaryFirstName")?,
        field("beneficiaryLastName")?,
        field("walletAddress")?,
    ])
}

pub async fn create(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Reply {
    let items = body
        .get("wallets")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Message::bad_request("wallets is required"))?;
    let mut parsed = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let memo = item
            .get("walletMemo")
            .and_then(Value::as_str)
            .map(str::to_string);
        parsed.push((parse_entry(item, i)?, memo));
    }
    let now = sb.now();
    with_user(&sb, &tenant, &headers, |w, id| {
        let delay = Duration::seconds(w.behaviour.whitelist_approval_secs.max(0));
        let mut events = Vec::new();
        let u = user_mut(w, &tenant, id)?;
        for ([currency, name, first, last, address], memo) in parsed {
            let entry = WhitelistRec {
                id: uuid::Uuid::new_v4().to_string(),
                currency,
                name,
                first_name: first,
                last_name: last,
                address,
                memo,
                created_at: now,
                approved_at: now + delay,
                last_used_at: None,
            };
            events.push(BaanxEvent::WhitelistAdded {
                user_id: id.to_string(),
                entry_id: entry.id.clone(),
                currency: entry.currency.clone(),
                address: entry.address.clone(),
                pending: delay > Duration::zero(),
                approved_at: entry.approved_at,
            });
            u.whitelist.push(entry);
        }
        for e in events {
            w.record(now, e);
        }
        Ok(success())
    })
}

pub async fn delete(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Reply {
    let ids: Vec<String> = body
        .get("walletIds")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Message::bad_request("walletIds is required"))?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let now = sb.now();
    with_user(&sb, &tenant, &headers, |w, id| {
        let u = user_mut(w, &tenant, id)?;
        if let Some(missing) = ids
            .iter()
            .find(|x| !u.whitelist.iter().any(|e| &e.id == *x))
        {
            return Err(Message::new(
                404,
                format!("Whitelist entry {missing} not found"),
            ));
        }
        u.whitelist.retain(|e| !ids.contains(&e.id));
        for entry_id in ids {
            w.record(
                now,
                BaanxEvent::WhitelistDeleted {
                    user_id: id.to_string(),
                    entry_id,
                },
            );
        }
        Ok(success())
    })
}

/// The fields of an internal withdrawal, as they come on the wire.
struct Withdraw {
    amount: rust_decimal::Decimal,
    recipient: String,
    recipient_memo: Option<String>,
    source: String,
    source_memo: Option<String>,
    currency: String,
}

/// An optional string field: absent is fine, `null` is refused (Pera omits memo keys
/// for exactly this reason).
fn optional_str(body: &Value, key: &str) -> Result<Option<String>, Message> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Message::bad_request(format!(
            "{key} must be a string when present"
        ))),
    }
}

fn parse_withdraw(body: &Value) -> Result<Withdraw, Message> {
    let required = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| Message::bad_request(format!("{k} is required")))
    };
    let w = Withdraw {
        amount: positive_amount(body)?,
        // The wire name really is `recipientAddrss`; the spelled-out one is unknown.
        recipient: required("recipientAddrss")?,
        recipient_memo: optional_str(body, "recipientMemo")?,
        source: required("sourceAddress")?,
        source_memo: optional_str(body, "sourceMemo")?,
        currency: required("currency")?,
    };
    let needs_memo = MEMO_CURRENCIES.contains(&w.currency.as_str());
    match (&w.recipient_memo, needs_memo) {
        (None, true) => Err(Message::bad_request(format!(
            "recipientMemo is required for {}",
            w.currency
        ))),
        (Some(_), false) => Err(Message::bad_request(format!(
            "recipientMemo is not supported for {}",
            w.currency
        ))),
        _ => Ok(w),
    }
}

pub async fn internal_withdraw(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Reply {
    if tenant.client.custody == Custody::NonCustodial {
        return Err(Message::custodial_only());
    }
    let req = parse_withdraw(&body)?;
    let now = sb.now();
    with_user(&sb, &tenant, &headers, |w, id| {
        let enforced = w.behaviour.whitelist_enforced;
        let settle = Duration::seconds(w.behaviour.withdraw_settle_secs);
        let u = user_mut(w, &tenant, id)?;
        if u.verification_state != "VERIFIED" {
            return Err(Message::not_authorized());
        }
        let entry = u.whitelist.iter().position(|e| {
            e.currency == req.currency
                && e.address == req.recipient
                && e.memo == req.recipient_memo
                && e.approved_at <= now
        });
        if enforced && entry.is_none() {
            return Err(Message::bad_request("Recipient address is not whitelisted"));
        }
        let wallet = u
            .internal
            .iter_mut()
            .find(|x| x.address == req.source && x.currency == req.currency)
            .ok_or_else(Message::wallet_not_found)?;
        if req.source_memo.is_some() && req.source_memo != wallet.memo {
            return Err(Message::bad_request(
                "sourceMemo does not match the source wallet",
            ));
        }
        if wallet.balance < req.amount {
            return Err(Message::new(422, "Insufficient balance"));
        }
        wallet.balance -= req.amount;
        wallet.history.push(HistoryItem {
            name: "Internal withdrawal".into(),
            amount: req.amount,
            currency: req.currency.clone(),
            sign: "debit",
            date: now + settle,
        });
        if let Some(pos) = entry {
            u.whitelist[pos].last_used_at = Some(now);
        }
        let withdrawal_id = w.next_withdrawal_id();
        w.record(
            now,
            BaanxEvent::Withdrawal {
                withdrawal_id,
                user_id: id.to_string(),
                wallet_type: "INTERNAL".into(),
                currency: req.currency,
                amount: req.amount,
                recipient: req.recipient,
                tx_hash: None,
            },
        );
        Ok(success())
    })
}
