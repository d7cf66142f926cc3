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
//! as jobs and heartbeat (`crate::sql::jobs`).
//!
//! Most of the SQL is shared with PostgreSQL (`crate::sql`), and the store's methods are
//! written once over `Backend`; kept here are the connections (the `Backend` impl, and
//! `codec`: the connection as a `Db`), the scheduler's critical sections (`scheduling`), the
//! batched statements of the hot path (`task_instances`) and the batched DAG sync (`dags`).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, SqliteConnection, Transaction};
use updraft_dag::ImportError;

use crate::RunDecider;
use crate::backend::Backend;
use crate::health::{Access, Engine, Health};

use crate::{
    Evaluated, LoadedDagRecord, QueueLimits, Result, TiKey, TiRow, TiTransition, TryReport,
};

mod codec;
mod dags;
mod scheduling;
mod task_instances;

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
    health: Arc<Health>,
}

impl SqliteStore {
    /// Open (creating if missing) the database file at `path`. The schema is not touched:
    /// call [`crate::AdminStore::migrate`] before use.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let name = path.display().to_string();
        let health = Arc::new(Health::new(
            Engine::Sqlite,
            name.clone(),
            Health::sqlite_recovery(&name),
        ));
        // Switching a new file to WAL takes a lock SQLite does not wait for, so processes
        // opening the same new database at once take turns.
        let _lock = init_lock(path).await?;
        private_files(path).await?;
        // The writer connects first so the file exists and is in WAL mode before readers open.
        // A file that is not a database fails here, and is named corrupt.
        let connect = async {
            let writer = file_pool_options(1).connect_with(options.clone()).await?;
            let reader = file_pool_options(READERS).connect_with(options).await?;
            Ok((writer, reader))
        };
        let (writer, reader) = health.observe(Access::Read, connect.await)?;
        tracing::debug!(path = %path.display(), "opened SQLite store");
        Ok(SqliteStore {
            writer,
            reader,
            path: Some(path.to_path_buf()),
            health,
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
            health: Arc::new(Health::new(
                Engine::Sqlite,
                "in memory".to_string(),
                "it lives only in this process".to_string(),
            )),
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

/// The database file (made empty when missing: SQLite takes an empty file for a new
/// database) and its WAL and shared-memory files readable by this user only: SQLite gives
/// the WAL and shared-memory files the database file's permissions, and tasks running as
/// other users must not read any of them.
async fn private_files(db: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let db = db.to_path_buf();
    let done = tokio::task::spawn_blocking(move || {
        if std::fs::symlink_metadata(&db).is_err() {
            std::fs::File::options()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .open(&db)?;
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            let private = std::fs::Permissions::from_mode(0o600);
            match std::fs::set_permissions(&name, private) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Someone else's file, or a read-only file system: opening decides.
                Err(e) => tracing::warn!(
                    file = %std::path::Path::new(&name).display(),
                    "cannot make the database file private: {e}"
                ),
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    done.map_err(|e| sqlx::Error::Io(e).into())
}

fn pool_options(max_connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        // Long enough to queue behind a burst of writers without surfacing a timeout.
        .acquire_timeout(Duration::from_secs(30))
}

/// [`pool_options`] for a file database, whose connections can be replaced: one that comes
/// back still counted inside a transaction is closed, and the pool opens a fresh one.
///
/// SQLite ends a transaction by itself on some errors (`SQLITE_FULL`, `SQLITE_IOERR`, ...,
/// at a statement or at `COMMIT`); sqlx still counts the transaction open, its rollback on
/// drop then fails ("no transaction is active") unseen, and every later `BEGIN` on that
/// connection would fail with "attempted to call begin_with at non-zero transaction depth".
/// By the time a connection is acquired again, the pool's ping has run that rollback, so the
/// count is final.
fn file_pool_options(max_connections: u32) -> SqlitePoolOptions {
    pool_options(max_connections).before_acquire(|conn, _| {
        Box::pin(async move {
            let clean = !conn.is_in_transaction();
            if !clean {
                tracing::warn!("closing a database connection left inside a failed transaction");
            }
            Ok(clean)
        })
    })
}

#[async_trait]
impl Backend for SqliteStore {
    type Database = Sqlite;
    type Conn = SqliteConnection;
    type Guard = PoolConnection<Sqlite>;

    fn health(&self) -> &Health {
        &self.health
    }

    fn statement_cache(&self) -> bool {
        true
    }

    async fn reader(&self) -> Result<PoolConnection<Sqlite>> {
        Ok(self.reader.acquire().await?)
    }

    /// The writer connection: every write goes through it.
    async fn writer(&self) -> Result<PoolConnection<Sqlite>> {
        Ok(self.writer.acquire().await?)
    }

    async fn done(_guard: PoolConnection<Sqlite>) -> Result<()> {
        Ok(())
    }

    /// `BEGIN IMMEDIATE` on the writer connection: the write lock up front.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

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

    /// `PRAGMA quick_check`: every page and record of the file read and checked (not the
    /// indexes' agreement with their tables, which the full `integrity_check` adds).
    async fn check_integrity(&self) -> Result<()> {
        const SHOWN: usize = 3;
        let rows: Vec<(String,)> = sqlx::query_as("PRAGMA quick_check(4)")
            .fetch_all(&self.reader)
            .await?;
        // One row "ok", or problems, several lines per row, headed "*** in database main ***".
        let problems: Vec<String> = rows
            .iter()
            .flat_map(|(text,)| text.lines())
            .filter(|line| *line != "ok" && !line.starts_with("***"))
            .map(str::to_string)
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        let mut detail = format!(
            "quick_check: {}",
            problems[..problems.len().min(SHOWN)].join("; ")
        );
        if problems.len() > SHOWN {
            detail.push_str("; ...");
        }
        Err(self.health.corrupt(detail))
    }

    /// Empties the WAL into the file (a write may otherwise land in space the WAL already
    /// holds, even on a full disk), then rewrites the header's `user_version` (unused by
    /// updraft) with its own value: one page through the WAL and a commit, as any write needs.
    async fn probe_write(&self) -> Result<()> {
        let mut conn = self.writer.acquire().await?;
        // Busy (a reader still on the WAL) leaves the WAL as it is: the probe is weaker, not
        // wrong.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await?;
        let (version,): (i64,) = sqlx::query_as("PRAGMA user_version")
            .fetch_one(&mut *conn)
            .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "PRAGMA user_version = {version}"
        )))
        .execute(&mut *conn)
        .await?;
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

    async fn apply_transitions(
        &self,
        run_pk: i64,
        transitions: &[TiTransition],
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let mut tx = self.begin().await?;
        let applied =
            task_instances::apply_transitions_in(&mut tx, run_pk, transitions, now).await?;
        tx.commit().await?;
        Ok(applied)
    }

    async fn record_try_reports(&self, reports: &[TryReport], hostname: &str) -> Result<Vec<bool>> {
        let mut tx = self.begin().await?;
        let applied = task_instances::record_reports_in(&mut tx, reports, hostname).await?;
        tx.commit().await?;
        Ok(applied)
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
        decide: &dyn RunDecider,
        now: DateTime<Utc>,
    ) -> Result<Vec<(i64, Evaluated)>> {
        scheduling::evaluate_runs(&self.writer, run_pks, decide, now).await
    }

    async fn record_evaluate_and_queue(
        &self,
        reports: &[crate::TryReport],
        hostname: &str,
        run_pks: &[i64],
        decide: &dyn RunDecider,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::task_instances as ti;
    use crate::sql::{Dialect, ui};
    use crate::{AdminStore, ReadStore};

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
            (ti::scheduled_sql(d), "task_instance_scheduled_order"),
            (ti::ACTIVE_COUNTS.to_owned(), "task_instance_state"),
            (ti::ORPHANED.to_owned(), "task_instance_state"),
            (scheduling::RUNNING_RUNS.to_owned(), "dag_run_dag_state"),
        ];
        for (sql, index) in cases {
            let plan = query_plan(&store.writer, &sql).await;
            assert!(plan.contains(index), "{sql}\n{plan}");
        }
        // The page of scheduled instances is read in index order and stops at its limit,
        // never sorting every scheduled instance.
        let plan = query_plan(&store.writer, &ti::scheduled_sql(d)).await;
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
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
                        AdminStore::migrate(&store).await
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
