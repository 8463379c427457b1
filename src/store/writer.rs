//! Group commit for SQLite.
//!
//! SQLite has one writer at a time, and with `synchronous = FULL` every commit waits
//! for an fsync. Executors that each committed their own small transaction therefore
//! queued behind one another's fsyncs, and the ones kept waiting slept in SQLite's busy
//! handler (1, 2, 5, 10 ms …) instead of being woken.
//!
//! Here one task owns one connection and commits for everyone: it takes every write
//! that is waiting, applies them in one `BEGIN IMMEDIATE … COMMIT`, and answers each
//! caller only after that commit has returned. Durability per write is unchanged (a
//! caller still hears "saved" only once its write is on disk); the fsync is shared.
//!
//! Writes stay independent: if any write in a batch fails, the batch is rolled back and
//! every write in it is applied again in a transaction of its own, so that one bad write
//! fails alone. A write therefore runs its SQL more than once in that case, which is
//! why it is an `FnMut` that owns (clones) what it binds.
//!
//! Writes that open their own transaction ([`Store::begin`](super::Store::begin)) take
//! the same in-process gate as a batch, so that they queue fairly behind it instead of
//! polling SQLite's lock.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::{AnyConnection, AnyPool, Connection};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::StoreError;

/// At most this many writes share one commit.
const MAX_BATCH: usize = 256;

/// The audit chain's head as the current transaction left it, so that a batch reads
/// it from the table once and chains every entry after it in memory.
#[derive(Debug, Default)]
pub(crate) struct AuditHead(pub(super) Option<(i64, String)>);

/// A write: SQL to run in the open transaction, and what to say once it committed.
pub(crate) type WriteFn<T> = Box<
    dyn for<'c> FnMut(
            &'c mut AnyConnection,
            &'c mut AuditHead,
        ) -> BoxFuture<'c, Result<T, StoreError>>
        + Send,
>;

trait Pending: Send {
    fn apply<'c>(
        &'c mut self,
        conn: &'c mut AnyConnection,
        head: &'c mut AuditHead,
    ) -> BoxFuture<'c, Result<(), StoreError>>;
    /// Answers the caller: the write's result if the transaction committed.
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

struct Op<T> {
    f: WriteFn<T>,
    answer: Option<T>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send + 'static> Pending for Op<T> {
    fn apply<'c>(
        &'c mut self,
        conn: &'c mut AnyConnection,
        head: &'c mut AuditHead,
    ) -> BoxFuture<'c, Result<(), StoreError>> {
        Box::pin(async move {
            self.answer = Some((self.f)(conn, head).await?);
            Ok(())
        })
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let Op { answer, reply, .. } = *self;
        let answer = committed.and_then(|()| {
            answer.ok_or_else(|| StoreError::Corrupt("a committed write left no answer".into()))
        });
        // A caller that stopped waiting still had its write applied, exactly as if it
        // had crashed just after the commit.
        let _ = reply.send(answer);
    }
}

enum Msg {
    Write(Box<dyn Pending>),
    Close(oneshot::Sender<()>),
}

/// The handle to the writer task. Cheap to clone.
#[derive(Clone)]
pub(super) struct Writer {
    tx: mpsc::UnboundedSender<Msg>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable(sqlx::Error::PoolClosed)
}

impl Writer {
    /// Starts the task that owns a connection taken from `pool` (and a fresh one
    /// whenever that one breaks). `gate` is the store's in-process write gate.
    pub(super) async fn start(pool: AnyPool, gate: Arc<Mutex<()>>) -> Result<Self, StoreError> {
        let conn = pool.acquire().await?.detach();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, conn, rx, gate));
        Ok(Self { tx })
    }

    /// Applies `f` in the next batch; returns its answer once that batch committed.
    pub(super) async fn write<T: Send + 'static>(&self, f: WriteFn<T>) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let op = Op {
            f,
            answer: None,
            reply,
        };
        self.tx
            .send(Msg::Write(Box::new(op)))
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Lets the writes already sent finish, then closes the connection.
    pub(super) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.tx.send(Msg::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

async fn run(
    pool: AnyPool,
    mut conn: AnyConnection,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    gate: Arc<Mutex<()>>,
) {
    let mut batch: Vec<Box<dyn Pending>> = Vec::new();
    let mut closing = None;
    while closing.is_none() {
        match rx.recv().await {
            Some(Msg::Write(op)) => batch.push(op),
            Some(Msg::Close(done)) => closing = Some(done),
            None => break,
        }
        while closing.is_none() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Write(op)) => batch.push(op),
                Ok(Msg::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let _gate = gate.lock().await;
            if !commit(&mut conn, &mut batch).await && conn.ping().await.is_err() {
                // The connection itself broke: the next batch gets a fresh one (if
                // none can be had, it fails and the one after tries again).
                if let Ok(fresh) = pool.acquire().await {
                    conn = fresh.detach();
                }
            }
        }
    }
    // Writes sent after the close are refused (their callers hear "unavailable").
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Write(op) = msg {
            op.finish(Err(closed()));
        }
    }
    let _ = conn.close().await;
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

/// Commits `batch` together, or, if that fails, each write on its own. Returns
/// whether every write committed.
async fn commit(conn: &mut AnyConnection, batch: &mut Vec<Box<dyn Pending>>) -> bool {
    match transaction(conn, batch).await {
        Ok(()) => {
            for op in batch.drain(..) {
                op.finish(Ok(()));
            }
            true
        }
        Err(e) if batch.len() == 1 => {
            if let Some(op) = batch.pop() {
                op.finish(Err(e));
            }
            false
        }
        Err(_) => {
            let mut all = true;
            for mut op in batch.drain(..) {
                let alone = transaction(conn, std::slice::from_mut(&mut op)).await;
                all &= alone.is_ok();
                op.finish(alone);
            }
            all
        }
    }
}

async fn transaction(
    conn: &mut AnyConnection,
    ops: &mut [Box<dyn Pending>],
) -> Result<(), StoreError> {
    // Prepared once and reused, like every other statement (a plain `execute(&str)`
    // would parse each of them again at every commit).
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let mut head = AuditHead::default();
    for op in ops.iter_mut() {
        if let Err(e) = op.apply(conn, &mut head).await {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return Err(e);
        }
    }
    if let Err(e) = sqlx::query("COMMIT").execute(&mut *conn).await {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return Err(e.into());
    }
    Ok(())
}
