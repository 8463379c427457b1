//! Seals (invariant 9, issue 16 §1): what a run will pay, to whom, and the approvals,
//! halts and cap reservations that decide it, bound into the audit chain under a key
//! that only the worker holds, so that a row edited in the store moves no money.
//!
//! The chain alone is unkeyed: whoever can write the database can append a
//! well-formed entry, or rewrite the chain from some entry on. So the entries that
//! decide money also carry a MAC, keyed from `TREASURY_MASTER_KEY` through HKDF with a
//! purpose of its own. The key is never stored.
//!
//! - [`key`]: the MAC key and the MAC of an entry.
//! - [`spec`]: a run's canonical spec, its hash, the approval rule's hash, and the seal
//!   carried by its `run.created` entry.
//! - [`check`]: the check before every money-moving step; its proof is a required
//!   argument of every money-moving call.
//! - [`halts`]: the halts in force as the chain's MAC'd entries say.
//! - [`verify`]: what `treasury audit verify` adds: every run against its seal, every
//!   MAC.
//!
//! No IO here: the store reads and appends entries; this module says what they prove.

mod check;
mod halts;
mod key;
mod memo;
mod spec;
mod verify;

pub use check::{SealBreak, SealChecked, check_run};
pub use halts::halts_in_force;
pub use key::{KeyOrigin, MacError, SealKeys};
pub use spec::{RunSeal, seal_created};
pub use verify::{SealProblem, SealReport, SealVerifier};

/// The entry that names the recipient a run pays, once the worker checked it.
pub const RECIPIENT_RESOLVED: &str = "run.recipient.resolved";

/// The audit actions whose entries carry a MAC, and which the worker trusts only with
/// a valid one.
pub const MACED_ACTIONS: [&str; 7] = [
    "run.created",
    "run.approved",
    RECIPIENT_RESOLVED,
    "halt.on",
    "halt.off",
    "run.cap.reserved",
    "run.cap.released",
];

/// Whether entries of `action` carry a MAC.
pub fn is_maced(action: &str) -> bool {
    MACED_ACTIONS.contains(&action)
}
