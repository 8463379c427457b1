//! What a run's `run.created` entry seals: the hash of its canonical spec (what to pay,
//! to whom, from which job version and grant) and the hash of the approval rule that
//! applied, beside the rule itself, so that approval is decided against the seal and
//! never against a row that may have changed.
//!
//! A sweep's amount is sealed as a bound: the spec holds the approved maximum, and what
//! is quoted (re-computed against the live balance to respect `keep`) may only be less.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::audit::{NewAuditEntry, canonical_json};
use crate::guards::approvals_needed;
use crate::runs::{Run, RunState};

/// The `seal` object of a `run.created` payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSeal {
    /// SHA-256 (hex) of the canonical spec: see [`spec_hash`].
    pub spec_hash: String,
    /// SHA-256 (hex) of the approval rule that applied: see [`rule_hash`].
    pub rule_hash: String,
    /// Whether the run needed approval when it was created.
    pub approval_required: bool,
    /// How many distinct approvers it needs, none of them `owner`.
    pub approvals_needed: u32,
    pub owner: Option<String>,
    /// `bound` for a sweep (the amount is the approved maximum), `exact` otherwise.
    pub amount: String,
}

impl RunSeal {
    /// The seal of `run` as it stands. At creation this is what is sealed; later, the
    /// hashes recomputed from the row must equal the sealed ones.
    pub fn of(run: &Run) -> Self {
        let required = run.state == RunState::AwaitingApproval;
        Self {
            spec_hash: spec_hash(run),
            rule_hash: rule_hash(run, required),
            approval_required: required,
            approvals_needed: approvals_needed(&run.spec),
            owner: run.spec.approval.as_ref().map(|r| r.owner.clone()),
            amount: if run.spec.sweep.is_some() {
                "bound"
            } else {
                "exact"
            }
            .into(),
        }
    }

    /// The seal in a `run.created` payload, if it holds a readable one.
    pub fn from_payload(payload: &Value) -> Option<Self> {
        serde_json::from_value(payload.get("seal")?.clone()).ok()
    }
}

/// SHA-256 over the canonical JSON of the run's identity and everything that decides
/// what it pays: job, occurrence, job version, and the whole spec (grant, currencies,
/// amount, payee, guard, limits, approval rule, sweep bound).
pub fn spec_hash(run: &Run) -> String {
    sha256(&json!({
        "run_id": run.id.as_str(),
        "job_id": run.job_id,
        "occurrence_key": run.occurrence_key,
        "job_version": run.job_version,
        "spec": serde_json::to_value(&run.spec).unwrap_or(Value::Null),
    }))
}

/// SHA-256 over the approval rule and whether it applied.
pub fn rule_hash(run: &Run, required: bool) -> String {
    sha256(&json!({
        "run_id": run.id.as_str(),
        "required": required,
        "needed": approvals_needed(&run.spec),
        "rule": serde_json::to_value(&run.spec.approval).unwrap_or(Value::Null),
    }))
}

/// `entry` (the run's `run.created`) with the run's seal in its payload, and named
/// after the run (the seal is found by the run's id).
pub fn seal_created(run: &Run, mut entry: NewAuditEntry) -> NewAuditEntry {
    entry.run_id = Some(run.id.to_string());
    entry.job_id.get_or_insert_with(|| run.job_id.clone());
    if !entry.payload.is_object() {
        entry.payload = json!({ "value": entry.payload });
    }
    let seal = serde_json::to_value(RunSeal::of(run)).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut entry.payload {
        map.insert("seal".into(), seal);
    }
    entry
}

fn sha256(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(value).as_bytes()))
}
