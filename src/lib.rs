//! # treasury
//!
//! A worker that moves money for a finance team on Busha, on customers' OAuth2 grants.
//!
//! Code map (each module says what it owns and what it must never do):
//! - [`clock`]: the injectable source of "now" shared by the worker and the sandbox.
//! - [`money`]: currencies, precision and exact amounts. No IO.
//! - [`provider`]: the only code that speaks HTTP to Busha (typed client, errors, pacing).
//! - [`sandbox`]: a faithful Busha emulator (OAuth issuer + resource API + control
//!   surface) for tests, benchmarks and the demo. Production code never calls it.

pub mod audit;
pub mod clock;
pub mod money;
pub mod pipeline;
pub mod provider;
pub mod runs;
pub mod sandbox;
pub mod store;
