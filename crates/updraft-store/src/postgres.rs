//! PostgreSQL backend, for installations that outgrow one SQLite file.
//!
//! Layout: one connection pool; every method is one statement or one transaction (always a
//! transaction when the statement cache is off, see below), and no session state is kept
//! between transactions (no `SET`, no temporary tables, no session advisory locks outside
//! migration), so the store can sit behind a transaction-pooling connection pooler such as
//! PgBouncer. For such a pooler, turn the prepared-statement cache off
//! ([`PgStoreOptions::statement_cache`]): sqlx otherwise prepares named statements and
//! reuses them on the same client connection, which a transaction pooler may map to another
//! server connection. (Setting sqlx's `statement_cache_capacity(0)` alone is not enough: sqlx
//! still prepares named statements, uncached and never closed, so the store also marks its
//! queries non-persistent, i.e. unnamed.) With the cache off, every statement also runs inside
//! a transaction, even a lone read (`PgStore::conn` opens one for the methods that do not open
//! their own): sqlx sends a statement with parameters in two round trips, Parse+Describe+Sync
//! and then Bind+Execute+Sync, and outside a transaction a transaction pooler may hand the
//! second half to another server connection, which fails ("unnamed prepared statement does not
//! exist") or, worse, binds another client's unnamed statement. Inside a transaction both halves
//! stay on one server connection. With the cache on, such methods take a plain pooled
//! connection and pay no `BEGIN`/`COMMIT`.
//!
//! Concurrency: changes are conditional `UPDATE`s (on the expected state, and for a try on its
//! number), reads that decide a write lock their rows (`SELECT ... FOR UPDATE`), one run per
//! logical date is a unique index, and replacing the import errors locks their table for the
//! transaction, so several schedulers may share one database. Queueing task instances and
//! starting runs, which check global limits (pool slots, `max_active_tasks`,
//! `max_active_runs`), are serialised by a transaction-scoped advisory lock
//! (`pg_advisory_xact_lock`, released at commit, so still fine behind PgBouncer). A run is
//! evaluated under its row lock taken with `FOR UPDATE SKIP LOCKED`, so a scheduler skips a run
//! another one holds instead of waiting; transactions that change a run's instances and its
//! row lock the run first, in the same order, so they cannot deadlock with an evaluation.
//! Scheduler processes record themselves as jobs and heartbeat (`scheduler_job`); the tries a
//! job queued are its own until it is declared dead. See the `scheduling` and `jobs` modules.
//!
//! Timestamps are BIGINT microseconds since the Unix epoch, UTC, as in the SQLite schema, and
//! the SQL mirrors the SQLite backend's module by module: `dags`, `runs`, `task_instances`,
//! `scheduling`, `jobs`, `pools`, `ui`, `api`; the row decoding lives in `codec`.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Transaction;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, Postgres};
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

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How a [`PgStore`] connects.
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    /// Most connections the store opens at once.
    pub max_connections: u32,
    /// Keep prepared statements by name per connection (sqlx's default, fastest: one round
    /// trip per statement). Turn off behind a transaction-pooling PgBouncer: every statement is
    /// then parsed as the unnamed statement each time it runs, always inside a transaction,
    /// and no statement is cached, so nothing relies on a server connection's statements
    /// across transactions. (Run [`Store::migrate`] on a direct or session-pooled connection:
    /// sqlx's migrator holds a session-level advisory lock.)
    pub statement_cache: bool,
    /// How long a method waits for a free connection before failing.
    pub acquire_timeout: Duration,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        PgStoreOptions {
            max_connections: 8,
            statement_cache: true,
            acquire_timeout: Duration::from_secs(30),
        }
    }
}

/// PostgreSQL implementation of [`crate::Store`]. Cloning shares the connections.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// [`PgStoreOptions::statement_cache`].
    statement_cache: bool,
}

impl PgStore {
    /// Connect to the database at `url` (`postgres://user@host:port/db?...`) with the default
    /// options. The schema is not touched: call [`Store::migrate`] before use.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(PgConnectOptions::from_str(url)?, &PgStoreOptions::default()).await
    }

    /// Connect with explicit connection and store options.
    pub async fn connect_with(connect: PgConnectOptions, options: &PgStoreOptions) -> Result<Self> {
        let connect = if options.statement_cache {
            connect
        } else {
            connect.statement_cache_capacity(0)
        };
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        tracing::debug!("opened PostgreSQL store");
        Ok(PgStore {
            pool,
            statement_cache: options.statement_cache,
        })
    }

    /// Run a call with this store's statement-cache choice.
    async fn scoped<T>(&self, call: impl Future<Output = T>) -> T {
        codec::PERSISTENT.scope(self.statement_cache, call).await
    }

    /// A connection for a method that does not open a transaction itself: a pooled connection
    /// when the statement cache is on, a transaction when it is off (see the module doc).
    async fn conn(&self) -> Result<Conn> {
        Ok(if self.statement_cache {
            Conn::Pooled(self.pool.acquire().await?)
        } else {
            Conn::Transaction(self.pool.begin().await?)
        })
    }

    /// Run `call` on [`Self::conn`] with this store's statement-cache choice, then commit.
    async fn on_conn<T>(
        &self,
        call: impl AsyncFnOnce(&mut PgConnection) -> Result<T>,
    ) -> Result<T> {
        self.scoped(async {
            let mut conn = self.conn().await?;
            let out = call(&mut conn).await?;
            conn.finish().await?;
            Ok(out)
        })
        .await
    }

    /// Wait for in-flight work, then close every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A connection from [`PgStore::conn`]; dropping it unfinished rolls a transaction back.
enum Conn {
    Pooled(PoolConnection<Postgres>),
    Transaction(Transaction<'static, Postgres>),
}

impl Conn {
    /// Commit, if this is a transaction.
    async fn finish(self) -> Result<()> {
        if let Conn::Transaction(tx) = self {
            tx.commit().await?;
        }
        Ok(())
    }
}

impl Deref for Conn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Conn::Pooled(conn) => conn,
            Conn::Transaction(tx) => tx,
        }
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Conn::Pooled(conn) => conn,
            Conn::Transaction(tx) => tx,
        }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> Result<()> {
        // sqlx's migrator holds a PostgreSQL advisory lock (keyed on the database name) while
        // it checks and applies migrations, so processes migrating at once take turns.
        MIGRATOR.run(&self.pool).await?;
        tracing::debug!("PostgreSQL schema up to date");
        Ok(())
    }

    async fn sync_dags(
        &self,
        loaded: &[LoadedDagRecord<'_>],
        errors: &[ImportError],
        paused_by_default: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.scoped(dags::sync(
            &self.pool,
            loaded,
            errors,
            paused_by_default,
            now,
        ))
        .await
    }

    async fn dags(&self) -> Result<Vec<DagRow>> {
        self.on_conn(async |conn| dags::all(conn).await).await
    }

    async fn dag_heads(&self) -> Result<Vec<crate::DagHead>> {
        self.on_conn(async |conn| dags::heads(conn).await).await
    }

    async fn dag(&self, dag_id: &str) -> Result<Option<DagRow>> {
        self.on_conn(async |conn| dags::one(conn, dag_id).await)
            .await
    }

    async fn dag_version(&self, dag_id: &str, version: &str) -> Result<Option<Dag>> {
        self.on_conn(async |conn| dags::version(conn, dag_id, version).await)
            .await
    }

    async fn dag_source(&self, dag_id: &str, version: &str) -> Result<Option<String>> {
        self.on_conn(async |conn| dags::source(conn, dag_id, version).await)
            .await
    }

    async fn set_paused(&self, dag_id: &str, paused: bool) -> Result<bool> {
        self.on_conn(async |conn| dags::set_paused(conn, dag_id, paused).await)
            .await
    }

    async fn import_errors(&self) -> Result<Vec<ImportError>> {
        self.on_conn(async |conn| dags::import_errors(conn).await)
            .await
    }

    async fn create_run(&self, run: &NewRun, tis: &[NewTi], now: DateTime<Utc>) -> Result<RunRow> {
        self.scoped(runs::create(&self.pool, run, tis, now)).await
    }

    async fn run(&self, dag_id: &str, run_id: &str) -> Result<Option<RunRow>> {
        self.on_conn(async |conn| runs::by_run_id(conn, dag_id, run_id).await)
            .await
    }

    async fn run_by_pk(&self, run_pk: i64) -> Result<Option<RunRow>> {
        self.on_conn(async |conn| runs::by_pk(conn, run_pk).await)
            .await
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>> {
        self.on_conn(async |conn| runs::filtered(conn, filter).await)
            .await
    }

    async fn latest_scheduled_run(&self, dag_id: &str) -> Result<Option<RunRow>> {
        self.on_conn(async |conn| runs::latest_scheduled(conn, dag_id).await)
            .await
    }

    async fn set_run_state(&self, run_pk: i64, state: RunState, now: DateTime<Utc>) -> Result<()> {
        self.on_conn(async |conn| runs::set_state(conn, run_pk, state, now).await)
            .await
    }

    async fn delete_run(&self, run_pk: i64) -> Result<bool> {
        self.on_conn(async |conn| runs::delete(conn, run_pk).await)
            .await
    }

    async fn clean(&self, before: DateTime<Utc>, dry_run: bool) -> Result<crate::CleanReport> {
        self.scoped(clean::clean(&self.pool, before, dry_run)).await
    }

    async fn task_instances(&self, run_pk: i64) -> Result<Vec<TiRow>> {
        self.on_conn(async |conn| task_instances::of_run(conn, run_pk).await)
            .await
    }

    async fn task_instance(&self, key: &TiKey) -> Result<Option<TiRow>> {
        self.on_conn(async |conn| task_instances::one(conn, key).await)
            .await
    }

    async fn apply_transitions(
        &self,
        run_pk: i64,
        transitions: &[TiTransition],
        now: DateTime<Utc>,
    ) -> Result<usize> {
        self.scoped(task_instances::apply_transitions(
            &self.pool,
            run_pk,
            transitions,
            now,
        ))
        .await
    }

    async fn scheduled_task_instances(
        &self,
        limit: u32,
        offset: u32,
        skip: &crate::ScheduledSkip,
    ) -> Result<Vec<TiRow>> {
        self.on_conn(async |conn| task_instances::scheduled(conn, limit, offset, skip).await)
            .await
    }

    async fn active_counts(&self) -> Result<ActiveCounts> {
        self.on_conn(async |conn| task_instances::active_counts(conn).await)
            .await
    }

    async fn queue(
        &self,
        keys: &[TiKey],
        owner: i64,
        limits: &QueueLimits,
        now: DateTime<Utc>,
    ) -> Result<Vec<TiRow>> {
        self.scoped(scheduling::queue(&self.pool, keys, owner, limits, now))
            .await
    }

    async fn start_runs(&self, runs: &[(i64, u32)], now: DateTime<Utc>) -> Result<Vec<i64>> {
        self.scoped(scheduling::start_runs(&self.pool, runs, now))
            .await
    }

    async fn evaluate_runs(
        &self,
        run_pks: &[i64],
        decide: &(dyn for<'r> Fn(&'r RunRow, &'r [TiSnapshot]) -> RunDecision + Send + Sync),
        now: DateTime<Utc>,
    ) -> Result<Vec<(i64, Evaluated)>> {
        self.scoped(scheduling::evaluate_runs(&self.pool, run_pks, decide, now))
            .await
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
        self.scoped(scheduling::record_evaluate_and_queue(
            &self.pool, reports, hostname, run_pks, decide, queue, now,
        ))
        .await
    }

    async fn register_scheduler(
        &self,
        hostname: &str,
        pid: u32,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        self.on_conn(async |conn| jobs::register(conn, hostname, pid, now).await)
            .await
    }

    async fn heartbeat(&self, job_id: i64, now: DateTime<Utc>) -> Result<bool> {
        self.on_conn(async |conn| jobs::heartbeat(conn, job_id, now).await)
            .await
    }

    async fn stop_scheduler(&self, job_id: i64, now: DateTime<Utc>) -> Result<()> {
        self.on_conn(async |conn| jobs::stop(conn, job_id, now).await)
            .await
    }

    async fn reap_schedulers(
        &self,
        cutoff: DateTime<Utc>,
        except: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>> {
        self.on_conn(async |conn| jobs::reap(conn, cutoff, except, now).await)
            .await
    }

    async fn schedulers(&self, limit: u32) -> Result<Vec<SchedulerJobRow>> {
        self.on_conn(async |conn| jobs::all(conn, limit).await)
            .await
    }

    async fn mark_running(
        &self,
        key: &TiKey,
        try_number: u32,
        pid: Option<i64>,
        hostname: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.scoped(task_instances::mark_running(
            &self.pool, key, try_number, pid, hostname, now,
        ))
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
        self.scoped(task_instances::finish_try(
            &self.pool, key, try_number, new, retry_at, now,
        ))
        .await
    }

    async fn record_try_reports(
        &self,
        reports: &[crate::TryReport],
        hostname: &str,
    ) -> Result<Vec<bool>> {
        self.scoped(task_instances::record_reports(
            &self.pool, reports, hostname,
        ))
        .await
    }

    async fn set_ti_state(
        &self,
        key: &TiKey,
        state: TaskState,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.scoped(task_instances::set_state(&self.pool, key, state, now))
            .await
    }

    async fn clear(&self, run_pk: i64, task_ids: &[String], now: DateTime<Utc>) -> Result<usize> {
        self.scoped(task_instances::clear(&self.pool, run_pk, task_ids, now))
            .await
    }

    async fn tries(&self, key: &TiKey) -> Result<Vec<TryRow>> {
        self.on_conn(async |conn| task_instances::tries(conn, key).await)
            .await
    }

    async fn orphaned_task_instances(&self) -> Result<Vec<TiRow>> {
        self.on_conn(async |conn| task_instances::orphaned(conn).await)
            .await
    }

    async fn adopt_orphan(&self, key: &TiKey, try_number: u32, job_id: i64) -> Result<bool> {
        self.on_conn(async |conn| task_instances::adopt_orphan(conn, key, try_number, job_id).await)
            .await
    }

    async fn previous_run_states(
        &self,
        dag_id: &str,
        logical_date: DateTime<Utc>,
    ) -> Result<Option<HashMap<String, TaskState>>> {
        self.on_conn(async |conn| {
            task_instances::previous_run_states(conn, dag_id, logical_date).await
        })
        .await
    }

    async fn pools(&self) -> Result<Vec<PoolRow>> {
        self.on_conn(async |conn| pools::all(conn).await).await
    }

    async fn upsert_pool(&self, pool: &PoolRow) -> Result<()> {
        self.on_conn(async |conn| pools::upsert(conn, pool).await)
            .await
    }

    async fn delete_pool(&self, name: &str) -> Result<bool> {
        self.on_conn(async |conn| pools::delete(conn, name).await)
            .await
    }

    // ---- web UI ---------------------------------------------------------------------------

    async fn recent_runs(&self, dag_ids: &[String], per_dag: u32) -> Result<Vec<RunRow>> {
        self.on_conn(async |conn| ui::recent_runs(conn, dag_ids, per_dag).await)
            .await
    }

    async fn latest_scheduled_runs(&self, dag_ids: &[String]) -> Result<Vec<RunRow>> {
        self.on_conn(async |conn| ui::latest_scheduled_runs(conn, dag_ids).await)
            .await
    }

    async fn task_instances_of_runs(&self, run_pks: &[i64]) -> Result<Vec<TiRow>> {
        self.on_conn(async |conn| ui::task_instances_of_runs(conn, run_pks).await)
            .await
    }

    async fn tries_of_run(&self, run_pk: i64) -> Result<Vec<TryRow>> {
        self.on_conn(async |conn| ui::tries_of_run(conn, run_pk).await)
            .await
    }

    async fn dag_versions(&self, dag_id: &str) -> Result<Vec<crate::DagVersionRow>> {
        self.on_conn(async |conn| ui::dag_versions(conn, dag_id).await)
            .await
    }

    async fn run_changes_since(&self, after: i64, limit: u32) -> Result<Vec<crate::RunChange>> {
        self.on_conn(async |conn| ui::run_changes_since(conn, after, limit).await)
            .await
    }

    async fn latest_run_change(&self) -> Result<i64> {
        self.on_conn(async |conn| ui::latest_run_change(conn).await)
            .await
    }

    // ---- REST API -------------------------------------------------------------------------

    async fn dags_page(&self, query: &crate::DagQuery) -> Result<crate::Page<DagRow>> {
        self.on_conn(async |conn| api::dags_page(conn, query).await)
            .await
    }

    async fn runs_page(&self, query: &crate::RunQuery) -> Result<crate::Page<RunRow>> {
        self.on_conn(async |conn| api::runs_page(conn, query).await)
            .await
    }

    async fn task_instances_page(&self, query: &crate::TiQuery) -> Result<crate::Page<TiRow>> {
        self.on_conn(async |conn| api::task_instances_page(conn, query).await)
            .await
    }

    async fn import_errors_page(
        &self,
        query: &crate::ImportErrorQuery,
    ) -> Result<crate::Page<crate::ImportErrorRow>> {
        self.on_conn(async |conn| api::import_errors_page(conn, query).await)
            .await
    }

    async fn import_error(&self, id: i64) -> Result<Option<crate::ImportErrorRow>> {
        self.on_conn(async |conn| api::import_error(conn, id).await)
            .await
    }

    async fn mark_run(&self, run_pk: i64, state: RunState, now: DateTime<Utc>) -> Result<bool> {
        self.scoped(api::mark_run(&self.pool, run_pk, state, now))
            .await
    }

    async fn set_ti_states(
        &self,
        keys: &[TiKey],
        state: TaskState,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        self.scoped(api::set_ti_states(&self.pool, keys, state, now))
            .await
    }

    async fn create_pool(&self, pool: &PoolRow) -> Result<()> {
        self.on_conn(async |conn| api::create_pool(conn, pool).await)
            .await
    }

    async fn pool_usage(&self) -> Result<HashMap<String, crate::PoolUsage>> {
        self.on_conn(async |conn| api::pool_usage(conn).await).await
    }

    async fn set_note(&self, run_pk: i64, task_id: Option<&str>, note: Option<&str>) -> Result<()> {
        self.scoped(api::set_note(&self.pool, run_pk, task_id, note))
            .await
    }

    async fn notes(&self, run_pks: &[i64]) -> Result<Vec<crate::NoteRow>> {
        self.on_conn(async |conn| api::notes(conn, run_pks).await)
            .await
    }
}
