//! The check before every money-moving step: the run's row, recomputed, must equal
//! what its `run.created` entry sealed under the worker's key, and an approval the
//! seal requires must be proven by `run.approved` entries that carry a valid MAC.
//!
//! Its proof, [`SealChecked`], can only be made here, and the pipeline's money-moving
//! calls cannot be made without one (see `pipeline::lease::Cover`).

use std::collections::BTreeSet;
use std::fmt;

use crate::audit::AuditEntry;
use crate::runs::{Amount, Run};

use super::RECIPIENT_RESOLVED;
use super::key::{MacError, SealKeys};
use super::spec::RunSeal;

/// Proof that a run's row matched its seal when the step began. Only [`check_run`]
/// makes one.
#[derive(Debug)]
pub struct SealChecked {
    _private: (),
}

impl SealChecked {
    /// A proof for unit tests of code that needs one.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        Self { _private: () }
    }
}

/// Why a run may not move money: its row no longer matches its seal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SealBreak {
    /// No `run.created` entry for the run, or one without a seal.
    NoSeal,
    /// The `run.created` entry's MAC does not prove it.
    BadMac { seq: i64, why: MacError },
    /// The spec in the row differs from the sealed one.
    SpecChanged,
    /// The approval rule differs from the sealed one.
    RuleChanged,
    /// The seal requires approval and the chain does not prove enough of it.
    ApprovalUnproven {
        proven: usize,
        needed: u32,
        forged: Vec<i64>,
    },
    /// What is asked of Busha is outside the sealed bound.
    OutOfBounds(String),
    /// The row names a recipient that no MAC'd `run.recipient.resolved` entry names.
    RecipientChanged { row: String, sealed: Option<String> },
}

impl fmt::Display for SealBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealBreak::NoSeal => write!(f, "the run has no sealed run.created entry"),
            SealBreak::BadMac { seq, why } => {
                write!(
                    f,
                    "its run.created entry (seq {seq}) is not the worker's: {why}"
                )
            }
            SealBreak::SpecChanged => write!(
                f,
                "its spec (amount, payee, grant, currencies, guard, limits or job version) differs from the one sealed at creation"
            ),
            SealBreak::RuleChanged => {
                write!(
                    f,
                    "its approval rule differs from the one sealed at creation"
                )
            }
            SealBreak::ApprovalUnproven {
                proven,
                needed,
                forged,
            } => {
                write!(
                    f,
                    "it needs {needed} approval(s) and the audit chain proves {proven}"
                )?;
                if !forged.is_empty() {
                    let seqs: Vec<String> = forged.iter().map(i64::to_string).collect();
                    write!(
                        f,
                        " (run.approved entries without a valid MAC: seq {})",
                        seqs.join(", ")
                    )?;
                }
                Ok(())
            }
            SealBreak::OutOfBounds(what) => write!(f, "{what}"),
            SealBreak::RecipientChanged { row, sealed } => match sealed {
                Some(sealed) => write!(
                    f,
                    "it names recipient {row}, but the worker resolved and sealed recipient {sealed}"
                ),
                None => write!(
                    f,
                    "it names recipient {row}, which no sealed run.recipient.resolved entry names"
                ),
            },
        }
    }
}

/// Checks `run` (as read from its row) against `entries`, the run's audit entries in
/// chain order.
pub fn check_run(
    keys: &SealKeys,
    run: &Run,
    entries: &[AuditEntry],
) -> Result<SealChecked, SealBreak> {
    let sealed = sealed(keys, entries)?;
    let (spec, rule) = keys.run_hashes(run, sealed.approval_required);
    if spec != sealed.spec_hash {
        return Err(SealBreak::SpecChanged);
    }
    if rule != sealed.rule_hash {
        return Err(SealBreak::RuleChanged);
    }
    if sealed.approval_required {
        approvals_proven(keys, &sealed, entries)?;
    }
    recipient_proven(keys, run, entries)?;
    ask_within(run)?;
    Ok(SealChecked { _private: () })
}

/// The seal of the run's first `run.created` entry, once its MAC proves it.
pub(super) fn sealed(keys: &SealKeys, entries: &[AuditEntry]) -> Result<RunSeal, SealBreak> {
    let created = entries
        .iter()
        .find(|e| e.action == "run.created")
        .ok_or(SealBreak::NoSeal)?;
    keys.check(created).map_err(|why| SealBreak::BadMac {
        seq: created.seq,
        why,
    })?;
    RunSeal::from_payload(&created.payload).ok_or(SealBreak::NoSeal)
}

/// The recipient the row names is the one the last MAC'd `run.recipient.resolved`
/// entry named: the worker resolved it and checked it against the payee.
fn recipient_proven(keys: &SealKeys, run: &Run, entries: &[AuditEntry]) -> Result<(), SealBreak> {
    let Some(ours) = run.recipient_id.as_deref() else {
        return Ok(());
    };
    let resolved = entries
        .iter()
        .rev()
        .filter(|e| e.action == RECIPIENT_RESOLVED)
        .find(|e| keys.check(e).is_ok())
        .and_then(|e| e.payload.get("recipient_id").and_then(|r| r.as_str()));
    match resolved {
        Some(id) if id == ours => Ok(()),
        other => Err(SealBreak::RecipientChanged {
            row: ours.to_string(),
            sealed: other.map(str::to_string),
        }),
    }
}

/// Distinct approvers, none the sealed owner, on `run.approved` entries with a valid MAC.
fn approvals_proven(
    keys: &SealKeys,
    sealed: &RunSeal,
    entries: &[AuditEntry],
) -> Result<(), SealBreak> {
    // The owner by confusable skeleton, as approval itself decides it; an approver by
    // account id (one account counts once whatever its name), by name before accounts.
    let owner = sealed.owner.as_deref().map(crate::operators::skeleton);
    let mut approvers = BTreeSet::new();
    let mut forged = Vec::new();
    for e in entries.iter().filter(|e| e.action == "run.approved") {
        if keys.check(e).is_err() {
            forged.push(e.seq);
            continue;
        }
        let Some(name) = e.payload.get("approver").and_then(|a| a.as_str()) else {
            continue;
        };
        if Some(crate::operators::skeleton(name)) == owner {
            continue;
        }
        let id = e.payload.get("approver_id").and_then(|a| a.as_str());
        approvers.insert(id.map_or_else(|| crate::operators::skeleton(name), str::to_string));
    }
    if approvers.len() as u64 >= u64::from(sealed.approvals_needed) {
        return Ok(());
    }
    Err(SealBreak::ApprovalUnproven {
        proven: approvers.len(),
        needed: sealed.approvals_needed,
        forged,
    })
}

/// The current quote ask stays within the sealed amount (a sweep's bound is the
/// approved maximum; any other run's amount is exact) and on the same side.
fn ask_within(run: &Run) -> Result<(), SealBreak> {
    let Some(ask) = &run.quote_ask else {
        return Ok(());
    };
    let within = match (&ask.amount, &run.spec.amount) {
        (Amount::Source { amount: a }, Amount::Source { amount: s })
        | (Amount::Target { amount: a }, Amount::Target { amount: s }) => {
            if run.spec.sweep.is_some() {
                a <= s
            } else {
                a == s
            }
        }
        _ => false,
    };
    if within {
        Ok(())
    } else {
        Err(SealBreak::OutOfBounds(format!(
            "its quote asks for {:?}, outside the sealed amount {:?}",
            ask.amount, run.spec.amount
        )))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use rust_decimal::dec;

    use super::*;
    use crate::audit::{GENESIS, NewAuditEntry};
    use crate::grants::crypto::Keyring;
    use crate::money::Currency;
    use crate::runs::{PayoutSpec, QuoteAsk, RecipientSpec, SweepBound};
    use crate::seal::seal_created;

    fn sweep_run() -> Run {
        let spec = PayoutSpec {
            grant: "g".into(),
            source_currency: Currency::new("USDT").unwrap(),
            target_currency: Currency::new("NGN").unwrap(),
            amount: Amount::Source { amount: dec!(500) },
            recipient: RecipientSpec::Id { id: "r1".into() },
            guard: Default::default(),
            max_requotes: 3,
            limits: Default::default(),
            approval: None,
            sweep: Some(SweepBound {
                keep: dec!(1000),
                min_amount: None,
            }),
        };
        Run::new("sweep", "tick-1", "v1", spec, false, Utc::now())
    }

    fn created(keys: &SealKeys, run: &Run) -> Vec<AuditEntry> {
        let new = keys.sign(
            seal_created(
                run,
                NewAuditEntry::new("worker:w", "run.created", serde_json::json!({})),
            ),
            run.created_at,
        );
        vec![AuditEntry::chain(1, run.created_at, new, GENESIS)]
    }

    fn asking(run: &mut Run, amount: rust_decimal::Decimal) {
        run.quote_ask = Some(QuoteAsk {
            reference: run.id.quote_reference(1),
            amount: Amount::Source { amount },
            recipient_id: "r1".into(),
        });
    }

    #[test]
    fn a_sweep_is_sealed_as_a_bound_and_may_only_ask_for_less() {
        let keys = SealKeys::from_keyring(&Keyring::generate(1));
        let mut run = sweep_run();
        let entries = created(&keys, &run);
        assert!(check_run(&keys, &run, &entries).is_ok());

        asking(&mut run, dec!(320.5));
        assert!(
            check_run(&keys, &run, &entries).is_ok(),
            "less than the bound"
        );
        asking(&mut run, dec!(500));
        assert!(check_run(&keys, &run, &entries).is_ok(), "the bound itself");
        asking(&mut run, dec!(500.01));
        assert!(matches!(
            check_run(&keys, &run, &entries),
            Err(SealBreak::OutOfBounds(_))
        ));
    }

    #[test]
    fn a_spec_edited_after_a_passing_check_is_caught_on_the_next() {
        let keys = SealKeys::from_keyring(&Keyring::generate(1));
        let mut run = sweep_run();
        let entries = created(&keys, &run);
        assert!(check_run(&keys, &run, &entries).is_ok());
        assert!(check_run(&keys, &run, &entries).is_ok(), "and again");
        run.spec.sweep.as_mut().unwrap().keep = dec!(10);
        assert_eq!(
            check_run(&keys, &run, &entries).err(),
            Some(SealBreak::SpecChanged)
        );
        run.spec.sweep.as_mut().unwrap().keep = dec!(1000);
        run.job_version = "v2".into();
        assert_eq!(
            check_run(&keys, &run, &entries).err(),
            Some(SealBreak::SpecChanged)
        );
    }

    #[test]
    fn a_seal_made_before_a_key_rotation_still_verifies_and_another_key_refuses_it() {
        use base64::Engine;
        let b64 = || base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let (k1, k2) = (b64(), b64());
        let run = sweep_run();
        let entries = created(&SealKeys::from_keyring(&Keyring::parse(&k1).unwrap()), &run);
        // Rotation keeps the old version beside the new one, which now signs.
        let rotated = SealKeys::from_keyring(&Keyring::parse(&format!("v2:{k2},v1:{k1}")).unwrap());
        assert!(check_run(&rotated, &run, &entries).is_ok());
        let stranger = SealKeys::from_keyring(&Keyring::generate(1));
        assert!(matches!(
            check_run(&stranger, &run, &entries),
            Err(SealBreak::BadMac {
                seq: 1,
                why: MacError::Invalid
            })
        ));
    }
}
