//! The JSON token endpoint (reference §2.6): both grants, PKCE S256, exact redirect
//! URI, single-use codes, the `x-secret-key` rule, refresh rotation and lifetimes as
//! switches.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::BaanxSandbox;
use super::config::{RefreshLifetime, RefreshRotation, SecretKeyRule};
use super::edge::Tenant;
use super::oauth::{random, revoke};
use super::reply::OAuthError;
use super::state::{AccessRec, BaanxEvent, Family, RefreshRec, World};

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
