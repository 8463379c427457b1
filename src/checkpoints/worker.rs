//! The checkpointer inside `treasury run`: one checkpoint at start, then one every
//! `[audit] checkpoint_every`, and one soon after every halt or approval (seen in the
//! audit log, whichever process or operator command wrote it).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{CheckpointFailure, Checkpointer, Made};

/// Audit actions that call for a checkpoint at once.
pub const CHECKPOINT_NOW: [&str; 3] = ["halt.on", "halt.off", "run.approved"];

/// How often the log is looked at for a halt or an approval.
const POLL: Duration = Duration::from_secs(5);

/// Runs until `shutdown`. Failures are logged as errors and retried at the next poll:
/// a chain that no longer verifies is never signed.
pub async fn run_checkpointer(cp: Checkpointer, every: Duration, shutdown: CancellationToken) {
    let mut last_made = tokio::time::Instant::now();
    let mut last_seq: Option<i64> = None;
    let mut due = true;
    loop {
        if !due {
            due = match last_seq {
                _ if last_made.elapsed() >= every => true,
                Some(seq) => cp
                    .store
                    .audit_has_action_after(seq, &CHECKPOINT_NOW)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "checkpointer could not read the audit log");
                        false
                    }),
                None => false,
            };
        }
        if due {
            match cp.make().await {
                Ok(Made::New(c) | Made::UpToDate(c)) => {
                    last_seq = Some(c.checkpoint.head_seq);
                    last_made = tokio::time::Instant::now();
                    due = false;
                }
                // Another process is making one: ours can wait for the schedule.
                Ok(Made::Busy) => {
                    last_made = tokio::time::Instant::now();
                    due = false;
                }
                // Nothing to sign yet: the first entry makes the first checkpoint.
                Err(CheckpointFailure::Empty) => {}
                Err(e) => tracing::error!(error = %e, "ALERT: no audit checkpoint could be made"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    tracing::info!("checkpointer stopped");
}

/// The checkpointer `treasury run` starts with, after the start-up check: `None` when
/// `[audit] checkpoints` is not set. With it set, the signing key must be in the
/// environment and the chain must verify against the folder, or nothing starts.
pub async fn checkpointer_at_start(
    settings: &crate::config::AuditSettings,
    store: &crate::store::Store,
    clock: &crate::clock::Clock,
    holder: &str,
) -> Result<Option<Checkpointer>, String> {
    let Some(dir) = &settings.checkpoints else {
        tracing::warn!("[audit] checkpoints is not set: no signed audit checkpoints are made");
        return Ok(None);
    };
    let key = super::key::signing_key_from_env().map_err(|e| e.to_string())?;
    let folder = super::Folder::new(dir);
    let chain = super::verify_at_start(store, &folder, &key.verifying_key()).await?;
    tracing::info!(entries = chain.entries, head_seq = chain.head_seq, folder = %dir.display(), "audit chain verified against its checkpoints");
    Ok(Some(Checkpointer::new(
        store.clone(),
        folder,
        key,
        clock.clone(),
        holder,
    )))
}
