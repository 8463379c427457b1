//! Alerts: a grant that disconnects, a transfer stuck past a configured age, a run that
//! fails, and a halt. Each emits a structured log event, a metric, and, when a
//! notification URL is configured, a signed POST.
//!
//! The watcher tails the audit log rather than being called from every place that can
//! fail: whatever commits an entry gets its alert, and nothing needs to remember to.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::audit::AuditEntry;
use crate::clock::Clock;
use crate::config::Secret;
use crate::store::{Store, StoreError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    GrantDisconnected,
    TransferStuck,
    RunFailed,
    Halt,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::GrantDisconnected => "grant_disconnected",
            AlertKind::TransferStuck => "transfer_stuck",
            AlertKind::RunFailed => "run_failed",
            AlertKind::Halt => "halt",
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

/// Where alerts go: always the log and a metric; optionally a signed POST.
#[derive(Clone)]
pub struct AlertSink {
    http: reqwest::Client,
    target: Option<(url::Url, std::sync::Arc<Secret>)>,
}

impl AlertSink {
    /// `target`: the notification URL and the HMAC secret that signs each POST.
    pub fn new(target: Option<(url::Url, Secret)>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            http,
            target: target.map(|(u, s)| (u, std::sync::Arc::new(s))),
        }
    }

    pub async fn emit(&self, alert: &Alert) {
        tracing::warn!(alert = alert.kind.as_str(), subject = %alert.subject, audit_seq = alert.audit_seq, message = %alert.message, "ALERT");
        metrics::counter!("treasury_alerts_total", "kind" => alert.kind.as_str()).increment(1);
        let Some((url, secret)) = &self.target else {
            return;
        };
        let body = serde_json::to_vec(alert).unwrap_or_default();
        let timestamp = alert.at.timestamp().to_string();
        let signature = sign(secret.expose().as_bytes(), &timestamp, &body);
        let sent = self
            .http
            .post(url.clone())
            .header("content-type", "application/json")
            .header("x-treasury-timestamp", &timestamp)
            .header("x-treasury-signature", format!("sha256={signature}"))
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::error!(status = r.status().as_u16(), "alert notification refused"),
            Err(e) => tracing::error!(error = %e.without_url(), "alert notification not delivered"),
        }
    }
}

/// Hex HMAC-SHA256 over `"{timestamp}.{body}"`, as the notification receiver checks it.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
        "grant.disconnected" | "grant.lost" => (
            AlertKind::GrantDisconnected,
            entry.grant_id.clone().unwrap_or_default(),
            format!("{}: {reason}; the customer must reconnect", entry.action),
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

    /// Emits the alerts since the last poll; returns them.
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
                        run.transfer_status.unwrap_or_else(|| "in flight".into()),
                        run.updated_at.to_rfc3339()
                    ),
                    at: now,
                    audit_seq: None,
                });
            }
        }
        for alert in &alerts {
            self.sink.emit(alert).await;
        }
        Ok(alerts)
    }
}
