//! Halts as the chain says they stand: `halt.on` and `halt.off` entries with the
//! worker's MAC, replayed in order. The `halts` table is derivable from them; the gate
//! honours a halt found in either, so a halt row deleted in the store still stops
//! money, and an entry without a valid MAC lifts nothing.

use std::collections::BTreeMap;

use crate::audit::AuditEntry;
use crate::guards::{Halt, HaltScope};

use super::key::SealKeys;

/// The halts in force after `entries` (halt entries in chain order), counting only
/// those whose MAC proves them.
pub fn halts_in_force(keys: &SealKeys, entries: &[AuditEntry]) -> Vec<Halt> {
    let mut on: BTreeMap<(String, String), Halt> = BTreeMap::new();
    for e in entries.iter().filter(|e| keys.check(e).is_ok()) {
        let text = |k: &str| e.payload.get(k).and_then(|v| v.as_str());
        let Some(scope) =
            HaltScope::from_parts(text("scope").unwrap_or(""), text("target").unwrap_or(""))
        else {
            continue;
        };
        let key = (scope.kind().to_string(), scope.target().to_string());
        match e.action.as_str() {
            "halt.on" => {
                on.entry(key).or_insert(Halt {
                    scope,
                    reason: text("reason").map(str::to_string),
                    halted_by: text("operator").unwrap_or(&e.actor).to_string(),
                    halted_at: e.at,
                });
            }
            "halt.off" => {
                on.remove(&key);
            }
            _ => {}
        }
    }
    on.into_values().collect()
}
