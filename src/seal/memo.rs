//! What the seal check already worked out, remembered by content: a run's steps check
//! the same entries and the same spec again and again, and an HMAC or a canonical-JSON
//! hash costs far more than comparing what it was computed from.
//!
//! Sound by construction: a verdict is reused only for an entry whose every MAC'd
//! field equals the one it was computed for, and a hash only for equal inputs. An entry
//! edited in the store, or a spec changed in the row, is never equal, so it is checked
//! afresh; nothing here is trusted because of where it came from.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::audit::AuditEntry;
use crate::runs::{PayoutSpec, Run};

use super::key::MacError;

/// Beyond this many remembered items the memo starts again (it only saves work).
const MAX_ITEMS: usize = 20_000;

/// The fields an entry's MAC covers.
#[derive(Clone, PartialEq)]
struct Macd {
    action: String,
    actor: String,
    run_id: Option<String>,
    job_id: Option<String>,
    grant_id: Option<String>,
    at_ms: i64,
    payload: Value,
}

impl Macd {
    fn of(e: &AuditEntry) -> Self {
        Self {
            action: e.action.clone(),
            actor: e.actor.clone(),
            run_id: e.run_id.clone(),
            job_id: e.job_id.clone(),
            grant_id: e.grant_id.clone(),
            at_ms: e.at.timestamp_millis(),
            payload: e.payload.clone(),
        }
    }

    fn is(&self, e: &AuditEntry) -> bool {
        self.action == e.action
            && self.actor == e.actor
            && self.run_id == e.run_id
            && self.job_id == e.job_id
            && self.grant_id == e.grant_id
            && self.at_ms == e.at.timestamp_millis()
            && self.payload == e.payload
    }
}

/// What a run's hashes were computed from.
#[derive(Clone, PartialEq)]
struct HashInputs {
    job_id: String,
    occurrence_key: String,
    job_version: String,
    spec: PayoutSpec,
    required: bool,
}

impl HashInputs {
    fn of(run: &Run, required: bool) -> Self {
        Self {
            job_id: run.job_id.clone(),
            occurrence_key: run.occurrence_key.clone(),
            job_version: run.job_version.clone(),
            spec: run.spec.clone(),
            required,
        }
    }

    fn is(&self, run: &Run, required: bool) -> bool {
        self.required == required
            && self.job_id == run.job_id
            && self.occurrence_key == run.occurrence_key
            && self.job_version == run.job_version
            && self.spec == run.spec
    }
}

/// A run's (spec hash, rule hash).
pub(super) type Hashes = (String, String);

/// An entry as it was checked, and its verdict.
type Verdict = (Macd, Result<(), MacError>);

#[derive(Default)]
pub(super) struct Memo {
    verdicts: Mutex<HashMap<i64, Verdict>>,
    hashes: Mutex<HashMap<String, (HashInputs, Hashes)>>,
}

impl Memo {
    /// `entry`'s MAC verdict, computed by `check` unless an equal entry at the same
    /// sequence number was checked before.
    pub(super) fn verdict(
        &self,
        entry: &AuditEntry,
        check: impl FnOnce() -> Result<(), MacError>,
    ) -> Result<(), MacError> {
        if let Some((seen, verdict)) = lock(&self.verdicts).get(&entry.seq)
            && seen.is(entry)
        {
            return verdict.clone();
        }
        let verdict = check();
        let mut verdicts = lock(&self.verdicts);
        if verdicts.len() >= MAX_ITEMS {
            verdicts.clear();
        }
        verdicts.insert(entry.seq, (Macd::of(entry), verdict.clone()));
        verdict
    }

    /// `run`'s hashes, computed by `compute` unless its inputs are those of last time.
    pub(super) fn hashes(
        &self,
        run: &Run,
        required: bool,
        compute: impl FnOnce() -> Hashes,
    ) -> Hashes {
        if let Some((inputs, hashes)) = lock(&self.hashes).get(run.id.as_str())
            && inputs.is(run, required)
        {
            return hashes.clone();
        }
        let hashes = compute();
        let mut memo = lock(&self.hashes);
        if memo.len() >= MAX_ITEMS {
            memo.clear();
        }
        memo.insert(
            run.id.to_string(),
            (HashInputs::of(run, required), hashes.clone()),
        );
        hashes
    }
}

/// A poisoned memo is still a valid memo: every item in it is whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
