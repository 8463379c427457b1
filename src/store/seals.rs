//! Reads for the seals (see `seal`): a run's sealing entries, and the whole store
//! checked against its seals for `treasury audit verify`.

use super::{RunFilter, Store, StoreError};
use crate::audit::AuditEntry;
use crate::runs::RunId;
use crate::seal::{SealReport, SealVerifier};

impl Store {
    /// The entries that seal `run_id` and approve it (`run.created`, `run.approved`),
    /// in chain order.
    pub async fn seal_entries(&self, run_id: &RunId) -> Result<Vec<AuditEntry>, StoreError> {
        let mut entries = self.audit_entries(None, Some(run_id.as_str())).await?;
        entries.retain(|e| e.action == "run.created" || e.action == "run.approved");
        Ok(entries)
    }

    /// Every MAC'd entry's MAC and every run's row against its seal.
    pub async fn verify_seals(&self) -> Result<SealReport, StoreError> {
        let mut verifier = SealVerifier::new(self.seal_keys());
        for entry in self.audit_entries(None, None).await? {
            verifier.push(&entry);
        }
        let runs = self
            .list_runs(&RunFilter {
                limit: Some(i64::MAX),
                ..RunFilter::default()
            })
            .await?;
        verifier.check_runs(&runs);
        Ok(verifier.finish())
    }
}
