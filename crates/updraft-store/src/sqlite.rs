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
//! Most of the SQL is shared with PostgreSQL (`crate::sql`); kept here are the connection
//! (`codec`: the connection as a `Db`), the scheduler's critical sections (`scheduling`), the
//! batched statements of the hot path (`task_instances`) and the batched DAG sync (`dags`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
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

mod codec;
mod dags;
mod scheduling;
mod task_instances;

use crate::sql;
use crate::sql::runs;

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

    /// Run `call` on a reader connection.
    async fn read<T>(
        &self,
        call: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        call(&mut *self.reader.acquire().await?).await
    }

    /// Run `call` on the writer connection, outside a transaction (for a single statement).
    async fn write<T>(
        &self,
        call: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        call(&mut *self.writer.acquire().await?).await
    }

    /// Run `call` in a `BEGIN IMMEDIATE` transaction on the writer connection, then commit.
    async fn write_tx<T>(
        &self,
        call: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T>,
    ) -> Result<T> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let out = call(&mut *tx).await?;
        tx.commit().await?;
        Ok(out)
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
        self.read(async |c| sql::dags::all(c).await).await
    }

    async fn dag_heads(&self) -> Result<Vec<crate::DagHead>> {
        self.read(async |c| sql::dags::heads(c).await).await
    }

    async fn dag(&self, dag_id: &str) -> Result<Option<DagRow>> {
        self.read(async |c| sql::dags::one(c, dag_id).await).await
    }

    async fn dag_version(&self, dag_id: &str, version: &str) -> Result<Option<Dag>> {
        self.read(async |c| sql::dags::version(c, dag_id, version).await)
            .await
    }

    async fn dag_source(&self, dag_id: &str, version: &str) -> Result<Option<String>> {
        self.read(async |c| sql::dags::source(c, dag_id, version).await)
            .await
    }

    async fn set_paused(&self, dag_id: &str, paused: bool) -> Result<bool> {
        self.write(async |c| sql::dags::set_paused(c, dag_id, paused).await)
            .await
    }

    async fn import_errors(&self) -> Result<Vec<ImportError>> {
        self.read(async |c| sql::dags::import_errors(c).await).await
    }

    async fn create_run(&self, run: &NewRun, tis: &[NewTi], now: DateTime<Utc>) -> Result<RunRow> {
        self.write_tx(async |c| runs::create(c, run, tis, now).await)
            .await
    }

    async fn run(&self, dag_id: &str, run_id: &str) -> Result<Option<RunRow>> {
        self.read(async |c| runs::by_run_id(c, dag_id, run_id).await)
            .await
    }

    async fn run_by_pk(&self, run_pk: i64) -> Result<Option<RunRow>> {
        self.read(async |c| runs::by_pk(c, run_pk).await).await
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>> {
        self.read(async |c| runs::filtered(c, filter).await).await
    }

    async fn latest_scheduled_run(&self, dag_id: &str) -> Result<Option<RunRow>> {
        self.read(async |c| runs::latest_scheduled(c, dag_id).await)
            .await
    }

    async fn set_run_state(&self, run_pk: i64, state: RunState, now: DateTime<Utc>) -> Result<()> {
        self.write(async |c| runs::set_state(c, run_pk, state, now).await)
            .await
    }

    async fn delete_run(&self, run_pk: i64) -> Result<bool> {
        self.write(async |c| runs::delete(c, run_pk).await).await
    }

    async fn clean(&self, before: DateTime<Utc>, dry_run: bool) -> Result<crate::CleanReport> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let report = sql::clean::delete_all(&mut *tx, codec::ts(before)).await?;
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(report)
    }

    async fn task_instances(&self, run_pk: i64) -> Result<Vec<TiRow>> {
        self.read(async |c| sql::task_instances::of_run(c, run_pk).await)
            .await
    }

    async fn task_instance(&self, key: &TiKey) -> Result<Option<TiRow>> {
        self.read(async |c| sql::task_instances::one(c, key).await)
            .await
    }

    async fn apply_transitions(
        &self,
        run_pk: i64,
        transitions: &[TiTransition],
        now: DateTime<Utc>,
    ) -> Result<usize> {
        self.write_tx(async |c| {
            task_instances::apply_transitions_in(c, run_pk, transitions, now).await
        })
        .await
    }

    async fn scheduled_task_instances(
        &self,
        limit: u32,
        offset: u32,
        skip: &crate::ScheduledSkip,
    ) -> Result<Vec<TiRow>> {
        self.read(async |c| sql::task_instances::scheduled(c, limit, offset, skip).await)
            .await
    }

    async fn active_counts(&self) -> Result<ActiveCounts> {
        self.read(async |c| sql::task_instances::active_counts(c).await)
            .await
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

    async fn register_scheduler(
        &self,
        hostname: &str,
        pid: u32,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        self.write(async |c| sql::jobs::register(c, hostname, pid, now).await)
            .await
    }

    async fn heartbeat(&self, job_id: i64, now: DateTime<Utc>) -> Result<bool> {
        self.write(async |c| sql::jobs::heartbeat(c, job_id, now).await)
            .await
    }

    async fn stop_scheduler(&self, job_id: i64, now: DateTime<Utc>) -> Result<()> {
        self.write(async |c| sql::jobs::stop(c, job_id, now).await)
            .await
    }

    async fn reap_schedulers(
        &self,
        cutoff: DateTime<Utc>,
        except: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>> {
        self.write(async |c| sql::jobs::reap(c, cutoff, except, now).await)
            .await
    }

    async fn schedulers(&self, limit: u32) -> Result<Vec<SchedulerJobRow>> {
        self.read(async |c| sql::jobs::all(c, limit).await).await
    }

    async fn mark_running(
        &self,
        key: &TiKey,
        try_number: u32,
        pid: Option<i64>,
        hostname: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.write_tx(async |c| {
            sql::task_instances::mark_running_in(c, key, try_number, pid, hostname, now).await
        })
        .await
    }

    async fn finish_try(
        &self,
        key: &TiKey,
        try_number: u32,
        new: TaskState,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        sql::task_instances::check_finish_state(new)?;
        self.write_tx(async |c| {
            sql::task_instances::finish_try_in(c, key, try_number, new, retry_at, now).await
        })
        .await
    }

    async fn record_try_reports(
        &self,
        reports: &[crate::TryReport],
        hostname: &str,
    ) -> Result<Vec<bool>> {
        self.write_tx(async |c| task_instances::record_reports_in(c, reports, hostname).await)
            .await
    }

    async fn set_ti_state(
        &self,
        key: &TiKey,
        state: TaskState,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.write_tx(async |c| sql::task_instances::set_state_in(c, key, state, now).await)
            .await
    }

    async fn clear(&self, run_pk: i64, task_ids: &[String], now: DateTime<Utc>) -> Result<usize> {
        self.write_tx(async |c| sql::task_instances::clear(c, run_pk, task_ids, now).await)
            .await
    }

    async fn tries(&self, key: &TiKey) -> Result<Vec<TryRow>> {
        self.read(async |c| sql::task_instances::tries(c, key).await)
            .await
    }

    async fn orphaned_task_instances(&self) -> Result<Vec<TiRow>> {
        self.read(async |c| sql::task_instances::orphaned(c).await)
            .await
    }

    async fn adopt_orphan(&self, key: &TiKey, try_number: u32, job_id: i64) -> Result<bool> {
        self.write(async |c| sql::task_instances::adopt_orphan(c, key, try_number, job_id).await)
            .await
    }

    async fn previous_run_states(
        &self,
        dag_id: &str,
        logical_date: DateTime<Utc>,
    ) -> Result<Option<HashMap<String, TaskState>>> {
        self.read(async |c| sql::task_instances::previous_run_states(c, dag_id, logical_date).await)
            .await
    }

    async fn pools(&self) -> Result<Vec<PoolRow>> {
        self.read(async |c| sql::pools::all(c).await).await
    }

    async fn upsert_pool(&self, pool: &PoolRow) -> Result<()> {
        self.write(async |c| sql::pools::upsert(c, pool).await)
            .await
    }

    async fn delete_pool(&self, name: &str) -> Result<bool> {
        self.write(async |c| sql::pools::delete(c, name).await)
            .await
    }

    // ---- web UI ---------------------------------------------------------------------------

    async fn recent_runs(&self, dag_ids: &[String], per_dag: u32) -> Result<Vec<RunRow>> {
        self.read(async |c| sql::ui::recent_runs(c, dag_ids, per_dag).await)
            .await
    }

    async fn latest_scheduled_runs(&self, dag_ids: &[String]) -> Result<Vec<RunRow>> {
        self.read(async |c| sql::ui::latest_scheduled_runs(c, dag_ids).await)
            .await
    }

    async fn task_instances_of_runs(&self, run_pks: &[i64]) -> Result<Vec<TiRow>> {
        self.read(async |c| sql::ui::task_instances_of_runs(c, run_pks).await)
            .await
    }

    async fn tries_of_run(&self, run_pk: i64) -> Result<Vec<TryRow>> {
        self.read(async |c| sql::ui::tries_of_run(c, run_pk).await)
            .await
    }

    async fn dag_versions(&self, dag_id: &str) -> Result<Vec<crate::DagVersionRow>> {
        self.read(async |c| sql::ui::dag_versions(c, dag_id).await)
            .await
    }

    async fn run_changes_since(&self, after: i64, limit: u32) -> Result<Vec<crate::RunChange>> {
        self.read(async |c| sql::ui::run_changes_since(c, after, limit).await)
            .await
    }

    async fn latest_run_change(&self) -> Result<i64> {
        self.read(async |c| sql::ui::latest_run_change(c).await)
            .await
    }

    // ---- REST API -------------------------------------------------------------------------

    async fn dags_page(&self, query: &crate::DagQuery) -> Result<crate::Page<DagRow>> {
        self.read(async |c| sql::api::dags_page(c, query).await)
            .await
    }

    async fn runs_page(&self, query: &crate::RunQuery) -> Result<crate::Page<RunRow>> {
        self.read(async |c| sql::api::runs_page(c, query).await)
            .await
    }

    async fn task_instances_page(&self, query: &crate::TiQuery) -> Result<crate::Page<TiRow>> {
        self.read(async |c| sql::api::task_instances_page(c, query).await)
            .await
    }

    async fn import_errors_page(
        &self,
        query: &crate::ImportErrorQuery,
    ) -> Result<crate::Page<crate::ImportErrorRow>> {
        self.read(async |c| sql::api::import_errors_page(c, query).await)
            .await
    }

    async fn import_error(&self, id: i64) -> Result<Option<crate::ImportErrorRow>> {
        self.read(async |c| sql::api::import_error(c, id).await)
            .await
    }

    async fn mark_run(&self, run_pk: i64, state: RunState, now: DateTime<Utc>) -> Result<bool> {
        self.write_tx(async |c| sql::api::mark_run(c, run_pk, state, now).await)
            .await
    }

    async fn set_ti_states(
        &self,
        keys: &[TiKey],
        state: TaskState,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        self.write_tx(async |c| sql::api::set_ti_states(c, keys, state, now).await)
            .await
    }

    async fn create_pool(&self, pool: &PoolRow) -> Result<()> {
        self.write(async |c| sql::pools::create(c, pool).await)
            .await
    }

    async fn pool_usage(&self) -> Result<HashMap<String, crate::PoolUsage>> {
        self.read(async |c| sql::api::pool_usage(c).await).await
    }

    async fn set_note(&self, run_pk: i64, task_id: Option<&str>, note: Option<&str>) -> Result<()> {
        self.write_tx(async |c| sql::api::set_note(c, run_pk, task_id, note).await)
            .await
    }

    async fn notes(&self, run_pks: &[i64]) -> Result<Vec<crate::NoteRow>> {
        self.read(async |c| sql::api::notes(c, run_pks).await).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::task_instances as ti;
    use crate::sql::{Dialect, ui};

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
        let d = Dialect::Sqlite;
        let cases = [
            (runs::filtered_sql(d, true, true), "dag_run_dag_state"),
            (runs::filtered_sql(d, false, true), "dag_run_state"),
            (
                runs::filtered_sql(d, true, false),
                "dag_run_dag_logical_date",
            ),
            (runs::filtered_sql(d, false, false), "dag_run_logical_date"),
            (ti::scheduled_sql(d), "task_instance_state"),
            (ti::ACTIVE_COUNTS.to_owned(), "task_instance_state"),
            (ti::ORPHANED.to_owned(), "task_instance_state"),
            (scheduling::RUNNING_RUNS.to_owned(), "dag_run_dag_state"),
        ];
        for (sql, index) in cases {
            let plan = query_plan(&store.writer, &sql).await;
            assert!(plan.contains(index), "{sql}\n{plan}");
        }
    }

    /// The web UI's batched reads stay bounded index searches as history grows.
    #[tokio::test]
    async fn ui_queries_use_indexes() {
        let store = SqliteStore::in_memory().await.unwrap();
        let d = Dialect::Sqlite;
        let cases = [
            (ui::recent_runs_sql(d), "dag_run_dag_logical_date"),
            (ui::latest_scheduled_sql(d), "dag_run_dag_interval"),
            (ui::tis_of_runs_sql(d), "sqlite_autoindex_task_instance_1"),
            (ui::TRIES_OF_RUN.to_owned(), "sqlite_autoindex_task_try_1"),
            (ui::RUN_CHANGES.to_owned(), "run_change_seq"),
        ];
        for (sql, index) in cases {
            let plan = query_plan(&store.writer, &sql).await;
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
