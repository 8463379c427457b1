//! What each money-moving step needs its provider to promise, decided from the
//! provider's [`Capabilities`] alone, never from its name.
//!
//! Today's steps need a binding quote, a transfer id to follow, and reconciliation by
//! reference (our quote reference, the quote a transfer was made from). A provider
//! that promises less is refused before the step moves anything, with the reason.

use super::GateStep;
use crate::provider::boundary::{Capabilities, QuoteKind, Reconciliation};

/// Why `step` cannot run on a provider that promises `caps`, if it cannot.
pub(super) fn unmet(caps: &Capabilities, step: GateStep) -> Option<String> {
    let gap = match step {
        GateStep::CreateRecipient => None,
        GateStep::LockQuote if caps.quote != QuoteKind::Binding => Some(
            "the provider gives no binding quote, and a run on a non-binding pre-flight is not supported yet",
        ),
        GateStep::LockQuote => None,
        GateStep::Transfer if !caps.transfer_ids => {
            Some("the provider gives no transfer id to follow the transfer by")
        }
        GateStep::Transfer if caps.reconciliation != Reconciliation::ByReference => Some(
            "the provider cannot be asked which transfer a quote made, and reconciling from evidence is not supported yet",
        ),
        GateStep::Transfer => None,
    };
    gap.map(|why| format!("{why}; nothing was moved at {step:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: Capabilities = Capabilities {
        quote: QuoteKind::Binding,
        transfer_ids: true,
        reconciliation: Reconciliation::ByReference,
    };

    #[test]
    fn a_provider_promising_everything_may_run_every_step() {
        for step in [
            GateStep::CreateRecipient,
            GateStep::LockQuote,
            GateStep::Transfer,
        ] {
            assert_eq!(unmet(&FULL, step), None, "{step:?}");
        }
    }

    #[test]
    fn a_provider_without_binding_quotes_or_transfer_ids_is_refused_at_that_step() {
        let preflight_only = Capabilities {
            quote: QuoteKind::NonBinding,
            ..FULL
        };
        let why = unmet(&preflight_only, GateStep::LockQuote).unwrap_or_default();
        assert!(why.contains("no binding quote"), "{why}");
        assert_eq!(unmet(&preflight_only, GateStep::CreateRecipient), None);

        let no_ids = Capabilities {
            transfer_ids: false,
            reconciliation: Reconciliation::ByEvidence,
            ..FULL
        };
        let why = unmet(&no_ids, GateStep::Transfer).unwrap_or_default();
        assert!(why.contains("no transfer id"), "{why}");
        let by_evidence = Capabilities {
            reconciliation: Reconciliation::ByEvidence,
            ..FULL
        };
        let why = unmet(&by_evidence, GateStep::Transfer).unwrap_or_default();
        assert!(why.contains("from evidence"), "{why}");
        assert_eq!(unmet(&by_evidence, GateStep::LockQuote), None);
    }
}
