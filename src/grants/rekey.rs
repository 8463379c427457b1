//! `treasury grants rekey`: re-seals every grant's tokens under the newest master key
//! version. Each grant is opened first, and again after it is re-sealed, under the keys
//! given; a grant that does not open is reported (with the version it is sealed under)
//! and left unchanged, never counted as current. Safe order of a rotation: give every
//! process `v2:…,v1:…`, rekey, then drop v1.

use std::time::Duration as StdDuration;

use serde_json::json;

use super::GrantError;
use super::crypto::{Keyring, Owner};
use super::custodian::{ACCESS_FIELD, REFRESH_FIELD};
use super::seals::{SealProblem, problem_with};
use crate::audit::NewAuditEntry;
use crate::clock::Clock;
use crate::store::{GrantRow, Resealed, Store, StoreError};

/// What `rekey` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RekeyReport {
    pub newest_version: i64,
    pub rekeyed: Vec<String>,
    /// Sealed under the newest version, and opened under it.
    pub already_current: Vec<String>,
    /// Grants whose lease stayed busy; run rekey again.
    pub busy: Vec<String>,
    /// Grants that do not open under the keys given: left as they were.
    pub unopenable: Vec<SealProblem>,
}

/// Re-seals every grant's tokens under the newest master key version, audited by `actor`.
pub async fn rekey(
    store: &Store,
    keys: &Keyring,
    clock: &Clock,
    actor: &str,
) -> Result<RekeyReport, GrantError> {
    let newest = keys.newest();
    let mut report = RekeyReport {
        newest_version: newest,
        ..RekeyReport::default()
    };
    for row in store.grants().await? {
        if let Some(problem) = problem_with(keys, &row) {
            report.unopenable.push(problem);
            continue;
        }
        if row.key_version == newest {
            report.already_current.push(row.alias.clone());
            continue;
        }
        let alias = row.alias.clone();
        match reseal_until_done(store, keys, clock, row, actor).await? {
            None => report.busy.push(alias),
            Some(row) => match problem_with(keys, &row) {
                // What is stored now must open under the newest key before it counts.
                Some(problem) => report.unopenable.push(problem),
                None => report.rekeyed.push(alias),
            },
        }
    }
    Ok(report)
}

/// Re-seals `row`, retrying while a refresh holds its lease; returns the row as stored
/// under the newest version, or `None` if it stayed busy (or vanished).
async fn reseal_until_done(
    store: &Store,
    keys: &Keyring,
    clock: &Clock,
    mut row: GrantRow,
    actor: &str,
) -> Result<Option<GrantRow>, GrantError> {
    let newest = keys.newest();
    for _ in 0..20 {
        let written = reseal(store, keys, clock, &row, actor).await?;
        if !written {
            tokio::time::sleep(StdDuration::from_millis(200)).await;
        }
        row = match store.grant(&row.id).await? {
            Some(r) => r,
            None => return Ok(None),
        };
        if row.key_version == newest {
            return Ok(Some(row));
        }
    }
    Ok(None)
}

async fn reseal(
    store: &Store,
    keys: &Keyring,
    clock: &Clock,
    row: &GrantRow,
    actor: &str,
) -> Result<bool, GrantError> {
    let owner = Owner::Grant(&row.id);
    let reseal = |field: &'static str, ct: &Option<String>| -> Result<Option<String>, GrantError> {
        ct.as_ref()
            .map(|ct| {
                let plain = keys.open(owner, field, row.key_version, ct)?;
                Ok(keys.seal(owner, field, &plain)?.1)
            })
            .transpose()
    };
    let access = reseal(ACCESS_FIELD, &row.access_token_ct)?;
    let refresh = reseal(REFRESH_FIELD, &row.refresh_token_ct)?;
    let now = clock.now();
    let mut tx = store.begin().await?;
    let written = store
        .reseal_grant_in(
            &mut tx,
            &row.id,
            row.fence,
            &Resealed {
                key_version: keys.newest(),
                access_token_ct: access,
                refresh_token_ct: refresh,
            },
            now,
        )
        .await?;
    if !written {
        return Ok(false);
    }
    store
        .append_audit_in(
            &mut tx,
            now,
            NewAuditEntry::new(
                actor,
                "grant.rekeyed",
                json!({"alias": row.alias, "from_version": row.key_version, "to_version": keys.newest()}),
            )
            .grant(&row.id),
        )
        .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(true)
}
