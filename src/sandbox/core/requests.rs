//! The request log: every request an emulator answered (or dropped), for rate and
//! fault assertions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One request as the sandbox saw it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RequestRecord {
    pub at: DateTime<Utc>,
    /// The client the request was counted against, if any (an OAuth client id on
    /// Busha, the `x-client-key` on Baanx).
    pub client_id: Option<String>,
    /// `METHOD /route/template`, e.g. `GET /v1/transfers/{id}`.
    pub endpoint: String,
    pub status: u16,
    pub request_id: String,
    /// The response never reached the caller (a `DropBeforeCommit` or `DropAfterCommit`
    /// fault). Whether the effect was committed shows in the ledger.
    pub dropped: bool,
}
