//! The one integration-test binary (see Cargo.toml): every suite is a module here.

mod conformance;
mod sandbox_api;
mod sandbox_oauth;
mod support;
