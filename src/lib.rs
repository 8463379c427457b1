//! # treasury
//!
//! A worker that moves money for a finance team on Busha, on customers' OAuth2 grants.
//!
//! Code map (each module says what it owns and what it must never do):
//! - [`config`]: the worker's settings file, parsed at the edge; secrets only from the env.
//! - [`grants`]: customers' OAuth2 grants: connect (PKCE + OIDC), tokens sealed at rest,
//!   single-flight fenced refresh, the seal check behind `/readyz`, rekey. Never logs or
//!   returns token material.
//! - [`alerts`]: alerts from the audit log, stuck transfers and undecryptable grants:
//!   the log, a metric, and signed POSTs delivered off the worker's path. Never logs a secret.
//! - [`guards`]: the kill switch, paused jobs, spending caps and approvals (the
//!   pipeline's gate), and the rules of the operator commands. No SQL, no HTTP.
//! - [`http`]: the worker's axum server (OAuth connect and callback). Binds localhost by default.
//! - [`console`]: the web console at `/` (sessions, inbox, runs, kill switch), rendered
//!   on the server. Decides nothing itself: approvals and halts go through the store's
//!   own functions, as the CLI's do.
//! - [`jobs`]: job files parsed at the edge, schedules (cron + zone + DST), and the
//!   scheduler tick that creates one run per occurrence. Never moves money itself.
//! - [`live`]: the scheduler loop and sweep watches of a running worker, following the
//!   live job set (reloaded without a restart, created only while in force).
//! - [`cli`]: the operator CLI (clap). Prints no token.
//! - [`clock`]: the injectable source of "now" shared by the worker and the sandbox.
//! - [`money`]: currencies, precision and exact amounts. No IO.
//! - [`provider`]: the only code that speaks HTTP to Busha and Baanx: the provider boundary
//!   in domain types, the typed clients behind it, errors, pacing. No wire type leaves it.
//! - [`reconcile`]: read-only comparison of our runs with Busha's transfers. Writes nothing.
//! - [`store`]: the system of record; all SQL lives here.
//! - [`audit`]: the hash-chained audit log's domain, and the signed checkpoint format.
//! - [`checkpoints`]: signed audit checkpoints made under a lease into an append-only
//!   folder outside the store, and verified against the chain. Never logs the key.
//! - [`seal`]: runs' specs, approvals, halts and cap reservations sealed into the chain
//!   under a key derived from the master key; the check before every money-moving step.
//!   No IO.
//! - [`queue`]: the dispatch queue (apalis); carries run ids only. The only module that
//!   names apalis types.
//! - [`worker`]: dispatcher, supervised queue consumers and purge, under one shutdown.
//! - [`untrusted`]: outside text (provider messages, OAuth errors) escaped onto one line
//!   before it reaches a log line, a reason or the audit log.
//! - [`sandbox`]: faithful Busha and Baanx emulators on one shared core (OAuth, resource
//!   API, control surface) for tests, benchmarks and the demo. Production code never
//!   calls it.

pub mod alerts;
pub mod audit;
pub mod checkpoints;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod demo;
pub mod grants;
pub mod guards;
pub mod http;
pub mod jobs;
pub mod live;
pub mod metrics;
pub mod money;
pub mod operators;
pub mod pipeline;
pub mod provider;
pub mod queue;
pub mod reconcile;
pub mod runs;
pub mod sandbox;
pub mod seal;
pub mod service;
pub mod store;
pub mod triggers;
pub mod untrusted;
pub mod worker;
