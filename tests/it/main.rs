//! The one integration-test binary: every suite is a module here.

mod backends;
mod client;
mod conformance;
mod connect;
mod grants;
mod grants_cli;
mod grants_harness;
mod grants_logs;
mod jobs_cli;
mod jobs_files;
mod jobs_scheduler;
mod pipeline;
mod sandbox_api;
mod sandbox_oauth;
mod schedule_dst;
mod store_audit;
mod support;
