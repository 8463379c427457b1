//! # treasury
//!
//! A worker that moves money for a finance team on Busha, on customers' OAuth2 grants.
//!
//! Code map (each module says what it owns and what it must never do):
//! - [`config`]: the worker's settings file, parsed at the edge; secrets only from the env.
//! - [`grants`]: customers' OAuth2 grants: connect (PKCE + OIDC), tokens sealed at rest,
//!   single-flight fenced refresh. Never logs or returns token material.
//! - [`http`]: the worker's axum server (OAuth connect and callback). Binds localhost by default.
//! - [`cli`]: the operator CLI (clap). Prints no token.
//! - [`clock`]: the injectable source of "now" shared by the worker and the sandbox.
//! - [`money`]: currencies, precision and exact amounts. No IO.
//! - [`provider`]: the only code that speaks HTTP to Busha (typed client, errors, pacing).
//! - [`store`]: the system of record; all SQL lives here.
//! - [`audit`]: the hash-chained audit log's domain.
//! - [`queue`]: the dispatch queue (apalis); carries run ids only. The only module that
//!   names apalis types.
//! - [`worker`]: dispatcher, supervised queue consumers and purge, under one shutdown.
//! - [`sandbox`]: a faithful Busha emulator (OAuth issuer + resource API + control
//!   surface) for tests, benchmarks and the demo. Production code never calls it.

pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod grants;
pub mod http;
pub mod money;
pub mod pipeline;
pub mod provider;
pub mod queue;
pub mod runs;
pub mod sandbox;
pub mod store;
pub mod worker;
