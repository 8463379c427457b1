//! Guards checked just before each money-moving step (the kill switch, paused jobs,
//! caps, approvals). The pipeline asks; the guards module decides.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use crate::runs::Run;

/// The money-moving step about to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateStep {
    CreateRecipient,
    /// A quote lock: caps reserve the run's amount here.
    LockQuote,
    Transfer,
}

/// Why a step may not start now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Not now (halted, paused): the run waits and is checked again at `until`.
    Wait {
        reason: String,
        until: DateTime<Utc>,
    },
    /// Never (over a cap): the run fails with the reason; nothing was reserved.
    Refuse { reason: String },
    /// The guards could not be read (store trouble): try again after a backoff.
    Unavailable { reason: String },
}

/// Decides whether a run may take a money-moving step.
pub trait Gate: Send + Sync {
    fn check<'a>(&'a self, run: &'a Run, step: GateStep) -> BoxFuture<'a, Result<(), Hold>>;
    /// The run ended without moving money (failed, or needs a human): release whatever
    /// was reserved for it. Must be idempotent.
    fn released<'a>(&'a self, run: &'a Run) -> BoxFuture<'a, ()>;
}

/// Lets every step through (no guards configured).
pub struct OpenGate;

impl Gate for OpenGate {
    fn check<'a>(&'a self, _: &'a Run, _: GateStep) -> BoxFuture<'a, Result<(), Hold>> {
        Box::pin(async { Ok(()) })
    }
    fn released<'a>(&'a self, _: &'a Run) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}
