//! The dispatcher (the queue's only producer), its recovery pass, and the purge.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::Duration;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{Stats, WorkerConfig};
use crate::clock::Clock;
use crate::queue::{Dispatch, Queue};
use crate::store::Store;

fn chrono(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

/// Sends due runs out every tick within the window; checks undelivered dispatches
/// against the queue at startup and every `recovery_interval`.
pub(super) async fn run(
    store: Store,
    queue: Queue,
    clock: Clock,
    cfg: WorkerConfig,
    stats: Arc<Stats>,
    token: CancellationToken,
) {
    let mut ticks = tokio::time::interval(cfg.tick);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Startup: everything the store believes is queued but the queue does not hold is
    // sent out again at once (no grace: nothing of ours is between mark and push).
    let mut next_recovery = Instant::now();
    let mut grace = std::time::Duration::ZERO;
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = ticks.tick() => {}
        }
        if Instant::now() >= next_recovery {
            match recover(&store, &queue, &clock, &cfg, grace).await {
                Ok(n) => {
                    stats.recovered.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(part = "dispatcher", error = %e, "recovery pass failed"),
            }
            next_recovery = Instant::now() + cfg.recovery_interval;
            grace = cfg.recovery_grace;
        }
        if token.is_cancelled() {
            break;
        }
        match dispatch_once(&store, &queue, &clock, &cfg).await {
            Ok(n) => {
                stats.dispatched.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(part = "dispatcher", error = %e, "dispatch tick failed"),
        }
    }
    tracing::info!(part = "dispatcher", "dispatcher stopped: shutting down");
}

/// One tick: fill the window with due runs. Returns how many were sent out.
pub(super) async fn dispatch_once(
    store: &Store,
    queue: &Queue,
    clock: &Clock,
    cfg: &WorkerConfig,
) -> Result<u64, String> {
    let now = clock.now();
    let redispatch_after = chrono(cfg.redispatch_after);
    let undelivered = store
        .undelivered_count(now - redispatch_after)
        .await
        .map_err(|e| e.to_string())?;
    // The queue's own count bounds it too: re-dispatched messages whose first copy
    // still sits in the queue must not grow it past the window.
    let depth = queue.depth().await.map_err(|e| e.to_string())?;
    let queued = u64::try_from(undelivered).unwrap_or(0).max(depth);
    let room = (cfg.window as u64).saturating_sub(queued);
    if room == 0 {
        return Ok(0);
    }
    let claimed = store
        .claim_dispatches(
            now,
            i64::try_from(room).unwrap_or(i64::MAX),
            redispatch_after,
        )
        .await
        .map_err(|e| e.to_string())?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let dispatches: Vec<Dispatch> = claimed
        .into_iter()
        .map(|c| Dispatch::new(c.run_id, c.generation))
        .collect();
    if let Err(e) = queue.push_many(&dispatches).await {
        // Unmark them so that the next tick tries again rather than the timeout.
        for d in &dispatches {
            let _ = store.forget_dispatch(&d.run_id, d.generation).await;
        }
        return Err(format!("pushing {} runs: {e}", dispatches.len()));
    }
    tracing::debug!(
        part = "dispatcher",
        count = dispatches.len(),
        "runs sent out"
    );
    Ok(dispatches.len() as u64)
}

/// Forgets every undelivered dispatch (older than `grace`) that the queue no longer
/// holds, so that the next tick sends its run out again.
pub(super) async fn recover(
    store: &Store,
    queue: &Queue,
    clock: &Clock,
    cfg: &WorkerConfig,
    grace: std::time::Duration,
) -> Result<u64, String> {
    let now = clock.now();
    let undelivered = store
        .undelivered(now - chrono(cfg.redispatch_after), now - chrono(grace))
        .await
        .map_err(|e| e.to_string())?;
    if undelivered.is_empty() {
        return Ok(0);
    }
    let live: HashSet<Dispatch> = queue
        .live()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let mut lost = 0;
    for c in undelivered {
        let d = Dispatch::new(c.run_id, c.generation);
        if !live.contains(&d)
            && store
                .forget_dispatch(&d.run_id, d.generation)
                .await
                .map_err(|e| e.to_string())?
        {
            lost += 1;
        }
    }
    if lost > 0 {
        tracing::warn!(
            part = "dispatcher",
            lost,
            "dispatches missing from the queue; sending those runs out again"
        );
    }
    Ok(lost)
}

/// Deletes finished queue rows every `purge_interval`.
pub(super) async fn purge(
    queue: Queue,
    cfg: WorkerConfig,
    stats: Arc<Stats>,
    token: CancellationToken,
) {
    let mut ticks = tokio::time::interval(cfg.purge_interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = ticks.tick() => {}
        }
        match queue.purge_finished(cfg.purge_after).await {
            Ok(n) => {
                stats.purged.fetch_add(n, Ordering::Relaxed);
                if n > 0 {
                    tracing::debug!(part = "purge", rows = n, "finished queue rows purged");
                }
            }
            Err(e) => tracing::warn!(part = "purge", error = %e, "purge failed"),
        }
    }
    tracing::info!(part = "purge", "purge stopped: shutting down");
}
