//! Whether this process can open every connected grant's tokens (issue: a wrong master
//! key looked healthy). At start, and then periodically, the worker opens each active
//! grant's sealed tokens. A grant it cannot open makes `/readyz` not ready, naming the
//! grant and the key version it is sealed under, and raises a `grant_undecryptable`
//! alert once per grant and version. Nothing here logs or returns key or token bytes.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use super::crypto::{CryptoError, Keyring, Owner};
use super::custodian::{ACCESS_FIELD, REFRESH_FIELD};
use super::{Grant, GrantStatus};
use crate::alerts::{Alert, AlertKind, AlertSink};
use crate::clock::Clock;
use crate::store::{GrantRow, Store, StoreError};

/// A grant whose tokens do not open under the keys this process holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SealProblem {
    pub alias: String,
    pub grant_id: String,
    /// The master key version the grant is sealed under.
    pub key_version: i64,
    /// The versions this process holds.
    pub held_versions: Vec<i64>,
    /// What failed (never key or token material).
    pub reason: String,
}

impl fmt::Display for SealProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held: Vec<String> = self.held_versions.iter().map(|v| format!("v{v}")).collect();
        write!(
            f,
            "grant {} is sealed under master key v{} and does not open here ({}); this process holds {}",
            self.alias,
            self.key_version,
            self.reason,
            held.join(",")
        )
    }
}

/// Opens both of the row's ciphertexts (if present) and drops the plaintexts at once.
pub fn open_row(keys: &Keyring, row: &GrantRow) -> Result<(), CryptoError> {
    let owner = Owner::Grant(&row.id);
    for (field, ct) in [
        (ACCESS_FIELD, &row.access_token_ct),
        (REFRESH_FIELD, &row.refresh_token_ct),
    ] {
        if let Some(ct) = ct {
            // Zeroized on drop.
            keys.open(owner, field, row.key_version, ct)?;
        }
    }
    Ok(())
}

/// The problem with `row` under `keys`, if its tokens do not open.
pub fn problem_with(keys: &Keyring, row: &GrantRow) -> Option<SealProblem> {
    open_row(keys, row).err().map(|e| SealProblem {
        alias: row.alias.clone(),
        grant_id: row.id.clone(),
        key_version: row.key_version,
        held_versions: keys.versions(),
        reason: e.to_string(),
    })
}

/// Every active grant whose tokens do not open under `keys`.
pub async fn check_seals(store: &Store, keys: &Keyring) -> Result<Vec<SealProblem>, StoreError> {
    let mut problems = Vec::new();
    for row in store.grants().await? {
        if Grant::from_row(&row)?.status != GrantStatus::Active {
            continue;
        }
        problems.extend(problem_with(keys, &row));
    }
    Ok(problems)
}

/// The latest seal check's findings, shared with `/readyz`. Empty: every active grant
/// opens (or no check has found otherwise).
#[derive(Clone, Debug, Default)]
pub struct SealStatus(Arc<parking_lot::RwLock<Vec<SealProblem>>>);

impl SealStatus {
    pub fn problems(&self) -> Vec<SealProblem> {
        self.0.read().clone()
    }

    fn set(&self, problems: Vec<SealProblem>) {
        *self.0.write() = problems;
    }
}

/// Runs the seal check, keeps [`SealStatus`] current and raises each new problem.
pub struct SealMonitor {
    store: Store,
    keys: Arc<Keyring>,
    sink: AlertSink,
    clock: Clock,
    status: SealStatus,
    /// (grant id, key version) already alerted; a problem that clears can alert again.
    raised: HashSet<(String, i64)>,
}

impl SealMonitor {
    pub fn new(store: Store, keys: Arc<Keyring>, sink: AlertSink, clock: Clock) -> Self {
        Self {
            store,
            keys,
            sink,
            clock,
            status: SealStatus::default(),
            raised: HashSet::new(),
        }
    }

    /// The status this monitor keeps, for `/readyz`.
    pub fn status(&self) -> SealStatus {
        self.status.clone()
    }

    /// Checks every active grant now; returns what does not open.
    pub async fn check(&mut self) -> Result<Vec<SealProblem>, StoreError> {
        let problems = check_seals(&self.store, &self.keys).await?;
        let now: HashSet<(String, i64)> = problems
            .iter()
            .map(|p| (p.grant_id.clone(), p.key_version))
            .collect();
        for p in &problems {
            if self.raised.insert((p.grant_id.clone(), p.key_version)) {
                self.sink.emit(&Alert {
                    kind: AlertKind::GrantUndecryptable,
                    subject: p.alias.clone(),
                    message: format!(
                        "{p}: its jobs cannot run on this process; check TREASURY_MASTER_KEY"
                    ),
                    at: self.clock.now(),
                    audit_seq: None,
                });
            }
        }
        self.raised.retain(|k| now.contains(k));
        self.status.set(problems.clone());
        Ok(problems)
    }
}
