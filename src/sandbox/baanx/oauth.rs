//! Baanx OAuth 2.0 with PKCE (reference §2): initiate (302 to the hosted UI, or JSON
//! `{token, url}` with `mode=api`), authorize (login bearer + session token ⇒ code),
//! the token endpoint for both grants (in [`super::token`]), and revocation of every
//! token of a (client, user).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::BaanxSandbox;
use super::auth::{authenticate, login_user};
use super::config::{CODE_SECS, Region, SESSION_SECS};
use super::edge::{Tenant, bearer};
use super::reply::{Message, OAuthError, success};
use super::state::{BaanxEvent, Code, Session, World};

pub(super) fn random(prefix: &str) -> String {
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
