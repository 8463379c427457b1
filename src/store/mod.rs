//! The system of record (invariant 1). All SQL lives under this module.
//!
//! One [`Store`] serves both backends through sqlx's `Any` driver with portable SQL, so
//! callers never change when the backend does: the URL's scheme picks SQLite
//! (`sqlite://…`, the embedded default) or PostgreSQL (`postgres://…`). Times are
//! stored as integer Unix milliseconds and amounts as decimal text (invariant 8).
//!
//! Writes that read before they write go through [`Store::begin`], which takes the
//! SQLite write lock up front (`BEGIN IMMEDIATE`), so that concurrent writers queue
//! instead of failing on a lock upgrade. The writes every run makes (its lease, its
//! saves, its audit entries) go through [`Store::write`] instead: on SQLite many of them
//! share one commit (see `writer`), on PostgreSQL each is a transaction of its own.

mod audit;
mod checkpoints;
mod dispatch;
mod grants;
mod guards;
mod job_set;
pub use job_set::{JobSetRow, OccurrenceWrite};
mod jobs;
pub use jobs::StoredJobVersion;
mod known;
mod operators;
mod recipients;
mod runs;
mod seals;
mod sessions;
mod transfers;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::seal::SealKeys;
use writer::Writer;
pub(crate) use writer::{AuditHead, WriteFn};

pub use audit::AuditExport;
pub use checkpoints::CheckpointLease;
pub use dispatch::Claimed;
pub use grants::{AuthorizationRow, ConnectedGrantRow, GrantRow, Resealed, SealedTokens};
pub use guards::{ApprovalRow, Approved, CapCheck, Refusal, Reservation};
pub use operators::{ChangedBy, NewOperator, OperatorChange};
pub use recipients::{AccountKey, SeenRecipient};
pub use runs::{RunFilter, RunLease};
pub use sessions::ConsoleSession;
pub use transfers::{HeldTransfer, NewHeldTransfer, SharedTransfer};

/// A write transaction on the store. It derefs to the connection it runs on; on
/// SQLite it also holds the store's in-process write gate until it ends.
pub struct Tx {
    inner: sqlx::Transaction<'static, Any>,
    _gate: Option<OwnedMutexGuard<()>>,
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.inner.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.inner.rollback().await
    }
}

impl std::ops::Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.inner
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }
}

/// Which database the store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Errors from the store. Callers branch on `Unavailable` (wait and retry) and
/// `Conflict` (someone else got there first).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store URL {0:?} is not supported (use sqlite://PATH or postgres://…)")]
    BadUrl(String),
    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("the lease on {0} was lost to another executor; nothing was written")]
    LeaseLost(String),
    /// A run tried to record a transfer that another run already holds: no two runs
    /// may ever hold one transfer id.
    #[error("transfer {transfer_id} is already held by run {holder}; nothing was written")]
    TransferHeld { transfer_id: String, holder: String },
    #[error("store data is not valid: {0}")]
    Corrupt(String),
    #[error("migrating the store failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store error: {0}")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            // SQLite's "database is locked" and PostgreSQL's admin shutdown and
            // serialization failures are passing conditions, not bugs.
            sqlx::Error::Database(db)
                if matches!(
                    db.code().as_deref(),
                    Some("5" | "6" | "517" | "57P01" | "40001" | "40P01")
                ) =>
            {
                StoreError::Unavailable(e)
            }
            _ => StoreError::Other(e),
        }
    }
}

impl StoreError {
    /// True for errors that a wait and a retry can cure.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// The store handle. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite only: the group-commit writer, and the gate that every in-process write
    /// transaction takes (so that writers queue here, fairly, not in SQLite's busy loop).
    writer: Option<Writer>,
    gate: Arc<Mutex<()>>,
    /// Signs the entries that decide money (see `seal`): this process's own key until
    /// [`Store::with_seal_keys`] installs the one derived from the master key.
    seal: Arc<SealKeys>,
}

impl Store {
    /// Connects, applies the backend's migrations, and sets durable SQLite settings.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::BadUrl(url.to_string()));
        };
        let options =
            AnyConnectOptions::from_str(url).map_err(|_| StoreError::BadUrl(url.to_string()))?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the one writer; synchronous=FULL
                        // makes every commit durable before we call the provider it
                        // guards. busy_timeout queues writers instead of failing them.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA busy_timeout = 30000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let gate = Arc::new(Mutex::new(()));
        let mut store = Store {
            pool,
            backend,
            writer: None,
            gate: gate.clone(),
            seal: SealKeys::process(),
        };
        store.migrate().await?;
        if backend == Backend::Sqlite {
            store.writer = Some(Writer::start(store.pool.clone(), gate).await?);
        }
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.pool).await?,
            Backend::Postgres => {
                sqlx::migrate!("migrations/postgres")
                    .run(&self.pool)
                    .await?
            }
        }
        Ok(())
    }

    /// Seals and verifies with `keys` (derived from `TREASURY_MASTER_KEY`).
    pub fn with_seal_keys(mut self, keys: Arc<SealKeys>) -> Self {
        self.seal = keys;
        self
    }

    /// The keys that sign and check the entries that decide money.
    pub fn seal_keys(&self) -> &SealKeys {
        &self.seal
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for the store's own submodules.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a write transaction. On SQLite it takes the write gate and then the
    /// write lock at once.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let gate = self.gate().await;
        let inner = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(Tx { inner, _gate: gate })
    }

    /// The in-process write gate (SQLite only), for a write outside a transaction.
    pub(crate) async fn gate(&self) -> Option<OwnedMutexGuard<()>> {
        match self.backend {
            Backend::Sqlite => Some(self.gate.clone().lock_owned().await),
            Backend::Postgres => None,
        }
    }

    /// Runs `f` in a write transaction and returns its answer once committed. On
    /// SQLite the transaction is shared with the other writes waiting at that moment
    /// (group commit); `f` may then run more than once (see `writer`), so it must own
    /// what it binds. On PostgreSQL it is a transaction of its own.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        mut f: WriteFn<T>,
    ) -> Result<T, StoreError> {
        if let Some(writer) = &self.writer {
            return writer.write(f).await;
        }
        let mut tx = self.begin().await?;
        let mut head = AuditHead::default();
        let answer = f(&mut tx, &mut head).await?;
        tx.commit().await?;
        Ok(answer)
    }

    /// Finishes the writes in flight, then closes every connection.
    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
        self.pool.close().await;
    }
}

/// Milliseconds since the Unix epoch, the store's time format.
pub(crate) fn millis(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    chrono::DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} is out of range")))
}
