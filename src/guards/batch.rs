//! Batch approval of one occurrence, shared by `treasury runs approve --occurrence` and
//! the console's inbox: the preview an approver sees (count, totals per currency, new
//! payees), then the approval of exactly the runs shown, one by one through
//! `Store::approve_run` (so each run's rules hold as for a single approval).

use chrono::{DateTime, Utc};

use super::{ApprovalPreview, Operator, preview_batch};
use crate::runs::{Run, RunId};
use crate::store::{RunFilter, Store, StoreError};

/// The preview of `job`'s occurrence `prefix`, or `None` when it has no runs at all.
pub async fn preview_occurrence(
    store: &Store,
    job: &str,
    prefix: &str,
) -> Result<Option<ApprovalPreview>, StoreError> {
    let batch = store.runs_of_occurrence(job, prefix).await?;
    if batch.is_empty() {
        return Ok(None);
    }
    let first = batch.iter().map(|r| r.created_at).min().unwrap_or_default();
    let earlier: Vec<Run> = store
        .list_runs(&RunFilter {
            job_id: Some(job.to_string()),
            state: None,
            limit: Some(i64::MAX),
        })
        .await?
        .into_iter()
        .filter(|r| r.created_at < first && !batch.iter().any(|b| b.id == r.id))
        .collect();
    Ok(Some(preview_batch(job, prefix, &batch, &earlier)))
}

/// How a batch approval went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchApproved {
    /// Runs that now have all their approvals and are due.
    pub released: usize,
    /// Runs that recorded the approval and wait for more approvers.
    pub recorded: usize,
    /// Why each refused run was refused.
    pub refused: Vec<String>,
}

/// Approves exactly the run ids shown to the approver (a run added meanwhile is not
/// approved unseen).
pub async fn approve_shown(
    store: &Store,
    shown: &[String],
    who: &Operator,
    at: DateTime<Utc>,
) -> Result<BatchApproved, StoreError> {
    let mut out = BatchApproved::default();
    for id in shown {
        let Some(id) = RunId::parse(id) else {
            out.refused.push(format!("{id:?} is not a run id"));
            continue;
        };
        match store.approve_run(&id, who, at).await? {
            Ok(a) if a.released => out.released += 1,
            Ok(_) => out.recorded += 1,
            Err(why) => out.refused.push(why),
        }
    }
    Ok(out)
}
