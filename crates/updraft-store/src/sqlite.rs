//! SQLite backend (WAL), the embedded default.
//!
//! Layout: one *writer* pool holding a single connection, through which every write goes, and
//! a *reader* pool of a few connections for plain reads (WAL lets readers run alongside the
//! writer). Funnelling writes through one connection queues them fairly inside the process
//! instead of leaving them to spin in SQLite's busy handler; transactions that write more than
//! one statement start with `BEGIN IMMEDIATE`, so they take the write lock up front and never
//! fail upgrading a read lock, and `busy_timeout` covers other processes (a CLI next to the
//! scheduler).
//!
//! Durability: `journal_mode = WAL`, `synchronous = FULL`, so a method that returned `Ok` has
//! its transaction on disk. Timestamps are INTEGER microseconds since the Unix epoch, UTC.
//!
//! Several schedulers on one file: `BEGIN IMMEDIATE` already serialises the transactions that
//! queue task instances within the global limits, start runs and evaluate a run, so each sees
//! what the one before it committed (see `scheduling`). Scheduler processes record themselves
//! as jobs and heartbeat (`jobs`).
//!
//! The SQL is split by subject: `dags`, `runs`, `task_instances`, `scheduling`, `jobs`,
//! `pools`, `ui`, `api`; the row decoding lives in `codec`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use updraft_core::evaluate::TiSnapshot;
use updraft_core::{RunState, TaskState};
use updraft_dag::{Dag, ImportError};

use crate::{
    ActiveCounts, DagRow, Evaluated, LoadedDagRecord, NewRun, NewTi, PoolRow, QueueLimits, Result,
    RunDecision, RunFilter, RunRow, SchedulerJobRow, Store, TiKey, TiRow, TiTransition, TryRow,
};

mod api;
mod clean;
mod codec;
mod dags;
mod jobs;
mod pools;
mod runs;
mod scheduling;
mod task_instances;
mod ui;

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections for reads on a file database.
const READERS: u32 = 4;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// SQLite implementation of [`crate::Store`]. Cloning shares the connections.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// The database file; `None` in memory.
    path: Option<PathBuf>,
}

impl SqliteStore {
    /// Open (creating if missing) the database file at `path`. The schema is not touched:
    /// call [`Store::migrate`] before use.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        // Switching a new file to WAL takes a lock SQLite does not wait for, so processes
        // opening the same new database at once take turns.
        let _lock = init_lock(path).await?;
        // The writer connects first so the file exists and is in WAL mode before readers open.
        let writer = pool_options(1).connect_with(options.clone()).await?;
        let reader = pool_options(READERS).connect_with(options).await?;
        tracing::debug!(path = %path.display(), "opened SQLite store");
        Ok(SqliteStore {
            writer,
            reader,
            path: Some(path.to_path_buf()),
        })
    }

    /// A private in-memory database, already migrated (for tests and `dags test`).
    ///
    /// An in-memory SQLite database lives in its connection, so reads and writes share one
    /// connection that is never recycled; the data is gone when the store is dropped.
    pub async fn in_memory() -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = pool_options(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        let store = SqliteStore {
            writer: pool.clone(),
            reader: pool,
            path: None,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Wait for in-flight work, then close every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// Waits until this process holds `<database>.init.lock`, which serialises opening and
/// migrating the database across processes; released when dropped.
async fn init_lock(db: &Path) -> Result<std::fs::File> {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".init.lock");
    let path = db.with_file_name(name);
    let locked = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    locked.map_err(|e| sqlx::Error::Io(e).into())
}

fn pool_options(max_connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        // Long enough to queue behind a burst of writers without surfacing a timeout.
        .acquire_timeout(Duration::from_secs(30))
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        // sqlx takes no lock when migrating SQLite, so two processes migrating a new database
        // at once (a scheduler starting next to a CLI command) would both apply the first
        // migration, and one would fail.
        let _lock = match &self.path {
            Some(path) => Some(init_lock(path).await?),
            None => None,
        };
        MIGRATOR.run(&self.writer).await?;
        tracing::debug!("SQLite schema up to date");
        Ok(())
    }

    async fn sync_dags(
        &self,
        loaded: &[LoadedDagRecord<'_>],
        errors: &[ImportError],
        paused_by_default: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        dags::sync(&self.writer, loaded, errors, paused_by_default, now).await
    }

    async fn dags(&self) -> Result<Vec<DagRow>> {
        dags::all(&self.reader).await
    }

    async fn dag_heads(&self) -> Result<Vec<crate::DagHead>> {
        dags::heads(&self.reader).await
    }

    async fn dag(&self, dag_id: &str) -> Result<Option<DagRow>> {
        dags::one(&self.reader, dag_id).await
    }

    async fn dag_version(&self, dag_id: &str, version: &str) -> Result<Option<Dag>> {
        dags::version(&self.reader, dag_id, version).await
    }

    async fn dag_source(&self, dag_id: &str, version: &str) -> Result<Option<String>> {
        dags::source(&self.reader, dag_id, version).await
    }

    async fn set_paused(&self, dag_id: &str, paused: bool) -> Result<bool> {
        dags::set_paused(&self.writer, dag_id, paused).await
    }

    async fn import_errors(&self) -> Result<Vec<ImportError>> {
        dags::import_errors(&self.reader).await
    }

    async fn create_run(&self, run: &NewRun, tis: &[NewTi], now: DateTime<Utc>) -> Result<RunRow> {
        runs::create(&self.writer, run, tis, now).await
    }

    async fn run(&self, dag_id: &str, run_id: &str) -> Result<Option<RunRow>> {
        runs::by_run_id(&self.reader, dag_id, run_id).await
    }

    async fn run_by_pk(&self, run_pk: i64) -> Result<Option<RunRow>> {
        runs::by_pk(&self.reader, run_pk).await
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>> {
        runs::filtered(&self.reader, filter).await
    }

    async fn latest_scheduled_run(&self, dag_id: &str) -> Result<Option<RunRow>> {
        runs::latest_scheduled(&self.reader, dag_id).await
    }

    async fn set_run_state(&self, run_pk: i64, state: RunState, now: DateTime<Utc>) -> Result<()> {
        runs::set_state(&self.writer, run_pk, state, now).await
    }

    async fn delete_run(&self, run_pk: i64) -> Result<bool> {
        runs::delete(&self.writer, run_pk).await
    }

    async fn clean(&self, before: DateTime<Utc>, dry_run: bool) -> Result<crate::CleanReport> {
        clean::clean(&self.writer, before, dry_run).await
    }

    async fn task_instances(&self, run_pk: i64) -> Result<Vec<TiRow>> {
        task_instances::of_run(&self.reader, run_pk).await
    }

    async fn task_instance(&self, key: &TiKey) -> Result<Option<TiRow>> {
        task_instances::one(&self.reader, key).await
    }

    async fn apply_transitions(
        &self,
        run_pk: i64,
        transitions: &[TiTransition],
        now: DateTime<Utc>,
    ) -> Result<usize> {
        task_instances::apply_transitions(&self.writer, run_pk, transitions, now).await
    }

    async fn scheduled_task_instances(
        &self,
        limit: u32,
        offset: u32,
        skip: &crate::ScheduledSkip,
    ) -> Result<Vec<TiRow>> {
        task_instances::scheduled(&self.reader, limit, offset, skip).await
    }

    async fn active_counts(&self) -> Result<ActiveCounts> {
        task_instances::active_counts(&self.reader).await
    }

    async fn queue(
        &self,
        keys: &[TiKey],
        owner: i64,
        limits: &QueueLimits,
        now: DateTime<Utc>,
    ) -> Result<Vec<TiRow>> {
        scheduling::queue(&self.writer, keys, owner, limits, now).await
    }

    async fn start_runs(&self, runs: &[(i64, u32)], now: DateTime<Utc>) -> Result<Vec<i64>> {
        scheduling::start_runs(&self.writer, runs, now).await
    }

    async fn evaluate_runs(
        &self,
        run_pks: &[i64],
        decide: &(dyn for<'r> Fn(&'r RunRow, &'r [TiSnapshot]) -> RunDecision + Send + Sync),
        now: DateTime<Utc>,
    ) -> Result<Vec<(i64, Evaluated)>> {
        scheduling::evaluate_runs(&self.writer, run_pks, decide, now).await
    }

    async fn record_and_evaluate(
        &self,
        reports: &[crate::TryReport],
        hostname: &str,
        run_pks: &[i64],
        decide: &(dyn for<'r> Fn(&'r RunRow, &'r [TiSnapshot]) -> RunDecision + Send + Sync),
        now: DateTime<Utc>,
    ) -> Result<(Vec<bool>, Vec<(i64, Evaluated)>)> {
        scheduling::record_and_evaluate(&self.writer, reports, hostname, run_pks, decide, now).await
    }

    async fn record_evaluate_and_queue(
        &self,
        reports: &[crate::TryReport],
        hostname: &str,
        run_pks: &[i64],
        decide: &(dyn for<'r> Fn(&'r RunRow, &'r [TiSnapshot]) -> RunDecision + Send + Sync),
        queue: &crate::QueueStep<'_>,
        now: DateTime<Utc>,
    ) -> Result<crate::StepOutcome> {
        scheduling::record_evaluate_and_queue(
            &self.writer,
            reports,
            hostname,
            run_pks,
            decide,
            queue,
            now,
        )
        .await
    }

    async fn register_scheduler(
        &self,
        hostname: &str,
        pid: u32,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        jobs::register(&self.writer, hostname, pid, now).await
    }

    async fn heartbeat(&self, job_id: i64, now: DateTime<Utc>) -> Result<bool> {
        jobs::heartbeat(&self.writer, job_id, now).await
    }

    async fn stop_scheduler(&self, job_id: i64, now: DateTime<Utc>) -> Result<()> {
        jobs::stop(&self.writer, job_id, now).await
    }

    async fn reap_schedulers(
        &self,
        cutoff: DateTime<Utc>,
        except: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>> {
        jobs::reap(&self.writer, cutoff, except, now).await
    }

    async fn schedulers(&self, limit: u32) -> Result<Vec<SchedulerJobRow>> {
        jobs::all(&self.reader, limit).await
    }

    async fn mark_running(
        &self,
        key: &TiKey,
        try_number: u32,
        pid: Option<i64>,
        hostname: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        task_instances::mark_running(&self.writer, key, try_number, pid, hostname, now).await
    }

    async fn finish_try(
        &self,
        key: &TiKey,
        try_number: u32,
        new: TaskState,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        task_instances::finish_try(&self.writer, key, try_number, new, retry_at, now).await
    }

    async fn record_try_reports(
        &self,
        reports: &[crate::TryReport],
        hostname: &str,
    ) -> Result<Vec<bool>> {
        task_instances::record_reports(&self.writer, reports, hostname).await
    }

    async fn set_ti_state(
        &self,
        key: &TiKey,
        state: TaskState,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        task_instances::set_state(&self.writer, key, state, now).await
    }

    async fn clear(&self, run_pk: i64, task_ids: &[String], now: DateTime<Utc>) -> Result<usize> {
        task_instances::clear(&self.writer, run_pk, task_ids, now).await
    }

    async fn tries(&self, key: &TiKey) -> Result<Vec<TryRow>> {
        task_instances::tries(&self.reader, key).await
    }

    async fn orphaned_task_instances(&self) -> Result<Vec<TiRow>> {
        task_instances::orphaned(&self.reader).await
    }

    async fn adopt_orphan(&self, key: &TiKey, try_number: u32, job_id: i64) -> Result<bool> {
        task_instances::adopt_orphan(&self.writer, key, try_number, job_id).await
    }

    async fn previous_run_states(
        &self,
        dag_id: &str,
        logical_date: DateTime<Utc>,
    ) -> Result<Option<HashMap<String, TaskState>>> {
        task_instances::previous_run_states(&self.reader, dag_id, logical_date).await
    }

    async fn pools(&self) -> Result<Vec<PoolRow>> {
        pools::all(&self.reader).await
    }

    async fn upsert_pool(&self, pool: &PoolRow) -> Result<()> {
        pools::upsert(&self.writer, pool).await
    }

    async fn delete_pool(&self, name: &str) -> Result<bool> {
        pools::delete(&self.writer, name).await
    }

    // ---- web UI ---------------------------------------------------------------------------

    async fn recent_runs(&self, dag_ids: &[String], per_dag: u32) -> Result<Vec<RunRow>> {
        ui::recent_runs(&self.reader, dag_ids, per_dag).await
    }

    async fn latest_scheduled_runs(&self, dag_ids: &[String]) -> Result<Vec<RunRow>> {
        ui::latest_scheduled_runs(&self.reader, dag_ids).await
    }

    async fn task_instances_of_runs(&self, run_pks: &[i64]) -> Result<Vec<TiRow>> {
        ui::task_instances_of_runs(&self.reader, run_pks).await
    }

    async fn tries_of_run(&self, run_pk: i64) -> Result<Vec<TryRow>> {
        ui::tries_of_run(&self.reader, run_pk).await
    }

    async fn dag_versions(&self, dag_id: &str) -> Result<Vec<crate::DagVersionRow>> {
        ui::dag_versions(&self.reader, dag_id).await
    }

    async fn run_changes_since(&self, after: i64, limit: u32) -> Result<Vec<crate::RunChange>> {
        ui::run_changes_since(&self.reader, after, limit).await
    }

    async fn latest_run_change(&self) -> Result<i64> {
        ui::latest_run_change(&self.reader).await
    }

    // ---- REST API -------------------------------------------------------------------------

    async fn dags_page(&self, query: &crate::DagQuery) -> Result<crate::Page<DagRow>> {
        api::dags_page(&self.reader, query).await
    }

    async fn runs_page(&self, query: &crate::RunQuery) -> Result<crate::Page<RunRow>> {
        api::runs_page(&self.reader, query).await
    }

    async fn task_instances_page(&self, query: &crate::TiQuery) -> Result<crate::Page<TiRow>> {
        api::task_instances_page(&self.reader, query).await
    }

    async fn import_errors_page(
        &self,
        query: &crate::ImportErrorQuery,
    ) -> Result<crate::Page<crate::ImportErrorRow>> {
        api::import_errors_page(&self.reader, query).await
    }

    async fn import_error(&self, id: i64) -> Result<Option<crate::ImportErrorRow>> {
        api::import_error(&self.reader, id).await
    }

    async fn mark_run(&self, run_pk: i64, state: RunState, now: DateTime<Utc>) -> Result<bool> {
        api::mark_run(&self.writer, run_pk, state, now).await
    }

    async fn set_ti_states(
        &self,
        keys: &[TiKey],
        state: TaskState,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        api::set_ti_states(&self.writer, keys, state, now).await
    }

    async fn create_pool(&self, pool: &PoolRow) -> Result<()> {
        api::create_pool(&self.writer, pool).await
    }

    async fn pool_usage(&self) -> Result<HashMap<String, crate::PoolUsage>> {
        api::pool_usage(&self.reader).await
    }

    async fn set_note(&self, run_pk: i64, task_id: Option<&str>, note: Option<&str>) -> Result<()> {
        api::set_note(&self.writer, run_pk, task_id, note).await
    }

    async fn notes(&self, run_pks: &[i64]) -> Result<Vec<crate::NoteRow>> {
        api::notes(&self.reader, run_pks).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pragma(pool: &SqlitePool, name: &'static str) -> String {
        let row: (String,) = sqlx::query_as(match name {
            "journal_mode" => "SELECT journal_mode FROM pragma_journal_mode",
            "synchronous" => "SELECT CAST(synchronous AS TEXT) FROM pragma_synchronous",
            "foreign_keys" => "SELECT CAST(foreign_keys AS TEXT) FROM pragma_foreign_keys",
            "busy_timeout" => "SELECT CAST(timeout AS TEXT) FROM pragma_busy_timeout",
            _ => unreachable!(),
        })
        .fetch_one(pool)
        .await
        .unwrap();
        row.0
    }

    #[tokio::test]
    async fn file_connections_are_durable_wal_with_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("p.db")).await.unwrap();
        for pool in [&store.writer, &store.reader] {
            assert_eq!(pragma(pool, "journal_mode").await, "wal");
            assert_eq!(pragma(pool, "synchronous").await, "2", "FULL");
            assert_eq!(pragma(pool, "foreign_keys").await, "1");
            assert_eq!(pragma(pool, "busy_timeout").await, "5000");
        }
    }

    async fn query_plan(pool: &SqlitePool, sql: &str) -> String {
        let explain = sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}"));
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(explain).fetch_all(pool).await.unwrap();
        let details: Vec<String> = rows.into_iter().map(|r| r.3).collect();
        details.join("\n")
    }

    /// The queries the scheduler runs every loop must stay index searches as history grows.
    #[tokio::test]
    async fn scheduler_loop_queries_use_indexes() {
        let store = SqliteStore::in_memory().await.unwrap();
        let cases = [
            (runs::RUNS_OF_DAG_IN_STATES, "dag_run_dag_state"),
            (runs::RUNS_IN_STATES, "dag_run_state"),
            (runs::RUNS_OF_DAG, "dag_run_dag_logical_date"),
            (runs::ALL_RUNS, "dag_run_logical_date"),
            (task_instances::SCHEDULED, "task_instance_state"),
            (task_instances::ACTIVE_COUNTS, "task_instance_state"),
            (task_instances::ORPHANED, "task_instance_state"),
            (scheduling::RUNNING_RUNS, "dag_run_dag_state"),
        ];
        for (sql, index) in cases {
            let plan = query_plan(&store.writer, sql).await;
            assert!(plan.contains(index), "{sql}\n{plan}");
        }
    }

    /// The web UI's batched reads stay bounded index searches as history grows.
    #[tokio::test]
    async fn ui_queries_use_indexes() {
        let store = SqliteStore::in_memory().await.unwrap();
        let cases = [
            (ui::RECENT_RUNS, "dag_run_dag_logical_date"),
            (ui::LATEST_SCHEDULED, "dag_run_dag_interval"),
            (ui::TIS_OF_RUNS, "sqlite_autoindex_task_instance_1"),
            (ui::TRIES_OF_RUN, "sqlite_autoindex_task_try_1"),
            (ui::RUN_CHANGES, "run_change_seq"),
        ];
        for (sql, index) in cases {
            let plan = query_plan(&store.writer, sql).await;
            assert!(plan.contains(index), "{sql}\n{plan}");
        }
    }

    /// Stores opened on one new file at once (as by processes starting together) all open
    /// and migrate it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_opens_and_migrations_of_a_new_database_all_succeed() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("race.db");
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let path = path.clone();
                    tokio::spawn(async move {
                        let store = SqliteStore::open(&path).await?;
                        store.migrate().await
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap().unwrap();
            }
        }
    }

    #[tokio::test]
    async fn in_memory_store_is_migrated_and_enforces_foreign_keys() {
        let store = SqliteStore::in_memory().await.unwrap();
        assert_eq!(pragma(&store.writer, "foreign_keys").await, "1");
        assert_eq!(store.pools().await.unwrap().len(), 1);
    }
}
