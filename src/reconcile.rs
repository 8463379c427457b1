//! Read-only reconciliation of our runs against Busha: transfers on a customer's
//! account that no run of ours made, runs whose Busha record disagrees with ours, and
//! transfer ids that two runs claim.
//!
//! A transfer belongs to a run if the run ever held it: its current transfer, or any
//! it submitted or adopted before a retry (the store's record of held transfers). So a
//! refunded transfer followed by `runs retry` and a second transfer is not a finding.
//!
//! `treasury reconcile` exits [`EXIT_FINDINGS`] if it found anything, else
//! [`EXIT_UNCHECKED`] if it could not check everything (a grant it could not read, a
//! list item it could not read, a paging fault, an interruption), else 0.

mod listing;
mod runs;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::pipeline::TokenSource;
use crate::provider::busha::BushaClient;
use crate::store::{RunFilter, Store, StoreError};

/// Exit status when reconciliation found something (even if it could not check all).
pub const EXIT_FINDINGS: u8 = 1;
/// Exit status when it found nothing but could not check everything.
pub const EXIT_UNCHECKED: u8 = 3;
/// The default bound on pages of `GET /v1/transfers` per grant (100 transfers each).
pub const DEFAULT_MAX_PAGES: u32 = 1_000;

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

/// A transfer id that more than one run claims.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SharedTransfer {
    pub transfer_id: String,
    pub run_ids: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub transfers_checked: usize,
    pub runs_checked: usize,
    pub unknown_transfers: Vec<UnknownTransfer>,
    pub disagreements: Vec<Disagreement>,
    pub shared_transfers: Vec<SharedTransfer>,
    /// What could not be checked, and why: a grant without a usable token or whose
    /// listing failed or was cut short, an item Busha listed that could not be read.
    pub unchecked: Vec<String>,
    /// Set when a signal stopped the check: how far it got.
    pub interrupted: Option<String>,
}

impl Report {
    /// Anything that disagrees: unknown transfers, disagreeing runs, shared transfers.
    pub fn has_findings(&self) -> bool {
        !(self.unknown_transfers.is_empty()
            && self.disagreements.is_empty()
            && self.shared_transfers.is_empty())
    }

    /// Everything in scope was checked.
    pub fn is_complete(&self) -> bool {
        self.unchecked.is_empty() && self.interrupted.is_none()
    }

    /// Complete, and nothing found.
    pub fn is_clean(&self) -> bool {
        !self.has_findings() && self.is_complete()
    }

    /// 0 when clean, [`EXIT_FINDINGS`] on any finding, else [`EXIT_UNCHECKED`].
    pub fn exit_code(&self) -> u8 {
        if self.has_findings() {
            EXIT_FINDINGS
        } else if !self.is_complete() {
            EXIT_UNCHECKED
        } else {
            0
        }
    }
}

/// What to check.
#[derive(Clone, Debug)]
pub struct Scope {
    /// Grant aliases whose transfers are listed.
    pub grants: Vec<String>,
    /// Runs created, and transfers made, at or after this instant.
    pub since: DateTime<Utc>,
    /// At most this many pages of transfers per grant.
    pub max_pages: u32,
}

impl Scope {
    pub fn new(grants: Vec<String>, since: DateTime<Utc>) -> Self {
        Self {
            grants,
            since,
            max_pages: DEFAULT_MAX_PAGES,
        }
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
) -> Result<Report, StoreError> {
    let scope = Scope::new(grants.to_vec(), since);
    reconcile_until(store, busha, tokens, &scope, &CancellationToken::new()).await
}

/// [`reconcile`] within `scope`, stopping early (with [`Report::interrupted`] saying
/// how far it got) when `shutdown` is cancelled.
pub async fn reconcile_until(
    store: &Store,
    busha: &BushaClient,
    tokens: &dyn TokenSource,
    scope: &Scope,
    shutdown: &CancellationToken,
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let all_runs = store
        .list_runs(&RunFilter {
            limit: Some(1_000_000),
            ..RunFilter::default()
        })
        .await?;
    let ctx = listing::Ctx {
        store,
        busha,
        tokens,
        scope,
        shutdown,
        runs: listing::RunIndex::new(&all_runs),
    };
    let seen = listing::list_all(&ctx, &mut report).await?;
    if report.interrupted.is_some() {
        return Ok(report);
    }
    let in_scope = all_runs
        .iter()
        .filter(|r| r.created_at >= scope.since && scope.grants.contains(&r.spec.grant));
    for run in in_scope {
        runs::check_run(store, run, &seen, &mut report).await?;
    }
    report.shared_transfers = store
        .shared_transfers()
        .await?
        .into_iter()
        .map(|s| SharedTransfer {
            transfer_id: s.transfer_id,
            run_ids: s.runs.iter().map(ToString::to_string).collect(),
        })
        .collect();
    Ok(report)
}
