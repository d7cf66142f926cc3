//! Live updates without an in-process scheduler.
//!
//! `updraft standalone` shares the scheduler's broadcast of recorded state changes with the
//! server. `updraft server` runs beside a scheduler in another process, so nothing would be
//! broadcast: [`watch_store_changes`] fills the same channel by reading the store's change
//! log ([`ReadStore::run_changes_since`], maintained by the database itself for every writer) once
//! per `interval`: an index lookup that finds nothing most of the time. The live views cannot
//! tell the two sources apart.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use updraft_runs::StateChange;
use updraft_store::ReadStore;

/// How often `updraft server` looks for changes recorded by other processes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Changes read per look; more are read at the next look.
const BATCH: u32 = 1_000;

/// Publish every run change recorded from now on, checking every `interval`, until
/// `shutdown` completes. Failed reads are logged and retried at the next tick.
pub async fn watch_store_changes(
    store: Arc<dyn ReadStore>,
    changes: broadcast::Sender<StateChange>,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let since = loop {
        match store.latest_run_change().await {
            Ok(seq) => break seq,
            Err(e) => {
                tracing::warn!("live updates: reading the change log: {e}");
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        }
    };
    follow_store_changes(store, changes, since, interval, shutdown).await;
}

/// [`watch_store_changes`] from change `since` on (as read from
/// [`ReadStore::latest_run_change`]).
pub async fn follow_store_changes(
    store: Arc<dyn ReadStore>,
    changes: broadcast::Sender<StateChange>,
    since: i64,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut seen = since;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        loop {
            match store.run_changes_since(seen, BATCH).await {
                Ok(batch) => {
                    let full = batch.len() as u32 == BATCH;
                    for change in batch {
                        seen = seen.max(change.seq);
                        // No receiver (no page open) is fine.
                        let _ = changes.send(StateChange {
                            run_pk: change.run_pk,
                        });
                    }
                    if !full {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!("live updates: reading the change log: {e}");
                    break;
                }
            }
        }
    }
}
