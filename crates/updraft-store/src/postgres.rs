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
//! job queued are its own until it is declared dead. See `scheduling` and `crate::sql::jobs`.
//!
//! Timestamps are BIGINT microseconds since the Unix epoch, UTC, as in the SQLite schema. Most
//! of the SQL is shared with SQLite (`crate::sql`), and the store's methods are written once
//! over `Backend`; kept here are the connections (the `Backend` impl, and `codec`: the
//! connection as a `Db`, honouring the statement-cache choice), the scheduler's critical sections
//! (`scheduling`), the batched statements of the hot path (`task_instances`) and the DAG sync
//! (`dags`).

use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Transaction;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, Postgres};
use updraft_dag::ImportError;

use crate::RunDecider;
use crate::backend::Backend;
use crate::health::{Engine, Health};

use crate::{
    Evaluated, LoadedDagRecord, QueueLimits, Result, TiKey, TiRow, TiTransition, TryReport,
};

mod codec;
mod dags;
mod scheduling;
mod task_instances;

use crate::sql;
use crate::sql::runs;

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
    /// across transactions. (Run [`crate::AdminStore::migrate`] on a direct or session-pooled
    /// connection: sqlx's migrator holds a session-level advisory lock.)
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
    health: Arc<Health>,
}

impl PgStore {
    /// Connect to the database at `url` (`postgres://user@host:port/db?...`) with the default
    /// options. The schema is not touched: call [`crate::AdminStore::migrate`] before use.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(PgConnectOptions::from_str(url)?, &PgStoreOptions::default()).await
    }

    /// Connect with explicit connection and store options.
    pub async fn connect_with(connect: PgConnectOptions, options: &PgStoreOptions) -> Result<Self> {
        let health = Arc::new(Health::new(
            Engine::Postgres,
            display(&connect),
            Health::postgres_recovery(),
        ));
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
            health,
        })
    }

    /// Run a call with this store's statement-cache choice.
    async fn scoped<T>(&self, call: impl Future<Output = T>) -> T {
        sql::PERSISTENT.scope(self.statement_cache, call).await
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

    /// Wait for in-flight work, then close every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The database as messages name it: `postgres://user@host:port/database`, no password.
fn display(connect: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        connect.get_username(),
        connect.get_host(),
        connect.get_port(),
        connect.get_database().unwrap_or_default()
    )
}

/// A connection from [`PgStore::conn`]; dropping it unfinished rolls a transaction back.
pub(crate) enum Conn {
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
impl Backend for PgStore {
    type Database = Postgres;
    type Conn = PgConnection;
    type Guard = Conn;

    fn health(&self) -> &Health {
        &self.health
    }

    fn statement_cache(&self) -> bool {
        self.statement_cache
    }

    async fn reader(&self) -> Result<Conn> {
        self.conn().await
    }

    async fn writer(&self) -> Result<Conn> {
        self.conn().await
    }

    async fn done(guard: Conn) -> Result<()> {
        guard.finish().await
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    async fn migrate(&self) -> Result<()> {
        // sqlx's migrator holds a PostgreSQL advisory lock (keyed on the database name) while
        // it checks and applies migrations, so processes migrating at once take turns.
        MIGRATOR.run(&self.pool).await?;
        tracing::debug!("PostgreSQL schema up to date");
        Ok(())
    }

    /// Nothing to do: PostgreSQL reports a damaged relation when it reads it (XX001,
    /// XX002), which the store turns into [`crate::StoreError::DatabaseCorrupt`].
    async fn check_integrity(&self) -> Result<()> {
        Ok(())
    }

    /// A transaction that takes a transaction id, so its commit writes to the WAL. Sent as a
    /// simple query (no prepared statement, fine behind PgBouncer).
    async fn probe_write(&self) -> Result<()> {
        sqlx::raw_sql("SELECT txid_current()")
            .execute(&self.pool)
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
        self.scoped(dags::sync(
            &self.pool,
            loaded,
            errors,
            paused_by_default,
            now,
        ))
        .await
    }

    async fn apply_transitions(
        &self,
        run_pk: i64,
        transitions: &[TiTransition],
        now: DateTime<Utc>,
    ) -> Result<usize> {
        self.scoped(async {
            let mut tx = self.pool.begin().await?;
            let applied =
                task_instances::apply_transitions_in(&mut tx, run_pk, transitions, now).await?;
            tx.commit().await?;
            Ok(applied)
        })
        .await
    }

    async fn record_try_reports(&self, reports: &[TryReport], hostname: &str) -> Result<Vec<bool>> {
        self.scoped(task_instances::record_reports(
            &self.pool, reports, hostname,
        ))
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
        decide: &dyn RunDecider,
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
        decide: &dyn RunDecider,
        queue: &crate::QueueStep<'_>,
        now: DateTime<Utc>,
    ) -> Result<crate::StepOutcome> {
        self.scoped(scheduling::record_evaluate_and_queue(
            &self.pool, reports, hostname, run_pks, decide, queue, now,
        ))
        .await
    }
}
