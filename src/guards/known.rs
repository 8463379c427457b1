//! The names a halt or resume may target: a typo in an emergency must not look like a
//! kill switch pulled. A job id is known if it is in `jobs/` or has runs in the store;
//! a grant alias if config declares it, the store holds it, or runs used it. A scope
//! halted now is always known, so that it can be resumed.

use std::collections::BTreeSet;

use super::HaltScope;
use crate::store::{Store, StoreError};

/// Most names an unknown-name message lists.
const LISTED: usize = 20;

/// Every job id and grant alias the kill switch accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownNames {
    pub jobs: BTreeSet<String>,
    pub grants: BTreeSet<String>,
}

impl KnownNames {
    /// The names known from the job files (`file_jobs`), config (`config_grants`) and
    /// the store: its runs, its grants and its active halts.
    pub async fn gather(
        store: &Store,
        file_jobs: impl IntoIterator<Item = String>,
        config_grants: impl IntoIterator<Item = String>,
    ) -> Result<Self, StoreError> {
        let mut known = KnownNames {
            jobs: file_jobs.into_iter().collect(),
            grants: config_grants.into_iter().collect(),
        };
        known.jobs.extend(store.job_ids_with_runs().await?);
        known.grants.extend(store.grant_aliases_in_use().await?);
        for halt in store.halts().await? {
            match halt.scope {
                HaltScope::Job(j) => known.jobs.insert(j),
                HaltScope::Grant(g) => known.grants.insert(g),
                HaltScope::All => false,
            };
        }
        Ok(known)
    }

    /// Refuses a job or grant nobody knows, suggesting the closest known name.
    pub fn check(&self, scope: &HaltScope) -> Result<(), String> {
        let (what, name, known, where_) = match scope {
            HaltScope::All => return Ok(()),
            HaltScope::Job(j) => (
                "job",
                j,
                &self.jobs,
                "in the jobs directory or among the store's runs",
            ),
            HaltScope::Grant(g) => (
                "grant",
                g,
                &self.grants,
                "in config ([[grants]]), the store's grants or its runs",
            ),
        };
        if known.contains(name) {
            return Ok(());
        }
        let mut message = format!("no {what} {name:?} {where_}: nothing was changed");
        if let Some(close) = closest(name, known) {
            message.push_str(&format!("; did you mean {close:?}?"));
        }
        if known.is_empty() {
            message.push_str(&format!(" (no {what} is known)"));
        } else {
            let listed: Vec<&str> = known.iter().take(LISTED).map(String::as_str).collect();
            let more = known.len().saturating_sub(LISTED);
            message.push_str(&format!(" (known: {}", listed.join(", ")));
            if more > 0 {
                message.push_str(&format!(" and {more} more"));
            }
            message.push(')');
        }
        Err(message)
    }
}

/// The known name nearest to `name` by edit distance, if any is near enough to be a
/// plausible typo (at most a third of the longer name's length, and at least 2 edits).
fn closest<'k>(name: &str, known: &'k BTreeSet<String>) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(name, k), k.as_str()))
        .filter(|(d, k)| *d <= (name.chars().count().max(k.chars().count()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> KnownNames {
        KnownNames {
            jobs: ["vendor-weekly", "salaries-monthly"]
                .map(String::from)
                .into(),
            grants: ["acme-treasury"].map(String::from).into(),
        }
    }

    #[test]
    fn a_typo_is_refused_with_the_closest_known_name() {
        let e = known()
            .check(&HaltScope::Grant("acme-treasry".into()))
            .unwrap_err();
        assert!(e.contains("no grant \"acme-treasry\""), "{e}");
        assert!(e.contains("did you mean \"acme-treasury\"?"), "{e}");
        let e = known()
            .check(&HaltScope::Job("vendor-weeky".into()))
            .unwrap_err();
        assert!(e.contains("did you mean \"vendor-weekly\"?"), "{e}");
        let e = known()
            .check(&HaltScope::Job("no-such-job".into()))
            .unwrap_err();
        assert!(!e.contains("did you mean"), "nothing is close: {e}");
        assert!(e.contains("known: salaries-monthly, vendor-weekly"), "{e}");
        assert!(
            known()
                .check(&HaltScope::Job("vendor-weekly".into()))
                .is_ok()
        );
        assert!(known().check(&HaltScope::All).is_ok());
    }
}
