//! Keep-alive, for both providers: a refresh token can die unused (Baanx's after 7
//! days, Busha's 30-day window slides), so the worker refreshes every active grant
//! whose refresh token would die before the worker next looks, and alerts when it
//! cannot.
//!
//! Where a lifetime is absolute, refreshing does not extend it: a refresh that leaves
//! the expiry where it was proves that, and the grant is then alerted about once per
//! expiry (`grant.expiring`, naming the grant and the date by which the customer must
//! connect again) and not refreshed again for it. Alerts come from audit entries
//! (`crate::alerts`): `grant.expiring`, `grant.keepalive_failed`, and
//! `grant.disconnected` when the provider refuses the refresh token.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;

use super::{Custodian, GrantError, GrantStatus};
use crate::audit::NewAuditEntry;
use crate::store::{GrantRow, StoreError};

/// When keep-alive acts.
#[derive(Clone, Debug)]
pub struct KeepAlive {
    /// Refresh a grant whose refresh token dies within this window: more than the
    /// time until the next keep-alive pass, so that a pass never comes too late, and
    /// early enough that an absolute lifetime is alerted well before it ends.
    pub refresh_within: Duration,
}

impl Default for KeepAlive {
    /// Three days: well before a 7-day lifetime ends, and many hourly passes of slack.
    fn default() -> Self {
        Self {
            refresh_within: Duration::days(3),
        }
    }
}

/// What one pass did, by alias.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeepAliveReport {
    pub refreshed: Vec<String>,
    /// Absolute lifetimes alerted about: (alias, reconnect by).
    pub expiring: Vec<(String, DateTime<Utc>)>,
    /// Refreshes that failed: (alias, why). Each is audited and alerted.
    pub failed: Vec<(String, String)>,
}

impl Custodian {
    /// One keep-alive pass over every active grant this custodian can refresh.
    pub async fn keep_alive(&self, policy: &KeepAlive) -> Result<KeepAliveReport, GrantError> {
        let mut report = KeepAliveReport::default();
        for row in self.store().grants().await? {
            let Some(dies) = row.refresh_expires_at else {
                continue;
            };
            let due = dies - self.now() <= policy.refresh_within;
            let known_absolute = row.expiry_warned_for == Some(dies);
            if row.status != GrantStatus::Active.as_str()
                || !self.handles(&row.provider)
                || !due
                || known_absolute
            {
                continue;
            }
            self.keep_one(&row, dies, &mut report).await?;
        }
        Ok(report)
    }

    async fn keep_one(
        &self,
        row: &GrantRow,
        dies: DateTime<Utc>,
        report: &mut KeepAliveReport,
    ) -> Result<(), GrantError> {
        match self.refresh_now(&row.id).await {
            Ok(_) => report.refreshed.push(row.alias.clone()),
            Err(e) => {
                // A refused refresh token was audited as a disconnect (and alerted).
                if !e.needs_reconsent() {
                    self.audit_failure(row, dies, &e.to_string()).await?;
                }
                tracing::error!(grant = %row.alias, error = %e, "keep-alive could not refresh the grant");
                report.failed.push((row.alias.clone(), e.to_string()));
                return Ok(());
            }
        }
        let after = self.store().grant(&row.id).await?;
        let still = after.as_ref().and_then(|r| r.refresh_expires_at);
        if let Some(new_dies) = still.filter(|d| *d <= dies + Duration::minutes(1)) {
            self.warn_expiring(row, new_dies).await?;
            report.expiring.push((row.alias.clone(), new_dies));
        }
        Ok(())
    }

    /// An absolute lifetime: alerted once, with the reconnect-by date.
    async fn warn_expiring(&self, row: &GrantRow, dies: DateTime<Utc>) -> Result<(), StoreError> {
        let reason = format!(
            "grant {} cannot be kept alive past {}: refreshing does not extend its refresh token (an absolute lifetime); the customer must connect again by then (`treasury connect {}`)",
            row.alias,
            dies.to_rfc3339(),
            row.alias
        );
        tracing::warn!(grant = %row.alias, reconnect_by = %dies, "grant expiring");
        let now = self.now();
        let mut tx = self.store().begin().await?;
        self.store()
            .mark_expiry_warned_in(&mut tx, &row.id, dies)
            .await?;
        let entry = NewAuditEntry::new(
            self.owner(),
            "grant.expiring",
            json!({
                "alias": row.alias,
                "provider": row.provider,
                "reconnect_by": dies.to_rfc3339(),
                "reason": reason,
            }),
        )
        .grant(&row.id);
        self.store().append_audit_in(&mut tx, now, entry).await?;
        tx.commit().await.map_err(StoreError::from)
    }

    async fn audit_failure(
        &self,
        row: &GrantRow,
        dies: DateTime<Utc>,
        why: &str,
    ) -> Result<(), StoreError> {
        let reason = format!(
            "keep-alive could not refresh grant {} ({why}); its refresh token dies at {}",
            row.alias,
            dies.to_rfc3339()
        );
        let entry = NewAuditEntry::new(
            self.owner(),
            "grant.keepalive_failed",
            json!({"alias": row.alias, "provider": row.provider, "reason": reason}),
        )
        .grant(&row.id);
        self.store()
            .append_audit(self.now(), entry)
            .await
            .map(|_| ())
    }
}
