//! Watching a DAGs folder for changes.
//!
//! [`watch`] runs a [`notify`] watcher over the folder (recursively) and calls back, from a
//! background thread, once per burst of file-system events: after the first event it waits
//! until no new event has arrived for the debounce period (but never longer than ten periods
//! in all), then calls back once. It knows nothing of async runtimes; the callback can send on
//! any channel. Events can be missed (network file systems, overflowing queues), so callers
//! should also refresh on an interval.
//!
//! Symbolic links are not followed: a link to `/` in the folder would otherwise have the
//! watcher walk, and watch, the whole file system. Folders that links inside the DAGs folder
//! point to are inside it, so they are watched anyway.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
use notify::{Config, Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// Debounce period suited to editors and `git checkout`: short enough to feel immediate.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(200);

/// Why watching could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {source}")]
pub struct WatchError {
    pub path: String,
    #[source]
    pub source: notify::Error,
}

/// A running watch. Dropping it stops watching; the callback is not called afterwards.
pub struct FolderWatcher {
    watcher: Option<RecommendedWatcher>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FolderWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderWatcher").finish_non_exhaustive()
    }
}

impl Drop for FolderWatcher {
    fn drop(&mut self) {
        // Dropping the watcher drops its sender, which ends the debounce thread.
        drop(self.watcher.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Watches `folder` recursively and calls `on_change` after each burst of changes.
pub fn watch(
    folder: &Path,
    debounce: Duration,
    on_change: impl FnMut() + Send + 'static,
) -> Result<FolderWatcher, WatchError> {
    let error = |source| WatchError {
        path: folder.display().to_string(),
        source,
    };
    let (events_tx, events_rx) = mpsc::channel::<()>();
    let handler = move |event: notify::Result<Event>| {
        if event.as_ref().is_ok_and(|e| !is_change(e)) {
            return;
        }
        let _ = events_tx.send(());
    };
    let config = Config::default().with_follow_symlinks(false);
    let mut watcher = RecommendedWatcher::new(handler, config).map_err(error)?;
    watcher
        .watch(folder, RecursiveMode::Recursive)
        .map_err(error)?;
    let thread = std::thread::Builder::new()
        .name("updraft-dag-watch".to_owned())
        .spawn(move || debounce_loop(&events_rx, debounce, on_change))
        .map_err(|e| error(notify::Error::io(e)))?;
    Ok(FolderWatcher {
        watcher: Some(watcher),
        thread: Some(thread),
    })
}

/// Whether an event may mean a DAG file changed. Opening and reading files (as a refresh does)
/// and access-time updates are not changes; were they counted, every refresh would trigger
/// the next one.
fn is_change(event: &Event) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        _ => true,
    }
}

/// Like [`watch`], but sends `()` on the returned channel instead of calling back.
pub fn watch_channel(
    folder: &Path,
    debounce: Duration,
) -> Result<(FolderWatcher, Receiver<()>), WatchError> {
    let (tx, rx) = mpsc::channel();
    let watcher = watch(folder, debounce, move || {
        let _ = tx.send(());
    })?;
    Ok((watcher, rx))
}

/// Calls `on_change` once per burst of events until the sender goes away. Watcher errors
/// count as changes: something may have been missed, so a rescan is the safe answer.
fn debounce_loop<T>(events: &Receiver<T>, debounce: Duration, mut on_change: impl FnMut()) {
    let max_wait = debounce * 10;
    while events.recv().is_ok() {
        let started = Instant::now();
        loop {
            let left = max_wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            match events.recv_timeout(debounce.min(left)) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        on_change();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn reads_are_not_changes() {
        let event = |kind| Event::new(kind);
        assert!(!is_change(&event(EventKind::Access(AccessKind::Open(
            AccessMode::Any
        )))));
        assert!(!is_change(&event(EventKind::Access(AccessKind::Close(
            AccessMode::Read
        )))));
        assert!(!is_change(&event(EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::AccessTime
        )))));
        assert!(is_change(&event(EventKind::Access(AccessKind::Close(
            AccessMode::Write
        )))));
        assert!(is_change(&event(EventKind::Create(
            notify::event::CreateKind::File
        ))));
        assert!(is_change(&event(EventKind::Remove(
            notify::event::RemoveKind::Any
        ))));
        assert!(is_change(&event(EventKind::Modify(ModifyKind::Any))));
        assert!(is_change(&event(EventKind::Any)));
    }

    #[test]
    fn a_burst_of_events_is_one_call() {
        let (tx, rx) = mpsc::channel::<u32>();
        let calls = Arc::new(Mutex::new(0));
        let counter = Arc::clone(&calls);
        let thread = std::thread::spawn(move || {
            debounce_loop(&rx, Duration::from_millis(50), || {
                *counter.lock().unwrap() += 1;
            });
        });
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(*calls.lock().unwrap(), 1);
        tx.send(9).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(*calls.lock().unwrap(), 2);
        drop(tx);
        thread.join().unwrap();
    }
}
