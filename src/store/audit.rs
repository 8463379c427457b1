//! SQL for the audit log: append in the caller's transaction, read, verify, export.

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::any::AnyRow;

use sqlx::AnyConnection;

use super::{AuditHead, Backend, Store, StoreError, Tx, from_millis, millis};
use crate::audit::{AuditEntry, ChainBreak, ChainVerifier, GENESIS, NewAuditEntry, VerifiedChain};
use crate::runs::RunId;

/// Any key will do: it only has to be the same for every appender of this store.
const AUDIT_LOCK_KEY: i64 = 0x7472_6561_7375_7279; // "treasury"

/// The audit columns in row order (a macro so that queries stay `&'static str`).
macro_rules! columns {
    () => {
        "seq, at_ms, actor, action, run_id, job_id, grant_id, payload, prev_hash, hash"
    };
}

impl Store {
    /// Appends `entry` inside `tx`, so that it commits or rolls back with the state
    /// change it describes. Appends are serialised into one chain per store: SQLite
    /// holds the write lock for the whole transaction; PostgreSQL takes a
    /// transaction-scoped advisory lock.
    pub async fn append_audit_in(
        &self,
        tx: &mut Tx,
        at: DateTime<Utc>,
        entry: NewAuditEntry,
    ) -> Result<AuditEntry, StoreError> {
        append_audit_on(self.backend, tx, &mut AuditHead::default(), at, entry).await
    }

    /// Appends `entry` in a transaction of its own.
    pub async fn append_audit(
        &self,
        at: DateTime<Utc>,
        entry: NewAuditEntry,
    ) -> Result<AuditEntry, StoreError> {
        let mut tx = self.begin().await?;
        let e = self.append_audit_in(&mut tx, at, entry).await?;
        tx.commit().await?;
        Ok(e)
    }

    /// The latest entry's sequence number and hash, if any.
    pub async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Entries at or after `since`, optionally for one run, oldest first.
    pub async fn audit_entries(
        &self,
        since: Option<DateTime<Utc>>,
        run_id: Option<&str>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM audit_log WHERE at_ms >= $1 AND ($2 IS NULL OR run_id = $2) ORDER BY seq"
        ))
        .bind(since.map_or(i64::MIN, millis))
        .bind(run_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// The `run.created` and `run.approved` entries of `run_id`, oldest first (one
    /// indexed lookup: this runs before every money-moving step).
    pub async fn seal_entries(&self, run_id: &RunId) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM audit_log WHERE run_id = $1 AND (action = 'run.created' OR action = 'run.approved' OR action = 'run.recipient.resolved') ORDER BY seq"
        ))
        .bind(run_id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Every `halt.on` and `halt.off` entry, oldest first (indexed by action).
    pub async fn halt_entries(&self) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM audit_log WHERE action = 'halt.on' OR action = 'halt.off' ORDER BY seq"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Recomputes the whole chain. `Ok(Err(break))` names the first bad entry.
    pub async fn verify_audit(
        &self,
        expect_head: Option<String>,
    ) -> Result<Result<VerifiedChain, ChainBreak>, StoreError> {
        self.verify_audit_with(ChainVerifier::new(expect_head))
            .await
    }

    /// Streams the entries from `verifier`'s next expected one on through it.
    pub async fn verify_audit_with(
        &self,
        mut verifier: ChainVerifier,
    ) -> Result<Result<VerifiedChain, ChainBreak>, StoreError> {
        let mut rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM audit_log WHERE seq >= $1 ORDER BY seq"
        ))
        // From the start, every row is read: one at seq 0 or below is a break too.
        .bind(match verifier.next_seq() {
            1 => i64::MIN,
            next => next,
        })
        .fetch(self.pool());
        while let Some(row) = rows.try_next().await? {
            let entry = match entry_from_row(&row) {
                Ok(e) => e,
                // A row we cannot even read counts as altered.
                Err(_) => {
                    let seq: i64 = row.try_get(0).unwrap_or_default();
                    return Ok(Err(ChainBreak::Altered { seq }));
                }
            };
            if let Err(b) = verifier.push(&entry) {
                return Ok(Err(b));
            }
        }
        Ok(verifier.finish())
    }
}

/// Appends `entry` on `conn`, inside the transaction open there. `head` is the chain's
/// head as this transaction last left it; when it is unknown, the head is read from the
/// table (on PostgreSQL after taking the advisory lock that serialises appenders, held
/// until the transaction ends). A batch of writes thus reads the head once.
pub(crate) async fn append_audit_on(
    backend: Backend,
    conn: &mut AnyConnection,
    head: &mut AuditHead,
    at: DateTime<Utc>,
    entry: NewAuditEntry,
) -> Result<AuditEntry, StoreError> {
    let (seq, prev) = match head.0.take() {
        Some((seq, hash)) => (seq + 1, hash),
        None => {
            if backend == Backend::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(AUDIT_LOCK_KEY)
                    .execute(&mut *conn)
                    .await?;
            }
            let row = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?;
            match row {
                Some(row) => (row.try_get::<i64, _>(0)? + 1, row.try_get::<String, _>(1)?),
                None => (1, GENESIS.to_string()),
            }
        }
    };
    let e = AuditEntry::chain(seq, at, entry, &prev);
    sqlx::query(
        "INSERT INTO audit_log (seq, at_ms, actor, action, run_id, job_id, grant_id, payload, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(e.seq)
    .bind(millis(e.at))
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.run_id)
    .bind(&e.job_id)
    .bind(&e.grant_id)
    .bind(crate::audit::canonical_json(&e.payload))
    .bind(&e.prev_hash)
    .bind(&e.hash)
    .execute(&mut *conn)
    .await?;
    head.0 = Some((e.seq, e.hash.clone()));
    Ok(e)
}

/// Export formats for `treasury audit export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditExport {
    Jsonl,
    Csv,
}

impl AuditExport {
    /// Writes `entries` in this format.
    pub fn write(
        self,
        entries: &[AuditEntry],
        out: &mut (impl std::io::Write + ?Sized),
    ) -> std::io::Result<()> {
        match self {
            AuditExport::Jsonl => {
                for e in entries {
                    serde_json::to_writer(&mut *out, e)?;
                    writeln!(out)?;
                }
            }
            AuditExport::Csv => {
                writeln!(
                    out,
                    "seq,at,actor,action,run_id,job_id,grant_id,payload,prev_hash,hash"
                )?;
                for e in entries {
                    let fields = [
                        e.seq.to_string(),
                        e.at.to_rfc3339(),
                        e.actor.clone(),
                        e.action.clone(),
                        e.run_id.clone().unwrap_or_default(),
                        e.job_id.clone().unwrap_or_default(),
                        e.grant_id.clone().unwrap_or_default(),
                        crate::audit::canonical_json(&e.payload),
                        e.prev_hash.clone(),
                        e.hash.clone(),
                    ];
                    let quoted: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                    writeln!(out, "{}", quoted.join(","))?;
                }
            }
        }
        Ok(())
    }
}

/// RFC 4180 quoting.
fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

fn entry_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    let payload: String = row.try_get(7)?;
    Ok(AuditEntry {
        seq: row.try_get(0)?,
        at: from_millis(row.try_get(1)?)?,
        actor: row.try_get(2)?,
        action: row.try_get(3)?,
        run_id: row.try_get(4)?,
        job_id: row.try_get(5)?,
        grant_id: row.try_get(6)?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("audit payload: {e}")))?,
        prev_hash: row.try_get(8)?,
        hash: row.try_get(9)?,
    })
}

impl Store {
    /// Up to `limit` entries after `seq`, oldest first (for tailing the log).
    pub async fn audit_entries_after(
        &self,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(seq)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Whether the store answers at all (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }
}
