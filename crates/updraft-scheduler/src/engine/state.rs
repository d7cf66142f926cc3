//! The scheduler's state, in small parts by job: the executors and their events, what wakes
//! the loop, the DAG definitions at hand, this process's scheduler job, the tries in flight,
//! and the runs being driven.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use updraft_executor::{LocalExecutor, LocalExecutorConfig, SensorStates, TryEvent};
use updraft_pods::PodExecutor;
use updraft_store::{DagRow, RunRow, Store, TiKey, TiRow, TryReport};

use super::SchedulerConfig;
use super::jobs::Heartbeats;
use crate::dagcache::{CachedDag, DagCache};

/// Where tries run, and the channel on which both executors report them.
pub(super) struct Executors {
    pub(super) local: LocalExecutor,
    /// Runs `pod` tasks (and every task with `every_task`), when a cluster is configured.
    pub(super) pods: Option<PodExecutor>,
    pub(super) every_task_in_pods: bool,
    pub(super) events: mpsc::UnboundedReceiver<TryEvent>,
}

impl Executors {
    /// `wake`: the loop's wake-up, for runs that `trigger_dag_run` tasks start.
    pub(super) fn new(
        config: &SchedulerConfig,
        store: &Arc<dyn Store>,
        wake: Arc<tokio::sync::Notify>,
    ) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let sensor_states: Arc<dyn SensorStates> = Arc::new(super::sensors::StoreStates {
            store: store.clone(),
        });
        let run_trigger: Arc<dyn updraft_executor::RunTrigger> =
            Arc::new(super::trigger::StoreTrigger {
                store: store.clone(),
                wake,
            });
        let local = LocalExecutor::new(
            LocalExecutorConfig {
                max_concurrency: config.parallelism as usize,
                kill_grace: config.kill_grace,
                default_cwd: config.default_cwd.clone(),
                isolation: config.isolation.clone(),
                max_xcom_size: config.max_xcom_size,
                sensor_states: Some(sensor_states),
                run_trigger: Some(run_trigger),
                poke_timeout: config.sensor_poke_timeout,
                ..LocalExecutorConfig::default()
            },
            tx.clone(),
        );
        let pods = config
            .kubernetes
            .as_ref()
            .map(|k| PodExecutor::new(k.client.clone(), k.pods.clone(), tx));
        let every_task_in_pods = config.kubernetes.as_ref().is_some_and(|k| k.every_task);
        Executors {
            local,
            pods,
            every_task_in_pods,
            events,
        }
    }
}

/// What wakes the loop besides executor events.
pub(super) struct Wakeups {
    /// Notified by the folder watcher.
    pub(super) folder_changed: Arc<Notify>,
    /// Notified by components that recorded work outside the scheduler.
    pub(super) poke: Arc<Notify>,
    /// The earliest retry or schedule due.
    pub(super) wake_at: Option<DateTime<Utc>>,
    /// The next slow poll for work recorded by other processes.
    pub(super) next_poll: Instant,
    /// The last stimulus handled was executor events: the others go first next time.
    pub(super) events_had_turn: bool,
}

impl Wakeups {
    pub(super) fn new() -> Self {
        Wakeups {
            folder_changed: Arc::new(Notify::new()),
            poke: Arc::new(Notify::new()),
            wake_at: None,
            next_poll: Instant::now(),
            events_had_turn: false,
        }
    }
}

/// The DAG definitions at hand.
#[derive(Default)]
pub(super) struct Definitions {
    /// Pinned versions by (dag_id, version), for running runs.
    pub(super) cache: DagCache,
    /// Latest definitions by dag_id, refreshed on every full pass.
    pub(super) rows: HashMap<String, DagRow>,
    /// The mapped tasks and task limits of `rows`, for the queue choice.
    pub(super) traits: crate::selection::TaskTraits,
    /// When each unpaused DAG next needs a look for due scheduled runs.
    pub(super) next_schedule_check: HashMap<String, DateTime<Utc>>,
    /// The asset references this scheduler last wrote (`None`: none yet).
    pub(super) asset_references: Option<std::collections::BTreeSet<updraft_store::AssetReference>>,
}

/// This process's scheduler job.
pub(super) struct Job {
    /// 0 until registered.
    pub(super) id: i64,
    /// The task writing this job's heartbeats, from registration on.
    pub(super) heartbeats: Option<Heartbeats>,
    /// When the loop next looks for silent schedulers (every `heartbeat_interval`).
    pub(super) next_check: Instant,
    /// When the last database error happened: dead schedulers are only declared by a scheduler
    /// that has itself been reaching the database for a whole `health_check_threshold`.
    pub(super) last_db_error: Option<Instant>,
}

impl Job {
    pub(super) fn new() -> Self {
        Job {
            id: 0,
            heartbeats: None,
            next_check: Instant::now(),
            last_db_error: None,
        }
    }
}

/// One try of one instance: (run, task, map index, try number).
pub(super) type TryId = (i64, String, i32, u32);

/// The [`TryId`] of try `try_number` of the instance `key`.
pub(super) fn try_id(key: &TiKey, try_number: u32) -> TryId {
    (key.run_pk, key.task_id.clone(), key.map_index, try_number)
}

/// A try handed to the executor and not yet reported finished.
pub(super) struct InFlight {
    pub(super) try_number: u32,
    /// The try's log file.
    pub(super) log: PathBuf,
    pub(super) max_tries: u32,
    pub(super) dag: Arc<CachedDag>,
    /// When it was handed to the executor (its duration's start).
    pub(super) launched: std::time::Instant,
}

/// Tries between queueing and the record of their end.
#[derive(Default)]
pub(super) struct Tries {
    /// Handed to an executor, by instance.
    pub(super) in_flight: HashMap<TiKey, InFlight>,
    /// Queued (recorded as this scheduler's) and not yet handed to the executor.
    pub(super) pending_launches: VecDeque<TiRow>,
    /// Executor reports not yet recorded (the database was away): recorded before anything
    /// else, so no try's end is lost.
    pub(super) pending_reports: Vec<TryReport>,
    /// What ended tries pushed, not yet recorded: recorded before their reports (so a
    /// downstream try never runs before its upstream's XComs are there). Empty unless a try
    /// pushed something.
    pub(super) pending_xcoms: Vec<updraft_store::TryXComs>,
    /// Remote task logs: the uploader, and the logs of ended tries whose end is not yet
    /// recorded (each is uploaded whole once it is).
    pub(super) logs: LogUploads,
    /// Tries of tasks with notifiers, by try, until their end is recorded.
    pub(super) notifiers: HashMap<TryId, super::notify::TryNotifiers>,
    /// Asset events of ended tries with outlets, by try, until their success is recorded.
    pub(super) outlet_events: HashMap<TryId, Vec<updraft_store::NewAssetEvent>>,
    /// Asset events of recorded successes, not yet recorded themselves.
    pub(super) pending_asset_events: Vec<updraft_store::NewAssetEvent>,
}

#[derive(Default)]
pub(super) struct LogUploads {
    pub(super) uploader: Option<updraft_logs::LogUploader>,
    /// By try.
    pub(super) ending: HashMap<TryId, PathBuf>,
}

/// The runs this scheduler drives, and which of them need a look.
#[derive(Default)]
pub(super) struct TrackedRuns {
    /// Running runs in scope whose DAG is not paused; only their instances are queued.
    pub(super) in_play: HashSet<i64>,
    /// Runs to read whole and evaluate at the next pass.
    pub(super) dirty: BTreeSet<i64>,
    /// Runs (not in `dirty`) whose only changes since their last evaluation are these tasks'
    /// tries ending: evaluated from the instances those can affect (a focused evaluation).
    pub(super) ended: HashMap<i64, BTreeSet<String>>,
    /// Tries recorded `up_for_retry` here, by when they are due: (retry_at, run, task). Due,
    /// each goes into `ended`, so its retry is decided without reading its whole run.
    pub(super) retries: Vec<(DateTime<Utc>, i64, String)>,
    /// The earliest retry a whole evaluation of the run found (after a restart, say).
    pub(super) run_wake: HashMap<i64, DateTime<Utc>>,
    /// When each run was last read whole, and its number of tasks: the slow poll re-reads a
    /// run of `n` tasks at most every `poll_interval × ⌈n / 1000⌉`, so the safety net costs
    /// the same per unit of time whatever the runs' sizes.
    pub(super) read_whole: HashMap<i64, (Instant, usize)>,
    /// Runs another scheduler was evaluating: looked at again after [`super::BUSY_RETRY`].
    pub(super) busy: BTreeSet<i64>,
    /// Running runs as last read, for what never changes in a run (DAG, version, dates);
    /// their state is always re-read under the run's lock.
    pub(super) known: HashMap<i64, RunRow>,
    /// Scheduled placeholders of mapped tasks, to expand.
    pub(super) placeholders: HashSet<TiKey>,
    /// The values of the mapped tasks expanded here, by (run, task), for their tries.
    pub(super) mapped: HashMap<(i64, String), Arc<super::mapping::MappedValues>>,
}
