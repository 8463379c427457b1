//! The one integration-test binary: every suite is a module here.

mod backends;
mod store_audit;
