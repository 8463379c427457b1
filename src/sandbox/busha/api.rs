//! The resource API (`/v1/...`) as `busha-api.md` §2 and the OpenAPI spec describe it:
//! bearer JWTs, per-endpoint scopes, Busha's envelopes, decimals as strings and
//! cursor pagination.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};

use super::config::{
    DuplicateTransfers, ExpiredQuoteTransfers, RecipientIds, ReferenceReuse, TransferOutcome,
};
use super::edge::Authenticated;
use super::oauth::AccessClaims;
use super::reply::{ApiError, ok, ok_page};
use super::state::{
    FeeRec, LedgerEvent, PayOutRec, QuoteRec, RecipientRec, State as World, TransferRec, User,
};
use super::{ALPHANUMERIC, Sandbox};
use crate::money::{Currency, KNOWN_CURRENCIES};

type ApiResult = Result<Response, ApiError>;

/// One page of row positions, with the next and previous cursors.
type PageOf = (Vec<usize>, Option<String>, Option<String>);

pub fn routes() -> Router<Sandbox> {
    Router::new()
        .route("/v1/balances", get(list_balances))
        .route("/v1/balances/{id_or_code}", get(get_balance))
        .route("/v1/banks", get(list_banks))
        .route("/v1/pairs", get(list_pairs))
        .route(
            "/v1/recipients",
            get(list_recipients).post(create_recipient),
        )
        .route(
            "/v1/recipients/resolve-bank-account",
            axum::routing::post(resolve_bank_account),
        )
        .route(
            "/v1/recipients/{id}",
            get(get_recipient).delete(delete_recipient),
        )
        .route("/v1/quotes", get(list_quotes).post(create_quote))
        .route("/v1/quotes/{id}", get(get_quote))
        .route("/v1/transfers", get(list_transfers).post(create_transfer))
        .route("/v1/transfers/{id}", get(get_transfer))
}

/// The authenticated caller of a resource endpoint.
pub struct Caller(Arc<AccessClaims>);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Authenticated>()
            .map(|a| Caller(a.0.clone()))
            .ok_or_else(|| {
                ApiError::unauthorized("missing, invalid, expired or revoked access token")
            })
    }
}

impl Caller {
    fn require(&self, scope: &str) -> Result<&str, ApiError> {
        if self.0.scp.iter().any(|s| s == scope) {
            Ok(&self.0.sub)
        } else {
            Err(ApiError::insufficient_scope(scope))
        }
    }
}

fn dec(d: Decimal) -> String {
    d.normalize().to_string()
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn money(d: Decimal, currency: &str) -> Value {
    json!({ "amount": dec(d), "currency": currency })
}

fn user<'a>(st: &'a World, id: &str) -> Result<&'a User, ApiError> {
    st.users
        .get(id)
        .ok_or_else(|| ApiError::unauthorized("the token's subject is unknown"))
}

fn list_param(q: &HashMap<String, String>, key: &str) -> Option<Vec<String>> {
    q.get(key).map(|v| {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

/// Where a cursor points: the page after a row, or the page before one (in listing order).
#[derive(Clone, Copy)]
enum Cursor {
    After(usize),
    Before(usize),
}

impl Cursor {
    fn encode(self) -> String {
        match self {
            Cursor::After(p) => STANDARD.encode(format!("pos:{p}")),
            Cursor::Before(p) => STANDARD.encode(format!("before:{p}")),
        }
    }

    fn decode(raw: &str) -> Option<Cursor> {
        let text = String::from_utf8(STANDARD.decode(raw).ok()?).ok()?;
        if let Some(n) = text.strip_prefix("pos:") {
            return n.parse().ok().map(Cursor::After);
        }
        text.strip_prefix("before:")?
            .parse()
            .ok()
            .map(Cursor::Before)
    }
}

/// Cursor pagination over row positions (ascending). Busha sorts newest first by default.
/// `next_cursor` leads to the following page and `previous_cursor` back to the one
/// before, each passed back as `cursor`.
fn paginate(positions: Vec<usize>, q: &HashMap<String, String>) -> Result<PageOf, ApiError> {
    let limit = match q.get("limit") {
        None => 20,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| ApiError::field("limit", "limit must be an integer from 1 to 100"))?,
    };
    let desc = match q.get("sort").map(String::as_str) {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(ApiError::field("sort", "sort must be asc or desc")),
    };
    let cursor = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            Cursor::decode(c)
                .ok_or_else(|| ApiError::field("cursor", "the cursor is not valid"))?,
        ),
    };
    let mut ordered = positions;
    if desc {
        ordered.reverse();
    }
    // Whether row `x` comes after row `p` in listing order.
    let listed_after = |x: usize, p: usize| if desc { x < p } else { x > p };
    let n = ordered.len();
    let (lo, hi) = match cursor {
        None => (0, limit.min(n)),
        Some(Cursor::After(p)) => {
            let lo = ordered
                .iter()
                .position(|&x| listed_after(x, p))
                .unwrap_or(n);
            (lo, (lo + limit).min(n))
        }
        Some(Cursor::Before(p)) => {
            let hi = ordered
                .iter()
                .position(|&x| !listed_after(p, x))
                .unwrap_or(n);
            (hi.saturating_sub(limit), hi)
        }
    };
    let page = ordered[lo..hi].to_vec();
    let next = (hi < n && hi > lo).then(|| Cursor::After(ordered[hi - 1]).encode());
    let prev = (lo > 0 && lo < n).then(|| Cursor::Before(ordered[lo]).encode());
    Ok((page, next, prev))
}

// ---------------------------------------------------------------- balances

fn balance_json(u: &User, code: &str) -> Option<Value> {
    let b = u.balances.get(code)?;
    let info = KNOWN_CURRENCIES.iter().find(|c| c.code == code);
    Some(json!({
        "id": b.id, "user_id": u.id, "profile_id": u.profile_id, "currency": code,
        "name": info.map_or(code, |i| i.name),
        "type": if info.is_some_and(|i| i.fiat) { "fiat" } else { "crypto" },
        "pending": money(b.pending, code),
        "available": money(b.available, code),
        "savings": money(Decimal::ZERO, code),
        "investments": money(Decimal::ZERO, code),
        "total": money(b.available + b.pending, code),
    }))
}

async fn list_balances(
    State(sb): State<Sandbox>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let uid = caller.require("balances:read")?;
    let now = sb.now();
    let st = sb.settled(now);
    let u = user(&st, uid)?;
    let filter = list_param(&q, "currency")
        .map(|v| v.iter().map(|c| c.to_ascii_uppercase()).collect::<Vec<_>>());
    let data: Vec<Value> = u
        .balances
        .keys()
        .filter(|c| filter.as_ref().is_none_or(|f| f.contains(c)))
        .filter_map(|c| balance_json(u, c))
        .collect();
    Ok(ok_page("Balances retrieved successfully", data, None, None))
}

async fn get_balance(
    State(sb): State<Sandbox>,
    caller: Caller,
    Path(id_or_code): Path<String>,
) -> ApiResult {
    let uid = caller.require("balances:read")?;
    let now = sb.now();
    let st = sb.settled(now);
    let u = user(&st, uid)?;
    let code = u
        .balances
        .iter()
        .find(|(code, b)| b.id == id_or_code || code.eq_ignore_ascii_case(&id_or_code))
        .map(|(code, _)| code.clone())
        .ok_or_else(|| ApiError::not_found("balance"))?;
    let data = balance_json(u, &code).ok_or_else(|| ApiError::not_found("balance"))?;
    Ok(ok(StatusCode::OK, "Balance retrieved successfully", data))
}

// ---------------------------------------------------------------- banks and pairs

/// Busha's own bank codes (not NIBSS codes).
pub const BANKS: &[(&str, &str, &str)] = &[
    ("Access Bank", "000014", "NGN"),
    ("Guaranty Trust Bank", "000013", "NGN"),
    ("United Bank for Africa", "000004", "NGN"),
    ("Zenith Bank", "000015", "NGN"),
    ("First Bank of Nigeria", "000016", "NGN"),
    ("Wema Bank", "000017", "NGN"),
    ("Kuda Microfinance Bank", "090267", "NGN"),
    ("Equity Bank Kenya", "68", "KES"),
];

async fn list_banks(Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let currency = q.get("currency").map(|c| c.to_ascii_uppercase());
    let country = q.get("country").map(|c| c.to_ascii_uppercase());
    let data: Vec<Value> = BANKS
        .iter()
        .filter(|(_, _, c)| currency.as_deref().is_none_or(|f| f == *c))
        .filter(|(_, _, c)| {
            country
                .as_deref()
                .is_none_or(|f| (f == "NG" && *c == "NGN") || (f == "KE" && *c == "KES"))
        })
        .map(|(name, code, currency)| json!({ "name": name, "code": code, "currency": currency }))
        .collect();
    Ok(ok(StatusCode::OK, "Banks retrieved successfully", data))
}

fn currency_name(code: &str) -> &str {
    KNOWN_CURRENCIES
        .iter()
        .find(|c| c.code == code)
        .map_or(code, |c| c.name)
}

async fn list_pairs(
    State(sb): State<Sandbox>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let base = q.get("base").map(|c| c.to_ascii_uppercase());
    let counter = q.get("counter").map(|c| c.to_ascii_uppercase());
    let st = sb.inner.state.lock();
    let data: Vec<Value> = st
        .prices
        .iter()
        .filter(|(_, p)| base.as_deref().is_none_or(|b| b == p.base))
        .filter(|(_, p)| counter.as_deref().is_none_or(|c| c == p.counter))
        .map(|(id, p)| {
            let fiat = KNOWN_CURRENCIES
                .iter()
                .any(|c| c.code == p.counter && c.fiat);
            json!({
                "id": id, "base": p.base, "base_currency_name": currency_name(&p.base),
                "counter": p.counter, "counter_currency_name": currency_name(&p.counter),
                "type": if fiat { "fiat" } else { "stablecoin" },
                "buy_price": money(p.buy, &p.counter), "sell_price": money(p.sell, &p.counter),
                "is_buy_supported": true, "is_sell_supported": true,
            })
        })
        .collect();
    Ok(ok(StatusCode::OK, "Pairs retrieved successfully", data))
}

// ---------------------------------------------------------------- recipients

const LEGACY_VERSION: &str = "2025-06-01";

fn wants_legacy(headers: &HeaderMap) -> bool {
    headers
        .get("x-bu-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == LEGACY_VERSION)
}

fn recipient_json(r: &RecipientRec, legacy: bool) -> Value {
    if legacy || r.legacy {
        let field = |name: &str, display: &str, value: &str| {
            json!({ "name": name, "display_name": display, "value": value,
                    "is_copyable": false, "is_visible": true, "required": true })
        };
        json!({
            "object": "recipient", "id": r.id, "user_id": r.user_id, "profile_id": r.profile_id,
            "currency_id": r.currency, "country_id": r.country_code,
            "type": format!("{}_bank_transfer", r.currency.to_ascii_lowercase()),
            "legal_entity_type": r.legal_entity_type, "owned_by_customer": true, "active": r.active,
            "created_at": ts(r.created_at), "updated_at": ts(r.created_at),
            "fields": [
                field("bank_name", "Bank Name", &r.bank_name),
                field("bank_code", "Bank Code", &r.bank_code),
                field("account_number", "Account Number", &r.account_number),
                field("account_name", "Account Name", &r.account_name),
            ],
        })
    } else {
        json!({
            "object": "recipient", "id": r.id, "profile_id": r.profile_id, "type": r.kind,
            "currency": r.currency, "country_code": r.country_code,
            "bank_name": r.bank_name, "bank_code": r.bank_code,
            "account_number": r.account_number, "account_name": r.account_name,
            "active": r.active, "owned_by_customer": true, "category": "bank",
        })
    }
}

async fn list_recipients(
    State(sb): State<Sandbox>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let uid = caller.require("recipients:read")?;
    let st = sb.inner.state.lock();
    let currency = list_param(&q, "currency");
    let accounts = list_param(&q, "account_number");
    let types = list_param(&q, "type");
    let country = q.get("country").map(|c| c.to_ascii_uppercase());
    let category = q.get("category");
    let matching: Vec<usize> = st
        .recipients
        .iter()
        .filter(|(_, r)| r.user_id == uid && !r.deleted)
        .filter(|(_, r)| {
            currency
                .as_ref()
                .is_none_or(|f| f.iter().any(|c| c.eq_ignore_ascii_case(&r.currency)))
        })
        .filter(|(_, r)| {
            accounts
                .as_ref()
                .is_none_or(|f| f.contains(&r.account_number))
        })
        .filter(|(_, r)| types.as_ref().is_none_or(|f| f.contains(&r.kind)))
        .filter(|(_, r)| country.as_ref().is_none_or(|c| *c == r.country_code))
        .filter(|_| category.is_none_or(|c| c == "bank"))
        .map(|(pos, _)| pos)
        .collect();
    let (page, next, prev) = paginate(matching, &q)?;
    let legacy = wants_legacy(&headers);
    let data = page
        .into_iter()
        .filter_map(|pos| Some(st.recipients.at(pos)).map(|r| recipient_json(r, legacy)))
        .collect();
    Ok(ok_page(
        "Recipients retrieved successfully",
        data,
        next,
        prev,
    ))
}

fn find_recipient<'a>(st: &'a World, uid: &str, id: &str) -> Result<&'a RecipientRec, ApiError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(ApiError::field("id", "id must be a UUID"));
    }
    st.recipients
        .get(id)
        .filter(|r| r.user_id == uid && !r.deleted)
        .ok_or_else(|| ApiError::not_found("recipient"))
}

async fn get_recipient(
    State(sb): State<Sandbox>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let uid = caller.require("recipients:read")?;
    let st = sb.inner.state.lock();
    let r = find_recipient(&st, uid, &id)?;
    Ok(ok(
        StatusCode::OK,
        "Recipient retrieved successfully",
        recipient_json(r, wants_legacy(&headers)),
    ))
}

/// The spec guards DELETE with `recipients:read` (apparently a spec bug); the sandbox
/// follows the spec.
async fn delete_recipient(
    State(sb): State<Sandbox>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let uid = caller.require("recipients:read")?.to_string();
    let now = sb.now();
    let mut st = sb.inner.state.lock();
    find_recipient(&st, &uid, &id)?;
    if let Some(r) = st.recipients.get_mut(&id) {
        r.deleted = true;
    }
    st.record(
        now,
        LedgerEvent::RecipientDeleted {
            user_id: uid,
            recipient_id: id,
        },
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn str_field<'a>(body: &'a Value, name: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ApiError::schema(format!("{name}: expected string"))),
    }
}

fn required<'a>(body: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    str_field(body, name)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::field(name, format!("{name} is required")))
}

/// A recipient request in either shape, before the fields are checked.
struct RecipientInput {
    kind: String,
    currency: String,
    country: String,
    entity: String,
    fields: HashMap<String, String>,
}

fn parse_recipient(body: &Value, legacy: bool) -> Result<RecipientInput, ApiError> {
    let (kind, currency, country, entity, fields) = if legacy {
        let fields = body
            .get("fields")
            .and_then(Value::as_array)
            .ok_or_else(|| ApiError::field("fields", "fields is required"))?
            .iter()
            .filter_map(|f| {
                Some((
                    f.get("name")?.as_str()?.to_string(),
                    f.get("value")?.as_str()?.to_string(),
                ))
            })
            .collect();
        (
            required(body, "type")?.to_string(),
            required(body, "currency_id")?.to_ascii_uppercase(),
            required(body, "country_id")?.to_ascii_uppercase(),
            str_field(body, "legal_entity_type")?
                .unwrap_or("personal")
                .to_string(),
            fields,
        )
    } else {
        let kind = required(body, "type")?.to_string();
        const TYPES: [&str; 9] = [
            "ngn_bank",
            "kes_bank",
            "usd_bank",
            "gbp_bank",
            "mpesa_mobile_money",
            "mtn_mobile_money",
            "crypto",
            "paybill",
            "till",
        ];
        if !TYPES.contains(&kind.as_str()) {
            return Err(ApiError::schema(format!(
                "type: value {kind} is not one of the allowed values"
            )));
        }
        if !kind.ends_with("_bank") {
            return Err(ApiError::bad_request(format!(
                "recipient type {kind} is not supported by the sandbox (bank recipients only)"
            )));
        }
        let fields = ["bank_name", "bank_code", "account_number", "account_name"]
            .iter()
            .filter_map(|n| Some((n.to_string(), str_field(body, n).ok()??.to_string())))
            .collect();
        let default_currency = kind.trim_end_matches("_bank").to_ascii_uppercase();
        (
            kind,
            str_field(body, "currency")?
                .unwrap_or(&default_currency)
                .to_ascii_uppercase(),
            str_field(body, "country_code")?
                .unwrap_or("NG")
                .to_ascii_uppercase(),
            str_field(body, "entity_type")?
                .unwrap_or("personal")
                .to_string(),
            fields,
        )
    };
    Ok(RecipientInput {
        kind,
        currency,
        country,
        entity,
        fields,
    })
}

async fn create_recipient(
    State(sb): State<Sandbox>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<axum::Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let uid = caller.require("recipients:write")?.to_string();
    let axum::Json(body) = body.map_err(|e| ApiError::schema(e.body_text()))?;
    let legacy = body.get("fields").is_some() || wants_legacy(&headers);
    let RecipientInput {
        kind,
        currency,
        country,
        entity,
        fields,
    } = parse_recipient(&body, legacy)?;
    let get = |name: &str| {
        fields
            .get(name)
            .filter(|v| !v.trim().is_empty())
            .cloned()
            .ok_or_else(|| ApiError::field(name, format!("{name} is required for {kind}")))
    };
    let (bank_name, account_number, account_name) = (
        get("bank_name")?,
        get("account_number")?,
        get("account_name")?,
    );
    let bank_code = fields.get("bank_code").cloned().unwrap_or_default();
    if currency == "NGN" {
        if !BANKS
            .iter()
            .any(|(_, code, c)| *code == bank_code && *c == "NGN")
        {
            return Err(ApiError::field(
                "bank_code",
                format!("bank_code {bank_code:?} is not a Busha bank code; see GET /v1/banks"),
            ));
        }
        if account_number.len() != 10 || !account_number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::field(
                "account_number",
                "a NUBAN account number has 10 digits",
            ));
        }
    }
    let now = sb.now();
    let mut st = sb.inner.state.lock();
    let profile_id = user(&st, &uid)?.profile_id.clone();
    let rec = RecipientRec {
        id: match st.behaviour.recipient_ids {
            RecipientIds::Uuid => uuid::Uuid::new_v4().to_string(),
            RecipientIds::Hex24 => uuid::Uuid::new_v4().simple().to_string()[..24].to_string(),
        },
        user_id: uid.clone(),
        profile_id,
        kind: if legacy {
            format!("{}_bank", currency.to_ascii_lowercase())
        } else {
            kind
        },
        currency,
        country_code: country,
        bank_name,
        bank_code,
        account_number: account_number.clone(),
        account_name,
        legal_entity_type: entity,
        active: true,
        legacy,
        deleted: false,
        created_at: now,
    };
    let data = recipient_json(&rec, legacy);
    st.record(
        now,
        LedgerEvent::RecipientCreated {
            user_id: uid,
            recipient_id: rec.id.clone(),
            account_number,
        },
    );
    st.recipients.insert(rec.id.clone(), rec);
    Ok(ok(
        StatusCode::CREATED,
        "Recipient created successfully",
        data,
    ))
}

async fn resolve_bank_account(
    State(sb): State<Sandbox>,
    caller: Caller,
    body: Result<axum::Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let uid = caller.require("recipients:write")?.to_string();
    let axum::Json(body) = body.map_err(|e| ApiError::schema(e.body_text()))?;
    let currency = required(&body, "currency_id")?.to_ascii_uppercase();
    let country = required(&body, "country_id")?.to_ascii_uppercase();
    let channel = required(&body, "channel")?.to_string();
    if !["mobile_money", "bank_transfer", "pay_bill", "till"].contains(&channel.as_str()) {
        return Err(ApiError::schema(format!(
            "channel: value {channel} is not one of the allowed values"
        )));
    }
    let account_number = required(&body, "account_number")?.to_string();
    let bank_code = str_field(&body, "bank_code")?
        .unwrap_or_default()
        .to_string();
    let now = sb.now();
    let mut st = sb.inner.state.lock();
    let name = st
        .bank_accounts
        .get(&(bank_code.clone(), account_number.clone()))
        .cloned();
    st.record(
        now,
        LedgerEvent::NameEnquiry {
            user_id: uid,
            bank_code: bank_code.clone(),
            account_number: account_number.clone(),
            resolved: name.is_some(),
        },
    );
    let account_name = name.ok_or_else(|| {
        ApiError::bad_request(
            "could not resolve the account: no account with that number at that bank",
        )
    })?;
    let bank_name = BANKS
        .iter()
        .find(|(_, c, _)| *c == bank_code)
        .map_or("", |b| b.0);
    Ok(ok(
        StatusCode::CREATED,
        "Account resolved successfully",
        json!({
            "country_id": country, "currency_id": currency, "channel": channel,
            "bank_code": bank_code, "account_number": account_number,
            "account_name": account_name, "bank_name": bank_name,
        }),
    ))
}

// ---------------------------------------------------------------- quotes

fn quote_json(st: &World, q: &QuoteRec) -> Value {
    let rate_explained = if q.side == "sell" {
        format!(
            "1 {} = {} {}",
            q.source_currency,
            dec(q.rate),
            q.target_currency
        )
    } else {
        format!(
            "1 {} = {} {}",
            q.target_currency,
            dec(q.rate),
            q.source_currency
        )
    };
    let fees: Vec<Value> = q
        .fees
        .iter()
        .map(|f| {
            json!({
                "name": f.name, "type": "FIXED",
                "amount": money(f.amount, &f.currency),
                "converted_amount": money(f.converted_amount, &f.converted_currency),
            })
        })
        .collect();
    let mut v = json!({
        "id": q.id, "profile_id": q.profile_id,
        "source_currency": q.source_currency, "target_currency": q.target_currency,
        "source_amount": dec(q.source_amount), "target_amount": dec(q.target_amount),
        "rate": {
            "product": q.product, "rate": dec(q.rate), "rate_explained": rate_explained,
            "side": q.side, "type": "FIXED",
            "source_currency": q.source_currency, "target_currency": q.target_currency,
        },
        "fees": fees,
        "pay_in": { "type": "balance" },
        "pay_out": pay_out_json(st, q.pay_out.as_ref()),
        "reference": q.reference, "status": q.status,
        "expires_at": ts(q.expires_at), "created_at": ts(q.created_at), "updated_at": ts(q.updated_at),
    });
    if q.two_step {
        v["two_step"] = json!({
            "type": "authenticator", "message": "Enter your 2FA code to continue", "resend_allowed": false,
        });
    }
    v
}

fn pay_out_json(st: &World, p: Option<&PayOutRec>) -> Value {
    match p {
        Some(PayOutRec {
            kind,
            recipient_id: Some(rid),
        }) => {
            let mut v = json!({ "type": kind, "recipient_id": rid });
            if let Some(r) = st.recipients.get(rid) {
                v["recipient_details"] = json!({
                    "account_name": r.account_name, "bank_name": r.bank_name,
                    "account_number": r.account_number, "bank_code": r.bank_code,
                    "country_code": r.country_code, "currency": r.currency,
                });
            }
            v
        }
        Some(PayOutRec {
            kind,
            recipient_id: None,
        }) => json!({ "type": kind }),
        None => json!({ "type": "balance" }),
    }
}

/// The rate for `source → target`: (price, side, product). `sell` means the source is
/// the pair's base (target = source × price); `buy` means the target is the base
/// (target = source ÷ price).
fn pricing(st: &World, source: &str, target: &str) -> Option<(Decimal, &'static str, String)> {
    if source == target {
        return Some((Decimal::ONE, "sell", format!("{source}{target}")));
    }
    if let Some(p) = st.prices.get(&format!("{source}{target}")) {
        return Some((p.sell, "sell", format!("{source}{target}")));
    }
    st.prices
        .get(&format!("{target}{source}"))
        .map(|p| (p.buy, "buy", format!("{target}{source}")))
}

fn convert(amount: Decimal, price: Decimal, side: &str) -> Decimal {
    if side == "sell" {
        amount * price
    } else {
        amount / price
    }
}

fn invert(amount: Decimal, price: Decimal, side: &str) -> Decimal {
    if side == "sell" {
        amount / price
    } else {
        amount * price
    }
}

fn amount_field(
    body: &Value,
    name: &str,
    currency: &Currency,
) -> Result<Option<Decimal>, ApiError> {
    let Some(raw) = str_field(body, name)? else {
        return Ok(None);
    };
    let amount: Decimal = raw
        .trim()
        .parse()
        .map_err(|_| ApiError::field(name, format!("{raw:?} is not a decimal")))?;
    if amount <= Decimal::ZERO {
        return Err(ApiError::field(name, format!("{name} must be positive")));
    }
    if crate::money::check_precision(amount, currency).is_err() {
        return Err(ApiError::field(
            name,
            format!(
                "{currency} amounts have at most {} decimal places",
                currency.precision()
            ),
        ));
    }
    Ok(Some(amount))
}

fn currency_field(body: &Value, name: &str) -> Result<Currency, ApiError> {
    let raw = required(body, name)?;
    let c = Currency::new(raw).map_err(|e| ApiError::field(name, e.to_string()))?;
    if !KNOWN_CURRENCIES.iter().any(|k| k.code == c.as_str()) {
        return Err(ApiError::bad_request(format!("{c} is not supported")));
    }
    Ok(c)
}

async fn create_quote(
    State(sb): State<Sandbox>,
    caller: Caller,
    body: Result<axum::Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let uid = caller.require("quotes:write")?.to_string();
    let axum::Json(body) = body.map_err(|e| ApiError::schema(e.body_text()))?;
    let source = currency_field(&body, "source_currency")?;
    let target = currency_field(&body, "target_currency")?;
    let source_amount = amount_field(&body, "source_amount", &source)?;
    let target_amount = amount_field(&body, "target_amount", &target)?;
    if source_amount.is_some() == target_amount.is_some() {
        let reason = "One of target and source amount must be set";
        return Err(ApiError::field(
            if source_amount.is_some() {
                "target_amount"
            } else {
                "source_amount"
            },
            reason,
        ));
    }
    let reference = str_field(&body, "reference")?.map(str::to_string);
    if let Some(r) = &reference {
        let n = r.chars().count();
        if n < 12 {
            return Err(ApiError::schema(format!("minLength: got {n}, want 12")));
        }
        if n > 64 {
            return Err(ApiError::schema(format!("maxLength: got {n}, want 64")));
        }
    }
    let pay_out = match body.get("pay_out") {
        None | Some(Value::Null) => None,
        Some(p) => {
            let kind = required(p, "type")?.to_string();
            match kind.as_str() {
                "bank_transfer" => Some(PayOutRec {
                    kind,
                    recipient_id: Some(required(p, "recipient_id")?.to_string()),
                }),
                "balance" => Some(PayOutRec {
                    kind,
                    recipient_id: None,
                }),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "pay_out type {other} is not supported by the sandbox"
                    )));
                }
            }
        }
    };
    if let Some(p) = body.get("pay_in").filter(|p| !p.is_null()) {
        if required(p, "type")? != "balance" {
            return Err(ApiError::bad_request(
                "the sandbox only supports pay_in of type balance",
            ));
        }
    }

    let now = sb.now();
    // Refunds due by now must be spendable before the balance check below.
    let mut st = sb.settled(now);
    let behaviour = st.behaviour.clone();
    if let Some(r) = &reference {
        let existing = st
            .quotes
            .iter()
            .rev()
            .find(|(_, q)| q.user_id == uid && &q.reference == r)
            .map(|(_, q)| q.id.clone());
        if let Some(id) = existing {
            match behaviour.quote_reference_reuse {
                ReferenceReuse::Allow => {}
                ReferenceReuse::Conflict => {
                    return Err(ApiError::conflict(format!(
                        "a quote with reference {r} already exists"
                    )));
                }
                ReferenceReuse::ReturnExisting => {
                    let q = st
                        .quotes
                        .get_mut(&id)
                        .ok_or_else(|| ApiError::not_found("quote"))?;
                    q.refresh_status(now);
                    let q = q.clone();
                    return Ok(ok(
                        StatusCode::CREATED,
                        "Quote created successfully",
                        quote_json(&st, &q),
                    ));
                }
            }
        }
    }
    if let Some(PayOutRec {
        recipient_id: Some(rid),
        ..
    }) = &pay_out
    {
        let r = st
            .recipients
            .get(rid)
            .filter(|r| r.user_id == uid && !r.deleted)
            .ok_or_else(|| ApiError::bad_request(format!("recipient {rid} not found")))?;
        if !r.active {
            return Err(ApiError::bad_request("the recipient is not active"));
        }
        if r.currency != target.as_str() {
            return Err(ApiError::bad_request(format!(
                "the recipient receives {}, not {}",
                r.currency, target
            )));
        }
    }
    let (price, side, product) =
        pricing(&st, source.as_str(), target.as_str()).ok_or_else(|| {
            ApiError::bad_request(format!("the pair {source}/{target} is not supported"))
        })?;
    let fee = pay_out
        .as_ref()
        .filter(|p| p.kind == "bank_transfer")
        .and_then(|_| sb.inner.config.payout_fees.get(target.as_str()).copied())
        .unwrap_or(Decimal::ZERO);
    let (sp, tp) = (source.precision(), target.precision());
    let (source_amount, target_amount) = match (source_amount, target_amount) {
        (Some(s), _) => {
            let t = (convert(s, price, side) - fee)
                .round_dp_with_strategy(tp, RoundingStrategy::ToZero);
            (s, t)
        }
        (_, Some(t)) => {
            let s = invert(t + fee, price, side)
                .round_dp_with_strategy(sp, RoundingStrategy::AwayFromZero);
            (s, t)
        }
        _ => unreachable!("exactly one amount was checked above"),
    };
    if target_amount <= Decimal::ZERO {
        return Err(ApiError::bad_request("the amount does not cover the fees"));
    }
    let available = user(&st, &uid)?
        .balances
        .get(source.as_str())
        .map_or(Decimal::ZERO, |b| b.available);
    if source_amount > available {
        return Err(ApiError::bad_request(format!(
            "insufficient balance: {} {source} available, {} {source} required",
            dec(available),
            dec(source_amount)
        )));
    }
    let fees = if fee > Decimal::ZERO {
        vec![FeeRec {
            name: "processing_fee".into(),
            amount: fee,
            currency: target.to_string(),
            converted_amount: invert(fee, price, side)
                .round_dp_with_strategy(sp, RoundingStrategy::AwayFromZero),
            converted_currency: source.to_string(),
        }]
    } else {
        Vec::new()
    };
    let id = format!("QUO_{}", nanoid::nanoid!(21, &ALPHANUMERIC));
    let q = QuoteRec {
        id: id.clone(),
        user_id: uid.clone(),
        profile_id: user(&st, &uid)?.profile_id.clone(),
        source_currency: source.to_string(),
        target_currency: target.to_string(),
        source_amount,
        target_amount,
        rate: price,
        side,
        product,
        fees,
        pay_out,
        reference: reference.unwrap_or_else(|| id.clone()),
        status: "pending",
        expires_at: now + sb.inner.config.quote_ttl,
        created_at: now,
        updated_at: now,
        two_step: behaviour.two_step_from.is_some_and(|t| source_amount >= t),
    };
    let data = quote_json(&st, &q);
    st.record(
        now,
        LedgerEvent::QuoteCreated {
            user_id: uid,
            quote_id: id.clone(),
            reference: q.reference.clone(),
            source_currency: q.source_currency.clone(),
            source_amount,
            target_currency: q.target_currency.clone(),
            target_amount,
            rate: price,
            expires_at: q.expires_at,
        },
    );
    st.quotes.insert(id, q);
    Ok(ok(StatusCode::CREATED, "Quote created successfully", data))
}

async fn list_quotes(
    State(sb): State<Sandbox>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let uid = caller.require("quotes:read")?;
    let now = sb.now();
    let mut st = sb.inner.state.lock();
    let mine: Vec<usize> = st
        .quotes
        .iter()
        .filter(|(_, x)| x.user_id == uid)
        .map(|(pos, _)| pos)
        .collect();
    let (page, next, prev) = paginate(mine, &q)?;
    for &pos in &page {
        st.quotes.at_mut(pos).refresh_status(now);
    }
    let data = page
        .into_iter()
        .filter_map(|pos| Some(st.quotes.at(pos)).map(|x| quote_json(&st, x)))
        .collect();
    Ok(ok_page("Quotes retrieved successfully", data, next, prev))
}

async fn get_quote(State(sb): State<Sandbox>, caller: Caller, Path(id): Path<String>) -> ApiResult {
    let uid = caller.require("quotes:read")?;
    let now = sb.now();
    let mut st = sb.inner.state.lock();
    let q = st
        .quotes
        .get_mut(&id)
        .filter(|q| q.user_id == uid)
        .ok_or_else(|| ApiError::not_found("quote"))?;
    q.refresh_status(now);
    let q = q.clone();
    Ok(ok(
        StatusCode::OK,
        "Quote retrieved successfully",
        quote_json(&st, &q),
    ))
}

// ---------------------------------------------------------------- transfers

/// The statuses a transfer walks through (`busha-api.md` §2.7).
fn status_path(q: &QuoteRec, outcome: TransferOutcome) -> Vec<&'static str> {
    let conversion = q.source_currency != q.target_currency;
    let external = q
        .pay_out
        .as_ref()
        .is_some_and(|p| p.kind == "bank_transfer");
    let mut path = vec!["pending", "processing"];
    if outcome == TransferOutcome::Cancelled {
        return vec!["pending", "cancelled"];
    }
    if outcome == TransferOutcome::Stuck {
        return path;
    }
    if conversion || !external {
        path.push("funds_converted");
    }
    if external {
        path.push("outgoing_payment_sent");
    }
    match outcome {
        TransferOutcome::Delivered if external => path.push("funds_delivered"),
        TransferOutcome::FundsNotDelivered => path.push("funds_not_delivered"),
        TransferOutcome::FundsRefunded => path.extend(["funds_not_delivered", "funds_refunded"]),
        _ => {}
    }
    path
}

fn transfer_json(st: &World, t: &TransferRec) -> Value {
    let q = &t.quote;
    let conversion = q.source_currency != q.target_currency;
    let external = q
        .pay_out
        .as_ref()
        .is_some_and(|p| p.kind == "bank_transfer");
    let mut stages = Vec::new();
    if conversion {
        stages.push("conversion");
    }
    if external {
        stages.push("withdrawal");
    }
    let source_fiat = KNOWN_CURRENCIES
        .iter()
        .any(|c| c.code == q.source_currency && c.fiat);
    let (category, description, sub) = match (conversion, external) {
        (true, true) if !source_fiat => (
            "sell",
            format!("Sold {}", q.source_currency),
            format!("For {}", q.target_currency),
        ),
        (true, true) => (
            "exchange",
            format!("Exchanged {}", q.source_currency),
            format!("For {}", q.target_currency),
        ),
        (true, false) => (
            "conversion",
            format!("Converted {}", q.source_currency),
            format!("To {}", q.target_currency),
        ),
        _ => (
            "withdrawal",
            format!("Sent {}", q.target_currency),
            "To bank account".to_string(),
        ),
    };
    let title = |s: &str| match s {
        "pending" => "Transfer started",
        "processing" => "Processing",
        "funds_converted" => "Funds converted",
        "outgoing_payment_sent" => "Payment sent",
        "funds_delivered" => "Funds delivered",
        "cancelled" => "Transfer cancelled",
        "funds_not_delivered" => "Funds not delivered",
        "funds_refunded" => "Funds refunded",
        _ => "Update",
    };
    let timeline_status = |s: &'static str| match s {
        "cancelled" | "funds_not_delivered" | "funds_refunded" => "failed",
        other => other,
    };
    let events: Vec<Value> = t
        .path
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let reached = t.events.get(i);
            let mut e = json!({
                "step": i + 1, "done": reached.is_some(), "status": timeline_status(s),
                "title": title(s), "description": title(s),
            });
            if let Some((_, at)) = reached {
                e["timestamp"] = json!(ts(*at));
            }
            e
        })
        .collect();
    let updated = t.events.last().map_or(t.created_at, |(_, at)| *at);
    let rate = quote_json(st, q)["rate"].clone();
    let fees = quote_json(st, q)["fees"].clone();
    json!({
        "id": t.id, "quote_id": t.quote_id, "profile_id": t.profile_id,
        "stages": stages, "category": category, "description": description, "sub_description": sub,
        "source_currency": q.source_currency, "target_currency": q.target_currency,
        "source_amount": dec(q.source_amount), "target_amount": dec(q.target_amount),
        "trade": q.side, "rate": rate, "fees": fees,
        "pay_in": { "type": "balance" }, "pay_out": pay_out_json(st, q.pay_out.as_ref()),
        "status": t.status(),
        "timeline": {
            "total_steps": t.path.len(), "current_step": t.step + 1,
            "transfer_status": t.status(), "events": events,
        },
        "created_at": ts(t.created_at), "updated_at": ts(updated),
    })
}

async fn create_transfer(
    State(sb): State<Sandbox>,
    caller: Caller,
    body: Result<axum::Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    let uid = caller.require("transfers:write")?.to_string();
    let axum::Json(body) = body.map_err(|e| ApiError::schema(e.body_text()))?;
    let quote_id = required(&body, "quote_id")?.to_string();
    let now = sb.now();
    let step = sb.inner.config.transfer_step;
    // Refunds due by now must be spendable before the balance check below.
    let mut st = sb.settled(now);
    let behaviour = st.behaviour.clone();
    let mut quote = {
        let q = st
            .quotes
            .get_mut(&quote_id)
            .filter(|q| q.user_id == uid)
            .ok_or_else(|| ApiError::not_found("quote"))?;
        q.refresh_status(now);
        q.clone()
    };
    if quote.two_step {
        return Err(ApiError::bad_request(
            "this quote requires two-step verification",
        ));
    }
    let duplicate = st
        .transfers_by_quote
        .get(&quote_id)
        .is_some_and(|p| !p.is_empty());
    if duplicate && behaviour.duplicate_transfers == DuplicateTransfers::Refuse {
        return Err(ApiError::bad_request(
            "the quote has already been used for a transfer",
        ));
    }
    let mut repriced = false;
    if quote.status == "expired" {
        match behaviour.expired_quote_transfers {
            ExpiredQuoteTransfers::Refuse => {
                return Err(ApiError::bad_request("the quote has expired"));
            }
            ExpiredQuoteTransfers::Reprice => {
                let (price, side, _) = pricing(&st, &quote.source_currency, &quote.target_currency)
                    .ok_or_else(|| ApiError::bad_request("the pair is no longer supported"))?;
                let fee: Decimal = quote.fees.iter().map(|f| f.amount).sum();
                let tp = Currency::new(&quote.target_currency).map_or(2, |c| c.precision());
                quote.rate = price;
                quote.target_amount = (convert(quote.source_amount, price, side) - fee)
                    .round_dp_with_strategy(tp, RoundingStrategy::ToZero);
                repriced = true;
            }
        }
    }
    {
        let balance = st
            .users
            .get_mut(&uid)
            .and_then(|u| u.balances.get_mut(&quote.source_currency))
            .filter(|b| b.available >= quote.source_amount)
            .ok_or_else(|| ApiError::bad_request("insufficient balance"))?;
        balance.available -= quote.source_amount;
    }
    if let Some(q) = st.quotes.get_mut(&quote_id) {
        q.status = "accepted";
        q.updated_at = now;
    }
    quote.status = "accepted";
    let outcome = st
        .outcomes
        .pop_front()
        .unwrap_or(TransferOutcome::Delivered);
    let id = format!("TRF_{}", nanoid::nanoid!(12, &ALPHANUMERIC));
    let rec = TransferRec {
        id: id.clone(),
        user_id: uid.clone(),
        profile_id: quote.profile_id.clone(),
        quote_id: quote_id.clone(),
        path: status_path(&quote, outcome),
        step: 0,
        events: vec![("pending", now)],
        created_at: now,
        settled_funds_returned: false,
        quote,
    };
    st.record(
        now,
        LedgerEvent::TransferCreated {
            user_id: uid,
            transfer_id: id.clone(),
            quote_id,
            source_currency: rec.quote.source_currency.clone(),
            source_amount: rec.quote.source_amount,
            target_currency: rec.quote.target_currency.clone(),
            target_amount: rec.quote.target_amount,
            quote_expires_at: rec.quote.expires_at,
            repriced,
            duplicate,
        },
    );
    let quote_key = rec.quote_id.clone();
    let pos = st.transfers.insert(id.clone(), rec);
    st.transfers_by_quote
        .entry(quote_key)
        .or_default()
        .push(pos);
    st.in_flight.push(pos);
    st.advance_transfers(now, step);
    let data = st
        .transfers
        .get(&id)
        .map(|t| transfer_json(&st, t))
        .unwrap_or(Value::Null);
    Ok(ok(
        StatusCode::CREATED,
        "Created transfer successfully",
        data,
    ))
}

async fn list_transfers(
    State(sb): State<Sandbox>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let uid = caller.require("transfers:read")?;
    let now = sb.now();
    let st = sb.settled(now);
    let statuses = list_param(&q, "status");
    let upper = |k: &str| q.get(k).map(|c| c.to_ascii_uppercase());
    let (source, target) = (upper("source_currency"), upper("target_currency"));
    // A quote id narrows the scan to that quote's transfers.
    let candidates: Box<dyn Iterator<Item = (usize, &TransferRec)>> = match q.get("quote_id") {
        Some(quote) => Box::new(
            st.transfers_by_quote
                .get(quote)
                .into_iter()
                .flatten()
                .map(|&pos| (pos, st.transfers.at(pos))),
        ),
        None => Box::new(st.transfers.iter()),
    };
    let matching: Vec<usize> = candidates
        .filter(|(_, t)| t.user_id == uid)
        .filter(|(_, t)| q.get("id").is_none_or(|id| *id == t.id))
        .filter(|(_, t)| q.get("quote_id").is_none_or(|id| *id == t.quote_id))
        .filter(|(_, t)| {
            statuses
                .as_ref()
                .is_none_or(|s| s.iter().any(|x| x == t.status()))
        })
        .filter(|(_, t)| {
            source
                .as_ref()
                .is_none_or(|c| *c == t.quote.source_currency)
        })
        .filter(|(_, t)| {
            target
                .as_ref()
                .is_none_or(|c| *c == t.quote.target_currency)
        })
        .map(|(pos, _)| pos)
        .collect();
    let (page, next, prev) = paginate(matching, &q)?;
    let data = page
        .into_iter()
        .filter_map(|pos| Some(st.transfers.at(pos)).map(|t| transfer_json(&st, t)))
        .collect();
    Ok(ok_page(
        "Transfers retrieved successfully",
        data,
        next,
        prev,
    ))
}

async fn get_transfer(
    State(sb): State<Sandbox>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let uid = caller.require("transfers:read")?;
    let now = sb.now();
    let st = sb.settled(now);
    let t = st
        .transfers
        .get(&id)
        .filter(|t| t.user_id == uid)
        .ok_or_else(|| ApiError::not_found("transfer"))?;
    Ok(ok(
        StatusCode::OK,
        "Transfer retrieved successfully",
        transfer_json(&st, t),
    ))
}
