//! The uploader: a task told when tries start and end (by their logs' relative paths). A
//! running try's new bytes go up as chunks every `upload_interval`; an ended try's log goes
//! up whole, then its chunks are removed (and, with `delete_local_logs`, the local file).
//! A failed upload is retried with exponential backoff, never reaching the try; what is
//! pending is journaled, so a restarted process finishes it. Uploads of different logs run
//! side by side, one at a time per log.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::journal::{Journal, Record, other_process_alive};
use crate::{LogError, RemoteLogs, check_rel};

/// How uploads are paced and retried.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    /// How often a running try's new bytes are uploaded (`remote_log_upload_interval`).
    pub upload_interval: Duration,
    /// Remove the local file once the whole log is uploaded.
    pub delete_local_logs: bool,
    /// The first wait before a failed upload is tried again; it doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// The largest chunk object.
    pub max_chunk_bytes: u64,
    /// Uploads in flight at once.
    pub concurrency: usize,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            upload_interval: Duration::from_secs(30),
            delete_local_logs: false,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            max_chunk_bytes: 16 * 1024 * 1024,
            concurrency: 16,
        }
    }
}

enum Command {
    Started(String),
    Ended(String),
    /// Try everything pending now; answer with how many logs are still not uploaded whole.
    Flush(oneshot::Sender<usize>),
}

/// The handle of a running uploader.
pub struct LogUploader {
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl LogUploader {
    /// Starts the uploader on the current Tokio runtime, first taking up what the journal
    /// holds (left by an earlier process).
    pub fn start(remote: Arc<RemoteLogs>, settings: UploadSettings) -> LogUploader {
        let (commands, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let journal = Journal::new(remote.folder());
            let records = {
                let journal = journal.clone();
                tokio::task::spawn_blocking(move || journal.load())
                    .await
                    .unwrap_or_default()
            };
            let mut state = State::new(remote, settings, journal);
            state.take_up(records);
            state.run(receiver).await;
        });
        LogUploader { commands, task }
    }

    /// The try whose log is `rel` (relative to the logs folder) started, or runs again here.
    pub fn try_started(&self, rel: &str) {
        let _ = self.commands.send(Command::Started(rel.to_string()));
    }

    /// The try whose log is `rel` ended (and its end is recorded).
    pub fn try_ended(&self, rel: &str) {
        let _ = self.commands.send(Command::Ended(rel.to_string()));
    }

    /// Tries every pending upload once now (the new bytes of running logs, the ended ones
    /// whole), waiting at most `within`. Returns how many ended logs are still not uploaded
    /// whole (they stay journaled), or `None` when the time ran out.
    pub async fn flush(&self, within: Duration) -> Option<usize> {
        let (answer, answered) = oneshot::channel();
        self.commands.send(Command::Flush(answer)).ok()?;
        tokio::time::timeout(within, answered).await.ok()?.ok()
    }

    /// [`LogUploader::flush`], then stops; whatever is left is journaled for the next start.
    pub async fn stop(self, within: Duration) -> Option<usize> {
        let left = self.flush(within).await;
        self.task.abort();
        left
    }
}

/// One log with something pending.
struct Entry {
    /// The try ended: the whole log is due.
    ended: bool,
    /// This process was told of the end (so it may remove the local file); a log taken up
    /// from the journal may still be written by a try followed again after a restart.
    told_end: bool,
    /// Bytes uploaded as chunks.
    uploaded: u64,
    /// The new bytes are due (the interval passed, or a flush).
    chunk_due: bool,
    journal_stale: bool,
    failures: u32,
    /// When an ended log's whole upload is next tried.
    retry_at: Instant,
    busy: bool,
    /// Changes at every start and end, so a job's outcome is not applied to a later state.
    generation: u64,
}

impl Entry {
    fn new() -> Self {
        Entry {
            ended: false,
            told_end: false,
            uploaded: 0,
            chunk_due: false,
            journal_stale: true,
            failures: 0,
            retry_at: Instant::now(),
            busy: false,
            generation: 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Whole,
    Chunks,
    Journal,
}

enum Outcome {
    Whole(Result<Option<u64>, LogError>),
    Chunks(u64, Option<LogError>),
    Journal,
}

struct Done {
    rel: String,
    generation: u64,
    outcome: Outcome,
}

struct State {
    remote: Arc<RemoteLogs>,
    settings: UploadSettings,
    journal: Journal,
    entries: HashMap<String, Entry>,
    /// Logs that may have an action to start.
    ready: VecDeque<String>,
    jobs: JoinSet<Done>,
    /// The log, generation and action of every job in `jobs`.
    running: HashMap<tokio::task::Id, (String, u64, Action)>,
    next_tick: Instant,
    flushing: Vec<oneshot::Sender<usize>>,
}

impl State {
    fn new(remote: Arc<RemoteLogs>, settings: UploadSettings, journal: Journal) -> State {
        let next_tick = Instant::now() + settings.upload_interval;
        State {
            remote,
            settings,
            journal,
            entries: HashMap::new(),
            ready: VecDeque::new(),
            jobs: JoinSet::new(),
            running: HashMap::new(),
            next_tick,
            flushing: Vec::new(),
        }
    }

    /// What an earlier process left pending. A log still running there (or whose end it
    /// did not see) is uploaded whole now, its local file kept: a try followed again after
    /// the restart says so and is uploaded again at its end.
    fn take_up(&mut self, records: Vec<Record>) {
        for record in records {
            if other_process_alive(record.pid) || check_rel(&record.rel).is_err() {
                continue;
            }
            debug!(log = %record.rel, "taking up a pending log upload");
            let entry = self
                .entries
                .entry(record.rel.clone())
                .or_insert_with(Entry::new);
            entry.ended = true;
            entry.uploaded = record.uploaded;
            entry.journal_stale = false;
            self.ready.push_back(record.rel);
        }
    }

    async fn run(&mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            self.start_jobs();
            self.answer_flushes();
            let wake = self.next_wake();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.apply(command),
                    None => break,
                },
                Some(done) = self.jobs.join_next_with_id(), if !self.jobs.is_empty() => {
                    match done {
                        Ok((id, done)) => {
                            self.running.remove(&id);
                            self.finish(done);
                        }
                        Err(e) => self.job_panicked(e),
                    }
                }
                _ = tokio::time::sleep_until(wake) => self.on_timer(),
            }
        }
        // The handle is gone without a stop: finish what runs, leave the rest journaled.
        while self.jobs.join_next().await.is_some() {}
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Started(rel) => {
                if check_rel(&rel).is_err() {
                    return warn!(log = %rel, "not a log path; not uploaded");
                }
                let entry = self.entries.entry(rel.clone()).or_insert_with(Entry::new);
                entry.ended = false;
                entry.told_end = false;
                entry.journal_stale = true;
                entry.generation += 1;
                self.ready.push_back(rel);
            }
            Command::Ended(rel) => {
                if check_rel(&rel).is_err() {
                    return warn!(log = %rel, "not a log path; not uploaded");
                }
                let entry = self.entries.entry(rel.clone()).or_insert_with(Entry::new);
                entry.ended = true;
                entry.told_end = true;
                entry.failures = 0;
                entry.retry_at = Instant::now();
                entry.generation += 1;
                self.ready.push_back(rel);
            }
            Command::Flush(answer) => {
                let now = Instant::now();
                for (rel, entry) in &mut self.entries {
                    if entry.ended {
                        entry.retry_at = entry.retry_at.min(now);
                    } else {
                        entry.chunk_due = true;
                    }
                    self.ready.push_back(rel.clone());
                }
                self.flushing.push(answer);
            }
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        let tick = now >= self.next_tick;
        if tick {
            self.next_tick = now + self.settings.upload_interval;
        }
        for (rel, entry) in &mut self.entries {
            let due = if entry.ended {
                entry.retry_at <= now
            } else {
                entry.chunk_due |= tick;
                entry.chunk_due
            };
            if due {
                self.ready.push_back(rel.clone());
            }
        }
    }

    /// The next tick, or the next retry that falls due (one due already waits in `ready`
    /// for a free slot, which a finishing job makes).
    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        self.entries
            .values()
            .filter(|e| e.ended && !e.busy && e.retry_at > now)
            .map(|e| e.retry_at)
            .fold(self.next_tick, Instant::min)
    }

    fn start_jobs(&mut self) {
        let now = Instant::now();
        while self.jobs.len() < self.settings.concurrency.max(1) {
            let Some(rel) = self.ready.pop_front() else {
                return;
            };
            let Some(entry) = self.entries.get_mut(&rel) else {
                continue;
            };
            let Some(action) = next_action(entry, now) else {
                continue;
            };
            entry.busy = true;
            match action {
                Action::Chunks => entry.chunk_due = false,
                Action::Journal | Action::Whole => entry.journal_stale = false,
            }
            let job = Job {
                remote: self.remote.clone(),
                journal: self.journal.clone(),
                delete_local: self.settings.delete_local_logs && entry.told_end,
                max_chunk: self.settings.max_chunk_bytes,
                record: Record {
                    rel: rel.clone(),
                    ended: entry.ended,
                    uploaded: entry.uploaded,
                    pid: std::process::id(),
                },
            };
            let generation = entry.generation;
            let task = rel.clone();
            let handle = self.jobs.spawn(async move {
                Done {
                    rel,
                    generation,
                    outcome: job.run(action).await,
                }
            });
            self.running.insert(handle.id(), (task, generation, action));
        }
    }

    fn finish(&mut self, done: Done) {
        let Some(entry) = self.entries.get_mut(&done.rel) else {
            return;
        };
        entry.busy = false;
        let current = entry.generation == done.generation;
        match done.outcome {
            Outcome::Whole(Ok(size)) => {
                debug!(log = %done.rel, ?size, "log uploaded whole");
                if current {
                    self.entries.remove(&done.rel);
                    return;
                }
                // Started again meanwhile: its chunks are gone, so they start over.
                entry.uploaded = 0;
                entry.journal_stale = true;
            }
            Outcome::Whole(Err(e)) => {
                entry.failures += 1;
                let wait = backoff(&self.settings, entry.failures);
                entry.retry_at = Instant::now() + wait;
                warn!(log = %done.rel, failures = entry.failures, "uploading the log failed, trying again in {wait:?}: {e}");
            }
            Outcome::Chunks(uploaded, error) => {
                entry.uploaded = entry.uploaded.max(uploaded);
                if let Some(e) = error {
                    warn!(log = %done.rel, "uploading the new part of a running try's log failed, trying again later: {e}");
                }
            }
            Outcome::Journal => {}
        }
        self.ready.push_back(done.rel);
    }

    /// A job that panicked failed like one that returned an error.
    fn job_panicked(&mut self, error: tokio::task::JoinError) {
        let Some((rel, generation, action)) = self.running.remove(&error.id()) else {
            return;
        };
        let failure = || LogError::Local {
            rel: rel.clone(),
            source: std::io::Error::other(error.to_string()),
        };
        let outcome = match action {
            Action::Whole => Outcome::Whole(Err(failure())),
            Action::Chunks => Outcome::Chunks(0, Some(failure())),
            Action::Journal => Outcome::Journal,
        };
        self.finish(Done {
            rel: rel.clone(),
            generation,
            outcome,
        });
    }

    fn answer_flushes(&mut self) {
        if self.flushing.is_empty() || !self.jobs.is_empty() {
            return;
        }
        let now = Instant::now();
        let anything_due = self
            .entries
            .values()
            .any(|e| next_action(e, now).is_some_and(|a| !matches!(a, Action::Journal)));
        if anything_due {
            return;
        }
        let left = self.entries.values().filter(|e| e.ended).count();
        for answer in self.flushing.drain(..) {
            let _ = answer.send(left);
        }
    }
}

/// What a log needs next, if anything can start now.
fn next_action(entry: &Entry, now: Instant) -> Option<Action> {
    if entry.busy {
        None
    } else if entry.ended {
        (entry.retry_at <= now).then_some(Action::Whole)
    } else if entry.chunk_due {
        Some(Action::Chunks)
    } else {
        entry.journal_stale.then_some(Action::Journal)
    }
}

/// The wait after `failures` failed attempts: `retry_initial`, doubling, at most `retry_max`.
fn backoff(settings: &UploadSettings, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    settings
        .retry_initial
        .saturating_mul(1 << doublings)
        .min(settings.retry_max)
}

/// One upload (or journal write) for one log, run beside the others.
struct Job {
    remote: Arc<RemoteLogs>,
    journal: Journal,
    delete_local: bool,
    max_chunk: u64,
    /// The log's state when the job started.
    record: Record,
}

impl Job {
    async fn run(self, action: Action) -> Outcome {
        match action {
            Action::Journal => {
                self.write_journal(&self.record).await;
                Outcome::Journal
            }
            Action::Chunks => {
                let rel = &self.record.rel;
                let (uploaded, error) = self
                    .remote
                    .upload_new_bytes(rel, self.record.uploaded, self.max_chunk)
                    .await;
                if uploaded != self.record.uploaded {
                    self.write_journal(&Record {
                        uploaded,
                        ..self.record.clone()
                    })
                    .await;
                }
                Outcome::Chunks(uploaded, error)
            }
            Action::Whole => Outcome::Whole(self.upload_whole().await),
        }
    }

    async fn upload_whole(&self) -> Result<Option<u64>, LogError> {
        let rel = &self.record.rel;
        let size = match self.remote.upload_whole(rel).await {
            Ok(size) => size,
            Err(e) => {
                self.write_journal(&self.record).await;
                return Err(e);
            }
        };
        // Chunks only stood in for the whole log; one left behind costs only storage.
        if self.record.uploaded > 0
            && let Err(e) = self.remote.delete_chunks(rel).await
        {
            warn!(log = %rel, "removing the chunks of an uploaded log failed: {e}");
        }
        if self.delete_local && size.is_some() {
            match tokio::fs::remove_file(self.remote.folder().join(rel)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    warn!(log = %rel, "removing the uploaded local log failed: {e}")
                }
                _ => {}
            }
        }
        if let Err(e) = self.journal.remove(rel).await {
            warn!(log = %rel, "removing the pending upload record failed: {e}");
        }
        Ok(size)
    }

    async fn write_journal(&self, record: &Record) {
        if let Err(e) = self.journal.write(record).await {
            warn!(log = %record.rel, "recording a pending log upload failed (a restart would not resume it): {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let settings = UploadSettings {
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
            ..UploadSettings::default()
        };
        let waits: Vec<u64> = (1..=6).map(|n| backoff(&settings, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(&settings, u32::MAX), Duration::from_secs(10));
    }
}
