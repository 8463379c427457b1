//! The one integration-test binary: every suite is a module here.

mod audit_cli;
mod backends;
mod client;
mod conformance;
mod connect;
mod grants;
mod grants_cli;
mod grants_harness;
mod grants_logs;
mod guards;
mod guards_store;
mod guards_world;
mod jobs_cli;
mod jobs_files;
mod jobs_scheduler;
mod ops;
mod pipeline;
mod pipeline_grants;
mod runs_cli;
mod sandbox_api;
mod sandbox_oauth;
mod schedule_dst;
mod servers;
mod store_audit;
mod support;
