//! Listing each grant's transfers since the scope's start, page by page under a
//! [`Pager`], and telling ours from unknown ones as they come.

use std::collections::{HashMap, HashSet};

use tokio_util::sync::CancellationToken;

use super::{Disagreement, Report, Scope, UnknownTransfer};
use crate::pipeline::TokenSource;
use crate::provider::AccessToken;
use crate::provider::busha::{BushaClient, Page, Pager, Skipped, Transfer, TransferFilter};
use crate::runs::Run;
use crate::store::{Store, StoreError};

const ENDPOINT: &str = "GET /v1/transfers";

/// What a check reads from.
pub(super) struct Ctx<'a> {
    pub store: &'a Store,
    pub busha: &'a BushaClient,
    pub tokens: &'a dyn TokenSource,
    pub scope: &'a Scope,
    pub shutdown: &'a CancellationToken,
    /// Every run in the store (a transfer since `since` may belong to an older run).
    pub runs: RunIndex<'a>,
}

/// Runs by id and by current transfer id.
pub(super) struct RunIndex<'a> {
    by_id: HashMap<&'a str, &'a Run>,
    by_transfer: HashMap<&'a str, &'a Run>,
}

impl<'a> RunIndex<'a> {
    pub fn new(runs: &'a [Run]) -> Self {
        Self {
            by_id: runs.iter().map(|r| (r.id.as_str(), r)).collect(),
            by_transfer: runs
                .iter()
                .filter_map(|r| r.transfer_id.as_deref().map(|t| (t, r)))
                .collect(),
        }
    }
}

/// What Busha listed.
#[derive(Default)]
pub(super) struct Seen {
    pub transfers: HashMap<String, Transfer>,
    /// Grants whose listing was read in full, every item readable.
    pub complete: HashSet<String>,
    /// Ids of listed items that could not be read (already reported as unchecked).
    pub unreadable: HashSet<String>,
}

enum Listed {
    Complete,
    Partial,
    Interrupted,
}

/// Lists every grant in scope, stopping at the first interruption.
pub(super) async fn list_all(ctx: &Ctx<'_>, report: &mut Report) -> Result<Seen, StoreError> {
    let mut seen = Seen::default();
    for grant in &ctx.scope.grants {
        match list_grant(ctx, grant, report, &mut seen).await? {
            Listed::Complete => {
                seen.complete.insert(grant.clone());
            }
            Listed::Partial => {}
            Listed::Interrupted => break,
        }
    }
    Ok(seen)
}

async fn list_grant(
    ctx: &Ctx<'_>,
    grant: &str,
    report: &mut Report,
    seen: &mut Seen,
) -> Result<Listed, StoreError> {
    let token = tokio::select! {
        biased;
        _ = ctx.shutdown.cancelled() => return Ok(interrupted(report, grant, 1)),
        t = ctx.tokens.access_token(grant) => t,
    };
    let token = match token {
        Ok(t) => t,
        Err(e) => {
            report
                .unchecked
                .push(format!("grant {grant}: no usable token: {e}"));
            return Ok(Listed::Partial);
        }
    };
    let mut pager = Pager::new(ENDPOINT, ctx.scope.max_pages);
    let mut readable = true;
    loop {
        let page = match next_page(ctx, &token, &pager).await {
            None => return Ok(interrupted(report, grant, pager.pages() + 1)),
            Some(Ok(page)) => page,
            Some(Err(e)) => {
                let at = pager.pages() + 1;
                report.unchecked.push(format!(
                    "grant {grant}: page {at} of its transfers could not be read: {e}"
                ));
                return Ok(Listed::Partial);
            }
        };
        let older = all_older(&page, ctx.scope.since);
        take_page(ctx, grant, page.items, report, seen).await?;
        readable &= take_skipped(ctx, grant, &page.skipped, report, seen);
        if older {
            break;
        }
        match pager.advance(page.next_cursor.as_deref()) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                report.unchecked.push(format!(
                    "grant {grant}: {e}; the transfers on later pages were not checked"
                ));
                return Ok(Listed::Partial);
            }
        }
    }
    Ok(if readable {
        Listed::Complete
    } else {
        Listed::Partial
    })
}

/// The next page, or `None` if a signal came first.
async fn next_page(
    ctx: &Ctx<'_>,
    token: &AccessToken,
    pager: &Pager,
) -> Option<Result<Page<Transfer>, crate::provider::busha::ProviderError>> {
    let filter = TransferFilter {
        quote_id: None,
        status: Vec::new(),
        cursor: pager.cursor(),
        limit: Some(100),
    };
    tokio::select! {
        biased;
        _ = ctx.shutdown.cancelled() => None,
        r = ctx.busha.list_transfers(token, &filter) => Some(r.map(|c| c.value)),
    }
}

fn interrupted(report: &mut Report, grant: &str, page: u32) -> Listed {
    report.interrupted = Some(format!(
        "interrupted by a signal before page {page} of grant {grant}'s transfers: {} transfers checked, no run checked",
        report.transfers_checked
    ));
    Listed::Interrupted
}

/// Busha lists newest first: a page whose every item is older than `since` ends the
/// listing. An item we could not read counts as older only if its `created_at` says so.
fn all_older(page: &Page<Transfer>, since: chrono::DateTime<chrono::Utc>) -> bool {
    let skipped_older = page.skipped.iter().all(|s| created_before(s, since));
    !(page.items.is_empty() && page.skipped.is_empty())
        && page.items.iter().all(|t| t.created_at < since)
        && skipped_older
}

fn created_before(s: &Skipped, since: chrono::DateTime<chrono::Utc>) -> bool {
    s.created_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t < since)
}

/// Checks each transfer since `since` against the run that holds it.
async fn take_page(
    ctx: &Ctx<'_>,
    grant: &str,
    items: Vec<Transfer>,
    report: &mut Report,
    seen: &mut Seen,
) -> Result<(), StoreError> {
    for t in items
        .into_iter()
        .filter(|t| t.created_at >= ctx.scope.since)
    {
        report.transfers_checked += 1;
        match holder(ctx, &t.id).await? {
            None => report.unknown_transfers.push(unknown(grant, &t)),
            Some(run) if run.spec.grant != grant => report.disagreements.push(Disagreement {
                run_id: run.id.to_string(),
                transfer_id: Some(t.id.clone()),
                problem: format!(
                    "Busha lists transfer {} on grant {grant}, but the run that holds it pays from grant {}",
                    t.id, run.spec.grant
                ),
            }),
            Some(_) => {}
        }
        seen.transfers.insert(t.id.clone(), t);
    }
    Ok(())
}

/// Reports every skipped item that could be in scope; false if any was.
fn take_skipped(
    ctx: &Ctx<'_>,
    grant: &str,
    skipped: &[Skipped],
    report: &mut Report,
    seen: &mut Seen,
) -> bool {
    let mut readable = true;
    // Reconciliation needs every transfer: only one provably older is out of scope.
    for s in skipped
        .iter()
        .filter(|s| !created_before(s, ctx.scope.since))
    {
        report.unchecked.push(format!(
            "grant {grant}: {ENDPOINT} listed {s}; it could not be checked"
        ));
        match &s.id {
            Some(id) => {
                seen.unreadable.insert(id.clone());
            }
            None => readable = false,
        }
    }
    readable
}

/// The run that holds `transfer_id` now or ever did.
async fn holder<'a>(ctx: &Ctx<'a>, transfer_id: &str) -> Result<Option<&'a Run>, StoreError> {
    if let Some(id) = ctx.store.transfer_holder(transfer_id).await? {
        if let Some(run) = ctx.runs.by_id.get(id.as_str()) {
            return Ok(Some(*run));
        }
    }
    // A run's current transfer counts even if the record of held ones lacks it.
    Ok(ctx.runs.by_transfer.get(transfer_id).copied())
}

fn unknown(grant: &str, t: &Transfer) -> UnknownTransfer {
    UnknownTransfer {
        grant: grant.to_string(),
        transfer_id: t.id.clone(),
        quote_id: t.quote_id.clone(),
        source: format!("{} {}", t.source_amount, t.source_currency),
        target: format!("{} {}", t.target_amount, t.target_currency),
        status: t.status.as_str().to_string(),
        created_at: t.created_at,
    }
}
