//! What every emulator in the sandbox family shares. Nothing here knows a provider:
//! the provider-specific halves (error bodies, which endpoints exist, defaults) live
//! in the emulators.

pub mod control;
pub mod edge;
pub mod faults;
pub mod ledger;
pub mod rate;
pub mod requests;
