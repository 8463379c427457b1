//! Baanx OAuth 2.0 with PKCE (reference §2): initiate (302 to the hosted UI, or JSON
//! `{token, url}` with `mode=api`), authorize (login bearer + session token ⇒ code),
//! the JSON token endpoint for both grants, and revocation of every token of a
//! (client, user).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::BaanxSandbox;
use super::auth::{authenticate, login_user};
use super::config::{
    CODE_SECS, RefreshLifetime, RefreshRotation, Region, SESSION_SECS, SecretKeyRule,
};
use super::edge::{Tenant, bearer};
use super::reply::{Message, OAuthError, success};
use super::state::{AccessRec, BaanxEvent, Code, Family, RefreshRec, Session, World};

fn random(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4())
}

/// A session token: an HS256 JWT, as Baanx's example is (its claims are ours).
fn session_token(sb: &BaanxSandbox, session_id: &str, exp: DateTime<Utc>) -> String {
    let claims = json!({ "sid": session_id, "exp": exp.timestamp() });
    let key = jsonwebtoken::EncodingKey::from_secret(&sb.inner.session_secret);
    // Encoding a JSON object with an HMAC key cannot fail; fall back to the id.
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)
        .unwrap_or_else(|_| session_id.to_string())
}

pub async fn initiate(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, OAuthError> {
    let param = |k: &str| {
        q.get(k)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| OAuthError::missing(k))
    };
    let response_type = param("response_type")?;
    let client_id = param("client_id")?;
    let redirect_uri = param("redirect_uri")?;
    let state = param("state")?;
    let challenge = param("code_challenge")?;
    let method = param("code_challenge_method")?;
    let api_mode = q.get("mode").is_some_and(|m| m == "api");
    if response_type != "code" {
        return Err(OAuthError::invalid_request("response_type must be code"));
    }
    if client_id != &tenant.client.client_key {
        return Err(OAuthError::invalid_request(
            "client_id does not match x-client-key",
        ));
    }
    if method != "S256" {
        return Err(OAuthError::invalid_request(
            "code_challenge_method must be S256",
        ));
    }
    let check_list = !api_mode
        || sb
            .inner
            .world
            .lock()
            .behaviour
            .api_mode_checks_redirect_allow_list;
    if check_list
        && !tenant
            .client
            .redirect_uris
            .iter()
            .any(|u| u == redirect_uri)
    {
        return Err(OAuthError::invalid_request(
            "redirect_uri is not registered for this client",
        ));
    }
    let now = sb.now();
    let expires_at = now + Duration::seconds(SESSION_SECS);
    let session_id = random("ses_");
    let token = session_token(&sb, &session_id, expires_at);
    {
        let mut w = sb.inner.world.lock();
        w.region(tenant.region).sessions.insert(
            token.clone(),
            Session {
                client_key: tenant.client.client_key.clone(),
                redirect_uri: redirect_uri.clone(),
                state: state.clone(),
                challenge: challenge.clone(),
                expires_at,
                used: false,
                hosted_user: None,
                hosted_otp_ok: false,
            },
        );
        let mode = if api_mode { "api" } else { "hosted" };
        w.record(
            now,
            BaanxEvent::SessionOpened {
                client_key: tenant.client.client_key.clone(),
                mode: mode.into(),
            },
        );
    }
    let url = sb.hosted_login_url(&token, tenant.region);
    if api_mode {
        return Ok(Json(json!({ "token": token, "url": url })).into_response());
    }
    Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
}

/// The redirect URL, code and state of a freshly issued code.
pub struct Issued {
    pub url: String,
    pub code: String,
    pub state: String,
}

/// Issues a single-use, 10-minute code from a live session for `user_id`. The
/// session issues at most one.
pub fn issue_code(
    sb: &BaanxSandbox,
    region: Region,
    session_token: &str,
    user_id: &str,
) -> Result<Issued, OAuthError> {
    let now = sb.now();
    let mut w = sb.inner.world.lock();
    let store = w.region(region);
    let session = store
        .sessions
        .get_mut(session_token)
        .ok_or_else(|| OAuthError::invalid_request("Unknown authorization session"))?;
    if session.expires_at <= now {
        return Err(OAuthError::invalid_request(
            "Authorization session has expired",
        ));
    }
    if session.used {
        return Err(OAuthError::invalid_request(
            "Authorization session was already used",
        ));
    }
    session.used = true;
    let code = random("auth_code_");
    let (client_key, redirect_uri, state) = (
        session.client_key.clone(),
        session.redirect_uri.clone(),
        session.state.clone(),
    );
    let challenge = session.challenge.clone();
    store.codes.insert(
        code.clone(),
        Code {
            client_key: client_key.clone(),
            user_id: user_id.to_string(),
            redirect_uri: redirect_uri.clone(),
            challenge,
            expires_at: now + Duration::seconds(CODE_SECS),
            used: false,
            family_id: None,
        },
    );
    w.record(
        now,
        BaanxEvent::CodeIssued {
            client_key,
            user_id: user_id.to_string(),
        },
    );
    let mut url = url::Url::parse(&redirect_uri)
        .map_err(|_| OAuthError::invalid_request("redirect_uri is not a URL"))?;
    url.query_pairs_mut()
        .append_pair("state", &state)
        .append_pair("code", &code);
    Ok(Issued {
        url: url.into(),
        code,
        state,
    })
}

/// Why a user may not authorize yet (onboarding or verification), if so.
pub fn not_ready(w: &mut World, region: Region, user_id: &str) -> Option<String> {
    let u = w.region(region).users.get(user_id)?;
    if let Some(phase) = &u.phase {
        return Some(format!("User onboarding is incomplete (phase {phase})"));
    }
    (u.verification_state != "VERIFIED").then(|| {
        format!(
            "User is not verified (verificationState {})",
            u.verification_state
        )
    })
}

pub async fn authorize(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<Response, Response> {
    let now = sb.now();
    let token = bearer(&headers).ok_or_else(|| Message::not_authenticated().into_response())?;
    let user_id = {
        let mut w = sb.inner.world.lock();
        login_user(w.region(tenant.region), token, now).map_err(IntoResponse::into_response)?
    };
    let session = body
        .get("token")
        .and_then(Value::as_str)
        .ok_or_else(|| OAuthError::missing("token").into_response())?;
    let client_of_session = {
        let mut w = sb.inner.world.lock();
        if let Some(why) = not_ready(&mut w, tenant.region, &user_id) {
            return Err(Message::new(403, why).into_response());
        }
        w.region(tenant.region)
            .sessions
            .get(session)
            .map(|s| s.client_key.clone())
    };
    if client_of_session.is_some_and(|c| c != tenant.client.client_key) {
        return Err(
            OAuthError::invalid_request("Authorization session belongs to another client")
                .into_response(),
        );
    }
    let issued =
        issue_code(&sb, tenant.region, session, &user_id).map_err(IntoResponse::into_response)?;
    Ok(
        Json(json!({ "url": issued.url, "code": issued.code, "state": issued.state }))
            .into_response(),
    )
}

/// `x-secret-key`: a missing one is accepted unless the strict switch requires it; a
/// wrong one is always `invalid_client`.
fn check_secret(sb: &BaanxSandbox, tenant: &Tenant, headers: &HeaderMap) -> Result<(), OAuthError> {
    let rule = sb.inner.world.lock().behaviour.secret_key;
    match headers.get("x-secret-key").and_then(|v| v.to_str().ok()) {
        Some(given) if given == tenant.client.secret_key => Ok(()),
        Some(_) => Err(OAuthError::invalid_client("Invalid x-secret-key")),
        None if rule == SecretKeyRule::Required => {
            Err(OAuthError::invalid_client("Missing x-secret-key"))
        }
        None => Ok(()),
    }
}

pub async fn token(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, OAuthError> {
    check_secret(&sb, &tenant, &headers)?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|_| OAuthError::invalid_request("The body must be JSON"))?;
    let field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| OAuthError::missing(k))
    };
    let grant = field("grant_type")?;
    let answer = match grant {
        "authorization_code" => {
            let code = field("code")?;
            let redirect_uri = field("redirect_uri")?;
            let verifier = field("code_verifier")?;
            exchange_code(&sb, &tenant, code, redirect_uri, verifier)?
        }
        "refresh_token" => refresh(&sb, &tenant, field("refresh_token")?)?,
        other => return Err(OAuthError::unsupported_grant_type(other)),
    };
    Ok(Json(answer).into_response())
}

fn verifier_ok(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn exchange_code(
    sb: &BaanxSandbox,
    tenant: &Tenant,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<Value, OAuthError> {
    if !verifier_ok(verifier) {
        return Err(OAuthError::invalid_request(
            "code_verifier must match [A-Za-z0-9-._~]{43,128}",
        ));
    }
    let now = sb.now();
    let mut guard = sb.inner.world.lock();
    let w = &mut *guard;
    let store = w.region(tenant.region);
    let expired =
        || OAuthError::invalid_grant("Authorization code has expired or already been used");
    let c = store.codes.get_mut(code).ok_or_else(expired)?;
    if c.client_key != tenant.client.client_key {
        return Err(OAuthError::invalid_grant(
            "Authorization code was issued to another client",
        ));
    }
    if c.used {
        // A replayed code kills what it produced (RFC 6749 §4.1.2).
        let (family, user_id) = (c.family_id.clone(), c.user_id.clone());
        if let Some(f) = family {
            revoke(w, tenant.region, &f, "authorization code replayed", now);
        }
        w.record(
            now,
            BaanxEvent::CodeReplayed {
                client_key: tenant.client.client_key.clone(),
                user_id,
            },
        );
        return Err(expired());
    }
    if c.expires_at <= now {
        return Err(expired());
    }
    if c.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the one sent on initiate",
        ));
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if computed != c.challenge {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    c.used = true;
    let user_id = c.user_id.clone();
    let family_id = random("fam_");
    c.family_id = Some(family_id.clone());
    store.families.insert(
        family_id.clone(),
        Family {
            client_key: tenant.client.client_key.clone(),
            user_id: user_id.clone(),
            created_at: now,
            revoked: None,
        },
    );
    Ok(issue(
        w,
        tenant,
        &family_id,
        None,
        "authorization_code",
        now,
    ))
}

/// Mints an access token (and a refresh token, or reuses `keep_refresh`) in a family.
fn issue(
    w: &mut World,
    tenant: &Tenant,
    family_id: &str,
    keep_refresh: Option<(String, DateTime<Utc>)>,
    grant: &str,
    now: DateTime<Utc>,
) -> Value {
    let b = w.behaviour.clone();
    let store = w.region(tenant.region);
    let created = store
        .families
        .get(family_id)
        .map(|f| f.created_at)
        .unwrap_or(now);
    let access = random("access_token_");
    let access_exp = now + Duration::seconds(b.access_token_secs);
    store.access_tokens.insert(
        access.clone(),
        AccessRec {
            family_id: family_id.to_string(),
            expires_at: access_exp,
        },
    );
    let (refresh, refresh_exp) = keep_refresh.unwrap_or_else(|| {
        let start = match b.refresh_lifetime {
            RefreshLifetime::Sliding => now,
            RefreshLifetime::Absolute => created,
        };
        (
            random("refresh_token_"),
            start + Duration::seconds(b.refresh_token_secs),
        )
    });
    store
        .refresh_tokens
        .entry(refresh.clone())
        .or_insert(RefreshRec {
            family_id: family_id.to_string(),
            expires_at: refresh_exp,
            used: false,
        });
    let user_id = store
        .families
        .get(family_id)
        .map(|f| f.user_id.clone())
        .unwrap_or_default();
    w.record(
        now,
        BaanxEvent::TokenIssued {
            client_key: tenant.client.client_key.clone(),
            user_id,
            family_id: family_id.to_string(),
            grant: grant.to_string(),
        },
    );
    let mut answer = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": b.access_token_secs,
        "refresh_token": refresh,
    });
    if b.refresh_expires_in_field {
        answer["refresh_token_expires_in"] = json!((refresh_exp - now).num_seconds().max(0));
    }
    answer
}

fn refresh(sb: &BaanxSandbox, tenant: &Tenant, token: &str) -> Result<Value, OAuthError> {
    let now = sb.now();
    let mut guard = sb.inner.world.lock();
    let w = &mut *guard;
    let rotation = w.behaviour.refresh_rotation;
    let lifetime = w.behaviour.refresh_lifetime;
    let ttl = Duration::seconds(w.behaviour.refresh_token_secs);
    let store = w.region(tenant.region);
    let dead = || OAuthError::invalid_grant("Refresh token is invalid, expired or revoked");
    let rec = store.refresh_tokens.get_mut(token).ok_or_else(dead)?;
    let family_id = rec.family_id.clone();
    let family = store.families.get(&family_id).ok_or_else(dead)?;
    if family.client_key != tenant.client.client_key || family.revoked.is_some() {
        return Err(dead());
    }
    let user_id = family.user_id.clone();
    let rec = store.refresh_tokens.get_mut(token).ok_or_else(dead)?;
    if rec.used {
        revoke(w, tenant.region, &family_id, "refresh token replayed", now);
        w.record(
            now,
            BaanxEvent::RefreshReplayed {
                client_key: tenant.client.client_key.clone(),
                user_id,
                family_id,
            },
        );
        return Err(dead());
    }
    if rec.expires_at <= now {
        return Err(dead());
    }
    let keep = match rotation {
        RefreshRotation::Rotate => {
            rec.used = true;
            None
        }
        RefreshRotation::NonRotating => {
            if lifetime == RefreshLifetime::Sliding {
                rec.expires_at = now + ttl;
            }
            Some((token.to_string(), rec.expires_at))
        }
    };
    Ok(issue(w, tenant, &family_id, keep, "refresh_token", now))
}

/// Kills a family (its access and refresh tokens die with it), recording why.
pub fn revoke(
    w: &mut World,
    region: Region,
    family_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> bool {
    let store = w.region(region);
    if !store.revoke_family(family_id, reason) {
        return false;
    }
    let user_id = store
        .families
        .get(family_id)
        .map(|f| f.user_id.clone())
        .unwrap_or_default();
    w.record(
        now,
        BaanxEvent::FamilyRevoked {
            family_id: family_id.to_string(),
            user_id,
            reason: reason.to_string(),
        },
    );
    true
}

/// `DELETE /v1/auth/oauth/revoke`: every token of this client for this user dies.
pub async fn revoke_all(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
) -> Result<Response, Message> {
    let caller = authenticate(&sb, &tenant, &headers)?;
    if caller.family_id.is_none() {
        // A login token is not an OAuth grant: there is nothing to revoke with it.
        return Err(Message::not_authenticated());
    }
    let now = sb.now();
    let mut w = sb.inner.world.lock();
    let families = w
        .region(tenant.region)
        .live_families(&tenant.client.client_key, &caller.user_id);
    for f in families {
        revoke(&mut w, tenant.region, &f, "revoked by the client", now);
    }
    Ok(success())
}
