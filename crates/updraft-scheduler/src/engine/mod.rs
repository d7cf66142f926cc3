//! The event-driven scheduling loop.
//!
//! Stimuli: a try's event from the executor (handled at once, with every other pending event),
//! a change in the DAGs folder, a timer (retry due, schedule interval due, heartbeat) and a
//! slow poll that notices work recorded by other processes. Each stimulus is turned into core
//! decisions on the runs it touches; every decision is recorded before it is acted on.
//!
//! Several schedulers may share one (PostgreSQL) database. Each registers as a scheduler job
//! and heartbeats; the tries it queues are its own (`queued_by_job_id`). A run is evaluated
//! under its row lock (another scheduler holding it makes this one try again shortly), and
//! queueing re-checks pools and limits inside one serialised transaction, so every try is
//! queued by exactly one scheduler and runs once. Tries of a scheduler that stopped
//! heartbeating are failed (and retried per `retries`) by the others. A database error never
//! ends the loop: the pass is retried with backoff, and reports of finished tries wait in
//! memory until they are recorded. The one exception is a corrupt database, which no retry
//! mends: the loop stops its tries and returns the error.
//!
//! One [`Scheduler`] state, its `impl` split by job: this file holds the struct and the event
//! loop; `state` its parts (executors, wakeups, definitions, job, tries, tracked runs);
//! `passes` what each stimulus runs; `jobs` registration and heartbeats; `folder` the DAGs
//! folder (loaded on the blocking pool) and definitions; `runs` run creation and start;
//! `evaluate` run evaluation; `queue` queueing; `launch` handing tries to executors; `reports`
//! executor reports; `logs` telling the remote log uploader; `notify` the DAGs' notifiers and
//! `dagrun_timeout`; `orphans` orphaned tries and pod adoption; `shutdown` the clean stop;
//! `config` the settings. Blocking file work (the folder, log lines) goes through
//! `spawn_blocking`, so the loop runs on any Tokio runtime, current-thread included.

mod assets;
mod config;
mod evaluate;
mod folder;
mod jobs;
mod launch;
mod logs;
mod mapping;
mod notify;
mod orphans;
mod passes;
mod queue;
mod reports;
mod runs;
mod sensors;
mod shutdown;
mod state;
mod timeout;
mod trigger;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};
use updraft_executor::TryEvent;
use updraft_runs::StateChange;
use updraft_store::Store;

use crate::SchedulerError;

pub use config::{KubernetesConfig, SchedulerConfig};
use folder::DagsFolder;
pub use logs::LOG_FLUSH_WAIT;
use passes::Reread;
use state::{Definitions, Executors, InFlight, Job, TrackedRuns, Tries, Wakeups};

/// Longest wait between retries of a pass that failed (e.g. the database is away).
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How soon a run locked by another scheduler is looked at again.
const BUSY_RETRY: Duration = Duration::from_millis(20);

/// Which runs this scheduler drives.
#[derive(Debug, Clone)]
enum Scope {
    /// The whole installation: creates scheduled runs, runs every unpaused DAG's runs.
    Service,
    /// Only these runs, paused or not, creating none (`dags test`, local backfill).
    Runs(HashSet<i64>),
}

enum Stimulus {
    Event(TryEvent),
    FolderChanged,
    /// A DAG source switched to a new revision: its tree is read again.
    SourcesChanged,
    /// Another component recorded work (a trigger, a clear): look now, not at the next poll.
    Poked,
    Timer,
    Shutdown,
}

/// One scheduler: its state in small parts by job, its methods in this module's files.
pub struct Scheduler {
    store: Arc<dyn Store>,
    config: SchedulerConfig,
    scope: Scope,
    changes: tokio::sync::broadcast::Sender<StateChange>,
    executors: Executors,
    /// The DAGs folder this scheduler loads; `None` when the caller puts the DAGs in the store.
    folder: Option<DagsFolder>,
    wakeups: Wakeups,
    definitions: Definitions,
    job: Job,
    tries: Tries,
    tracked: TrackedRuns,
    /// Unknown pools already warned about, so the log says it once.
    unknown_pools_reported: HashSet<String>,
    /// Sends the notifications of the DAGs' notifiers; `None` when no HTTP client could be
    /// built (logged once).
    notifications: Option<updraft_notify::Notifier>,
}

impl Scheduler {
    /// A scheduler for the whole installation.
    pub fn new(store: Arc<dyn Store>, config: SchedulerConfig) -> Result<Self, SchedulerError> {
        Self::build(store, config, Scope::Service)
    }

    /// A scheduler that drives only `run_pks` (whatever their DAG's paused flag) and creates
    /// no runs: for `dags test` and for backfills run in the foreground.
    pub fn for_runs(
        store: Arc<dyn Store>,
        config: SchedulerConfig,
        run_pks: &[i64],
    ) -> Result<Self, SchedulerError> {
        let scope = Scope::Runs(run_pks.iter().copied().collect());
        Self::build(store, config, scope)
    }

    fn build(
        store: Arc<dyn Store>,
        config: SchedulerConfig,
        scope: Scope,
    ) -> Result<Self, SchedulerError> {
        let wakeups = Wakeups::new();
        let folder = match (&config.dags_folder, &scope) {
            (Some(path), Scope::Service) => Some(DagsFolder::new(
                path,
                config.dag_bag.clone(),
                wakeups.folder_changed.clone(),
                config.sources.clone(),
            )),
            _ => None,
        };
        let executors = Executors::new(&config, &store, wakeups.poke.clone());
        Ok(Scheduler {
            store,
            changes: tokio::sync::broadcast::channel(1024).0,
            executors,
            folder,
            wakeups,
            definitions: Definitions::default(),
            job: Job::new(),
            tries: Tries::default(),
            tracked: TrackedRuns::default(),
            unknown_pools_reported: HashSet::new(),
            notifications: updraft_notify::Notifier::new(config.notification_retry)
                .inspect_err(|e| warn!("notifications cannot be sent: {e}"))
                .ok(),
            config,
            scope,
        })
    }

    /// A handle that makes the scheduler look for new work at once, for components that record
    /// work outside the scheduler (API handlers, a signal from a CLI command).
    pub fn waker(&self) -> Arc<Notify> {
        self.wakeups.poke.clone()
    }

    /// The DAG sources this scheduler syncs, if any (an API server in the same process pokes
    /// them after recording a sync request).
    pub fn sources(&self) -> Option<Arc<updraft_sources::Sources>> {
        self.config.sources.clone()
    }

    /// Every recorded state change is sent here (lagging receivers miss some; a live view then
    /// reloads).
    pub fn changes(&self) -> tokio::sync::broadcast::Sender<StateChange> {
        self.changes.clone()
    }

    fn publish(&self, run_pk: i64) {
        let _ = self.changes.send(StateChange { run_pk });
    }

    /// Run until `shutdown` completes, then stop cleanly: running tries get
    /// `shutdown_grace` to finish, then are stopped; every outcome is recorded.
    pub async fn run(
        &mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), SchedulerError> {
        tokio::pin!(shutdown);
        let _syncing = self.start_syncing_sources();
        let mut backoff = Backoff::default();
        loop {
            let prepared = self.prepare().await;
            let ready = prepared.is_ok();
            match self.settle(prepared, &mut backoff, shutdown.as_mut()).await {
                Ok(true) => return self.shutdown().await,
                Ok(false) => {}
                Err(fatal) => return self.abandon(fatal).await,
            }
            if ready {
                break;
            }
        }
        loop {
            let stimulus = self.next_stimulus(shutdown.as_mut()).await;
            if matches!(stimulus, Stimulus::Shutdown) {
                break;
            }
            let started = Instant::now();
            let handled = self.handle(stimulus).await;
            self.observe_loop(started);
            match self.settle(handled, &mut backoff, shutdown.as_mut()).await {
                // Stopping while the database is away: tries are still stopped and whatever
                // can be recorded is.
                Ok(true) => break,
                Ok(false) => {}
                Err(fatal) => return self.abandon(fatal).await,
            }
        }
        self.shutdown().await
    }

    /// After a pass: on success clear the backoff; on failure log it, remember when, and
    /// wait the backoff (or until shutdown, returning true). An error no retry can mend (see
    /// [`SchedulerError::is_fatal`]) is returned instead.
    async fn settle(
        &mut self,
        outcome: Result<(), SchedulerError>,
        backoff: &mut Backoff,
        shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Result<bool, SchedulerError> {
        match outcome {
            Ok(()) => {
                if !backoff.is_clear() {
                    info!("the database answers again; scheduling resumes");
                }
                backoff.clear();
                Ok(false)
            }
            Err(e) if e.is_fatal() => Err(e),
            Err(e) => {
                self.job.last_db_error = Some(Instant::now());
                let wait = backoff.next();
                warn!("scheduler pass failed, retrying in {wait:?}: {e}");
                Ok(tokio::select! {
                    _ = shutdown => true,
                    _ = tokio::time::sleep(wait) => false,
                })
            }
        }
    }

    /// Drive the scoped runs until all are finished; `progress(finished, total)` is called
    /// after every pass.
    pub async fn run_until_finished(
        &mut self,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(), SchedulerError> {
        let Scope::Runs(runs) = &self.scope else {
            return Err(SchedulerError::Other(
                "run_until_finished needs a scheduler made with for_runs".into(),
            ));
        };
        let runs: Vec<i64> = runs.iter().copied().collect();
        self.prepare().await?;
        let never = std::future::pending::<()>();
        tokio::pin!(never);
        loop {
            let finished = self.count_finished(&runs).await?;
            progress(finished, runs.len());
            if finished == runs.len() && self.tries.in_flight.is_empty() {
                return Ok(());
            }
            let stimulus = self.next_stimulus(never.as_mut()).await;
            self.handle(stimulus).await?;
        }
    }

    async fn prepare(&mut self) -> Result<(), SchedulerError> {
        self.register().await?;
        self.ensure_default_pool().await?;
        if matches!(self.scope, Scope::Service) {
            self.recover_orphans().await?;
            self.sync_folder(true).await?;
        }
        self.full_pass(Reread::All).await
    }

    async fn count_finished(&self, runs: &[i64]) -> Result<usize, SchedulerError> {
        let mut finished = 0;
        for pk in runs {
            if let Some(run) = self.store.run_by_pk(*pk).await?
                && run.state.is_finished()
            {
                finished += 1;
            }
        }
        Ok(finished)
    }

    /// The next stimulus to handle. Shutdown always comes first. Executor events and the
    /// other stimuli (the folder, pokes, timers) take turns: after a burst of events, anything
    /// else that is ready is handled before the next burst, so a run whose tries end
    /// continuously never keeps run starts, other DAGs' work or timers waiting. (Each turn of
    /// events drains every pending one, so events lose nothing by waiting a turn.)
    async fn next_stimulus(
        &mut self,
        mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Stimulus {
        let deadline = self.next_deadline();
        let events_first = !self.wakeups.events_had_turn;
        let sources_changed = self.folder.as_ref().and_then(|f| f.sources_changed());
        let sources_changed = async {
            match &sources_changed {
                Some(changed) => changed.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sources_changed);
        let stimulus = if events_first {
            tokio::select! {
                biased;
                _ = shutdown.as_mut() => Stimulus::Shutdown,
                Some(event) = self.executors.events.recv() => Stimulus::Event(event),
                _ = sources_changed.as_mut() => Stimulus::SourcesChanged,
                _ = self.wakeups.folder_changed.notified() => Stimulus::FolderChanged,
                _ = self.wakeups.poke.notified() => Stimulus::Poked,
                _ = tokio::time::sleep_until(deadline) => Stimulus::Timer,
            }
        } else {
            tokio::select! {
                biased;
                _ = shutdown.as_mut() => Stimulus::Shutdown,
                _ = sources_changed.as_mut() => Stimulus::SourcesChanged,
                _ = self.wakeups.folder_changed.notified() => Stimulus::FolderChanged,
                _ = self.wakeups.poke.notified() => Stimulus::Poked,
                _ = tokio::time::sleep_until(deadline) => Stimulus::Timer,
                Some(event) = self.executors.events.recv() => Stimulus::Event(event),
            }
        };
        self.wakeups.events_had_turn = matches!(stimulus, Stimulus::Event(_));
        stimulus
    }

    fn next_deadline(&self) -> Instant {
        let mut deadline = self.wakeups.next_poll.min(self.job.next_check);
        if let Some(folder) = &self.folder {
            deadline = deadline.min(folder.next_rescan);
        }
        if let Some(at) = self.wakeups.wake_at {
            let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            deadline = deadline.min(Instant::now() + wait);
        }
        deadline
    }

    async fn handle(&mut self, stimulus: Stimulus) -> Result<(), SchedulerError> {
        match stimulus {
            Stimulus::Event(event) => {
                // Taken into the pending reports before any database call, so a failing call
                // loses none of them.
                let mut events = vec![event];
                self.drain_events(&mut events);
                // A try that only started frees nothing and makes nothing runnable: recording
                // it is all there is to do (and leaves the cores to the try).
                let any_finished = events
                    .iter()
                    .any(|e| matches!(e, TryEvent::Finished { .. }));
                self.take_events(events);
                if any_finished {
                    // The reports are recorded by the evaluation that follows, in its
                    // transaction where the store allows.
                    self.register().await?;
                    self.launch_pending(Utc::now()).await?;
                    self.check_jobs_if_due().await?;
                    self.quick_pass().await
                } else {
                    self.housekeeping().await
                }
            }
            Stimulus::SourcesChanged => {
                if let Some(folder) = &self.folder {
                    folder.mark_dirty();
                }
                self.housekeeping().await?;
                self.sync_folder(false).await?;
                self.full_pass(Reread::Due).await
            }
            Stimulus::FolderChanged => {
                self.housekeeping().await?;
                self.sync_folder(false).await?;
                self.full_pass(Reread::Due).await
            }
            Stimulus::Poked => {
                // A sync of a source may be what was asked for.
                if let Some(sources) = &self.config.sources {
                    sources.poke().notify_one();
                }
                // Work recorded elsewhere may have changed any run.
                self.housekeeping().await?;
                self.full_pass(Reread::All).await
            }
            Stimulus::Timer => {
                self.housekeeping().await?;
                if self
                    .folder
                    .as_ref()
                    .is_some_and(|f| Instant::now() >= f.next_rescan)
                {
                    self.sync_folder(false).await?;
                }
                self.full_pass(Reread::Due).await
            }
            Stimulus::Shutdown => Ok(()),
        }
    }

    /// The loop's metrics after a stimulus was handled: how long it took, and the executor's
    /// queue as it left it.
    fn observe_loop(&self, started: Instant) {
        let metrics = updraft_metrics::global();
        metrics
            .scheduler_loop_duration
            .observe(started.elapsed().as_secs_f64());
        let running = self.tries.in_flight.len() as i64;
        metrics.executor_running_tasks.set(running);
        metrics
            .executor_queued_tasks
            .set(self.tries.pending_launches.len() as i64);
        metrics
            .executor_open_slots
            .set((self.config.parallelism as i64 - running).max(0));
    }

    /// Before any pass: be registered, record what is pending, look after the jobs when due.
    async fn housekeeping(&mut self) -> Result<(), SchedulerError> {
        self.register().await?;
        self.record_pending_reports().await?;
        self.launch_pending(Utc::now()).await?;
        self.check_jobs_if_due().await
    }
}

/// Waits between retries of a failed pass: 100 ms, doubling up to [`MAX_BACKOFF`].
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait =
            Duration::from_millis(100).saturating_mul(1 << self.failures.min(10).saturating_sub(1));
        wait.min(MAX_BACKOFF)
    }

    fn clear(&mut self) {
        self.failures = 0;
    }

    fn is_clear(&self) -> bool {
        self.failures == 0
    }
}
