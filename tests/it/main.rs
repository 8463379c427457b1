//! The one integration-test binary: every suite is a module here.

mod backends;
mod client;
mod conformance;
mod connect;
mod grants;
mod grants_cli;
mod grants_harness;
mod grants_logs;
mod pipeline;
mod queue;
mod sandbox_api;
mod sandbox_oauth;
mod store_audit;
mod support;
mod worker;
