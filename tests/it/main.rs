//! The one integration-test binary: every suite is a module here.

mod backends;
mod client;
mod store_audit;
