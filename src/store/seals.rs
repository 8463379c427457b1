//! The whole store checked against its seals, for `treasury audit verify` (the
//! per-step reads are in `audit`).

use super::{RunFilter, Store, StoreError};
use crate::seal::{SealReport, SealVerifier};

impl Store {
    /// Every MAC'd entry's MAC and every run's row against its seal.
    pub async fn verify_seals(&self) -> Result<SealReport, StoreError> {
        let mut verifier = SealVerifier::new(self.seal_keys());
        // Page by sequence number: the log can hold millions of entries.
        let mut after = 0;
        loop {
            let page = self.audit_entries_after(after, 10_000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            page.iter().for_each(|e| verifier.push(e));
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
