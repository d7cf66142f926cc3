//! Durable state for updraft: the [`Store`] contract and its backends.
//!
//! The contract is split by role, so each caller takes only what it uses: [`SchedulerStore`]
//! (the scheduler's loop: DAG sync, the evaluate and queue critical sections, reports, jobs
//! and orphans), [`ReadStore`] (what the API, the UI and the CLI read), [`OperatorStore`]
//! (what a user does: trigger, pause, clear, mark, delete, notes, pools) and [`AdminStore`]
//! (schema, purging history, scheduler job listings). [`Store`] is all four.
//!
//! Every state transition is one transaction. The contract is backend-neutral so SQLite (the
//! embedded default) and PostgreSQL implement the same methods and run the same test suite.
//! The store records decisions; it never makes them (that is `updraft-core`'s job).
//!
//! Timestamps are kept to the microsecond: sub-microsecond digits of a `DateTime<Utc>` handed
//! to the store are truncated (as PostgreSQL's `timestamptz` does), so compare values read back
//! with values truncated the same way.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use updraft_core::evaluate::{EndedInstances, TiSnapshot};
use updraft_core::{RunState, RunType, TaskState, UnknownState};
use updraft_dag::{Dag, ImportError};

pub mod api;
mod assets;
mod backend;
mod health;
pub mod postgres;
mod room;
mod secrets;
mod sources;
mod sql;
pub mod sqlite;
mod step;
mod users;
mod xcom;

pub use api::{
    DagOrder, DagQuery, ImportErrorOrder, ImportErrorQuery, ImportErrorRow, NoteRow, Page, Paging,
    PoolUsage, RunOrder, RunQuery, TiOrder, TiQuery, TimeRange,
};
pub use assets::{
    AssetEventQuery, AssetEventRow, AssetRefKind, AssetReference, AssetRow, AssetStore,
    NewAssetEvent, QueuedAssetEvent,
};
pub use postgres::{PgStore, PgStoreOptions};
pub use secrets::{
    ConnectionRow, EncryptedField, Reencrypt, SecretQuery, SecretStore, VariableRow, WriteMode,
};
pub use sources::{BundleRef, SourceRow, SourceStore};
pub use sqlite::SqliteStore;
/// How to reach a PostgreSQL server (parsed from a `postgres://` URL), for
/// [`PgStore::connect_with`].
pub use sqlx::postgres::PgConnectOptions;
pub use users::{EventQuery, EventRow, NewEvent, NewUser, UserRow, UserStore};
pub use xcom::{
    NOT_MAPPED, RETURN_VALUE, TryXComs, XComEntry, XComQuery, XComRow, XComStore, XComWrite,
};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The caller asked for something the contract does not allow (e.g. finishing a try with
    /// a state that does not end a try, or deleting `default_pool`).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The database itself is damaged: SQLite's file (`SQLITE_CORRUPT`, `SQLITE_NOTADB`, a
    /// failed `quick_check`) or a PostgreSQL relation (`XX001`, `XX002`). Retrying cannot
    /// help: a process meeting it stops, and someone must repair or restore the database.
    #[error("the database {database} is corrupt ({detail}): {recovery}")]
    DatabaseCorrupt {
        /// The SQLite file's path, or the PostgreSQL URL without its password.
        database: String,
        /// The database's own words.
        detail: String,
        /// How to recover.
        recovery: String,
    },
}

impl StoreError {
    /// Whether this says the database is damaged ([`StoreError::DatabaseCorrupt`]): no retry
    /// can succeed.
    pub fn is_database_corrupt(&self) -> bool {
        matches!(self, StoreError::DatabaseCorrupt { .. })
    }
}

/// A DAG as the installation knows it: its latest parsed definition plus its switches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DagRow {
    pub dag: Dag,
    pub version: String,
    pub is_paused: bool,
    /// False once the defining file is gone (or broken): no longer scheduled, history kept.
    pub is_active: bool,
    pub last_parsed_at: DateTime<Utc>,
    /// The DAG source its latest version was read from (Airflow's `bundle_name`); `None`: the
    /// plain DAGs folder.
    #[serde(default)]
    pub bundle_name: Option<String>,
    /// The source's revision its latest load read it at (Airflow's `bundle_version`).
    #[serde(default)]
    pub bundle_version: Option<String>,
}

/// A DAG's identity, version and switches, for [`ReadStore::dag_heads`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DagHead {
    pub dag_id: String,
    pub version: String,
    pub is_paused: bool,
    pub is_active: bool,
}

/// One successfully loaded DAG file, handed to [`SchedulerStore::sync_dags`].
#[derive(Debug, Clone)]
pub struct LoadedDagRecord<'a> {
    pub dag: &'a Dag,
    pub version: &'a str,
    /// The file's text, kept per version for the code view.
    pub source: &'a str,
    /// The DAG source it was read from (`None`: the plain DAGs folder).
    pub bundle: Option<BundleRef<'a>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    /// Surrogate key; stable for the life of the run.
    pub id: i64,
    pub dag_id: String,
    pub tenant: String,
    pub run_id: String,
    pub run_type: RunType,
    pub state: RunState,
    /// DAG version the run is pinned to.
    pub version: String,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub conf: serde_json::Value,
    pub queued_at: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// The revision of its DAG's source the run reads its files from (Airflow's
    /// `bundle_version`): the revision its DAG was last loaded from when the run was created;
    /// `None` for a DAG of the plain DAGs folder.
    #[serde(default)]
    pub bundle_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub dag_id: String,
    pub tenant: String,
    pub run_id: String,
    pub run_type: RunType,
    pub version: String,
    pub logical_date: DateTime<Utc>,
    pub data_interval_start: DateTime<Utc>,
    pub data_interval_end: DateTime<Utc>,
    pub conf: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TiRow {
    pub run_pk: i64,
    pub dag_id: String,
    pub run_id: String,
    pub tenant: String,
    pub task_id: String,
    /// Airflow's map index: -1 for an unmapped instance or a mapped task's placeholder, 0..
    /// for the instances of an expanded task.
    pub map_index: i32,
    pub state: TaskState,
    /// Number of the latest try started (0 before the first). Airflow's `try_number`.
    pub try_number: u32,
    /// Highest try number allowed before the task fails for good.
    pub max_tries: u32,
    pub pool: String,
    pub pool_slots: u32,
    /// Effective priority (after `weight_rule`).
    pub priority_weight: i64,
    /// The run's logical date, for ordering work fairly across runs.
    pub logical_date: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// For `up_for_retry`: not before this time; for `up_for_reschedule`, a sensor's next
    /// poke, kept once it is `scheduled` again (its next queueing keeps the try number).
    pub retry_at: Option<DateTime<Utc>>,
    pub pid: Option<i64>,
    pub hostname: Option<String>,
    /// The scheduler job that queued the current try and owns it until it ends (Airflow's
    /// `queued_by_job_id`); `None` before the first try and for instances that were cleared.
    pub queued_by_job_id: Option<i64>,
}

/// Identifies a task instance within a run: Airflow's (run, task_id, map_index).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TiKey {
    pub run_pk: i64,
    pub task_id: String,
    /// -1 for an unmapped instance (Airflow's).
    pub map_index: i32,
}

impl TiKey {
    /// The key of an unmapped instance (map index -1).
    pub fn unmapped(run_pk: i64, task_id: impl Into<String>) -> TiKey {
        TiKey {
            run_pk,
            task_id: task_id.into(),
            map_index: -1,
        }
    }
}

impl TiRow {
    /// This instance's key.
    pub fn key(&self) -> TiKey {
        TiKey {
            run_pk: self.run_pk,
            task_id: self.task_id.clone(),
            map_index: self.map_index,
        }
    }
}

/// Task instance to create with a run.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTi {
    pub task_id: String,
    pub max_tries: u32,
    pub pool: String,
    pub pool_slots: u32,
    pub priority_weight: i64,
}

/// A state change the core decided, applied only if the instance is still in `expected`.
#[derive(Debug, Clone, PartialEq)]
pub struct TiTransition {
    pub task_id: String,
    /// The instance's map index (-1 for an unmapped one).
    pub map_index: i32,
    pub expected: TaskState,
    pub new: TaskState,
}

/// An executor's report about a try, for [`SchedulerStore::record_try_reports`].
#[derive(Debug, Clone, PartialEq)]
pub enum TryReport {
    /// As [`SchedulerStore::mark_running`]; `at` (the executor's clock, when the process started)
    /// becomes the start date.
    Started {
        key: TiKey,
        try_number: u32,
        pid: Option<i64>,
        at: DateTime<Utc>,
    },
    /// As [`SchedulerStore::finish_try`].
    Finished {
        key: TiKey,
        try_number: u32,
        new: TaskState,
        retry_at: Option<DateTime<Utc>>,
        /// When the try ended (the executor's clock): the end date.
        at: DateTime<Utc>,
        /// Task ids of the same run that a branch's or short circuit's success skips (the
        /// core's `branch_skips`): if this report applies, each of their instances still
        /// `none` or `scheduled` becomes `skipped` in the same transaction. Empty for a try
        /// that does not branch, which then costs nothing more.
        skip: Vec<String>,
    },
}

/// One poke of a sensor that rescheduled (Airflow's `TaskReschedule`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RescheduleRow {
    pub run_pk: i64,
    pub task_id: String,
    pub map_index: i64,
    pub try_number: u32,
    /// When the poke started.
    pub start_date: DateTime<Utc>,
    /// When it ended.
    pub end_date: DateTime<Utc>,
    /// When the next poke is due.
    pub reschedule_date: DateTime<Utc>,
}

/// One finished (or abandoned) try, as kept in the try history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TryRow {
    pub run_pk: i64,
    pub task_id: String,
    pub map_index: i32,
    pub try_number: u32,
    pub state: TaskState,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolRow {
    pub name: String,
    pub slots: i64,
    pub description: String,
    /// The tenant whose pool it is; `None`: shared by every tenant (`default_pool`, pools made
    /// by a global Op or Admin). Set when the pool is created; updates keep it.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// Slots currently held by queued and running task instances.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActiveCounts {
    /// Pool name → slots held (sum of `pool_slots`).
    pub per_pool: HashMap<String, i64>,
    /// dag_id → task instances held.
    pub per_dag: HashMap<String, i64>,
    /// All task instances held.
    pub total: i64,
    /// (dag_id, task_id) → task instances held, for `max_active_tis_per_dag`.
    pub per_task: HashMap<(String, String), i64>,
}

#[derive(Debug, Clone, Default)]
pub struct NewestRunsFilter {
    pub dag_id: Option<String>,
    pub states: Vec<RunState>,
    /// Newest first; `None` = no limit.
    pub limit: Option<u32>,
}

/// What the scheduler's loop needs beyond reading: recording the DAGs folder, the instances
/// ready to queue, the critical sections that evaluate runs and queue instances (safe with
/// several schedulers on one database), executors' reports, its job and heartbeat, and orphaned
/// tries. Methods that change state run in one transaction each.
#[async_trait]
pub trait SchedulerStore: Send + Sync {
    /// Record the result of loading the DAGs folder: upsert each DAG and its version (new DAGs
    /// start paused per `is_paused_upon_creation`, else `paused_by_default`), mark DAGs absent
    /// from `loaded` inactive unless their file failed to load (an error in `errors` names
    /// their `fileloc` or a folder above it, or is folder-wide, filename
    /// [`updraft_dag::FOLDER_ERROR_FILENAME`]): those stay active on their last good version,
    /// so only a deleted file deactivates its DAGs. Then replace the import errors with
    /// `errors`. One transaction.
    /// Existing DAGs keep their paused flag; `last_parsed_at = now` for the loaded ones. A
    /// version, once recorded, keeps its first definition and source.
    ///
    /// Each record's `bundle` (the DAG source it was read from) becomes the DAG's
    /// `bundle_name` and `bundle_version` (always the latest load's; `None` for the plain DAGs
    /// folder) and, on a
    /// version recorded now, its `bundle_name` and `bundle_version` (a version keeps the
    /// bundle it was first read at).
    ///
    /// A dag_id belongs to the tenant that first registered it: a loaded DAG whose dag_id is
    /// registered to another tenant changes nothing of that DAG (tenant, file, paused flag,
    /// version, runs) and becomes an import error in its own file
    /// ([`updraft_dag::foreign_claim_error`]), also when another scheduler registered it
    /// while this load was on its way.
    async fn sync_dags(
        &self,
        loaded: &[LoadedDagRecord<'_>],
        errors: &[ImportError],
        paused_by_default: bool,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// dag_id → owning tenant of every registered DAG, active or not (for resolving a DAGs
    /// folder load before [`SchedulerStore::sync_dags`]).
    async fn dag_owners(&self) -> Result<HashMap<String, String>>;
    /// Apply core decisions; each applies only if the row is still in `expected`. Terminal
    /// states (and leaving `queued`/`running`) get `end_date = now`; leaving `up_for_retry`
    /// clears `retry_at`, `up_for_reschedule → scheduled` keeps it (a sensor's next poke: its
    /// queueing then keeps the try number). Leaving `queued`/`running` also closes the try in the history.
    /// One transaction. Returns how many applied.
    async fn apply_transitions(
        &self,
        run_pk: i64,
        transitions: &[TiTransition],
        now: DateTime<Utc>,
    ) -> Result<usize>;
    /// Instances in state `scheduled` in runs that are `running`, highest priority first, then
    /// oldest `logical_date` (then run, then `task_id`): at most `limit`, after skipping
    /// `offset`, leaving out those of the DAGs in `skip.dags` and of the pools in
    /// `skip.pools` (the ones with no room left). Paused DAGs are not filtered out here.
    async fn scheduled_task_instances(
        &self,
        limit: u32,
        offset: u32,
        skip: &ScheduledSkip,
    ) -> Result<Vec<TiRow>>;
    /// `scheduled` → `queued` for `keys`, in order, owned by scheduler job `owner`
    /// (`queued_by_job_id`), incrementing `try_number`, `queued_at = now` and the previous
    /// try's `start_date`/`end_date`/`retry_at`/`pid`/`hostname` reset. The new try enters the
    /// history. One transaction, serialised against every other `queue` and `start_runs` on the
    /// database (several schedulers may call it at once).
    ///
    /// Inside that transaction the global limits are checked again, so racing schedulers never
    /// overflow them: a key is skipped when it is no longer `scheduled`, when its pool does not
    /// exist or queueing it would take the slots held by the pool's `queued` and `running`
    /// instances beyond the pool's slots, or when `limits.max_active_tasks` names its DAG and
    /// queueing it would take the DAG's `queued` and `running` instances beyond that number.
    /// Returns the queued rows, in the order of `keys`.
    async fn queue(
        &self,
        keys: &[TiKey],
        owner: i64,
        limits: &QueueLimits,
        now: DateTime<Utc>,
    ) -> Result<Vec<TiRow>>;
    /// Move `queued` runs to `running`, in the order given, each only if it is still `queued`
    /// and its DAG then has fewer `running` runs than the `max_active_runs` given with it
    /// (runs started earlier in the same call count). Dates as [`OperatorStore::force_run_state`].
    /// Serialised like [`SchedulerStore::queue`]. Returns the pks of the runs started.
    async fn start_runs(&self, runs: &[(i64, u32)], now: DateTime<Utc>) -> Result<Vec<i64>>;
    /// Evaluate several runs in ONE transaction, each under its lock, and record the outcomes:
    /// the runs' rows are locked, in pk order (`FOR UPDATE SKIP LOCKED` on PostgreSQL); a run
    /// whose row another transaction holds is left alone and reported [`Evaluated::Busy`] (the
    /// caller tries again soon). A run that does not exist or is not `running` is
    /// [`Evaluated::NotRunning`]. For each other run, in pk order, `decide` is called with the
    /// run and the snapshots of its task instances (ordered by `task_id`; only what the core
    /// reads; those of [`RunDecider::focus`] when it names some, with whether the run has
    /// instances still progressing), its transitions are applied as with
    /// [`SchedulerStore::apply_transitions`] and its run state, if any, is set as with
    /// [`OperatorStore::force_run_state`].
    ///
    /// Returns one outcome per distinct pk of `run_pks`, in the order given (a pk listed
    /// again is evaluated, and reported, once).
    ///
    async fn evaluate_runs(
        &self,
        run_pks: &[i64],
        decide: &dyn RunDecider,
        now: DateTime<Utc>,
    ) -> Result<Vec<(i64, Evaluated)>>;
    /// The scheduler's whole step after tries ended, in ONE transaction (one commit): record
    /// `reports` (as [`SchedulerStore::record_try_reports`]), evaluate `run_pks` (as
    /// [`SchedulerStore::evaluate_runs`], busy runs included), then queue what became runnable (as
    /// [`SchedulerStore::queue`]). A queued try is thus recorded before the executor sees it, and the
    /// instances its upstream's end made runnable are queued by the same commit.
    ///
    /// Queueing: with `queue.page` zero nothing is queued. Otherwise the room is read inside
    /// the transaction (the pools' slots and what `queued` and `running` instances hold, after
    /// the reports and the evaluation), `queue.selector` names the DAGs and pools to leave out
    /// ([`QueueSelector::skip`]), one page of at most `queue.page` scheduled instances is read
    /// as [`SchedulerStore::scheduled_task_instances`] reads it (offset 0), and the selector chooses among
    /// them ([`QueueSelector::select`]). The choice is queued for `queue.owner` as
    /// [`SchedulerStore::queue`] queues keys, with the same re-checks of pool slots and
    /// `max_active_tasks` (chosen keys not on the page are skipped), serialised the same way
    /// against every other `queue`, `start_runs` and step on the database.
    ///
    /// On PostgreSQL a step that queues (`queue.page` above zero) takes the scheduling lock
    /// first, then the runs (`FOR UPDATE SKIP LOCKED`, in pk order), then instances, so no
    /// step waits for the lock while it holds rows; several schedulers' such steps run one
    /// after the other.
    async fn record_evaluate_and_queue(
        &self,
        reports: &[TryReport],
        hostname: &str,
        run_pks: &[i64],
        decide: &dyn RunDecider,
        queue: &QueueStep<'_>,
        now: DateTime<Utc>,
    ) -> Result<StepOutcome>;

    /// Record a starting scheduler process (state `running`, `latest_heartbeat = now`) and
    /// return its job id.
    async fn register_scheduler(&self, hostname: &str, pid: u32, now: DateTime<Utc>)
    -> Result<i64>;
    /// `latest_heartbeat = now` for a `running` job. False when the job is no longer `running`
    /// (another scheduler declared it dead, or it stopped): its instances are no longer its own.
    async fn heartbeat(&self, job_id: i64, now: DateTime<Utc>) -> Result<bool>;
    /// A scheduler stopping cleanly: state `stopped`, `end_date = now`.
    async fn stop_scheduler(&self, job_id: i64, now: DateTime<Utc>) -> Result<()>;
    /// Declare dead (state `dead`, `end_date = now`) every `running` job other than `except`
    /// whose `latest_heartbeat` is before `cutoff`. Returns their ids.
    async fn reap_schedulers(
        &self,
        cutoff: DateTime<Utc>,
        except: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>>;
    /// `queued` → `running` for the given try, recording `start_date = now`, pid and hostname.
    /// Returns false (and changes nothing) unless the instance is `queued` at `try_number`.
    async fn mark_running(
        &self,
        key: &TiKey,
        try_number: u32,
        pid: Option<i64>,
        hostname: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Finish a try: `new` is success, failed, skipped, up_for_retry (with `retry_at`) or
    /// up_for_reschedule (a sensor's poke, with its next poke in `retry_at`, which also writes
    /// its `task_reschedule` row in the same transaction).
    /// Applies only if `try_number` is still the current try and the instance is queued or
    /// running; records the try in the history. Returns false if it did not apply.
    /// Sets `end_date = now`; `retry_at` is kept only for `up_for_retry` and
    /// `up_for_reschedule`. Any other `new` is [`StoreError::Invalid`].
    async fn finish_try(
        &self,
        key: &TiKey,
        try_number: u32,
        new: TaskState,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Record a burst of executor reports in ONE transaction, in order, each with the same
    /// conditions as [`SchedulerStore::mark_running`] / [`SchedulerStore::finish_try`]. Returns,
    /// per report, whether it applied. Start and end dates are the reports' own times, not the time
    /// of recording. This is the scheduler's hot path: one commit for many tries.
    async fn record_try_reports(&self, reports: &[TryReport], hostname: &str) -> Result<Vec<bool>>;
    /// Fail a run that passed its `dagrun_timeout`, in one transaction and only while it is
    /// `running`: every instance for which `skip` (the core's
    /// `updraft_core::timeout::skipped_on_timeout`) holds is set `skipped`, a live try ending
    /// in the history as with [`OperatorStore::force_ti_state`]. `None` when the run was not
    /// running (nothing changed); else the task ids whose instance was queued or running.
    async fn time_out_run(
        &self,
        run_pk: i64,
        skip: fn(TaskState) -> bool,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<String>>>;
    /// Instances `queued` or `running` whose owning scheduler job is not alive (its state is
    /// not `running`, or `queued_by_job_id` is `None` or names no job), by run then task. Run
    /// [`SchedulerStore::reap_schedulers`] first so that silent schedulers count as not alive.
    async fn orphaned_task_instances(&self) -> Result<Vec<TiRow>>;
    /// Take over an orphaned try whose work is still going on elsewhere (a Kubernetes pod
    /// found again after a restart): its `queued_by_job_id` becomes `job_id`. Applies only
    /// while the instance is still on `try_number`, queued or running, and orphaned (as in
    /// [`SchedulerStore::orphaned_task_instances`]), so two schedulers never both adopt it. Returns
    /// whether it applied.
    async fn adopt_orphan(&self, key: &TiKey, try_number: u32, job_id: i64) -> Result<bool>;
    /// Expand a mapped task (dynamic task mapping): its placeholder (map index -1), if still
    /// `scheduled`, becomes map index 0 (as Airflow turns the placeholder into index 0) and
    /// `count - 1` copies of it, map indexes `1..count`, are created `scheduled` with the
    /// same try number, tries, pool and priority. One transaction, the run's row locked
    /// first. False (nothing written) when the placeholder is not there or not `scheduled`;
    /// a `count` of zero is [`StoreError::Invalid`] (a task mapped over nothing is skipped
    /// with [`SchedulerStore::apply_transitions`] instead).
    async fn expand_task(&self, run_pk: i64, task_id: &str, count: u32) -> Result<bool>;
    /// State of each task in the run of this DAG immediately before `logical_date`
    /// (for `depends_on_past`): the run of `dag_id` with the greatest `logical_date` strictly
    /// before the given one, of any run type. `None` when there is no earlier run.
    async fn previous_run_states(
        &self,
        dag_id: &str,
        logical_date: DateTime<Utc>,
    ) -> Result<Option<HashMap<String, TaskState>>>;
}

/// Reads of the installation's state, for the REST API, the web UI, the CLI and the
/// scheduler: single rows, lists, the API's paged queries and the change log. Never writes.
#[async_trait]
pub trait ReadStore: Send + Sync {
    /// Every DAG ever synced, active or not, ordered by `dag_id`.
    async fn dags(&self) -> Result<Vec<DagRow>>;
    /// [`ReadStore::dags`] without the definitions (which are large): for noticing which DAGs
    /// changed version or switches, cheaply and often.
    async fn dag_heads(&self) -> Result<Vec<DagHead>>;
    async fn dag(&self, dag_id: &str) -> Result<Option<DagRow>>;
    /// The definition a run is pinned to.
    async fn dag_version(&self, dag_id: &str, version: &str) -> Result<Option<Dag>>;
    /// Source text of a DAG version.
    async fn dag_source(&self, dag_id: &str, version: &str) -> Result<Option<String>>;
    /// In the order given to the last [`SchedulerStore::sync_dags`].
    async fn import_errors(&self) -> Result<Vec<ImportError>>;
    async fn run(&self, dag_id: &str, run_id: &str) -> Result<Option<RunRow>>;
    async fn run_by_pk(&self, run_pk: i64) -> Result<Option<RunRow>>;
    /// Newest (greatest `logical_date`) first; empty `filter.states` means any state.
    async fn newest_runs(&self, filter: &NewestRunsFilter) -> Result<Vec<RunRow>>;
    /// The scheduled or backfill run with the latest data interval, to continue the timetable.
    async fn latest_scheduled_run(&self, dag_id: &str) -> Result<Option<RunRow>>;
    /// Ordered by `task_id`, then `map_index`.
    async fn task_instances(&self, run_pk: i64) -> Result<Vec<TiRow>>;
    async fn task_instance(&self, key: &TiKey) -> Result<Option<TiRow>>;
    async fn active_counts(&self) -> Result<ActiveCounts>;
    /// Every try recorded for an instance, oldest first (finished tries and the current one,
    /// from the moment it is queued).
    async fn tries(&self, key: &TiKey) -> Result<Vec<TryRow>>;
    /// The pokes of try `try_number` of a sensor's instance that rescheduled, oldest first:
    /// the first is the try's first poke.
    async fn reschedules(&self, key: &TiKey, try_number: u32) -> Result<Vec<RescheduleRow>>;
    /// For a sensor waiting on another DAG: the state of the run of `dag_id` in `tenant` at
    /// `logical_date` (of its instance of `task_id` when given); `None` when there is no such
    /// run (or instance). Another tenant's run is never seen.
    async fn external_state(
        &self,
        tenant: &str,
        dag_id: &str,
        logical_date: DateTime<Utc>,
        task_id: Option<&str>,
    ) -> Result<Option<String>>;
    /// Ordered by name.
    async fn pools(&self) -> Result<Vec<PoolRow>>;
    /// The `per_dag` newest runs (greatest `logical_date`, then newest) of each DAG in
    /// `dag_ids`, in one query. Ordered by `dag_id`, then newest first. Unknown ids give none.
    async fn recent_runs(&self, dag_ids: &[String], per_dag: u32) -> Result<Vec<RunRow>>;
    /// For each DAG in `dag_ids` that has one, its scheduled or backfill run with the latest
    /// `data_interval_end` (ties: the newest run), in one query; ordered by `dag_id`. For the
    /// "next run" of many DAGs at once.
    async fn latest_scheduled_runs(&self, dag_ids: &[String]) -> Result<Vec<RunRow>>;
    /// Task instances of several runs in one query, ordered by run, then `task_id`.
    async fn task_instances_of_runs(&self, run_pks: &[i64]) -> Result<Vec<TiRow>>;
    /// [`ReadStore::task_instances_of_runs`] of only the tasks `task_ids` (one page of a
    /// grid): one primary-key lookup per run and task, whatever the runs' sizes.
    async fn task_instances_of_runs_for_tasks(
        &self,
        run_pks: &[i64],
        task_ids: &[String],
    ) -> Result<Vec<TiRow>>;
    /// Every try of every instance of a run, by `task_id` then try number.
    async fn tries_of_run(&self, run_pk: i64) -> Result<Vec<TryRow>>;
    /// Every recorded version of a DAG, newest first.
    async fn dag_versions(&self, dag_id: &str) -> Result<Vec<DagVersionRow>>;
    /// Runs that changed (created, deleted, run state or an instance's state changed) after
    /// change `after`, oldest change first, at most `limit`. A run changed several times is
    /// listed once, with its latest change. Covers writes by every process on the database.
    async fn run_changes_since(&self, after: i64, limit: u32) -> Result<Vec<RunChange>>;
    /// The latest change's `seq` (0 when none), to start following
    /// [`ReadStore::run_changes_since`].
    async fn latest_run_change(&self) -> Result<i64>;
    /// DAGs matching `query`, with the number matching in all.
    async fn dags_page(&self, query: &DagQuery) -> Result<Page<DagRow>>;
    /// Runs matching `query`, with the number matching in all.
    async fn runs_page(&self, query: &RunQuery) -> Result<Page<RunRow>>;
    /// Task instances matching `query`, with the number matching in all.
    async fn task_instances_page(&self, query: &TiQuery) -> Result<Page<TiRow>>;
    /// Import errors matching `query`, with their ids, and the number matching in all.
    async fn import_errors_page(&self, query: &ImportErrorQuery) -> Result<Page<ImportErrorRow>>;
    async fn import_error(&self, id: i64) -> Result<Option<ImportErrorRow>>;
    /// Slots held per pool by running, queued and scheduled instances (pools with none are
    /// absent).
    async fn pool_usage(&self) -> Result<HashMap<String, PoolUsage>>;
    /// Every note of these runs and of their task instances.
    async fn notes(&self, run_pks: &[i64]) -> Result<Vec<NoteRow>>;
}

/// What a user does to the installation (from the CLI, the REST API or the web UI): create
/// (trigger) runs, pause DAGs, clear, mark and force states, delete runs, write notes and edit
/// pools. Each method is one transaction.
#[async_trait]
pub trait OperatorStore: Send + Sync {
    /// Returns false when the DAG does not exist.
    async fn set_paused(&self, dag_id: &str, paused: bool) -> Result<bool>;
    /// Create a run in state `queued` with one task instance per `tis` in state `none`. The
    /// run's `bundle_version` is its DAG's (the revision of its source the DAG was last
    /// loaded from, see [`SchedulerStore::sync_dags`]); `None` for a DAG of the plain DAGs
    /// folder. It never changes afterwards.
    /// A run with the same `(dag_id, run_id)` or the same `(dag_id, logical_date)` (one run per
    /// logical date, as in Airflow), or a task id listed twice, is a [`StoreError::Conflict`];
    /// a `(dag_id, version)` not recorded by [`SchedulerStore::sync_dags`] is
    /// [`StoreError::NotFound`]. Either way nothing is written.
    async fn create_run(&self, run: &NewRun, tis: &[NewTi], now: DateTime<Utc>) -> Result<RunRow>;
    /// Sets `start_date` on entering `running` (if unset) and `end_date` on finishing
    /// (clearing it when a finished run goes back to queued/running); `queued_at = now` when
    /// the run comes back to `queued`. Unconditional. Unknown run: [`StoreError::NotFound`].
    async fn force_run_state(&self, run_pk: i64, state: RunState, now: DateTime<Utc>)
    -> Result<()>;
    /// Deletes the run, its task instances and their try history.
    async fn delete_run(&self, run_pk: i64) -> Result<bool>;
    /// Force a state (mark success/failed from the CLI/UI), whatever the current one. Records
    /// end_date for terminal states. A live (queued/running) try ends with the forced state in
    /// the history, so its process's late `finish_try` no longer applies. False if unknown.
    async fn force_ti_state(
        &self,
        key: &TiKey,
        state: TaskState,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Clear instances so they run again: state `none`, `max_tries` extended so each gets its
    /// full `retries` again (`max_tries = try_number + ` the `max_tries` it was created with);
    /// per-try fields (`queued_at`, dates, `retry_at`, pid, hostname) are reset and
    /// `try_number` is kept. A live try is abandoned: its history row keeps its state and gets
    /// `end_date = now`. If anything was cleared, the run goes back to `queued` with `end_date`
    /// cleared (`start_date` kept). Unknown task ids are ignored; returns how many were cleared.
    async fn clear_task_instances(
        &self,
        run_pk: i64,
        task_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<usize>;
    async fn upsert_pool(&self, pool: &PoolRow) -> Result<()>;
    /// False if there was no such pool; `default_pool` cannot be deleted
    /// ([`StoreError::Invalid`]).
    async fn delete_pool(&self, name: &str) -> Result<bool>;
    /// Mark a run as a user does (Airflow's "mark success / failed"), in one transaction:
    /// `success` sets every instance not in `success` to `success`; `failed` sets `running`
    /// instances to `failed` and unfinished ones (none, scheduled, queued, up_for_retry,
    /// up_for_reschedule) to
    /// `skipped`; `queued` changes no instance. Instances change as with
    /// [`OperatorStore::force_ti_state`]; the run's state and dates as with
    /// [`OperatorStore::force_run_state`]. False (and nothing changed) when the run does not exist.
    async fn mark_run_and_instances(
        &self,
        run_pk: i64,
        state: RunState,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// [`OperatorStore::force_ti_state`] for several instances in one transaction; unknown keys are
    /// skipped. Returns how many were set.
    async fn force_ti_states(
        &self,
        keys: &[TiKey],
        state: TaskState,
        now: DateTime<Utc>,
    ) -> Result<usize>;
    /// Create a pool; an existing name is a [`StoreError::Conflict`].
    async fn create_pool(&self, pool: &PoolRow) -> Result<()>;
    /// Set (or with `None` remove) the note of a run (`task_id` `None`) or of one of its task
    /// instances. Notes go with their run. Unknown run: [`StoreError::NotFound`].
    async fn set_note(&self, run_pk: i64, task_id: Option<&str>, note: Option<&str>) -> Result<()>;
}

/// Administration of the database itself: the schema, purging old history (Airflow's
/// `db clean`) and the scheduler jobs recorded in it.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Create or upgrade the schema. Safe to call on an up-to-date database. Seeds
    /// `default_pool` (128 slots) when creating it.
    async fn migrate(&self) -> Result<()>;
    /// Every scheduler job, newest first, at most `limit`.
    async fn schedulers(&self, limit: u32) -> Result<Vec<SchedulerJobRow>>;
    /// Airflow's `db clean`: delete finished runs (with their task instances, tries and notes)
    /// whose `end_date` is before `before`, except each DAG's latest scheduled or backfill run
    /// (the timetable continues from it); change-log entries older than `before`; scheduler
    /// jobs not `running` that ended before `before`; DAG versions that are neither a DAG's
    /// current version nor pinned by a remaining run. With `dry_run`, count only. One
    /// transaction.
    async fn purge_history(&self, before: DateTime<Utc>, dry_run: bool) -> Result<PurgeReport>;
    /// Check the database's pages: SQLite's `PRAGMA quick_check` (it reads the whole file:
    /// some 6-10 s per GB); nothing on PostgreSQL, whose damaged relations report
    /// themselves when read. A damaged database is [`StoreError::DatabaseCorrupt`].
    async fn check_integrity(&self) -> Result<()>;
    /// Whether this store's writes fail, for a health check: the last write error while they
    /// do, `None` while they work. Failing means a write failed for a reason of the database's
    /// own (a full disk, an I/O error, the server away; not a conflict) within the last 10 s,
    /// whatever succeeded meanwhile (on a full disk small writes may still succeed), or
    /// longer ago with nothing written since and a small probe write (one page, one commit)
    /// failing now. Costs nothing while writes work.
    async fn write_failure(&self) -> Option<String>;
    /// Resolves, with that error, once any call on this store has met a corrupt database
    /// ([`StoreError::DatabaseCorrupt`]); pending until then. For a process that must stop
    /// then, whichever part of it met the corruption.
    async fn corruption_found(&self) -> StoreError;
}

/// The whole contract: every role at once, for the callers that truly need all of it (a
/// scheduler process, the server's shared state, the contract tests). Implemented for anything
/// that implements the four roles; callers that need less take the narrowest role.
pub trait Store:
    SchedulerStore
    + ReadStore
    + OperatorStore
    + AdminStore
    + UserStore
    + SecretStore
    + SourceStore
    + XComStore
    + AssetStore
{
}

impl<
    S: SchedulerStore
        + ReadStore
        + OperatorStore
        + AdminStore
        + UserStore
        + SecretStore
        + SourceStore
        + XComStore
        + AssetStore
        + ?Sized,
> Store for S
{
}

/// What [`SchedulerStore::scheduled_task_instances`] leaves out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduledSkip {
    pub dags: Vec<String>,
    pub pools: Vec<String>,
}

/// Global limits [`SchedulerStore::queue`] re-checks inside its transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueLimits {
    /// dag_id → `max_active_tasks`; DAGs not listed are not limited here.
    pub max_active_tasks: HashMap<String, i64>,
}

/// How [`SchedulerStore::record_evaluate_and_queue`] queues inside its transaction.
#[derive(Clone, Copy)]
pub struct QueueStep<'a> {
    /// The scheduler job that owns the tries queued.
    pub owner: i64,
    /// At most this many scheduled instances are read for the selector; zero queues nothing.
    pub page: u32,
    pub selector: &'a dyn QueueSelector,
}

/// The caller's choice of what to queue, called by [`SchedulerStore::record_evaluate_and_queue`]
/// inside its transaction (so it must not block). The store applies no policy of its own
/// beyond re-checking the limits.
pub trait QueueSelector: Send + Sync {
    /// The DAGs and pools whose instances the page leaves out (those with no room).
    fn skip(&self, room: &QueueRoom) -> ScheduledSkip;
    /// What to queue among `scheduled` (a page as [`SchedulerStore::scheduled_task_instances`] returns
    /// it), in queueing order, with the limits to re-check.
    fn select(&self, scheduled: &[TiRow], room: &QueueRoom) -> QueueChoice;
}

/// The room as [`SchedulerStore::record_evaluate_and_queue`] reads it inside its transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueRoom {
    /// Pool name → its slots, for every pool.
    pub pool_slots: HashMap<String, i64>,
    /// Pool name → the tenant owning it, for the pools of one tenant (shared pools are absent).
    pub pool_tenants: HashMap<String, String>,
    /// What `queued` and `running` instances hold.
    pub held: ActiveCounts,
}

/// What a [`QueueSelector`] chose: keys in queueing order and the limits [`SchedulerStore::queue`]
/// re-checks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueChoice {
    pub keys: Vec<TiKey>,
    pub limits: QueueLimits,
}

/// The outcome of [`SchedulerStore::record_evaluate_and_queue`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOutcome {
    /// Per report, whether it applied (as [`SchedulerStore::record_try_reports`]).
    pub applied: Vec<bool>,
    /// As [`SchedulerStore::evaluate_runs`] returns it.
    pub evaluated: Vec<(i64, Evaluated)>,
    /// The instances queued, in the order the selector chose them.
    pub queued: Vec<TiRow>,
    /// How many scheduled instances the page held: a full page means more may be waiting.
    pub scheduled_read: usize,
}

/// What [`SchedulerStore::evaluate_runs`] and [`SchedulerStore::record_evaluate_and_queue`]
/// ask about each run they evaluate: which instances to read, and the decision. A closure
/// `Fn(&RunRow, &[TiSnapshot]) -> RunDecision` is one that always reads the whole run.
pub trait RunDecider: Send + Sync {
    /// The task ids whose instances [`RunDecider::decide`] needs for `run`; `None` (the
    /// default) for every instance of the run.
    fn focus(&self, run: &RunRow) -> Option<Vec<String>> {
        let _ = run;
        None
    }

    /// The decision for `run` from what was read. `None` asks for the whole run: the store
    /// then reads every instance and asks once more (a `None` to a whole read decides nothing).
    fn decide(&self, run: &RunRow, read: &RunRead<'_>) -> Option<RunDecision>;
}

impl<F> RunDecider for F
where
    F: for<'r> Fn(&'r RunRow, &'r [TiSnapshot]) -> RunDecision + Send + Sync,
{
    fn decide(&self, run: &RunRow, read: &RunRead<'_>) -> Option<RunDecision> {
        Some(self(run, read.tis))
    }
}

/// The instances of a run read for [`RunDecider::decide`].
#[derive(Debug, Clone, Copy)]
pub struct RunRead<'a> {
    /// Ordered by `task_id`: every instance of the run, or those of the decider's focus (of
    /// an expanded task, only the instances that have not ended).
    pub tis: &'a [TiSnapshot],
    /// With a focus: the ended instances of its expanded tasks, counted by task and state.
    /// Empty when every instance was read (they are in `tis`).
    pub ended: &'a [EndedInstances],
    /// With a focus: whether some instance of the run, read or not, is scheduled, queued,
    /// running, up_for_retry or up_for_reschedule. `None` when every instance was read.
    pub progressing: Option<bool>,
}

/// What the core decided for a run, for [`SchedulerStore::evaluate_runs`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunDecision {
    pub transitions: Vec<TiTransition>,
    /// The run's final state, when it finished.
    pub run_state: Option<RunState>,
}

/// The outcome of [`SchedulerStore::evaluate_runs`] for one run.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluated {
    /// Another transaction holds the run: nothing was read or written.
    Busy,
    /// The run does not exist or is not `running`.
    NotRunning,
    Applied {
        /// The decision as `decide` returned it.
        decision: RunDecision,
        /// How many transitions applied.
        applied: usize,
    },
}

/// A scheduler process as recorded in the database, for health and `jobs` listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerJobRow {
    pub id: i64,
    pub hostname: String,
    pub pid: i64,
    pub state: JobState,
    pub start_date: DateTime<Utc>,
    pub latest_heartbeat: DateTime<Utc>,
    pub end_date: Option<DateTime<Utc>>,
}

/// Where a scheduler job is in its life, stored as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Alive: it heartbeats, and the instances it queued are its own.
    Running,
    /// Stopped cleanly.
    Stopped,
    /// Declared dead by another scheduler after its heartbeat went silent.
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 3] = [JobState::Running, JobState::Stopped, JobState::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Stopped => "stopped",
            JobState::Dead => "dead",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

/// Rows [`AdminStore::purge_history`] deleted (or, with `dry_run`, would delete).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PurgeReport {
    pub runs: u64,
    pub task_instances: u64,
    pub tries: u64,
    pub run_changes: u64,
    pub scheduler_jobs: u64,
    pub dag_versions: u64,
}

/// A recorded version of a DAG, for [`ReadStore::dag_versions`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DagVersionRow {
    pub version: String,
    /// When this version was first recorded.
    pub created_at: DateTime<Utc>,
    /// The DAG source it was first read from; `None`: the plain DAGs folder.
    #[serde(default)]
    pub bundle_name: Option<String>,
    /// The source's revision it was first read at.
    #[serde(default)]
    pub bundle_version: Option<String>,
}

/// A run that changed, for [`ReadStore::run_changes_since`]: `seq` grows with every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunChange {
    pub seq: i64,
    pub run_pk: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_states_read_back_as_stored_and_unknown_ones_are_refused() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
            assert_eq!(state.to_string(), state.as_str());
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
        assert_eq!(
            ["running", "stopped", "dead"].map(|s| s.parse::<JobState>().unwrap()),
            [JobState::Running, JobState::Stopped, JobState::Dead]
        );
        assert!("Running".parse::<JobState>().is_err());
    }
}
