//! SQL for the names the kill switch accepts beyond the files: every job id and grant
//! alias that has runs, so a removed job's runs in flight can still be halted.

use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    /// Every distinct job id that has runs, sorted.
    pub async fn job_ids_with_runs(&self) -> Result<Vec<String>, StoreError> {
        self.distinct("SELECT DISTINCT job_id FROM runs ORDER BY job_id")
            .await
    }

    /// Every distinct grant alias that has runs or a stored grant, sorted.
    pub async fn grant_aliases_in_use(&self) -> Result<Vec<String>, StoreError> {
        self.distinct("SELECT grant_alias FROM runs UNION SELECT alias FROM grants ORDER BY 1")
            .await
    }

    async fn distinct(&self, sql: &'static str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(sql).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }
}
