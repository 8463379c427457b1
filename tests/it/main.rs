//! The one integration-test binary: every suite is a module here.

mod backends;
mod client;
mod conformance;
mod pipeline;
mod sandbox_api;
mod sandbox_oauth;
mod store_audit;
mod support;
