//! The sandbox family: faithful emulators of the providers our worker speaks to, each
//! with a control surface (`/_sandbox/...`) for tests and demos.
//!
//! - [`core`]: what every emulator shares: fault injection, the ledger, rolling-minute
//!   rate limits, the request log and the control-surface conventions (clock, faults,
//!   rate limits, ledger, requests). The clock is [`crate::clock::Clock`].
//! - [`busha`]: the Busha OAuth2/OIDC issuer and resource API (`busha-api.md`). Its
//!   items are re-exported here, so `sandbox::Sandbox` is the Busha emulator.
//! - [`baanx`]: the Baanx OAuth (hosted UI and API mode), wallet, whitelist, withdrawal
//!   and consent API (`baanx-api.md`).
//!
//! Production code never depends on this module.

pub mod baanx;
pub mod busha;
pub mod core;

pub use busha::*;
pub use core::faults::{CannedResponse, Fault, FaultKind, Rewrite};
pub use core::ledger::Entry;
pub use core::rate::RateLimits;
pub use core::requests::RequestRecord;
