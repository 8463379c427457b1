//! Read-only reconciliation of our runs against Busha: transfers on a customer's
//! account that no run of ours made, and runs whose Busha record disagrees with ours.
//! `treasury reconcile` exits 1 if it finds any.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::pipeline::TokenSource;
use crate::provider::busha::{BushaClient, Settlement, Transfer, TransferFilter};
use crate::runs::{Run, RunState};
use crate::store::{RunFilter, Store};

/// A transfer on the account that none of our runs made.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct UnknownTransfer {
    pub grant: String,
    pub transfer_id: String,
    pub quote_id: String,
    pub source: String,
    pub target: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// A run whose Busha record says something else.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Disagreement {
    pub run_id: String,
    pub transfer_id: Option<String>,
    pub problem: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub transfers_checked: usize,
    pub runs_checked: usize,
    pub unknown_transfers: Vec<UnknownTransfer>,
    pub disagreements: Vec<Disagreement>,
    /// Grants that could not be read (no usable token, Busha unreachable).
    pub unreadable: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.unknown_transfers.is_empty()
            && self.disagreements.is_empty()
            && self.unreadable.is_empty()
    }
}

/// Compares every run created since `since` on `grants` with the transfers Busha lists
/// for those grants since then. Makes no change anywhere.
pub async fn reconcile(
    store: &Store,
    busha: &BushaClient,
    tokens: &dyn TokenSource,
    grants: &[String],
    since: DateTime<Utc>,
) -> Result<Report, crate::store::StoreError> {
    let mut report = Report::default();
    let runs: Vec<Run> = store
        .list_runs(&RunFilter {
            limit: Some(1_000_000),
            ..RunFilter::default()
        })
        .await?
        .into_iter()
        .filter(|r| r.created_at >= since && grants.contains(&r.spec.grant))
        .collect();
    let ours: HashMap<&str, &Run> = runs
        .iter()
        .filter_map(|r| r.transfer_id.as_deref().map(|t| (t, r)))
        .collect();
    let mut seen: HashMap<String, Transfer> = HashMap::new();
    for grant in grants {
        let token = match tokens.access_token(grant).await {
            Ok(t) => t,
            Err(e) => {
                report.unreadable.push(format!("{grant}: {e}"));
                continue;
            }
        };
        let mut cursor = None;
        loop {
            let filter = TransferFilter {
                quote_id: None,
                status: Vec::new(),
                cursor: cursor.clone(),
                limit: Some(100),
            };
            let page = match busha.list_transfers(&token, &filter).await {
                Ok(c) => c.value,
                Err(e) => {
                    report.unreadable.push(format!("{grant}: {e}"));
                    break;
                }
            };
            let older = page.items.iter().all(|t| t.created_at < since);
            for t in page.items.into_iter().filter(|t| t.created_at >= since) {
                report.transfers_checked += 1;
                if !ours.contains_key(t.id.as_str()) {
                    report.unknown_transfers.push(UnknownTransfer {
                        grant: grant.clone(),
                        transfer_id: t.id.clone(),
                        quote_id: t.quote_id.clone(),
                        source: format!("{} {}", t.source_amount, t.source_currency),
                        target: format!("{} {}", t.target_amount, t.target_currency),
                        status: t.status.as_str().to_string(),
                        created_at: t.created_at,
                    });
                }
                seen.insert(t.id.clone(), t);
            }
            match page.next_cursor {
                Some(next) if !older => cursor = Some(next),
                _ => break,
            }
        }
    }
    for run in &runs {
        report.runs_checked += 1;
        if let Some(problem) = disagreement(run, &seen) {
            report.disagreements.push(Disagreement {
                run_id: run.id.to_string(),
                transfer_id: run.transfer_id.clone(),
                problem,
            });
        }
    }
    Ok(report)
}

fn disagreement(run: &Run, seen: &HashMap<String, Transfer>) -> Option<String> {
    let Some(id) = &run.transfer_id else {
        // No transfer recorded: Busha must not have one made from our quote.
        let quote = run.quote.as_ref()?;
        return seen.values().find(|t| t.quote_id == quote.id).map(|t| {
            format!(
                "Busha has transfer {} from our quote {}, but the run records none",
                t.id, quote.id
            )
        });
    };
    let Some(t) = seen.get(id) else {
        return Some(format!(
            "the run records transfer {id}, which Busha does not list"
        ));
    };
    if let Some(q) = &run.quote {
        if t.quote_id != q.id {
            return Some(format!(
                "transfer {id} was made from quote {}, the run locked {}",
                t.quote_id, q.id
            ));
        }
        if t.source_amount != q.source_amount || t.target_amount != q.target_amount {
            return Some(format!(
                "transfer {id} moves {} {} for {} {}; the run locked {} for {}",
                t.source_amount,
                t.source_currency,
                t.target_amount,
                t.target_currency,
                q.source_amount,
                q.target_amount
            ));
        }
    }
    match (run.state, t.settlement()) {
        (RunState::Settled, Settlement::Failed) => Some(format!(
            "the run is settled but Busha says {}",
            t.status.as_str()
        )),
        (RunState::Failed, Settlement::Succeeded) => Some(format!(
            "the run failed but Busha says {}",
            t.status.as_str()
        )),
        _ => None,
    }
}
