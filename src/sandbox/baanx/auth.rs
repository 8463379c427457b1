//! Baanx login (`/v1/auth/login`, `/login/otp`, `/logout`) and who a bearer token
//! belongs to. Login answers 200 and lets the body say how far it got
//! (`isOtpRequired`, `phase`, `verificationState`), 401 for bad credentials, and 429
//! with `Retry-After` after repeated failures (reference §2.8, as seen live).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::BaanxSandbox;
use super::config::{LOGIN_TOKEN_SECS, OTP_SECS, Region};
use super::edge::{Tenant, bearer};
use super::reply::{Message, success};
use super::state::{BaanxEvent, LoginToken, RegionStore, User};

/// Who a request acts for.
pub struct Caller {
    pub user_id: String,
    /// The OAuth family, when the bearer is an OAuth access token (not a login token).
    pub family_id: Option<String>,
}

/// Resolves the bearer against the tenant's region: an OAuth access token of this
/// client, or a login token. A token of the other region is unknown here: 401.
pub fn authenticate(
    sb: &BaanxSandbox,
    tenant: &Tenant,
    headers: &HeaderMap,
) -> Result<Caller, Message> {
    let token = bearer(headers).ok_or_else(Message::not_authenticated)?;
    let now = sb.now();
    let mut w = sb.inner.world.lock();
    let store = w.region(tenant.region);
    if let Some(a) = store.access_tokens.get(token) {
        let family = store.families.get(&a.family_id);
        return match family {
            Some(f)
                if a.expires_at > now
                    && f.revoked.is_none()
                    && f.client_key == tenant.client.client_key =>
            {
                Ok(Caller {
                    user_id: f.user_id.clone(),
                    family_id: Some(a.family_id.clone()),
                })
            }
            _ => Err(Message::not_authenticated()),
        };
    }
    login_user(store, token, now).map(|user_id| Caller {
        user_id,
        family_id: None,
    })
}

/// The user of a live login token.
pub fn login_user(store: &RegionStore, token: &str, now: DateTime<Utc>) -> Result<String, Message> {
    match store.login_tokens.get(token) {
        Some(t) if !t.revoked && t.expires_at > now => Ok(t.user_id.clone()),
        _ => Err(Message::not_authenticated()),
    }
}

fn str_of<'a>(body: &'a Value, key: &str) -> Result<&'a str, Message> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Message::new(422, format!("{key} is required")))
}

fn mask_phone(phone: &str) -> String {
    let tail: String = phone
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("*******{tail}")
}

/// Refuses while `email` has too many recent failures; the wait in seconds otherwise.
fn locked_out(store: &mut RegionStore, email: &str, now: DateTime<Utc>, limit: u32) -> Option<u64> {
    let window = Duration::minutes(15);
    let fails = store
        .failures
        .entry(email.to_ascii_lowercase())
        .or_default();
    while fails.front().is_some_and(|t| *t <= now - window) {
        fails.pop_front();
    }
    if limit > 0 && fails.len() >= limit as usize {
        let oldest = fails.front().copied().unwrap_or(now);
        return Some(crate::sandbox::core::rate::retry_after_secs(
            oldest + window - now,
        ));
    }
    None
}

fn fail(sb: &BaanxSandbox, region: Region, email: &str, reason: &str, message: &str) -> Message {
    let now = sb.now();
    let mut w = sb.inner.world.lock();
    w.region(region)
        .failures
        .entry(email.to_ascii_lowercase())
        .or_default()
        .push_back(now);
    w.record(
        now,
        BaanxEvent::LoginFailed {
            email: email.to_string(),
            reason: reason.to_string(),
        },
    );
    Message::new(401, message)
}

/// What a login found out about the user, before any token is issued.
pub enum Checked {
    /// Password (and OTP, if the user has one and it was given) accepted.
    Complete(String),
    OtpRequired(String),
}

/// Checks a password and, when given, an OTP code. Shared by the API and the hosted UI.
pub fn check_login(
    sb: &BaanxSandbox,
    region: Region,
    email: &str,
    password: &str,
    otp: Option<&str>,
) -> Result<Checked, Message> {
    let now = sb.now();
    let user = {
        let mut w = sb.inner.world.lock();
        let limit = w.behaviour.login_failures_before_lockout;
        let header = w.behaviour.retry_after_header;
        let store = w.region(region);
        if let Some(wait) = locked_out(store, email, now, limit) {
            return Err(Message::too_many(header.then_some(wait)));
        }
        store.user_by_email(email).map(|u| {
            (
                u.id.clone(),
                u.password == password,
                u.otp.clone(),
                u.otp_sent_at,
            )
        })
    };
    let Some((user_id, password_ok, user_otp, sent_at)) = user else {
        return Err(fail(
            sb,
            region,
            email,
            "unknown email",
            "Invalid credentials",
        ));
    };
    if !password_ok {
        return Err(fail(
            sb,
            region,
            email,
            "wrong password",
            "Invalid credentials",
        ));
    }
    let Some(expected) = user_otp else {
        return Ok(Checked::Complete(user_id));
    };
    let Some(given) = otp else {
        return Ok(Checked::OtpRequired(user_id));
    };
    let fresh = sent_at.is_some_and(|t| now - t <= Duration::seconds(OTP_SECS));
    if !fresh {
        return Err(fail(
            sb,
            region,
            email,
            "otp not sent or expired",
            "OTP code expired or not requested",
        ));
    }
    if given != expected {
        return Err(fail(sb, region, email, "wrong otp", "Invalid OTP code"));
    }
    Ok(Checked::Complete(user_id))
}

/// Issues a 6-hour login token (`US_` prefixed in the US region, as in the docs).
pub fn issue_login_token(sb: &BaanxSandbox, region: Region, user_id: &str) -> String {
    let now = sb.now();
    let raw = uuid::Uuid::new_v4().to_string();
    let token = match region {
        Region::Us => format!("US_{raw}"),
        Region::International => raw,
    };
    let mut w = sb.inner.world.lock();
    w.region(region).login_tokens.insert(
        token.clone(),
        LoginToken {
            user_id: user_id.to_string(),
            expires_at: now + Duration::seconds(LOGIN_TOKEN_SECS),
            revoked: false,
        },
    );
    w.record(
        now,
        BaanxEvent::LoginSucceeded {
            user_id: user_id.to_string(),
        },
    );
    token
}

fn login_body(user: &User, token: Option<&str>, otp_required: bool, linked: bool) -> Value {
    json!({
        "accessToken": token,
        "userId": user.id,
        "isOtpRequired": otp_required,
        "phoneNumber": mask_phone(&user.phone_number),
        "phase": user.phase,
        "verificationState": user.verification_state,
        "isLinked": linked,
    })
}

pub async fn login(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    Json(body): Json<Value>,
) -> Result<Response, Message> {
    let email = str_of(&body, "email")?;
    let password = str_of(&body, "password")?;
    let otp = body.get("otpCode").and_then(Value::as_str);
    let checked = check_login(&sb, tenant.region, email, password, otp)?;
    let (user_id, token) = match checked {
        Checked::OtpRequired(id) => {
            let now = sb.now();
            sb.inner.world.lock().record(
                now,
                BaanxEvent::LoginOtpRequired {
                    user_id: id.clone(),
                },
            );
            (id, None)
        }
        Checked::Complete(id) => {
            let token = issue_login_token(&sb, tenant.region, &id);
            (id, Some(token))
        }
    };
    let mut w = sb.inner.world.lock();
    let store = w.region(tenant.region);
    let linked = !store
        .live_families(&tenant.client.client_key, &user_id)
        .is_empty();
    let user = store
        .users
        .get(&user_id)
        .ok_or_else(Message::not_authenticated)?;
    let body = login_body(user, token.as_deref(), token.is_none(), linked);
    Ok(Json(body).into_response())
}

pub async fn login_otp(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    Json(body): Json<Value>,
) -> Result<Response, Message> {
    let user_id = str_of(&body, "userId")?;
    let now = sb.now();
    let mut w = sb.inner.world.lock();
    let user = w
        .region(tenant.region)
        .users
        .get_mut(user_id)
        .ok_or_else(|| Message::new(404, "User not found"))?;
    if user.otp.is_none() {
        return Err(Message::bad_request("OTP is not enabled for this user"));
    }
    user.otp_sent_at = Some(now);
    w.record(
        now,
        BaanxEvent::OtpSent {
            user_id: user_id.to_string(),
        },
    );
    Ok(success())
}

pub async fn logout(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
) -> Result<Response, Message> {
    let token = bearer(&headers).ok_or_else(Message::not_authenticated)?;
    let now = sb.now();
    let mut w = sb.inner.world.lock();
    let store = w.region(tenant.region);
    let user_id = login_user(store, token, now)?;
    if let Some(t) = store.login_tokens.get_mut(token) {
        t.revoked = true;
    }
    w.record(now, BaanxEvent::LoggedOut { user_id });
    Ok(success())
}

pub async fn get_user(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
) -> Result<Response, Message> {
    let caller = authenticate(&sb, &tenant, &headers)?;
    let mut w = sb.inner.world.lock();
    let u = w
        .region(tenant.region)
        .users
        .get(&caller.user_id)
        .ok_or_else(Message::not_authenticated)?;
    Ok(Json(json!({
        "id": u.id,
        "firstName": u.first_name,
        "lastName": u.last_name,
        "dateOfBirth": "1990-01-01",
        "email": u.email,
        "verificationState": u.verification_state,
        "phoneNumber": u.phone_number,
        "phoneCountryCode": "+44",
        "addressLine1": "1 Sandbox Street",
        "addressLine2": null,
        "city": "London",
        "zip": "EC1A 1AA",
        "countryOfResidence": match tenant.region { Region::Us => "US", Region::International => "GB" },
        "countryOfNationality": "GB",
        "usState": null,
        "ssn": null,
        "createdAt": u.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }))
    .into_response())
}
