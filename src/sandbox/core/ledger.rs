//! The ledger: an append-only list of what an emulator did, numbered from 1, so that
//! tests can assert exactly-once from the provider's side.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One event an emulator recorded. `E` is the emulator's own event enum, flattened
/// into the entry in JSON (`{"seq", "at", "kind", ...}`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry<E> {
    pub seq: u64,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: E,
}

/// Appends `event` to `ledger` under the next sequence number.
pub fn record<E>(ledger: &mut Vec<Entry<E>>, at: DateTime<Utc>, event: E) {
    let seq = ledger.len() as u64 + 1;
    ledger.push(Entry { seq, at, event });
}
