//! Signed audit checkpoints, made and checked: one checkpointer at a time (under a
//! lease in the store) proves the chain since the last checkpoint, signs its head and
//! appends it to a folder outside the store; verification proves every signature,
//! the checkpoints' own chain, and that the audit chain still holds each checkpointed
//! head at its sequence number (which catches truncation and wholesale rewrites).
//!
//! The format lives in [`crate::audit::checkpoint`]; SQL in the store. Never logs a key.

pub mod folder;
pub mod key;
mod worker;

pub use folder::{Folder, FolderError};
pub use worker::{CHECKPOINT_NOW, checkpointer_at_start, run_checkpointer};

use std::sync::Arc;

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::audit::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::audit::{ChainBreak, ChainVerifier, VerifiedChain};
use crate::clock::Clock;
use crate::store::{CheckpointLease, Store, StoreError};

/// How long the checkpoint lease lasts; making one takes well under a second, plus
/// the incremental verification since the last.
const LEASE_TTL_SECS: i64 = 120;

/// Why no checkpoint was made, or verification could not finish.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointFailure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Folder(#[from] FolderError),
    #[error("the audit chain does not match the checkpoints: {0}")]
    Chain(ChainBreak),
    #[error("the audit log is empty: there is no head to checkpoint")]
    Empty,
    #[error("the checkpoint lease was lost before the checkpoint was written; nothing was written")]
    LeaseLost,
}

/// What [`Checkpointer::make`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Made {
    /// A new checkpoint, appended to the folder.
    New(SignedCheckpoint),
    /// The chain has not moved since this checkpoint.
    UpToDate(SignedCheckpoint),
    /// Another process holds the lease and is making one.
    Busy,
}

/// Makes checkpoints of one store into one folder.
#[derive(Clone)]
pub struct Checkpointer {
    store: Store,
    folder: Folder,
    key: Arc<SigningKey>,
    clock: Clock,
    holder: String,
}

impl Checkpointer {
    /// `holder` names this process in the lease (`worker:<host>-<pid>`).
    pub fn new(store: Store, folder: Folder, key: SigningKey, clock: Clock, holder: &str) -> Self {
        Self {
            store,
            folder,
            key: Arc::new(key),
            clock,
            holder: holder.to_string(),
        }
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn folder(&self) -> &Folder {
        &self.folder
    }

    /// Makes a checkpoint of the chain's head now, unless another process is making one
    /// or the chain has not moved. The chain since the last checkpoint is verified
    /// first: a tampered chain is never signed.
    pub async fn make(&self) -> Result<Made, CheckpointFailure> {
        let ttl = chrono::Duration::seconds(LEASE_TTL_SECS);
        let Some(lease) = self
            .store
            .take_checkpoint_lease(&self.holder, self.clock.now(), ttl)
            .await?
        else {
            return Ok(Made::Busy);
        };
        let made = self.make_under(&lease).await;
        if let Err(e) = self.store.release_checkpoint_lease(&lease).await {
            // It lapses on its own; the next checkpointer waits at most the TTL.
            tracing::warn!(error = %e, "could not release the checkpoint lease");
        }
        made
    }

    async fn make_under(&self, lease: &CheckpointLease) -> Result<Made, CheckpointFailure> {
        let existing = self.folder.read_all(&self.public_key())?;
        let last = existing.last();
        let chain = verify_since(&self.store, last)
            .await?
            .map_err(CheckpointFailure::Chain)?;
        if chain.entries == 0 {
            return Err(CheckpointFailure::Empty);
        }
        if let Some(last) = last.filter(|l| l.checkpoint.head_seq == chain.head_seq) {
            return Ok(Made::UpToDate(last.clone()));
        }
        let now = self.clock.now();
        let cp = Checkpoint::after(last, chain.head_seq, &chain.head_hash, chain.entries, now)
            .sign(&self.key);
        if !self
            .store
            .checkpoint_lease_held(lease, self.clock.now())
            .await?
        {
            return Err(CheckpointFailure::LeaseLost);
        }
        self.folder.append(&cp)?;
        tracing::info!(
            checkpoint = cp.checkpoint.number,
            head_seq = cp.checkpoint.head_seq,
            folder = %self.folder.path().display(),
            "audit checkpoint made"
        );
        Ok(Made::New(cp))
    }
}

/// Verifies only the entries after `last` (everything when `None`), after proving
/// that the chain still holds `last`'s head at its sequence number.
pub async fn verify_since(
    store: &Store,
    last: Option<&SignedCheckpoint>,
) -> Result<Result<VerifiedChain, ChainBreak>, StoreError> {
    let Some(last) = last else {
        return store.verify_audit(None).await;
    };
    let c = &last.checkpoint;
    match store.audit_hash_at(c.head_seq).await? {
        Some(hash) if hash == c.head_hash => {}
        Some(_) => return Ok(Err(ChainBreak::PinMismatch { seq: c.head_seq })),
        None => {
            let head = store.audit_head().await?.map_or(0, |(seq, _)| seq);
            return Ok(Err(ChainBreak::PinBeyondHead {
                seq: c.head_seq,
                head,
            }));
        }
    }
    store
        .verify_audit_with(ChainVerifier::after(
            c.head_seq,
            c.head_hash.clone(),
            c.entries,
        ))
        .await
}

/// Verifies the whole chain and that it holds every checkpoint's head at its
/// sequence number (the checkpoints' signatures and links were proven on reading).
/// `expect_head`, as for `audit verify --expect-head`, must be in the chain too.
pub async fn verify_with(
    store: &Store,
    checkpoints: &[SignedCheckpoint],
    expect_head: Option<String>,
) -> Result<Result<VerifiedChain, ChainBreak>, StoreError> {
    let verifier = checkpoints
        .iter()
        .fold(ChainVerifier::new(expect_head), |v, cp| {
            v.pin(cp.checkpoint.head_seq, cp.checkpoint.head_hash.clone())
        });
    store.verify_audit_with(verifier).await
}

/// The start-up check of `treasury run`: the chain must hold every checkpoint in the
/// folder and verify throughout, or the worker moves no money.
pub async fn verify_at_start(
    store: &Store,
    folder: &Folder,
    key: &VerifyingKey,
) -> Result<VerifiedChain, String> {
    let refuse = |why: String| {
        format!(
            "refusing to start (no money moves): the audit chain failed verification against the checkpoints in {}: {why}",
            folder.path().display()
        )
    };
    let checkpoints = folder.read_all(key).map_err(|e| refuse(e.to_string()))?;
    verify_with(store, &checkpoints, None)
        .await
        .map_err(|e| refuse(e.to_string()))?
        .map_err(|b| refuse(b.to_string()))
}
