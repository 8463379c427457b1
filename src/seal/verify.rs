//! What `treasury audit verify` adds to the chain check: every MAC'd entry's MAC (each
//! bad one named by its sequence number) and every run's row against its seal (each
//! mismatch named by the run id).

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use crate::audit::AuditEntry;
use crate::runs::Run;

use super::key::SealKeys;
use super::spec::{RunSeal, rule_hash, spec_hash};
use super::{SealBreak, is_maced};

/// One thing the seals do not prove.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum SealProblem {
    /// An entry that must carry the worker's MAC does not.
    BadMac {
        seq: i64,
        action: String,
        run_id: Option<String>,
        why: String,
    },
    /// A run whose row does not match its seal.
    RunMismatch { run_id: String, why: String },
}

impl fmt::Display for SealProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealProblem::BadMac {
                seq,
                action,
                run_id,
                why,
            } => {
                write!(f, "entry {seq} ({action}")?;
                if let Some(run) = run_id {
                    write!(f, " of run {run}")?;
                }
                write!(f, ") is not the worker's: {why}")
            }
            SealProblem::RunMismatch { run_id, why } => write!(f, "run {run_id}: {why}"),
        }
    }
}

/// What the seal check found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SealReport {
    pub macs_checked: u64,
    pub runs_checked: u64,
    pub problems: Vec<SealProblem>,
}

/// Checks entries streamed in chain order, then the runs.
pub struct SealVerifier<'a> {
    keys: &'a SealKeys,
    seals: HashMap<String, Option<RunSeal>>,
    report: SealReport,
}

impl<'a> SealVerifier<'a> {
    pub fn new(keys: &'a SealKeys) -> Self {
        Self {
            keys,
            seals: HashMap::new(),
            report: SealReport::default(),
        }
    }

    pub fn push(&mut self, entry: &AuditEntry) {
        if !is_maced(&entry.action) {
            return;
        }
        self.report.macs_checked += 1;
        let proven = match self.keys.check(entry) {
            Ok(()) => true,
            Err(why) => {
                self.report.problems.push(SealProblem::BadMac {
                    seq: entry.seq,
                    action: entry.action.clone(),
                    run_id: entry.run_id.clone(),
                    why: why.to_string(),
                });
                false
            }
        };
        if entry.action == "run.created" {
            if let Some(run) = &entry.run_id {
                // The first run.created of a run counts; an unproven one seals nothing.
                self.seals.entry(run.clone()).or_insert_with(|| {
                    proven
                        .then(|| RunSeal::from_payload(&entry.payload))
                        .flatten()
                });
            }
        }
    }

    /// Checks every run in `runs` against the seal its entries carried.
    pub fn check_runs<'r>(&mut self, runs: impl IntoIterator<Item = &'r Run>) {
        for run in runs {
            self.report.runs_checked += 1;
            let why = match self.seals.get(run.id.as_str()) {
                None | Some(None) => Some(SealBreak::NoSeal),
                Some(Some(seal)) if spec_hash(run) != seal.spec_hash => {
                    Some(SealBreak::SpecChanged)
                }
                Some(Some(seal)) if rule_hash(run, seal.approval_required) != seal.rule_hash => {
                    Some(SealBreak::RuleChanged)
                }
                Some(Some(_)) => None,
            };
            if let Some(why) = why {
                self.report.problems.push(SealProblem::RunMismatch {
                    run_id: run.id.to_string(),
                    why: why.to_string(),
                });
            }
        }
    }

    pub fn finish(self) -> SealReport {
        self.report
    }
}
