//! Alerts: a grant that disconnects, a transfer stuck past a configured age, a run that
//! fails, a halt, and edited job files that were refused. Each emits a structured log event, a metric, and, when a
//! notification URL is configured, a signed POST.
//!
//! The watcher tails the audit log rather than being called from every place that can
//! fail: whatever commits an entry gets its alert, and nothing needs to remember to. A
//! grant whose tokens this process cannot open is raised by the seal check
//! (`grants::seals`) through the same sink.
//!
//! - [`sink`]: the log, the metric and the signed POST, with bounded retries.

mod sink;

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

pub use sink::{AlertSink, Retry, SinkOptions, sign};

use crate::audit::AuditEntry;
use crate::clock::Clock;
use crate::store::{Store, StoreError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    GrantDisconnected,
    /// A grant's refresh token will die on a date refreshing cannot move (an absolute
    /// lifetime), or keep-alive could not refresh it.
    GrantExpiring,
    /// A grant's tokens do not open under this process's master key.
    GrantUndecryptable,
    TransferStuck,
    RunFailed,
    Halt,
    /// A run's row no longer matches its seal: it was changed outside the worker.
    SealBroken,
    /// Edited job files were refused whole; the old set keeps running.
    JobsRefused,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::GrantDisconnected => "grant_disconnected",
            AlertKind::GrantExpiring => "grant_expiring",
            AlertKind::GrantUndecryptable => "grant_undecryptable",
            AlertKind::TransferStuck => "transfer_stuck",
            AlertKind::RunFailed => "run_failed",
            AlertKind::Halt => "halt",
            AlertKind::SealBroken => "seal_broken",
            AlertKind::JobsRefused => "jobs_refused",
        }
    }
}

/// One alert. Carries ids and reasons, never secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    /// The run, grant or halt scope concerned.
    pub subject: String,
    pub message: String,
    pub at: DateTime<Utc>,
    /// The audit entry that raised it, if any.
    pub audit_seq: Option<i64>,
}

/// What an audit entry means for alerting.
pub fn alert_for(entry: &AuditEntry) -> Option<Alert> {
    let reason = entry
        .payload
        .get("reason")
        .and_then(|r| r.as_str())
        .unwrap_or_default();
    let (kind, subject, message) = match entry.action.as_str() {
        "run.failed" => (
            AlertKind::RunFailed,
            entry.run_id.clone().unwrap_or_default(),
            format!("run failed: {reason}"),
        ),
        "run.seal_broken" => (
            AlertKind::SealBroken,
            entry.run_id.clone().unwrap_or_default(),
            format!("run stopped, its row does not match its seal: {reason}"),
        ),
        "grant.disconnected" | "grant.lost" => (
            AlertKind::GrantDisconnected,
            entry.grant_id.clone().unwrap_or_default(),
            format!("{}: {reason}; the customer must reconnect", entry.action),
        ),
        "grant.expiring" | "grant.keepalive_failed" => (
            AlertKind::GrantExpiring,
            entry.grant_id.clone().unwrap_or_default(),
            format!("{}: {reason}", entry.action),
        ),
        "halt.on" => (
            AlertKind::Halt,
            entry
                .payload
                .get("scope")
                .and_then(|s| s.as_str())
                .unwrap_or("all")
                .to_string(),
            format!("halted by {}", entry.actor),
        ),
        "jobs.reload.refused" => (
            AlertKind::JobsRefused,
            entry
                .payload
                .get("dir")
                .and_then(|d| d.as_str())
                .unwrap_or("jobs")
                .to_string(),
            format!("job files refused: {reason}"),
        ),
        _ => return None,
    };
    Some(Alert {
        kind,
        subject,
        message,
        at: entry.at,
        audit_seq: Some(entry.seq),
    })
}

/// Tails the audit log and scans for stuck transfers.
pub struct AlertWatcher {
    store: Store,
    sink: AlertSink,
    clock: Clock,
    stuck_after: Duration,
    cursor: i64,
    stuck_seen: HashSet<String>,
}

impl AlertWatcher {
    /// Starts at the current head: history is not re-alerted after a restart.
    pub async fn new(
        store: Store,
        sink: AlertSink,
        clock: Clock,
        stuck_after: Duration,
    ) -> Result<Self, StoreError> {
        let cursor = store.audit_head().await?.map_or(0, |(seq, _)| seq);
        Ok(Self {
            store,
            sink,
            clock,
            stuck_after,
            cursor,
            stuck_seen: HashSet::new(),
        })
    }

    /// Emits the alerts since the last poll; returns those whose kind is on.
    pub async fn poll(&mut self) -> Result<Vec<Alert>, StoreError> {
        let mut alerts = Vec::new();
        loop {
            let entries = self.store.audit_entries_after(self.cursor, 500).await?;
            let Some(last) = entries.last() else { break };
            self.cursor = last.seq;
            alerts.extend(entries.iter().filter_map(alert_for));
        }
        let now = self.clock.now();
        for run in self.store.stuck_transfers(now - self.stuck_after).await? {
            if self.stuck_seen.insert(run.id.to_string()) {
                alerts.push(Alert {
                    kind: AlertKind::TransferStuck,
                    subject: run.id.to_string(),
                    message: format!(
                        "transfer {} has been {} since {}",
                        run.transfer_id.unwrap_or_default(),
                        run.transfer_status
                            .map_or_else(|| "in flight".into(), |s| s.to_string()),
                        run.updated_at.to_rfc3339()
                    ),
                    at: now,
                    audit_seq: None,
                });
            }
        }
        alerts.retain(|alert| self.sink.emit(alert));
        Ok(alerts)
    }
}
