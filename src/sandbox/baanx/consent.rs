//! Consent v2 (reference §4): onboarding consent sets for the `US` and `global`
//! policy types, linking a set to a user, reading by set, onboarding id and user
//! (`full=true`), the audit trail, and revocation, which adds a `revoked` record and
//! keeps the original. Writes need `x-secret-key`; errors are `{error, details}`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::BaanxSandbox;
use super::edge::Tenant;
use super::reply::ConsentError;
use super::state::{AuditRec, BaanxEvent, ConsentRec, ConsentSet, World};
use super::wallet::ts;

type Reply = Result<Response, ConsentError>;

const TYPES: [&str; 5] = [
    "eSignAct",
    "termsAndPrivacy",
    "marketingNotifications",
    "smsNotifications",
    "emailNotifications",
];

/// Consents a policy type requires: all five for `US`, all but `eSignAct` for `global`.
fn required(policy: &str) -> &'static [&'static str] {
    if policy == "US" { &TYPES } else { &TYPES[1..] }
}

pub fn routes() -> Router<BaanxSandbox> {
    Router::new()
        .route("/v2/consent/onboarding", post(create))
        .route(
            "/v2/consent/onboarding/{id}",
            patch(link).get(by_onboarding),
        )
        .route("/v2/consent/consentSet/{id}", get(by_set))
        .route(
            "/v2/consent/consentSet/{set}/consent/{consent}",
            delete(revoke),
        )
        .route("/v2/consent/user/{id}", get(by_user))
        .route("/v2/consent/user/{id}/audit", get(audit))
}

fn secret(tenant: &Tenant, headers: &HeaderMap) -> Result<(), ConsentError> {
    match headers.get("x-secret-key").and_then(|v| v.to_str().ok()) {
        Some(s) if s == tenant.client.secret_key => Ok(()),
        Some(_) => Err(ConsentError::unauthorized("Invalid x-secret-key")),
        None => Err(ConsentError::unauthorized("x-secret-key is required")),
    }
}

fn set_json(s: &ConsentSet) -> Value {
    let consents: Vec<Value> = s
        .consents
        .iter()
        .map(|c| {
            json!({
                "consentId": c.consent_id, "consentType": c.consent_type,
                "consentStatus": c.status, "metadata": c.metadata,
                "createdAt": ts(c.created_at), "updatedAt": ts(c.updated_at),
            })
        })
        .collect();
    json!({
        "consentSetId": s.id, "userId": s.user_id, "onboardingId": s.onboarding_id,
        "tenantId": s.tenant_id, "policyType": s.policy_type,
        "completedAt": s.completed_at.map(ts), "createdAt": ts(s.created_at),
        "updatedAt": ts(s.updated_at), "consents": consents,
        "_links": {
            "self": format!("/v2/consent/consentSet/{}", s.id),
            "audit": s.user_id.as_ref().map(|u| format!("/v2/consent/user/{u}/audit")),
        },
    })
}

/// A consent set as posted: onboarding id, tenant id, policy type, and each
/// (consentType, consentStatus, metadata).
type NewSet = (String, String, String, Vec<(String, String, Value)>);

fn validate(body: &Value) -> Result<NewSet, ConsentError> {
    let field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| ConsentError::validation(format!("{k} is required")))
    };
    let (onboarding, tenant, policy) = (
        field("onboardingId")?,
        field("tenantId")?,
        field("policyType")?,
    );
    if policy != "US" && policy != "global" {
        return Err(ConsentError::validation(format!(
            "Invalid policyType: {policy}"
        )));
    }
    let items = body
        .get("consents")
        .and_then(Value::as_array)
        .ok_or_else(|| ConsentError::validation("consents is required"))?;
    let mut consents = Vec::new();
    for item in items {
        let kind = item
            .get("consentType")
            .and_then(Value::as_str)
            .unwrap_or("");
        let status = item
            .get("consentStatus")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !TYPES.contains(&kind) || (kind == "eSignAct" && policy != "US") {
            return Err(ConsentError::validation(format!(
                "Invalid consentType: {kind}"
            )));
        }
        if status != "granted" && status != "denied" {
            return Err(ConsentError::validation(format!(
                "Invalid consentStatus: {status}"
            )));
        }
        let metadata = item.get("metadata").cloned().unwrap_or(Value::Null);
        consents.push((kind.to_string(), status.to_string(), metadata));
    }
    for need in required(&policy) {
        if !consents.iter().any(|(k, _, _)| k == need) {
            return Err(ConsentError::validation(format!(
                "Missing required consent: {need} for policy type: {policy}"
            )));
        }
    }
    Ok((onboarding, tenant, policy, consents))
}

fn audit_rec(
    w: &mut World,
    tenant: &Tenant,
    set: &ConsentSet,
    action: &'static str,
    before: Value,
    metadata: Value,
    now: chrono::DateTime<chrono::Utc>,
) {
    let rec = AuditRec {
        audit_id: uuid::Uuid::new_v4().to_string(),
        user_id: set.user_id.clone(),
        consent_set_id: set.id.clone(),
        action,
        at: now,
        before,
        after: set_json(set),
        metadata,
    };
    w.region(tenant.region).audit.push(rec);
    w.record(
        now,
        BaanxEvent::ConsentRecorded {
            consent_set_id: set.id.clone(),
            action: action.into(),
        },
    );
}

async fn create(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Reply {
    secret(&tenant, &headers)?;
    let (onboarding_id, tenant_id, policy_type, items) = validate(&body)?;
    let now = sb.now();
    let set = ConsentSet {
        id: uuid::Uuid::new_v4().to_string(),
        onboarding_id,
        tenant_id,
        policy_type,
        user_id: None,
        completed_at: None,
        created_at: now,
        updated_at: now,
        consents: items
            .into_iter()
            .map(|(consent_type, status, metadata)| ConsentRec {
                consent_id: uuid::Uuid::new_v4().to_string(),
                consent_type,
                status,
                metadata,
                created_at: now,
                updated_at: now,
                revocation: None,
            })
            .collect(),
    };
    let answer = set_json(&set);
    let metadata = body.get("metadata").cloned().unwrap_or(Value::Null);
    let mut w = sb.inner.world.lock();
    audit_rec(&mut w, &tenant, &set, "created", Value::Null, metadata, now);
    w.region(tenant.region).consent_sets.push(set);
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

async fn link(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Reply {
    secret(&tenant, &headers)?;
    let user_id = body
        .get("userId")
        .and_then(Value::as_str)
        .ok_or_else(|| ConsentError::validation("userId is required"))?
        .to_string();
    let now = sb.now();
    let mut w = sb.inner.world.lock();
    let store = w.region(tenant.region);
    let pos = store
        .consent_sets
        .iter()
        .position(|s| s.id == id)
        .ok_or_else(|| ConsentError::not_found(format!("Consent set {id} not found")))?;
    let set = &mut store.consent_sets[pos];
    let before = set_json(set);
    set.user_id = Some(user_id.clone());
    set.completed_at = Some(now);
    set.updated_at = now;
    let snapshot = set_json(set);
    let set_id = set.id.clone();
    let answer = json!({ "consentSetId": set_id, "userId": user_id, "completedAt": ts(now), "consentSet": snapshot });
    let set_copy = clone_set(&w.region(tenant.region).consent_sets[pos]);
    audit_rec(
        &mut w,
        &tenant,
        &set_copy,
        "linked",
        before,
        Value::Null,
        now,
    );
    Ok(Json(answer).into_response())
}

fn clone_set(s: &ConsentSet) -> ConsentSet {
    ConsentSet {
        id: s.id.clone(),
        onboarding_id: s.onboarding_id.clone(),
        tenant_id: s.tenant_id.clone(),
        policy_type: s.policy_type.clone(),
        user_id: s.user_id.clone(),
        completed_at: s.completed_at,
        created_at: s.created_at,
        updated_at: s.updated_at,
        consents: s.consents.clone(),
    }
}

async fn by_onboarding(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Reply {
    let mut w = sb.inner.world.lock();
    let sets: Vec<Value> = w
        .region(tenant.region)
        .consent_sets
        .iter()
        .filter(|s| s.onboarding_id == id)
        .map(set_json)
        .collect();
    if sets.is_empty() {
        return Err(ConsentError::not_found(format!(
            "No consent for onboarding {id}"
        )));
    }
    Ok(Json(json!({ "onboardingId": id, "consentSets": sets, "_links": { "self": format!("/v2/consent/onboarding/{id}") } })).into_response())
}

async fn by_set(State(sb): State<BaanxSandbox>, tenant: Tenant, Path(id): Path<String>) -> Reply {
    let mut w = sb.inner.world.lock();
    let set = w
        .region(tenant.region)
        .consent_sets
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ConsentError::not_found(format!("Consent set {id} not found")))?;
    Ok(Json(set_json(set)).into_response())
}

/// The latest status of each consent type in a set (revocations come later).
fn current<'a>(s: &'a ConsentSet, kind: &str) -> Option<&'a str> {
    s.consents
        .iter()
        .rev()
        .find(|c| c.consent_type == kind)
        .map(|c| c.status.as_str())
}

async fn by_user(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let w = sb.inner.world.lock();
    let sets: Vec<&ConsentSet> = w.regions[tenant.region.index()]
        .consent_sets
        .iter()
        .filter(|s| s.user_id.as_deref() == Some(id.as_str()))
        .collect();
    if sets.is_empty() {
        return Err(ConsentError::not_found(format!("No consent for user {id}")));
    }
    // Complete: some linked set records a choice (granted or denied) for every consent
    // its policy requires, and none of them is revoked.
    let complete = sets.iter().any(|s| {
        required(&s.policy_type)
            .iter()
            .all(|k| matches!(current(s, k), Some("granted" | "denied")))
    });
    let mut answer = json!({
        "userId": id,
        "consentStatus": if complete { "complete" } else { "incomplete" },
        "_links": { "self": format!("/v2/consent/user/{id}"), "audit": format!("/v2/consent/user/{id}/audit") },
    });
    if q.get("full").is_some_and(|f| f == "true") {
        answer["consentSets"] = Value::Array(sets.into_iter().map(set_json).collect());
    }
    Ok(Json(answer).into_response())
}

async fn audit(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ConsentError::validation("limit must be between 1 and 100"));
    }
    let offset = q
        .get("offset")
        .and_then(|o| o.parse::<usize>().ok())
        .unwrap_or(0);
    let mut w = sb.inner.world.lock();
    let records: Vec<Value> = w
        .region(tenant.region)
        .audit
        .iter()
        .filter(|a| a.user_id.as_deref() == Some(id.as_str()))
        .skip(offset)
        .take(limit)
        .map(|a| {
            json!({
                "auditId": a.audit_id, "action": a.action, "timestamp": ts(a.at),
                "consentSetId": a.consent_set_id,
                "changes": { "before": a.before, "after": a.after }, "metadata": a.metadata,
            })
        })
        .collect();
    Ok(Json(json!({ "userId": id, "auditRecords": records })).into_response())
}

async fn revoke(
    State(sb): State<BaanxSandbox>,
    tenant: Tenant,
    headers: HeaderMap,
    Path((set_id, consent_id)): Path<(String, String)>,
) -> Reply {
    secret(&tenant, &headers)?;
    let now = sb.now();
    let mut w = sb.inner.world.lock();
    let store = w.region(tenant.region);
    let not_found =
        || ConsentError::not_found(format!("Consent {consent_id} not found or already revoked"));
    let set = store
        .consent_sets
        .iter_mut()
        .find(|s| s.id == set_id)
        .ok_or_else(not_found)?;
    let before = set_json(set);
    let original = set
        .consents
        .iter_mut()
        .find(|c| c.consent_id == consent_id && c.revocation.is_none() && c.status != "revoked")
        .ok_or_else(not_found)?;
    original.revocation = Some(now);
    let record = ConsentRec {
        consent_id: uuid::Uuid::new_v4().to_string(),
        consent_type: original.consent_type.clone(),
        status: "revoked".into(),
        metadata: Value::Null,
        created_at: now,
        updated_at: now,
        revocation: Some(now),
    };
    let answer = json!({
        "consentId": record.consent_id, "consentSetId": set_id, "consentType": record.consent_type,
        "consentStatus": "revoked", "revocationTimestamp": ts(now),
        "_links": { "self": format!("/v2/consent/consentSet/{set_id}") },
    });
    set.consents.push(record);
    set.updated_at = now;
    let copy = clone_set(set);
    audit_rec(&mut w, &tenant, &copy, "revoked", before, Value::Null, now);
    Ok(Json(answer).into_response())
}
