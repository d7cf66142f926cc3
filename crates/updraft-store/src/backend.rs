//! The [`crate::Store`] roles written once over a [`Backend`]: every method whose SQL reads the
//! same on both databases runs the shared statements of `crate::sql` on a connection the backend
//! hands out; the few whose SQL differs (the scheduler's critical sections, the batched statements
//! of the hot path, the DAG sync, migrations) are the backend's own.
//!
//! A new table therefore needs a migration per backend, its statements in `crate::sql`, and
//! its methods here, once.

use std::collections::HashMap;
use std::ops::DerefMut;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Transaction;
use updraft_auth::Grant;
use updraft_core::{RunState, TaskState};
use updraft_dag::{Dag, ImportError};

use crate::RunDecider;
use crate::api::Paging;
use crate::health::{Access, Health};
use crate::sql::{self, Db, codec};
use crate::{
    ActiveCounts, AdminStore, DagHead, DagQuery, DagRow, DagVersionRow, Evaluated,
    ImportErrorQuery, ImportErrorRow, LoadedDagRecord, NewRun, NewTi, NewestRunsFilter, NoteRow,
    OperatorStore, Page, PoolRow, PoolUsage, PurgeReport, QueueLimits, QueueStep, ReadStore,
    RescheduleRow, Result, RunChange, RunQuery, RunRow, ScheduledSkip, SchedulerJobRow,
    SchedulerStore, StepOutcome, StoreError, TiKey, TiQuery, TiRow, TiTransition, TryReport,
    TryRow,
};
use crate::{
    AssetEventQuery, AssetEventRow, AssetReference, AssetRow, AssetStore, NewAssetEvent,
    QueuedAssetEvent,
};
use crate::{
    ConnectionRow, EventQuery, EventRow, NewEvent, NewUser, Reencrypt, SecretQuery, SecretStore,
    SourceRow, SourceStore, UserRow, UserStore, VariableRow, WriteMode,
};
use crate::{TryXComs, XComQuery, XComRow, XComStore, XComWrite};

/// A database backend: its connections and transactions, and the store methods whose SQL is
/// its own.
#[async_trait]
pub(crate) trait Backend: Send + Sync {
    type Database: sqlx::Database<Connection = Self::Conn>;
    /// The connection the shared SQL runs on.
    type Conn: Db + sqlx::Connection + 'static;
    /// A connection for one call outside [`Backend::begin`], given back with [`Backend::done`].
    type Guard: DerefMut<Target = Self::Conn> + Send;

    /// What this store has met going wrong with its database.
    fn health(&self) -> &Health;

    /// Whether statements may be prepared by name and kept on their connection (see
    /// [`sql::PERSISTENT`]).
    fn statement_cache(&self) -> bool;

    /// A connection for reads.
    async fn reader(&self) -> Result<Self::Guard>;

    /// A connection for a write of one statement.
    async fn writer(&self) -> Result<Self::Guard>;

    /// The call on a [`Backend::reader`] or [`Backend::writer`] connection is over (on
    /// PostgreSQL without the statement cache, that commits its transaction).
    async fn done(guard: Self::Guard) -> Result<()>;

    /// A transaction for a write of several statements.
    async fn begin(&self) -> Result<Transaction<'static, Self::Database>>;

    /// [`AdminStore::migrate`].
    async fn migrate(&self) -> Result<()>;

    /// [`AdminStore::check_integrity`].
    async fn check_integrity(&self) -> Result<()>;

    /// One small write in its own transaction, changing nothing anyone reads, for
    /// [`AdminStore::write_failure`].
    async fn probe_write(&self) -> Result<()>;

    /// [`SchedulerStore::sync_dags`].
    async fn sync_dags(
        &self,
        loaded: &[LoadedDagRecord<'_>],
        errors: &[ImportError],
        paused_by_default: bool,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// [`SchedulerStore::apply_transitions`].
    async fn apply_transitions(
        &self,
        run_pk: i64,
        transitions: &[TiTransition],
        now: DateTime<Utc>,
    ) -> Result<usize>;

    /// [`SchedulerStore::record_try_reports`].
    async fn record_try_reports(&self, reports: &[TryReport], hostname: &str) -> Result<Vec<bool>>;

    /// [`SchedulerStore::queue`].
    async fn queue(
        &self,
        keys: &[TiKey],
        owner: i64,
        limits: &QueueLimits,
        now: DateTime<Utc>,
    ) -> Result<Vec<TiRow>>;

    /// [`SchedulerStore::start_runs`].
    async fn start_runs(&self, runs: &[(i64, u32)], now: DateTime<Utc>) -> Result<Vec<i64>>;

    /// [`SchedulerStore::evaluate_runs`].
    async fn evaluate_runs(
        &self,
        run_pks: &[i64],
        decide: &dyn RunDecider,
        now: DateTime<Utc>,
    ) -> Result<Vec<(i64, Evaluated)>>;

    /// [`SchedulerStore::record_evaluate_and_queue`]: one transaction, its locking the backend's own.
    async fn record_evaluate_and_queue(
        &self,
        reports: &[TryReport],
        hostname: &str,
        run_pks: &[i64],
        decide: &dyn RunDecider,
        queue: &QueueStep<'_>,
        now: DateTime<Utc>,
    ) -> Result<StepOutcome>;
}

/// Run `call` with the backend's statement-cache choice.
async fn scoped<B: Backend, T>(backend: &B, call: impl Future<Output = T>) -> T {
    sql::PERSISTENT.scope(backend.statement_cache(), call).await
}

/// Run `call` on a [`Backend::reader`] connection.
async fn read<B: Backend, T>(
    backend: &B,
    call: impl AsyncFnOnce(&mut B::Conn) -> Result<T>,
) -> Result<T> {
    on_guard(backend, false, call).await
}

/// Run `call` (one statement) on a [`Backend::writer`] connection.
async fn write<B: Backend, T>(
    backend: &B,
    call: impl AsyncFnOnce(&mut B::Conn) -> Result<T>,
) -> Result<T> {
    on_guard(backend, true, call).await
}

/// Run `call` on a reader or writer connection, then give it back.
async fn on_guard<B: Backend, T>(
    backend: &B,
    writer: bool,
    call: impl AsyncFnOnce(&mut B::Conn) -> Result<T>,
) -> Result<T> {
    let result = scoped(backend, async {
        let mut guard = if writer {
            backend.writer().await?
        } else {
            backend.reader().await?
        };
        let out = call(&mut guard).await?;
        B::done(guard).await?;
        Ok(out)
    })
    .await;
    let access = if writer { Access::Write } else { Access::Read };
    backend.health().observe(access, result)
}

/// Run `call` in a [`Backend::begin`] transaction, then commit.
async fn write_tx<B: Backend, T>(
    backend: &B,
    call: impl AsyncFnOnce(&mut B::Conn) -> Result<T>,
) -> Result<T> {
    let result = scoped(backend, async {
        let mut tx = backend.begin().await?;
        let out = call(&mut tx).await?;
        tx.commit().await?;
        Ok(out)
    })
    .await;
    backend.health().observe(Access::Write, result)
}

/// The outcome of one of the backend's own writes, observed (see [`Health::observe`]).
fn wrote<B: Backend, T>(backend: &B, result: Result<T>) -> Result<T> {
    backend.health().observe(Access::Write, result)
}

#[async_trait]
impl<B: Backend> SchedulerStore for B {
    async fn sync_dags(
        &self,
        loaded: &[LoadedDagRecord<'_>],
        errors: &[ImportError],
        paused_by_default: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        wrote(
            self,
            Backend::sync_dags(self, loaded, errors, paused_by_default, now).await,
        )
    }

    async fn dag_owners(&self) -> Result<HashMap<String, String>> {
        read(self, async |c| sql::dags::owners(c).await).await
    }

    async fn apply_transitions(
        &self,
        run_pk: i64,
        transitions: &[TiTransition],
        now: DateTime<Utc>,
    ) -> Result<usize> {
        wrote(
            self,
            Backend::apply_transitions(self, run_pk, transitions, now).await,
        )
    }

    async fn scheduled_task_instances(
        &self,
        limit: u32,
        offset: u32,
        skip: &ScheduledSkip,
    ) -> Result<Vec<TiRow>> {
        read(self, async |c| {
            sql::task_instances::scheduled(c, limit, offset, skip).await
        })
        .await
    }

    async fn queue(
        &self,
        keys: &[TiKey],
        owner: i64,
        limits: &QueueLimits,
        now: DateTime<Utc>,
    ) -> Result<Vec<TiRow>> {
        wrote(self, Backend::queue(self, keys, owner, limits, now).await)
    }

    async fn start_runs(&self, runs: &[(i64, u32)], now: DateTime<Utc>) -> Result<Vec<i64>> {
        wrote(self, Backend::start_runs(self, runs, now).await)
    }

    async fn evaluate_runs(
        &self,
        run_pks: &[i64],
        decide: &dyn RunDecider,
        now: DateTime<Utc>,
    ) -> Result<Vec<(i64, Evaluated)>> {
        wrote(
            self,
            Backend::evaluate_runs(self, run_pks, decide, now).await,
        )
    }

    async fn record_evaluate_and_queue(
        &self,
        reports: &[TryReport],
        hostname: &str,
        run_pks: &[i64],
        decide: &dyn RunDecider,
        queue: &QueueStep<'_>,
        now: DateTime<Utc>,
    ) -> Result<StepOutcome> {
        wrote(
            self,
            Backend::record_evaluate_and_queue(
                self, reports, hostname, run_pks, decide, queue, now,
            )
            .await,
        )
    }

    async fn register_scheduler(
        &self,
        hostname: &str,
        pid: u32,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        write(self, async |c| {
            sql::jobs::register(c, hostname, pid, now).await
        })
        .await
    }

    async fn heartbeat(&self, job_id: i64, now: DateTime<Utc>) -> Result<bool> {
        write(self, async |c| sql::jobs::heartbeat(c, job_id, now).await).await
    }

    async fn stop_scheduler(&self, job_id: i64, now: DateTime<Utc>) -> Result<()> {
        write(self, async |c| sql::jobs::stop(c, job_id, now).await).await
    }

    async fn reap_schedulers(
        &self,
        cutoff: DateTime<Utc>,
        except: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>> {
        write(self, async |c| {
            sql::jobs::reap(c, cutoff, except, now).await
        })
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
        write_tx(self, async |c| {
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
        write_tx(self, async |c| {
            sql::task_instances::finish_try_in(c, key, try_number, new, retry_at, now).await
        })
        .await
    }

    async fn time_out_run(
        &self,
        run_pk: i64,
        skip: fn(TaskState) -> bool,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<String>>> {
        write_tx(self, async |c| {
            sql::api::time_out_run(c, run_pk, skip, now).await
        })
        .await
    }

    async fn record_try_reports(&self, reports: &[TryReport], hostname: &str) -> Result<Vec<bool>> {
        wrote(
            self,
            Backend::record_try_reports(self, reports, hostname).await,
        )
    }

    async fn orphaned_task_instances(&self) -> Result<Vec<TiRow>> {
        read(self, async |c| sql::task_instances::orphaned(c).await).await
    }

    async fn adopt_orphan(&self, key: &TiKey, try_number: u32, job_id: i64) -> Result<bool> {
        write(self, async |c| {
            sql::task_instances::adopt_orphan(c, key, try_number, job_id).await
        })
        .await
    }

    async fn expand_task(&self, run_pk: i64, task_id: &str, count: u32) -> Result<bool> {
        write_tx(self, async |c| {
            if !sql::runs::lock(c, run_pk).await? {
                return Ok(false);
            }
            sql::task_instances::expand(c, run_pk, task_id, count).await
        })
        .await
    }

    async fn previous_run_states(
        &self,
        dag_id: &str,
        logical_date: DateTime<Utc>,
    ) -> Result<Option<HashMap<String, TaskState>>> {
        read(self, async |c| {
            sql::task_instances::previous_run_states(c, dag_id, logical_date).await
        })
        .await
    }
}

#[async_trait]
impl<B: Backend> ReadStore for B {
    async fn dags(&self) -> Result<Vec<DagRow>> {
        read(self, async |c| sql::dags::all(c).await).await
    }

    async fn dag_heads(&self) -> Result<Vec<DagHead>> {
        read(self, async |c| sql::dags::heads(c).await).await
    }

    async fn dag(&self, dag_id: &str) -> Result<Option<DagRow>> {
        read(self, async |c| sql::dags::one(c, dag_id).await).await
    }

    async fn dag_version(&self, dag_id: &str, version: &str) -> Result<Option<Dag>> {
        read(self, async |c| sql::dags::version(c, dag_id, version).await).await
    }

    async fn dag_source(&self, dag_id: &str, version: &str) -> Result<Option<String>> {
        read(self, async |c| sql::dags::source(c, dag_id, version).await).await
    }

    async fn import_errors(&self) -> Result<Vec<ImportError>> {
        read(self, async |c| sql::dags::import_errors(c).await).await
    }

    async fn run(&self, dag_id: &str, run_id: &str) -> Result<Option<RunRow>> {
        read(self, async |c| {
            sql::runs::by_run_id(c, dag_id, run_id).await
        })
        .await
    }

    async fn run_by_pk(&self, run_pk: i64) -> Result<Option<RunRow>> {
        read(self, async |c| sql::runs::by_pk(c, run_pk).await).await
    }

    async fn newest_runs(&self, filter: &NewestRunsFilter) -> Result<Vec<RunRow>> {
        read(self, async |c| sql::runs::filtered(c, filter).await).await
    }

    async fn latest_scheduled_run(&self, dag_id: &str) -> Result<Option<RunRow>> {
        read(self, async |c| sql::runs::latest_scheduled(c, dag_id).await).await
    }

    async fn task_instances(&self, run_pk: i64) -> Result<Vec<TiRow>> {
        read(self, async |c| sql::task_instances::of_run(c, run_pk).await).await
    }

    async fn task_instance(&self, key: &TiKey) -> Result<Option<TiRow>> {
        read(self, async |c| sql::task_instances::one(c, key).await).await
    }

    async fn active_counts(&self) -> Result<ActiveCounts> {
        read(self, async |c| sql::task_instances::active_counts(c).await).await
    }

    async fn tries(&self, key: &TiKey) -> Result<Vec<TryRow>> {
        read(self, async |c| sql::task_instances::tries(c, key).await).await
    }

    async fn reschedules(&self, key: &TiKey, try_number: u32) -> Result<Vec<RescheduleRow>> {
        read(self, async |c| {
            sql::reschedules::of_try(c, key, try_number).await
        })
        .await
    }

    async fn external_state(
        &self,
        tenant: &str,
        dag_id: &str,
        logical_date: DateTime<Utc>,
        task_id: Option<&str>,
    ) -> Result<Option<String>> {
        read(self, async |c| {
            sql::reschedules::external_state(c, tenant, dag_id, logical_date, task_id).await
        })
        .await
    }

    async fn pools(&self) -> Result<Vec<PoolRow>> {
        read(self, async |c| sql::pools::all(c).await).await
    }

    async fn recent_runs(&self, dag_ids: &[String], per_dag: u32) -> Result<Vec<RunRow>> {
        read(self, async |c| {
            sql::ui::recent_runs(c, dag_ids, per_dag).await
        })
        .await
    }

    async fn latest_scheduled_runs(&self, dag_ids: &[String]) -> Result<Vec<RunRow>> {
        read(self, async |c| {
            sql::ui::latest_scheduled_runs(c, dag_ids).await
        })
        .await
    }

    async fn task_instances_of_runs(&self, run_pks: &[i64]) -> Result<Vec<TiRow>> {
        read(self, async |c| {
            sql::ui::task_instances_of_runs(c, run_pks).await
        })
        .await
    }

    async fn task_instances_of_runs_for_tasks(
        &self,
        run_pks: &[i64],
        task_ids: &[String],
    ) -> Result<Vec<TiRow>> {
        read(self, async |c| {
            sql::ui::task_instances_of_runs_for_tasks(c, run_pks, task_ids).await
        })
        .await
    }

    async fn tries_of_run(&self, run_pk: i64) -> Result<Vec<TryRow>> {
        read(self, async |c| sql::ui::tries_of_run(c, run_pk).await).await
    }

    async fn dag_versions(&self, dag_id: &str) -> Result<Vec<DagVersionRow>> {
        read(self, async |c| sql::ui::dag_versions(c, dag_id).await).await
    }

    async fn run_changes_since(&self, after: i64, limit: u32) -> Result<Vec<RunChange>> {
        read(self, async |c| {
            sql::ui::run_changes_since(c, after, limit).await
        })
        .await
    }

    async fn latest_run_change(&self) -> Result<i64> {
        read(self, async |c| sql::ui::latest_run_change(c).await).await
    }

    async fn dags_page(&self, query: &DagQuery) -> Result<Page<DagRow>> {
        read(self, async |c| sql::api::dags_page(c, query).await).await
    }

    async fn runs_page(&self, query: &RunQuery) -> Result<Page<RunRow>> {
        read(self, async |c| sql::api::runs_page(c, query).await).await
    }

    async fn task_instances_page(&self, query: &TiQuery) -> Result<Page<TiRow>> {
        read(self, async |c| {
            sql::api::task_instances_page(c, query).await
        })
        .await
    }

    async fn import_errors_page(&self, query: &ImportErrorQuery) -> Result<Page<ImportErrorRow>> {
        read(self, async |c| sql::api::import_errors_page(c, query).await).await
    }

    async fn import_error(&self, id: i64) -> Result<Option<ImportErrorRow>> {
        read(self, async |c| sql::api::import_error(c, id).await).await
    }

    async fn pool_usage(&self) -> Result<HashMap<String, PoolUsage>> {
        read(self, async |c| sql::api::pool_usage(c).await).await
    }

    async fn notes(&self, run_pks: &[i64]) -> Result<Vec<NoteRow>> {
        read(self, async |c| sql::api::notes(c, run_pks).await).await
    }
}

#[async_trait]
impl<B: Backend> OperatorStore for B {
    async fn set_paused(&self, dag_id: &str, paused: bool) -> Result<bool> {
        write(self, async |c| {
            sql::dags::set_paused(c, dag_id, paused).await
        })
        .await
    }

    async fn create_run(&self, run: &NewRun, tis: &[NewTi], now: DateTime<Utc>) -> Result<RunRow> {
        write_tx(self, async |c| sql::runs::create(c, run, tis, now).await).await
    }

    async fn force_run_state(
        &self,
        run_pk: i64,
        state: RunState,
        now: DateTime<Utc>,
    ) -> Result<()> {
        write(self, async |c| {
            sql::runs::set_state(c, run_pk, state, now).await
        })
        .await
    }

    async fn delete_run(&self, run_pk: i64) -> Result<bool> {
        write(self, async |c| sql::runs::delete(c, run_pk).await).await
    }

    async fn force_ti_state(
        &self,
        key: &TiKey,
        state: TaskState,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        write_tx(self, async |c| {
            sql::task_instances::set_state_in(c, key, state, now).await
        })
        .await
    }

    async fn clear_task_instances(
        &self,
        run_pk: i64,
        task_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<usize> {
        write_tx(self, async |c| {
            sql::task_instances::clear(c, run_pk, task_ids, now).await
        })
        .await
    }

    async fn upsert_pool(&self, pool: &PoolRow) -> Result<()> {
        write(self, async |c| sql::pools::upsert(c, pool).await).await
    }

    async fn delete_pool(&self, name: &str) -> Result<bool> {
        write(self, async |c| sql::pools::delete(c, name).await).await
    }

    async fn mark_run_and_instances(
        &self,
        run_pk: i64,
        state: RunState,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        write_tx(self, async |c| {
            sql::api::mark_run_and_instances(c, run_pk, state, now).await
        })
        .await
    }

    async fn force_ti_states(
        &self,
        keys: &[TiKey],
        state: TaskState,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        write_tx(self, async |c| {
            sql::api::force_ti_states(c, keys, state, now).await
        })
        .await
    }

    async fn create_pool(&self, pool: &PoolRow) -> Result<()> {
        write(self, async |c| sql::pools::create(c, pool).await).await
    }

    async fn set_note(&self, run_pk: i64, task_id: Option<&str>, note: Option<&str>) -> Result<()> {
        write_tx(self, async |c| {
            sql::api::set_note(c, run_pk, task_id, note).await
        })
        .await
    }
}

#[async_trait]
impl<B: Backend> AdminStore for B {
    async fn migrate(&self) -> Result<()> {
        wrote(self, Backend::migrate(self).await)
    }

    async fn purge_history(&self, before: DateTime<Utc>, dry_run: bool) -> Result<PurgeReport> {
        let result = scoped(self, async {
            let mut tx = self.begin().await?;
            let report = sql::purge::delete_all(&mut *tx, codec::ts(before)).await?;
            if dry_run {
                tx.rollback().await?;
            } else {
                tx.commit().await?;
            }
            Ok(report)
        })
        .await;
        wrote(self, result)
    }

    async fn schedulers(&self, limit: u32) -> Result<Vec<SchedulerJobRow>> {
        read(self, async |c| sql::jobs::all(c, limit).await).await
    }

    async fn check_integrity(&self) -> Result<()> {
        let result = Backend::check_integrity(self).await;
        self.health().observe(Access::Read, result)
    }

    async fn write_failure(&self) -> Option<String> {
        let probe = async { wrote(self, Backend::probe_write(self).await) };
        self.health().write_failure(probe).await
    }

    async fn corruption_found(&self) -> StoreError {
        self.health().corruption_found().await
    }
}

#[async_trait]
impl<B: Backend> UserStore for B {
    async fn create_user(&self, user: &NewUser, grants: &[Grant]) -> Result<()> {
        write_tx(self, async |c| {
            sql::users::insert(c, user, Utc::now()).await?;
            for grant in grants {
                sql::users::add_grant(c, &user.username, grant).await?;
            }
            Ok(())
        })
        .await
    }

    async fn sync_external_user(&self, user: &NewUser, grants: &[Grant]) -> Result<UserRow> {
        write_tx(self, async |c| {
            sql::users::upsert_external(c, user, Utc::now()).await?;
            sql::users::remove_all_grants(c, &user.username).await?;
            for grant in grants {
                sql::users::add_grant(c, &user.username, grant).await?;
            }
            sql::users::one(c, &user.username)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("user {}", user.username)))
        })
        .await
    }

    async fn user(&self, username: &str) -> Result<Option<UserRow>> {
        read(self, async |c| sql::users::one(c, username).await).await
    }

    async fn users(&self) -> Result<Vec<UserRow>> {
        read(self, async |c| sql::users::all(c).await).await
    }

    async fn delete_user(&self, username: &str) -> Result<bool> {
        write(self, async |c| sql::users::delete(c, username).await).await
    }

    async fn add_grant(&self, username: &str, grant: &Grant) -> Result<bool> {
        write_tx(self, async |c| {
            sql::users::require(c, username).await?;
            sql::users::add_grant(c, username, grant).await
        })
        .await
    }

    async fn remove_grant(&self, username: &str, grant: &Grant) -> Result<bool> {
        write_tx(self, async |c| {
            sql::users::require(c, username).await?;
            sql::users::remove_grant(c, username, grant).await
        })
        .await
    }

    async fn set_password_hash(&self, username: &str, password_hash: &str) -> Result<()> {
        write(self, async |c| {
            sql::users::set_password_hash(c, username, password_hash).await
        })
        .await
    }

    async fn record_login(&self, username: &str, at: DateTime<Utc>) -> Result<()> {
        write(self, async |c| {
            sql::users::record_login(c, username, at).await
        })
        .await
    }

    async fn record_event(&self, event: &NewEvent) -> Result<i64> {
        write(self, async |c| {
            sql::users::record_event(c, event, Utc::now()).await
        })
        .await
    }

    async fn events(&self, query: &EventQuery) -> Result<(Vec<EventRow>, u64)> {
        read(self, async |c| sql::users::events(c, query).await).await
    }
}

#[async_trait]
impl<B: Backend> SecretStore for B {
    async fn connection(
        &self,
        tenant: Option<&str>,
        conn_id: &str,
    ) -> Result<Option<ConnectionRow>> {
        read(self, async |c| {
            sql::secrets::connection(c, tenant, conn_id).await
        })
        .await
    }

    async fn connections(&self, query: &SecretQuery) -> Result<(Vec<ConnectionRow>, u64)> {
        read(self, async |c| sql::secrets::connections(c, query).await).await
    }

    async fn write_connection(&self, row: &ConnectionRow, mode: WriteMode) -> Result<()> {
        write(self, async |c| {
            sql::secrets::write_connection(c, row, mode).await
        })
        .await
    }

    async fn delete_connection(&self, tenant: Option<&str>, conn_id: &str) -> Result<bool> {
        write(self, async |c| {
            sql::secrets::delete_connection(c, tenant, conn_id).await
        })
        .await
    }

    async fn variable(&self, tenant: Option<&str>, key: &str) -> Result<Option<VariableRow>> {
        read(self, async |c| sql::secrets::variable(c, tenant, key).await).await
    }

    async fn variables(&self, query: &SecretQuery) -> Result<(Vec<VariableRow>, u64)> {
        read(self, async |c| sql::secrets::variables(c, query).await).await
    }

    async fn write_variable(&self, row: &VariableRow, mode: WriteMode) -> Result<()> {
        write(self, async |c| {
            sql::secrets::write_variable(c, row, mode).await
        })
        .await
    }

    async fn delete_variable(&self, tenant: Option<&str>, key: &str) -> Result<bool> {
        write(self, async |c| {
            sql::secrets::delete_variable(c, tenant, key).await
        })
        .await
    }

    async fn reencrypt(&self, reencrypt: &Reencrypt<'_>) -> Result<u64> {
        write_tx(self, async |c| sql::secrets::reencrypt(c, reencrypt).await).await
    }
}

#[async_trait]
impl<B: Backend> SourceStore for B {
    async fn record_source(&self, source: &SourceRow) -> Result<()> {
        write(self, async |c| sql::sources::record(c, source).await).await
    }

    async fn sources(&self) -> Result<Vec<SourceRow>> {
        read(self, async |c| sql::sources::all(c).await).await
    }

    async fn source(&self, name: &str) -> Result<Option<SourceRow>> {
        read(self, async |c| sql::sources::one(c, name).await).await
    }

    async fn request_source_sync(&self, name: &str, now: DateTime<Utc>) -> Result<bool> {
        write(self, async |c| {
            sql::sources::request_sync(c, name, now).await
        })
        .await
    }

    async fn take_source_sync_requests(&self) -> Result<Vec<String>> {
        write(self, async |c| sql::sources::take_requests(c).await).await
    }
}

#[async_trait]
impl<B: Backend> XComStore for B {
    async fn record_xcoms(&self, tries: &[TryXComs], now: DateTime<Utc>) -> Result<Vec<bool>> {
        if tries.is_empty() {
            return Ok(Vec::new());
        }
        write_tx(self, async |c| {
            let mut recorded = Vec::with_capacity(tries.len());
            for pushed in tries {
                recorded.push(sql::xcom::record(c, pushed, now).await?);
            }
            Ok(recorded)
        })
        .await
    }

    async fn xcoms(&self, query: &XComQuery) -> Result<(Vec<XComRow>, u64)> {
        read(self, async |c| sql::xcom::page(c, query).await).await
    }

    async fn write_xcom(
        &self,
        xcom: &XComWrite<'_>,
        mode: WriteMode,
        now: DateTime<Utc>,
    ) -> Result<XComRow> {
        write_tx(self, async |c| sql::xcom::write(c, xcom, mode, now).await).await
    }
}

#[async_trait]
impl<B: Backend> AssetStore for B {
    async fn record_asset_events(&self, events: &[NewAssetEvent]) -> Result<Vec<AssetEventRow>> {
        write_tx(self, async |c| sql::assets::record_events(c, events).await).await
    }

    async fn replace_asset_references(
        &self,
        references: &[AssetReference],
        now: DateTime<Utc>,
    ) -> Result<()> {
        write_tx(self, async |c| {
            sql::assets::replace_references(c, references, now).await
        })
        .await
    }

    async fn asset_references(&self) -> Result<Vec<AssetReference>> {
        read(self, async |c| sql::assets::references(c).await).await
    }

    async fn queued_asset_events(&self) -> Result<Vec<QueuedAssetEvent>> {
        read(self, async |c| sql::assets::queued(c).await).await
    }

    async fn create_asset_triggered_run(
        &self,
        run: &NewRun,
        tis: &[NewTi],
        consumed: &[i64],
        now: DateTime<Utc>,
    ) -> Result<Option<RunRow>> {
        let result = scoped(self, async {
            let mut tx = self.begin().await?;
            let created =
                sql::assets::create_triggered_run(&mut *tx, run, tis, consumed, now).await?;
            match created {
                Some(row) => {
                    tx.commit().await?;
                    Ok(Some(row))
                }
                None => {
                    tx.rollback().await?;
                    Ok(None)
                }
            }
        })
        .await;
        wrote(self, result)
    }

    async fn assets(
        &self,
        tenants: Option<&[String]>,
        paging: &Paging,
    ) -> Result<(Vec<AssetRow>, u64)> {
        read(self, async |c| {
            sql::assets::assets(c, tenants, paging).await
        })
        .await
    }

    async fn asset(&self, id: i64) -> Result<Option<AssetRow>> {
        read(self, async |c| sql::assets::asset(c, id).await).await
    }

    async fn asset_events(&self, query: &AssetEventQuery) -> Result<(Vec<AssetEventRow>, u64)> {
        read(self, async |c| sql::assets::events(c, query).await).await
    }

    async fn consumed_asset_events(&self, run_pk: i64) -> Result<Vec<AssetEventRow>> {
        read(self, async |c| sql::assets::consumed(c, run_pk).await).await
    }
}
