//! The one integration-test binary: every suite is a module here.

mod backends;
mod client;
mod connect;
mod grants;
mod grants_cli;
mod grants_harness;
mod grants_logs;
mod store_audit;
