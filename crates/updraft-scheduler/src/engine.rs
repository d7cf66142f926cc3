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
//! memory until they are recorded.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use updraft_core::evaluate::{TiSnapshot, evaluate_run_indexed};
use updraft_core::queue::{Candidate, Capacity, select_to_queue};
use updraft_core::retry::{TryOutcome, on_try_finished};
use updraft_core::timetable::{DataInterval, due_intervals, next_interval};
use updraft_core::{RunState, RunType, TaskState};
use updraft_dag::Schedule;
use updraft_executor::render::{TemplateContext, render_task};
use updraft_executor::{
    ExecOutcome, LaunchSpec, LocalExecutor, LocalExecutorConfig, Program, TryEvent, TryKey,
    log_path,
};
use updraft_store::{
    DagRow, Evaluated, QueueLimits, RunDecision, RunFilter, RunRow, ScheduledSkip, Store, TiKey,
    TiRow, TiTransition, TryReport,
};

use updraft_pods::{PodExecutor, PodExecutorConfig, TryIdentity};

use crate::SchedulerError;
use crate::dagcache::{CachedDag, DagCache};
use crate::runs::{RunRequest, create_run};

/// Most scheduled runs created for one DAG in one pass (catchup creates the rest later).
const MAX_RUNS_PER_PASS: usize = 64;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// `None` when the DAGs are put in the store by the caller (`dags test`).
    pub dags_folder: Option<PathBuf>,
    pub logs_folder: PathBuf,
    /// Task instances queued or running at once, installation-wide.
    pub parallelism: u32,
    pub default_pool_slots: i64,
    pub dags_are_paused_at_creation: bool,
    /// Full rescan of the DAGs folder, in case a change notification was missed.
    pub rescan_interval: Duration,
    /// How often to look for work recorded by other processes.
    pub poll_interval: Duration,
    /// Between SIGTERM and SIGKILL when a try is stopped.
    pub kill_grace: Duration,
    /// How long shutdown waits for running tries before stopping them.
    pub shutdown_grace: Duration,
    pub max_dag_file_size: u64,
    pub hostname: String,
    /// Working directory of tries that set none.
    pub default_cwd: Option<PathBuf>,
    /// How often the scheduler records that it is alive.
    pub heartbeat_interval: Duration,
    /// A scheduler silent for this long is declared dead; its tries are failed and retried.
    pub health_check_threshold: Duration,
    /// True when no other scheduler can be running on the database (SQLite, under its
    /// scheduler lock): every other scheduler job is then dead at once, without waiting for
    /// `health_check_threshold`.
    pub exclusive: bool,
    /// Where `pod` tasks run (and, with `every_task`, all tasks); `None`: no cluster, and
    /// `pod` tasks fail saying so.
    pub kubernetes: Option<KubernetesConfig>,
}

/// A Kubernetes cluster to run tries in.
#[derive(Clone)]
pub struct KubernetesConfig {
    pub client: updraft_pods::kube::Client,
    pub pods: PodExecutorConfig,
    /// Run `bash` and `command` tasks as pods too (the `kubernetes` executor).
    pub every_task: bool,
}

impl std::fmt::Debug for KubernetesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesConfig")
            .field("pods", &self.pods)
            .field("every_task", &self.every_task)
            .finish_non_exhaustive()
    }
}

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

/// A try handed to the executor and not yet reported finished.
struct InFlight {
    try_number: u32,
    max_tries: u32,
    dag: Arc<CachedDag>,
}

enum Stimulus {
    Event(TryEvent),
    FolderChanged,
    /// Another component recorded work (a trigger, a clear): look now, not at the next poll.
    Poked,
    Timer,
    Shutdown,
}

/// A recorded state change of a run or one of its task instances, published for live views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChange {
    pub run_pk: i64,
}

pub struct Scheduler {
    store: Arc<dyn Store>,
    changes: tokio::sync::broadcast::Sender<StateChange>,
    config: SchedulerConfig,
    executor: LocalExecutor,
    /// Runs `pod` tasks (and every task with `every_task`), when a cluster is configured.
    pods: Option<PodExecutor>,
    every_task_in_pods: bool,
    events: mpsc::UnboundedReceiver<TryEvent>,
    scope: Scope,
    dags: DagCache,
    bag: Option<updraft_dag::DagBag>,
    folder_changed: Arc<Notify>,
    poke: Arc<Notify>,
    _watcher: Option<updraft_dag::FolderWatcher>,
    /// Latest definitions by dag_id, refreshed on every full pass.
    dag_rows: HashMap<String, DagRow>,
    /// When each unpaused DAG next needs a look for due scheduled runs.
    next_schedule_check: HashMap<String, DateTime<Utc>>,
    in_flight: HashMap<(i64, String), InFlight>,
    /// Running runs this scheduler drives (in scope, DAG not paused); only their instances
    /// are queued.
    runs_in_play: HashSet<i64>,
    dirty_runs: BTreeSet<i64>,
    wake_at: Option<DateTime<Utc>>,
    next_poll: Instant,
    next_rescan: Instant,
    /// Unknown pools already warned about, so the log says it once.
    unknown_pools_reported: HashSet<String>,
    /// This process's scheduler job (0 until registered).
    job_id: i64,
    next_heartbeat: Instant,
    /// When the last database error happened: dead schedulers are only declared by a scheduler
    /// that has itself been reaching the database for a whole `health_check_threshold`.
    last_db_error: Option<Instant>,
    /// Executor reports not yet recorded (the database was away): recorded before anything
    /// else, so no try's end is lost.
    pending_reports: Vec<TryReport>,
    /// Runs another scheduler was evaluating: looked at again after [`BUSY_RETRY`].
    busy_runs: BTreeSet<i64>,
    /// Tries queued (recorded as this scheduler's) and not yet handed to the executor.
    pending_launches: std::collections::VecDeque<TiRow>,
    /// Running runs as last read, for what never changes in a run (DAG, version, dates);
    /// their state is always re-read under the run's lock.
    known_runs: HashMap<i64, RunRow>,
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
        let (tx, rx) = mpsc::unbounded_channel();
        let executor = LocalExecutor::new(
            LocalExecutorConfig {
                max_concurrency: config.parallelism as usize,
                kill_grace: config.kill_grace,
                default_cwd: config.default_cwd.clone(),
                ..LocalExecutorConfig::default()
            },
            tx.clone(),
        );
        let pods = config
            .kubernetes
            .as_ref()
            .map(|k| PodExecutor::new(k.client.clone(), k.pods.clone(), tx));
        let every_task_in_pods = config.kubernetes.as_ref().is_some_and(|k| k.every_task);
        let folder_changed = Arc::new(Notify::new());
        let (bag, watcher) = match (&config.dags_folder, &scope) {
            (Some(folder), Scope::Service) => {
                let bag = updraft_dag::DagBag::with_options(
                    folder,
                    updraft_dag::DagBagOptions {
                        max_file_size: config.max_dag_file_size,
                        ..Default::default()
                    },
                );
                let notify = folder_changed.clone();
                let watcher =
                    updraft_dag::watch(folder, updraft_dag::DEFAULT_DEBOUNCE, move || {
                        notify.notify_one()
                    })
                    .map_err(|e| {
                        warn!("watching {} failed, rescanning only: {e}", folder.display())
                    })
                    .ok();
                (Some(bag), watcher)
            }
            _ => (None, None),
        };
        let now = Instant::now();
        Ok(Scheduler {
            store,
            changes: tokio::sync::broadcast::channel(1024).0,
            config,
            executor,
            pods,
            every_task_in_pods,
            events: rx,
            scope,
            dags: DagCache::default(),
            bag,
            folder_changed,
            poke: Arc::new(Notify::new()),
            _watcher: watcher,
            dag_rows: HashMap::new(),
            next_schedule_check: HashMap::new(),
            in_flight: HashMap::new(),
            runs_in_play: HashSet::new(),
            dirty_runs: BTreeSet::new(),
            wake_at: None,
            next_poll: now,
            next_rescan: now,
            unknown_pools_reported: HashSet::new(),
            job_id: 0,
            next_heartbeat: now,
            last_db_error: None,
            pending_reports: Vec::new(),
            busy_runs: BTreeSet::new(),
            pending_launches: std::collections::VecDeque::new(),
            known_runs: HashMap::new(),
        })
    }

    /// A handle that makes the scheduler look for new work at once, for components that record
    /// work outside the scheduler (API handlers, a signal from a CLI command).
    pub fn waker(&self) -> Arc<Notify> {
        self.poke.clone()
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
        let mut backoff = Backoff::default();
        loop {
            let prepared = self.prepare().await;
            let ready = prepared.is_ok();
            if self.settle(prepared, &mut backoff, shutdown.as_mut()).await {
                return self.shutdown().await;
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
            let handled = self.handle(stimulus).await;
            if self.settle(handled, &mut backoff, shutdown.as_mut()).await {
                // Stopping while the database is away: tries are still stopped and whatever
                // can be recorded is.
                break;
            }
        }
        self.shutdown().await
    }

    /// After a pass: on success clear the backoff; on failure log it, remember when, and
    /// wait the backoff (or until shutdown, returning true).
    async fn settle(
        &mut self,
        outcome: Result<(), SchedulerError>,
        backoff: &mut Backoff,
        shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> bool {
        match outcome {
            Ok(()) => {
                if !backoff.is_clear() {
                    info!("the database answers again; scheduling resumes");
                }
                backoff.clear();
                false
            }
            Err(e) => {
                self.last_db_error = Some(Instant::now());
                let wait = backoff.next();
                warn!("scheduler pass failed, retrying in {wait:?}: {e}");
                tokio::select! {
                    _ = shutdown => true,
                    _ = tokio::time::sleep(wait) => false,
                }
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
            if finished == runs.len() && self.in_flight.is_empty() {
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
        self.full_pass().await
    }

    /// Record this process as a scheduler job (once), so its tries are known to be its own.
    async fn register(&mut self) -> Result<(), SchedulerError> {
        if self.job_id != 0 {
            return Ok(());
        }
        let now = Utc::now();
        self.job_id = self
            .store
            .register_scheduler(&self.config.hostname, std::process::id(), now)
            .await?;
        self.next_heartbeat = Instant::now() + self.config.heartbeat_interval;
        info!(job_id = self.job_id, "registered as scheduler job");
        if self.config.exclusive {
            // Nobody else can be running: every other job ended without saying so.
            let reaped = self
                .store
                .reap_schedulers(DateTime::<Utc>::MAX_UTC, self.job_id, now)
                .await?;
            if !reaped.is_empty() {
                info!(jobs = ?reaped, "earlier scheduler jobs ended without stopping cleanly");
            }
        }
        Ok(())
    }

    /// Heartbeat when due; then declare silent schedulers dead and take over their tries.
    async fn heartbeat_if_due(&mut self) -> Result<(), SchedulerError> {
        if Instant::now() < self.next_heartbeat || self.job_id == 0 {
            return Ok(());
        }
        let now = Utc::now();
        self.next_heartbeat = Instant::now() + self.config.heartbeat_interval;
        if !self.store.heartbeat(self.job_id, now).await? {
            self.declared_dead().await?;
        }
        if matches!(self.scope, Scope::Service) && self.reaching_database_long_enough() {
            let threshold =
                chrono::Duration::from_std(self.config.health_check_threshold).unwrap_or_default();
            let reaped = self
                .store
                .reap_schedulers(now - threshold, self.job_id, now)
                .await?;
            if !reaped.is_empty() {
                warn!(jobs = ?reaped, "schedulers stopped heartbeating; taking over their tries");
            }
            self.recover_orphans().await?;
        }
        Ok(())
    }

    /// A scheduler that could not reach the database for a while must not take everyone
    /// else's silence (during the same outage) for death.
    fn reaching_database_long_enough(&self) -> bool {
        self.last_db_error
            .is_none_or(|at| at.elapsed() >= self.config.health_check_threshold)
    }

    /// Another scheduler took this one for dead and failed its tries: stop them (their ends
    /// no longer apply) and carry on under a new job.
    async fn declared_dead(&mut self) -> Result<(), SchedulerError> {
        warn!(
            job_id = self.job_id,
            tries = self.in_flight.len(),
            "this scheduler was declared dead by another; stopping its tries and registering again"
        );
        let mut released = Vec::new();
        for ((run_pk, task_id), flight) in &self.in_flight {
            let key = TryKey {
                run_pk: *run_pk,
                task_id: task_id.clone(),
                try_number: flight.try_number,
            };
            // A pod is left to whoever took the try over (it adopts the pod); a local process
            // is stopped.
            if self.pods.as_ref().is_some_and(|p| p.release(&key)) {
                released.push((*run_pk, task_id.clone()));
            } else {
                self.executor.kill(&key);
            }
        }
        for flight in released {
            self.in_flight.remove(&flight);
        }
        self.pending_launches.clear();
        self.job_id = 0;
        self.register().await
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

    async fn next_stimulus(
        &mut self,
        shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Stimulus {
        let deadline = self.next_deadline();
        tokio::select! {
            biased;
            _ = shutdown => Stimulus::Shutdown,
            Some(event) = self.events.recv() => Stimulus::Event(event),
            _ = self.folder_changed.notified() => Stimulus::FolderChanged,
            _ = self.poke.notified() => Stimulus::Poked,
            _ = tokio::time::sleep_until(deadline) => Stimulus::Timer,
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut deadline = self.next_poll.min(self.next_heartbeat);
        if self.bag.is_some() {
            deadline = deadline.min(self.next_rescan);
        }
        if let Some(at) = self.wake_at {
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
                    self.heartbeat_if_due().await?;
                    self.quick_pass().await
                } else {
                    self.housekeeping().await
                }
            }
            Stimulus::FolderChanged => {
                self.housekeeping().await?;
                self.sync_folder(false).await?;
                self.full_pass().await
            }
            Stimulus::Poked => {
                self.housekeeping().await?;
                self.full_pass().await
            }
            Stimulus::Timer => {
                self.housekeeping().await?;
                if self.bag.is_some() && Instant::now() >= self.next_rescan {
                    self.sync_folder(false).await?;
                }
                self.full_pass().await
            }
            Stimulus::Shutdown => Ok(()),
        }
    }

    /// Before any pass: be registered, record what is pending, heartbeat when due.
    async fn housekeeping(&mut self) -> Result<(), SchedulerError> {
        self.register().await?;
        self.record_pending_reports().await?;
        self.launch_pending(Utc::now()).await?;
        self.heartbeat_if_due().await
    }

    // ---- DAGs folder ----------------------------------------------------------------------

    async fn sync_folder(&mut self, force: bool) -> Result<(), SchedulerError> {
        self.next_rescan = Instant::now() + self.config.rescan_interval;
        let Some(bag) = self.bag.as_mut() else {
            return Ok(());
        };
        let changed = tokio::task::block_in_place(|| bag.refresh()).has_changes();
        if !changed && !force {
            return Ok(());
        }
        info!(
            dags = bag.dags().len(),
            import_errors = bag.import_errors().len(),
            "DAGs folder loaded"
        );
        crate::record_dag_bag(
            self.store.as_ref(),
            bag,
            self.config.dags_are_paused_at_creation,
            Utc::now(),
        )
        .await?;
        self.next_schedule_check.clear();
        Ok(())
    }

    async fn ensure_default_pool(&self) -> Result<(), SchedulerError> {
        let pools = self.store.pools().await?;
        let wanted = self.config.default_pool_slots;
        let current = pools.iter().find(|p| p.name == updraft_dag::DEFAULT_POOL);
        if current.is_none_or(|p| p.slots != wanted) {
            self.store
                .upsert_pool(&updraft_store::PoolRow {
                    name: updraft_dag::DEFAULT_POOL.to_string(),
                    slots: wanted,
                    description: "Default pool".to_string(),
                })
                .await?;
        }
        Ok(())
    }

    // ---- passes ---------------------------------------------------------------------------

    /// Everything: new scheduled runs, queued runs to start, every active run re-evaluated,
    /// tries stopped whose instance was changed elsewhere, runnable work queued.
    async fn full_pass(&mut self) -> Result<(), SchedulerError> {
        self.next_poll = Instant::now() + self.config.poll_interval;
        self.wake_at = None;
        let now = Utc::now();
        self.refresh_dag_rows().await?;
        if matches!(self.scope, Scope::Service) {
            self.create_scheduled_runs(now).await?;
        }
        self.start_queued_runs(now).await?;
        let running = self.runs_in_scope(RunState::Running).await?;
        self.runs_in_play = running.iter().map(|r| r.id).collect();
        self.dirty_runs.extend(running.iter().map(|r| r.id));
        self.known_runs = running.into_iter().map(|r| (r.id, r)).collect();
        self.stop_tries_changed_elsewhere().await?;
        self.quick_pass().await
    }

    /// Bring `dag_rows` up to date: switches every time, a definition only when its version
    /// changed (definitions are large; decoding them all on every poll would dominate an idle
    /// scheduler's CPU).
    async fn refresh_dag_rows(&mut self) -> Result<(), SchedulerError> {
        let heads = self.store.dag_heads().await?;
        let mut rows = HashMap::with_capacity(heads.len());
        for head in heads {
            let row = match self.dag_rows.remove(&head.dag_id) {
                Some(mut row) if row.version == head.version => {
                    row.is_paused = head.is_paused;
                    row.is_active = head.is_active;
                    row
                }
                _ => match self.store.dag(&head.dag_id).await? {
                    Some(row) => row,
                    None => continue,
                },
            };
            rows.insert(head.dag_id, row);
        }
        self.dag_rows = rows;
        Ok(())
    }

    /// Re-evaluate the runs touched since the last pass and queue what became runnable.
    async fn quick_pass(&mut self) -> Result<(), SchedulerError> {
        let now = Utc::now();
        if self.evaluate(now).await? {
            // Some run finished: queued runs may start now.
            self.start_queued_runs(now).await?;
            self.evaluate(now).await?;
        }
        if !self.busy_runs.is_empty() {
            self.dirty_runs.append(&mut self.busy_runs);
            let soon = chrono::Duration::from_std(BUSY_RETRY).unwrap_or_default();
            self.wake(now + soon);
        }
        self.queue_and_launch(now).await
    }

    async fn runs_in_scope(&self, state: RunState) -> Result<Vec<RunRow>, SchedulerError> {
        let runs = self
            .store
            .runs(&RunFilter {
                dag_id: None,
                states: vec![state],
                limit: None,
            })
            .await?;
        Ok(runs.into_iter().filter(|r| self.in_scope(r)).collect())
    }

    fn in_scope(&self, run: &RunRow) -> bool {
        match &self.scope {
            Scope::Runs(set) => set.contains(&run.id),
            Scope::Service => {
                run.run_type == RunType::Backfill
                    || self.dag_rows.get(&run.dag_id).is_some_and(|d| !d.is_paused)
            }
        }
    }

    fn wake(&mut self, at: DateTime<Utc>) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    // ---- runs -----------------------------------------------------------------------------

    async fn create_scheduled_runs(&mut self, now: DateTime<Utc>) -> Result<(), SchedulerError> {
        let candidates: Vec<DagRow> = self
            .dag_rows
            .values()
            .filter(|row| row.is_active && !row.is_paused && row.dag.schedule != Schedule::None)
            .filter(|row| {
                self.next_schedule_check
                    .get(&row.dag.dag_id)
                    .is_none_or(|at| *at <= now)
            })
            .cloned()
            .collect();
        for row in candidates {
            let next = self.create_due_runs_for(&row, now).await?;
            match next {
                Some(at) => {
                    self.next_schedule_check.insert(row.dag.dag_id.clone(), at);
                    self.wake(at);
                }
                None => {
                    self.next_schedule_check
                        .insert(row.dag.dag_id.clone(), DateTime::<Utc>::MAX_UTC);
                }
            }
        }
        Ok(())
    }

    /// Creates the due runs of one DAG; returns when it next needs a look.
    async fn create_due_runs_for(
        &mut self,
        row: &DagRow,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, SchedulerError> {
        let dag = &row.dag;
        let active = self
            .store
            .runs(&RunFilter {
                dag_id: Some(dag.dag_id.clone()),
                states: vec![RunState::Queued, RunState::Running],
                limit: None,
            })
            .await?
            .len();
        let room = (dag.max_active_runs as usize).saturating_sub(active);
        let mut last = self
            .store
            .latest_scheduled_run(&dag.dag_id)
            .await?
            .map(|r| DataInterval {
                start: r.data_interval_start,
                end: r.data_interval_end,
            });
        if room == 0 {
            // A finishing run triggers a full pass through start_queued_runs; look again then.
            return Ok(Some(
                now + chrono::Duration::from_std(self.config.poll_interval).unwrap_or_default(),
            ));
        }
        let due = due_intervals(dag, last.as_ref(), now, room.min(MAX_RUNS_PER_PASS));
        for interval in due {
            let request = RunRequest {
                run_type: RunType::Scheduled,
                run_id: None,
                logical_date: interval.start,
                interval,
                conf: serde_json::Value::Object(Default::default()),
            };
            match create_run(self.store.as_ref(), dag, &row.version, request, now).await {
                Ok(run) => {
                    debug!(dag_id = %dag.dag_id, run_id = %run.run_id, "created scheduled run")
                }
                Err(SchedulerError::RunExists { run_id, .. }) => {
                    debug!(dag_id = %dag.dag_id, %run_id, "scheduled run already exists")
                }
                Err(e) => return Err(e),
            }
            last = Some(interval);
        }
        Ok(next_interval(dag, last.as_ref(), now).map(|i| i.end.max(now)))
    }

    async fn start_queued_runs(&mut self, now: DateTime<Utc>) -> Result<(), SchedulerError> {
        let mut queued = self.runs_in_scope(RunState::Queued).await?;
        if queued.is_empty() {
            return Ok(());
        }
        queued.sort_by_key(|r| (r.logical_date, r.id));
        // The store re-counts running runs inside one serialised transaction, so schedulers
        // starting runs at once never exceed max_active_runs.
        let candidates: Vec<(i64, u32)> = queued
            .iter()
            .map(|run| (run.id, self.max_active_runs(run)))
            .collect();
        for pk in self.store.start_runs(&candidates, now).await? {
            self.publish(pk);
            self.runs_in_play.insert(pk);
            self.dirty_runs.insert(pk);
        }
        Ok(())
    }

    fn max_active_runs(&self, run: &RunRow) -> u32 {
        match (&self.scope, self.dag_rows.get(&run.dag_id)) {
            (Scope::Runs(_), _) => u32::MAX,
            (_, Some(row)) => row.dag.max_active_runs,
            (_, None) => 16,
        }
    }

    /// Record the pending reports and evaluate every dirty run (and the runs of tries that
    /// ended), in one [`Store::record_and_evaluate`] call. Returns true when some run finished
    /// in this evaluation.
    async fn evaluate(&mut self, now: DateTime<Utc>) -> Result<bool, SchedulerError> {
        for report in &self.pending_reports {
            if let TryReport::Finished { key, .. } = report {
                self.dirty_runs.insert(key.run_pk);
            }
        }
        let run_pks: Vec<i64> = std::mem::take(&mut self.dirty_runs).into_iter().collect();
        // What `decide` needs, read before the transaction: each run's DAG by dag_id and
        // version, and for DAGs with `depends_on_past` tasks the previous run's states.
        let mut dags: HashMap<String, HashMap<String, Arc<CachedDag>>> = HashMap::new();
        let mut previous: HashMap<i64, HashMap<String, TaskState>> = HashMap::new();
        let mut pks = Vec::with_capacity(run_pks.len());
        for (i, &run_pk) in run_pks.iter().enumerate() {
            match self
                .prepare_evaluation(run_pk, &mut dags, &mut previous)
                .await
            {
                Ok(true) => pks.push(run_pk),
                Ok(false) => {}
                Err(e) => {
                    // As one at a time: the failing run is dropped, the others stay dirty.
                    self.dirty_runs.extend(pks);
                    self.dirty_runs.extend(&run_pks[i + 1..]);
                    return Err(e);
                }
            }
        }
        if pks.is_empty() && self.pending_reports.is_empty() {
            return Ok(false);
        }
        let wake_at = std::sync::Mutex::new(None::<DateTime<Utc>>);
        let decide = |run: &RunRow, tis: &[TiSnapshot]| {
            let Some(cached) = dags
                .get(run.dag_id.as_str())
                .and_then(|versions| versions.get(run.version.as_str()))
            else {
                // Not prepared (cannot happen: a run's DAG and version never change).
                return RunDecision::default();
            };
            let evaluation =
                evaluate_run_indexed(&cached.dag, &cached.index, tis, previous.get(&run.id), now);
            if let Some(at) = evaluation.wake_at {
                let mut wake_at = wake_at.lock().expect("not poisoned");
                *wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
            }
            RunDecision {
                transitions: evaluation
                    .transitions
                    .into_iter()
                    .map(|(task_id, expected, new)| TiTransition {
                        task_id,
                        expected,
                        new,
                    })
                    .collect(),
                run_state: evaluation.run_state,
            }
        };
        let recorded = self
            .store
            .record_and_evaluate(
                &self.pending_reports,
                &self.config.hostname,
                &pks,
                &decide,
                now,
            )
            .await;
        let outcomes = match recorded {
            Ok((applied, outcomes)) => {
                let reports = std::mem::take(&mut self.pending_reports);
                self.reports_recorded(&reports, &applied, false);
                outcomes
            }
            Err(e) => {
                self.dirty_runs.extend(pks);
                return Err(e.into());
            }
        };
        if let Some(at) = wake_at.into_inner().expect("not poisoned") {
            self.wake(at);
        }
        let mut any_finished = false;
        for (run_pk, outcome) in outcomes {
            let decision = match outcome {
                Evaluated::Applied { decision, .. } => decision,
                Evaluated::NotRunning => {
                    self.known_runs.remove(&run_pk);
                    continue;
                }
                Evaluated::Busy => {
                    // Another scheduler is evaluating it; what it read may predate our changes.
                    self.busy_runs.insert(run_pk);
                    continue;
                }
            };
            if !decision.transitions.is_empty() || decision.run_state.is_some() {
                self.publish(run_pk);
            }
            if let Some(state) = decision.run_state {
                self.runs_in_play.remove(&run_pk);
                if let Some(run) = self.known_runs.remove(&run_pk) {
                    info!(dag_id = %run.dag_id, run_id = %run.run_id, %state, "run finished");
                }
                any_finished = true;
            }
        }
        Ok(any_finished)
    }

    /// Ready `run_pk` for [`Self::evaluate`]: its DAG into `dags` and, when the DAG has
    /// `depends_on_past` tasks, the previous run's states into `previous`. False when the run
    /// is not known and not `running`.
    async fn prepare_evaluation(
        &mut self,
        run_pk: i64,
        dags: &mut HashMap<String, HashMap<String, Arc<CachedDag>>>,
        previous: &mut HashMap<i64, HashMap<String, TaskState>>,
    ) -> Result<bool, SchedulerError> {
        let run = match self.known_runs.get(&run_pk) {
            Some(run) => run.clone(),
            None => match self.store.run_by_pk(run_pk).await? {
                Some(run) if run.state == RunState::Running => {
                    self.known_runs.insert(run_pk, run.clone());
                    run
                }
                _ => return Ok(false),
            },
        };
        let cached = self
            .dags
            .get(self.store.as_ref(), &run.dag_id, &run.version)
            .await?;
        if cached.dag.tasks.iter().any(|t| t.depends_on_past)
            && let Some(states) = self
                .store
                .previous_run_states(&run.dag_id, run.logical_date)
                .await?
        {
            previous.insert(run_pk, states);
        }
        dags.entry(run.dag_id)
            .or_default()
            .insert(run.version, cached);
        Ok(true)
    }

    // ---- task instances -------------------------------------------------------------------

    /// Queue what is runnable within the limits. Scheduled instances are read in priority
    /// order a page at a time (twice this scheduler's free parallelism), leaving out DAGs and
    /// pools with no room; the next page is read only while a full page still queued
    /// something.
    async fn queue_and_launch(&mut self, now: DateTime<Utc>) -> Result<(), SchedulerError> {
        let mut offset = 0u32;
        loop {
            let free = self.parallelism_free();
            if free <= 0 {
                return Ok(());
            }
            let capacity = self.capacity().await?;
            let page = u32::try_from(free)
                .unwrap_or(u32::MAX)
                .saturating_mul(2)
                .max(64);
            let scheduled = self
                .store
                .scheduled_task_instances(page, offset, &no_room(&capacity))
                .await?;
            let full = scheduled.len() == page as usize;
            let queued = self.queue_page(scheduled, &capacity, now).await?;
            self.launch_pending(now).await?;
            if !full || queued == 0 {
                return Ok(());
            }
            // Queued instances left the `scheduled` set, so the rest moved up by as many.
            offset = offset.saturating_add(page - queued.min(page as usize) as u32);
        }
    }

    /// Tries this scheduler may still start (Airflow's parallelism is per scheduler).
    fn parallelism_free(&self) -> i64 {
        self.config.parallelism as i64 - (self.in_flight.len() + self.pending_launches.len()) as i64
    }

    /// Queue what fits of one page of scheduled instances; returns how many were queued.
    async fn queue_page(
        &mut self,
        mut scheduled: Vec<TiRow>,
        capacity: &Capacity,
        now: DateTime<Utc>,
    ) -> Result<usize, SchedulerError> {
        scheduled.retain(|ti| self.runs_in_play.contains(&ti.run_pk));
        if scheduled.is_empty() {
            return Ok(0);
        }
        self.report_unknown_pools(&scheduled, capacity);
        let candidates: Vec<Candidate> = scheduled
            .iter()
            .map(|ti| Candidate {
                dag_id: ti.dag_id.clone(),
                pool: ti.pool.clone(),
                pool_slots: ti.pool_slots,
                priority_weight: ti.priority_weight,
                logical_date: ti.logical_date,
                task_id: ti.task_id.clone(),
            })
            .collect();
        let keys: Vec<TiKey> = select_to_queue(&candidates, capacity)
            .into_iter()
            .map(|i| TiKey {
                run_pk: scheduled[i].run_pk,
                task_id: scheduled[i].task_id.clone(),
            })
            .collect();
        if keys.is_empty() {
            return Ok(0);
        }
        let limits = self.queue_limits(&keys, &scheduled);
        let queued = self.store.queue(&keys, self.job_id, &limits, now).await?;
        for ti in &queued {
            self.publish(ti.run_pk);
        }
        let count = queued.len();
        self.pending_launches.extend(queued);
        Ok(count)
    }

    /// Hand queued tries to the executor. A try leaves the list only once launched (or failed
    /// before start), so one queued just before the database went away is launched later, not
    /// left queued forever.
    async fn launch_pending(&mut self, now: DateTime<Utc>) -> Result<(), SchedulerError> {
        while let Some(ti) = self.pending_launches.front().cloned() {
            if !self.known_runs.contains_key(&ti.run_pk)
                && let Some(run) = self.store.run_by_pk(ti.run_pk).await?
            {
                self.known_runs.insert(ti.run_pk, run);
            }
            match self.known_runs.get(&ti.run_pk).cloned() {
                Some(run) => self.launch(&run, &ti, now).await?,
                None => warn!(
                    run_pk = ti.run_pk,
                    "queued an instance of a run that vanished"
                ),
            }
            self.pending_launches.pop_front();
        }
        Ok(())
    }

    /// Airflow leaves a task whose pool does not exist scheduled; so does updraft, saying why.
    fn report_unknown_pools(&mut self, scheduled: &[TiRow], capacity: &Capacity) {
        for ti in scheduled {
            if !capacity.pool_free.contains_key(&ti.pool)
                && self.unknown_pools_reported.insert(ti.pool.clone())
            {
                warn!(
                    pool = %ti.pool,
                    dag_id = %ti.dag_id,
                    task_id = %ti.task_id,
                    "task waits for a pool that does not exist; create it with `updraft pools set`"
                );
            }
        }
    }

    /// `max_active_tasks` of the DAGs whose instances are about to be queued.
    fn queue_limits(&self, keys: &[TiKey], scheduled: &[TiRow]) -> QueueLimits {
        let wanted: HashSet<i64> = keys.iter().map(|k| k.run_pk).collect();
        let max_active_tasks = scheduled
            .iter()
            .filter(|ti| wanted.contains(&ti.run_pk))
            .filter_map(|ti| {
                let row = self.dag_rows.get(&ti.dag_id)?;
                Some((ti.dag_id.clone(), row.dag.max_active_tasks as i64))
            })
            .collect();
        QueueLimits { max_active_tasks }
    }

    async fn capacity(&self) -> Result<Capacity, SchedulerError> {
        // Two independent reads, side by side.
        let (counts, pools) = tokio::try_join!(self.store.active_counts(), self.store.pools())?;
        let pool_free = pools
            .iter()
            .map(|p| {
                let used = counts.per_pool.get(&p.name).copied().unwrap_or(0);
                (p.name.clone(), p.slots - used)
            })
            .collect();
        let dag_free = self
            .dag_rows
            .values()
            .map(|row| {
                let used = counts.per_dag.get(&row.dag.dag_id).copied().unwrap_or(0);
                (
                    row.dag.dag_id.clone(),
                    row.dag.max_active_tasks as i64 - used,
                )
            })
            .collect();
        Ok(Capacity {
            pool_free,
            dag_free,
            // Per scheduler, as in Airflow: this process's own tries in flight.
            parallelism_free: self.parallelism_free(),
        })
    }

    async fn launch(
        &mut self,
        run: &RunRow,
        ti: &TiRow,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let cached = self
            .dags
            .get(self.store.as_ref(), &run.dag_id, &run.version)
            .await?;
        let key = TryKey {
            run_pk: ti.run_pk,
            task_id: ti.task_id.clone(),
            try_number: ti.try_number,
        };
        let log = self.try_log_path(run, ti);
        self.track_in_flight(ti, &cached);
        let Some(task) = cached.dag.task(&ti.task_id) else {
            return self
                .fail_before_start(key, &log, "task is missing from the run's DAG version", now)
                .await;
        };
        let context = match template_context(run, &cached, ti) {
            Ok(context) => context,
            Err(message) => return self.fail_before_start(key, &log, &message, now).await,
        };
        match render_task(&cached.dag, task, &context) {
            Ok(rendered) => {
                let spec = LaunchSpec {
                    key,
                    rendered,
                    log_path: log,
                    timeout: task.execution_timeout,
                };
                match self.pods_for(&spec.rendered.program) {
                    Some(pods) => pods.launch(spec, try_identity(run, ti)),
                    None => self.executor.launch(spec),
                }
                Ok(())
            }
            Err(e) => self.fail_before_start(key, &log, &e.to_string(), now).await,
        }
    }

    /// Remembers a try handed to an executor until its end is reported.
    fn track_in_flight(&mut self, ti: &TiRow, cached: &Arc<CachedDag>) {
        self.in_flight.insert(
            (ti.run_pk, ti.task_id.clone()),
            InFlight {
                try_number: ti.try_number,
                max_tries: ti.max_tries,
                dag: cached.clone(),
            },
        );
    }

    /// The pod executor, when this program runs as a pod.
    fn pods_for(&self, program: &Program) -> Option<&PodExecutor> {
        let as_pod = match program {
            Program::Pod(_) => true,
            Program::Noop => false,
            Program::Bash(_) | Program::Command(_) => self.every_task_in_pods,
        };
        self.pods.as_ref().filter(|_| as_pod)
    }

    /// Stops a try wherever it runs.
    fn kill_try(&self, key: &TryKey) -> bool {
        self.pods.as_ref().is_some_and(|p| p.kill(key)) || self.executor.kill(key)
    }

    /// A try that could not be started (bad template, missing task) fails like any other.
    async fn fail_before_start(
        &mut self,
        key: TryKey,
        log: &std::path::Path,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        append_log_line(
            log,
            &format!("try {} could not start: {message}", key.try_number),
        );
        let outcome = ExecOutcome::Failed {
            exit_code: None,
            signal: None,
            message: message.to_string(),
        };
        self.record_finish(key, outcome, now).await
    }

    fn drain_events(&mut self, events: &mut Vec<TryEvent>) {
        while let Ok(event) = self.events.try_recv() {
            events.push(event);
        }
    }

    /// Record a burst of executor events in one transaction (the hot path: one commit for
    /// every try that started or ended meanwhile).
    async fn record_events(&mut self, events: Vec<TryEvent>) -> Result<(), SchedulerError> {
        self.take_events(events);
        self.record_pending_reports().await
    }

    /// Turn executor events into reports waiting to be recorded.
    fn take_events(&mut self, events: Vec<TryEvent>) {
        if events.is_empty() {
            return;
        }
        let reports: Vec<TryReport> = events
            .into_iter()
            .filter_map(|event| match event {
                TryEvent::Started { key, pid, at } => Some(TryReport::Started {
                    key: TiKey {
                        run_pk: key.run_pk,
                        task_id: key.task_id,
                    },
                    try_number: key.try_number,
                    pid: pid.map(i64::from),
                    at,
                }),
                TryEvent::Finished { key, outcome, at } => self.finish_report(key, outcome, at),
            })
            .collect();
        self.pending_reports.extend(reports);
    }

    async fn record_finish(
        &mut self,
        key: TryKey,
        outcome: ExecOutcome,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        let reports: Vec<TryReport> = self.finish_report(key, outcome, now).into_iter().collect();
        self.record_reports(reports).await
    }

    /// Reports that could not be recorded earlier (the database was away), before anything
    /// else is decided.
    async fn record_pending_reports(&mut self) -> Result<(), SchedulerError> {
        self.record_reports(Vec::new()).await
    }

    /// Record `reports` after any still pending; on failure all of them stay pending.
    async fn record_reports(&mut self, reports: Vec<TryReport>) -> Result<(), SchedulerError> {
        self.pending_reports.extend(reports);
        if self.pending_reports.is_empty() {
            return Ok(());
        }
        let applied = self
            .store
            .record_try_reports(&self.pending_reports, &self.config.hostname)
            .await?;
        let reports = std::mem::take(&mut self.pending_reports);
        self.reports_recorded(&reports, &applied, true);
        Ok(())
    }

    /// After `reports` were recorded: tell the live views, wake for retries and, unless the
    /// runs were evaluated in the same step, mark the runs of ended tries for evaluation.
    fn reports_recorded(&mut self, reports: &[TryReport], applied: &[bool], mark_dirty: bool) {
        let mut touched = BTreeSet::new();
        for (report, &applied) in reports.iter().zip(applied) {
            match report {
                TryReport::Started { key, .. } => {
                    touched.insert(key.run_pk);
                }
                TryReport::Finished { key, retry_at, .. } => {
                    if !applied {
                        debug!(task_id = %key.task_id, "try outcome not recorded: instance changed meanwhile");
                    }
                    if let Some(at) = retry_at {
                        self.wake(*at);
                    }
                    touched.insert(key.run_pk);
                    if mark_dirty {
                        self.dirty_runs.insert(key.run_pk);
                    }
                }
            }
        }
        for run_pk in touched {
            self.publish(run_pk);
        }
    }

    /// What a try that ended at `at` becomes, or `None` when its end must not be recorded.
    fn finish_report(
        &mut self,
        key: TryKey,
        outcome: ExecOutcome,
        at: DateTime<Utc>,
    ) -> Option<TryReport> {
        let flight_key = (key.run_pk, key.task_id.clone());
        // The end of an older try (stopped after its instance was cleared, while the next
        // try already runs) must not be taken for the end of the try in flight.
        if self
            .in_flight
            .get(&flight_key)
            .is_some_and(|f| f.try_number != key.try_number)
        {
            debug!(task_id = %key.task_id, try_number = key.try_number, "end of a superseded try");
            return None;
        }
        let Some(flight) = self.in_flight.remove(&flight_key) else {
            warn!(task_id = %key.task_id, "finish reported for a try not in flight");
            return None;
        };
        let task = flight.dag.dag.task(&key.task_id)?;
        let (state, retry_at) = on_try_finished(
            task,
            flight.try_number,
            flight.max_tries,
            try_outcome(&outcome),
            at,
        );
        Some(TryReport::Finished {
            key: TiKey {
                run_pk: key.run_pk,
                task_id: key.task_id,
            },
            try_number: flight.try_number,
            new: state,
            retry_at,
            at,
        })
    }

    /// Stop tries whose instance was cleared or marked by someone else meanwhile.
    async fn stop_tries_changed_elsewhere(&mut self) -> Result<(), SchedulerError> {
        let keys: Vec<(i64, String, u32)> = self
            .in_flight
            .iter()
            .map(|((pk, task), f)| (*pk, task.clone(), f.try_number))
            .collect();
        for (run_pk, task_id, try_number) in keys {
            let key = TiKey {
                run_pk,
                task_id: task_id.clone(),
            };
            let still_ours = self
                .store
                .task_instance(&key)
                .await?
                .is_some_and(|ti| ti.state.is_active() && ti.try_number == try_number);
            if !still_ours {
                info!(%task_id, try_number, "stopping a try whose instance changed elsewhere");
                self.kill_try(&TryKey {
                    run_pk,
                    task_id,
                    try_number,
                });
            }
        }
        Ok(())
    }

    /// Instances left queued or running by a scheduler that stopped without recording their
    /// end. A try whose pod still exists is adopted and followed to its end; any other counts
    /// as failed (and is retried per `retries`): local processes are not adopted.
    async fn recover_orphans(&mut self) -> Result<(), SchedulerError> {
        let now = Utc::now();
        let mut tenant_pods = TenantPods::new();
        for ti in self.store.orphaned_task_instances().await? {
            let Some(run) = self.store.run_by_pk(ti.run_pk).await? else {
                continue;
            };
            let cached = self
                .dags
                .get(self.store.as_ref(), &run.dag_id, &run.version)
                .await?;
            let Some(task) = cached.dag.task(&ti.task_id) else {
                continue;
            };
            match self.adopt_pod(&run, &ti, &cached, &mut tenant_pods).await? {
                Adoption::Adopted | Adoption::Later => continue,
                Adoption::NoPod => {}
            }
            let log = self.try_log_path(&run, &ti);
            append_log_line(
                &log,
                "the scheduler stopped while this try was in flight; the try is marked failed",
            );
            let (state, retry_at) =
                on_try_finished(task, ti.try_number, ti.max_tries, TryOutcome::Failed, now);
            let key = TiKey {
                run_pk: ti.run_pk,
                task_id: ti.task_id.clone(),
            };
            self.store
                .finish_try(&key, ti.try_number, state, retry_at, now)
                .await?;
            warn!(dag_id = %run.dag_id, run_id = %run.run_id, task_id = %ti.task_id, %state, "recovered an orphaned task instance");
        }
        Ok(())
    }

    /// Follows an orphaned try's pod again, if it has one: the try becomes this scheduler's.
    async fn adopt_pod(
        &mut self,
        run: &RunRow,
        ti: &TiRow,
        cached: &Arc<CachedDag>,
        tenant_pods: &mut TenantPods,
    ) -> Result<Adoption, SchedulerError> {
        let Some(pods) = self.pods.clone() else {
            return Ok(Adoption::NoPod);
        };
        let kind = cached.dag.task(&ti.task_id).map(|t| &t.kind);
        let ran_as_pod = match kind {
            Some(updraft_dag::TaskKind::Pod(_)) => true,
            Some(updraft_dag::TaskKind::Bash(_) | updraft_dag::TaskKind::Command(_)) => {
                self.every_task_in_pods
            }
            _ => false,
        };
        if !ran_as_pod {
            return Ok(Adoption::NoPod);
        }
        if !tenant_pods.contains_key(&run.tenant) {
            let listed = pods.pods_of_tenant(&run.tenant).await;
            if let Err(e) = &listed {
                warn!(tenant = %run.tenant, "cannot list the pods of orphaned tries, looking again later: {e}");
            }
            tenant_pods.insert(run.tenant.clone(), listed.ok());
        }
        let Some(listed) = &tenant_pods[&run.tenant] else {
            // Failing the try now could run a second pod beside one still running.
            return Ok(Adoption::Later);
        };
        let Some(pod) = listed.get(&try_identity(run, ti)).cloned() else {
            return Ok(Adoption::NoPod);
        };
        let key = TiKey {
            run_pk: ti.run_pk,
            task_id: ti.task_id.clone(),
        };
        if !self
            .store
            .adopt_orphan(&key, ti.try_number, self.job_id)
            .await?
        {
            return Ok(Adoption::Later);
        }
        let task = cached.dag.task(&ti.task_id);
        let delete_pod = task.and_then(|t| match &t.kind {
            updraft_dag::TaskKind::Pod(p) => p.delete_pod,
            _ => None,
        });
        self.track_in_flight(ti, cached);
        info!(dag_id = %run.dag_id, run_id = %run.run_id, task_id = %ti.task_id, pod = ?pod.metadata.name, "following the pod of a try started before a restart");
        pods.adopt(
            TryKey {
                run_pk: ti.run_pk,
                task_id: ti.task_id.clone(),
                try_number: ti.try_number,
            },
            &pod,
            self.try_log_path(run, ti),
            task.and_then(|t| t.execution_timeout),
            delete_pod,
        );
        Ok(Adoption::Adopted)
    }

    async fn shutdown(&mut self) -> Result<(), SchedulerError> {
        info!(
            running = self.in_flight.len(),
            grace = ?self.config.shutdown_grace,
            "shutting down"
        );
        // Pods go on without the scheduler: the next one follows them again.
        if let Some(pods) = &self.pods {
            pods.detach().await;
        }
        self.executor.shutdown(self.config.shutdown_grace).await;
        let mut events = Vec::new();
        self.drain_events(&mut events);
        self.record_events(events).await?;
        // Runs whose last tries just ended get their final state now, not at the next start;
        // nothing new is queued.
        let now = Utc::now();
        self.evaluate(now).await?;
        if self.job_id != 0 {
            self.store.stop_scheduler(self.job_id, now).await?;
        }
        Ok(())
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

impl Scheduler {
    fn try_log_path(&self, run: &RunRow, ti: &TiRow) -> PathBuf {
        log_path(
            &self.config.logs_folder,
            &run.tenant,
            &run.dag_id,
            &run.run_id,
            &ti.task_id,
            ti.try_number,
        )
    }
}

/// The pods of each tenant's tries, listed once per pass over orphans; `None` when the
/// cluster could not be asked.
type TenantPods = HashMap<String, Option<HashMap<TryIdentity, updraft_pods::Pod>>>;

/// What became of an orphaned try's pod.
enum Adoption {
    /// Followed by this scheduler from now on.
    Adopted,
    /// It has no pod: it failed like any orphan.
    NoPod,
    /// Undecided now (the cluster or the instance is busy); looked at again later.
    Later,
}

fn try_identity(run: &RunRow, ti: &TiRow) -> TryIdentity {
    TryIdentity {
        tenant: run.tenant.clone(),
        dag_id: run.dag_id.clone(),
        run_id: run.run_id.clone(),
        task_id: ti.task_id.clone(),
        try_number: ti.try_number,
    }
}

/// The DAGs and pools with no room left, whose scheduled instances need not be read.
fn no_room(capacity: &Capacity) -> ScheduledSkip {
    let full = |free: &HashMap<String, i64>| -> Vec<String> {
        free.iter()
            .filter(|(_, room)| **room <= 0)
            .map(|(name, _)| name.clone())
            .collect()
    };
    ScheduledSkip {
        dags: full(&capacity.dag_free),
        pools: full(&capacity.pool_free),
    }
}

fn try_outcome(outcome: &ExecOutcome) -> TryOutcome {
    match outcome {
        ExecOutcome::Success => TryOutcome::Success,
        ExecOutcome::Skipped => TryOutcome::Skipped,
        ExecOutcome::TimedOut => TryOutcome::TimedOut,
        ExecOutcome::Failed { .. } | ExecOutcome::Killed => TryOutcome::Failed,
    }
}

fn template_context(
    run: &RunRow,
    cached: &CachedDag,
    ti: &TiRow,
) -> Result<TemplateContext, String> {
    let conf = match &run.conf {
        serde_json::Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    let params = updraft_dag::resolve_params(&cached.dag, &conf).map_err(|e| e.to_string())?;
    Ok(TemplateContext {
        tenant: run.tenant.clone(),
        dag_id: run.dag_id.clone(),
        run_id: run.run_id.clone(),
        task_id: ti.task_id.clone(),
        try_number: ti.try_number,
        logical_date: run.logical_date,
        data_interval_start: run.data_interval_start,
        data_interval_end: run.data_interval_end,
        conf: run.conf.clone(),
        params,
        run_type: run.run_type.to_string(),
        timezone: cached.dag.timezone,
    })
}

fn append_log_line(path: &std::path::Path, line: &str) {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "[{}] {line}", Utc::now().to_rfc3339()));
    if let Err(e) = written {
        warn!("could not write to {}: {e}", path.display());
    }
}
