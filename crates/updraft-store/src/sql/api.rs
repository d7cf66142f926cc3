//! The REST API's queries: paged, filtered, counted listings (each one `COUNT` and one page
//! `SELECT` over the same filters), marking runs, notes and pool usage.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use updraft_core::{RunState, TaskState};

use super::codec::{self, StoreRow, run_columns, ti_columns};
use super::{Arg, Db, Dialect, Query, query, runs, task_instances};
use crate::{
    DagOrder, DagQuery, DagRow, ImportErrorOrder, ImportErrorQuery, ImportErrorRow, NoteRow, Page,
    Paging, PoolUsage, Result, RunOrder, RunQuery, RunRow, StoreError, TiKey, TiOrder, TiQuery,
    TiRow, TimeRange,
};

/// A listing's filters appended to a statement, for a dialect.
pub(crate) struct Filters<'q> {
    qb: &'q mut Query,
    dialect: Dialect,
}

impl Filters<'_> {
    /// `AND <column> IN (<values>)`, the values bound once as a list.
    pub(crate) fn push_in(&mut self, column: &str, values: impl IntoIterator<Item = String>) {
        let sql = self.dialect.in_texts(column, self.qb.next_param());
        self.qb
            .push(" AND ")
            .push(&sql)
            .args
            .push(Arg::Texts(values.into_iter().collect()));
    }

    pub(crate) fn push_tenants(&mut self, column: &str, tenants: &Option<Vec<String>>) {
        if let Some(tenants) = tenants {
            self.push_in(column, tenants.iter().cloned());
        }
    }

    /// Airflow's `*_pattern` filters: a case-insensitive `LIKE '%pattern%'`.
    fn push_like(&mut self, column: &str, pattern: &Option<String>) {
        if let Some(pattern) = pattern {
            let like = self.dialect.ilike();
            self.qb
                .push(&format!(" AND {column} {like} '%' || "))
                .push_bind(pattern)
                .push(" || '%'");
        }
    }

    fn push_range(&mut self, column: &str, range: &TimeRange) {
        for (op, bound) in [
            (">=", range.gte),
            (">", range.gt),
            ("<=", range.lte),
            ("<", range.lt),
        ] {
            if let Some(t) = bound {
                self.qb.push(&format!(" AND {column} {op} ")).push_bind(t);
            }
        }
    }

    pub(crate) fn push_eq(&mut self, column: &str, value: impl Into<Arg>) {
        self.qb.push(&format!(" AND {column} = ")).push_bind(value);
    }
}

/// How a listing is sorted: its column, then its tie breaks, all in one direction.
pub(crate) struct Order<'a> {
    pub column: &'a str,
    pub tie_breaks: &'a [&'a str],
    pub descending: bool,
}

fn push_order(qb: &mut Query, dialect: Dialect, order: &Order<'_>) {
    let dir = if order.descending { "DESC" } else { "ASC" };
    // NULLs sort as the smallest values either way, as SQLite sorts them.
    let nulls = dialect.nulls_smallest(order.descending);
    qb.push(&format!(" ORDER BY {} {dir}{nulls}", order.column));
    for tie_break in order.tie_breaks {
        qb.push(&format!(", {tie_break} {dir}"));
    }
}

fn push_paging(qb: &mut Query, dialect: Dialect, paging: &Paging) {
    qb.push(" LIMIT ")
        .push_bind(dialect.limit(paging.limit))
        .push(" OFFSET ")
        .push_bind(i64::try_from(paging.offset).unwrap_or(i64::MAX));
}

/// One page of a listing: `SELECT COUNT(*)` and `SELECT <columns>` from `from` (which ends in
/// a `WHERE`), both narrowed by `filters`; the page sorted by `order`.
pub(crate) async fn page<C: Db + ?Sized, T>(
    conn: &mut C,
    columns: &str,
    from: &str,
    filters: impl Fn(&mut Filters<'_>),
    order: Order<'_>,
    paging: &Paging,
    row: fn(&C::Row) -> Result<T>,
) -> Result<Page<T>> {
    let dialect = C::DIALECT;
    let mut counted = query(format!("SELECT COUNT(*) AS n{from}"));
    filters(&mut Filters {
        qb: &mut counted,
        dialect,
    });
    let n = counted.fetch_one(&mut *conn).await?.int("n")?;
    let mut qb = query(format!("SELECT {columns}{from}"));
    filters(&mut Filters {
        qb: &mut qb,
        dialect,
    });
    push_order(&mut qb, dialect, &order);
    push_paging(&mut qb, dialect, paging);
    let rows = qb.fetch_all(conn).await?;
    Ok(Page {
        items: codec::all(&rows, row)?,
        total: u64::try_from(n).unwrap_or(0),
    })
}

// ---- DAGs ---------------------------------------------------------------------------------

/// How many of `$tags` the DAG's definition (`v.definition`, JSON text) carries.
fn tags_matched(dialect: Dialect, tags: usize) -> String {
    match dialect {
        Dialect::Sqlite => format!(
            "(SELECT COUNT(DISTINCT t.value) FROM json_each(v.definition, '$.tags') AS t
              WHERE t.value IN (SELECT value FROM json_each(${tags})))"
        ),
        Dialect::Postgres => format!(
            "(SELECT COUNT(DISTINCT t.value)
              FROM jsonb_array_elements_text(v.definition::jsonb -> 'tags') AS t(value)
              WHERE t.value = ANY(${tags}::text[]))"
        ),
    }
}

fn dag_filters(f: &mut Filters<'_>, q: &DagQuery) {
    f.push_tenants("d.tenant", &q.tenants);
    f.push_like("d.dag_id", &q.dag_id_pattern);
    if let Some(paused) = q.paused {
        f.push_eq("d.is_paused", paused);
    }
    if let Some(active) = q.active {
        f.push_eq("d.is_active", active);
    }
    if !q.tags.is_empty() {
        let mut tags = q.tags.clone();
        tags.sort_unstable();
        tags.dedup();
        let count = tags.len() as i64;
        let matched = tags_matched(f.dialect, f.qb.next_param());
        f.qb.push(" AND ")
            .push(&matched)
            .args
            .push(Arg::Texts(tags));
        if q.all_tags {
            f.qb.push(" = ").push_bind(count);
        } else {
            f.qb.push(" > 0");
        }
    }
}

const DAG_FROM: &str =
    " FROM dag d JOIN dag_version v ON v.dag_id = d.dag_id AND v.version = d.version WHERE 1 = 1";

pub(crate) async fn dags_page<C: Db + ?Sized>(conn: &mut C, q: &DagQuery) -> Result<Page<DagRow>> {
    let column = match q.order_by {
        DagOrder::DagId => "d.dag_id",
        DagOrder::IsPaused => "d.is_paused",
        DagOrder::LastParsedAt => "d.last_parsed_at",
        DagOrder::Fileloc => "d.fileloc",
        DagOrder::Tenant => "d.tenant",
    };
    let order = Order {
        column,
        tie_breaks: &["d.dag_id"],
        descending: q.descending,
    };
    page(
        conn,
        "d.version, d.is_paused, d.is_active, d.last_parsed_at, d.bundle_name, d.bundle_version, v.definition",
        DAG_FROM,
        |f| dag_filters(f, q),
        order,
        &q.paging,
        codec::dag_row,
    )
    .await
}

// ---- runs ---------------------------------------------------------------------------------

fn run_filters(f: &mut Filters<'_>, q: &RunQuery) {
    if let Some(dag_id) = &q.dag_id {
        f.push_eq("dag_id", dag_id);
    }
    f.push_tenants("tenant", &q.tenants);
    if !q.states.is_empty() {
        f.push_in("state", q.states.iter().map(|s| s.as_str().to_owned()));
    }
    if !q.run_types.is_empty() {
        f.push_in(
            "run_type",
            q.run_types.iter().map(|s| s.as_str().to_owned()),
        );
    }
    f.push_like("run_id", &q.run_id_pattern);
    f.push_range("logical_date", &q.logical_date);
    f.push_range("start_date", &q.start_date);
    f.push_range("end_date", &q.end_date);
}

pub(crate) async fn runs_page<C: Db + ?Sized>(conn: &mut C, q: &RunQuery) -> Result<Page<RunRow>> {
    let column = match q.order_by {
        RunOrder::Id => "id",
        RunOrder::DagId => "dag_id",
        RunOrder::RunId => "run_id",
        RunOrder::State => "state",
        RunOrder::RunType => "run_type",
        RunOrder::LogicalDate => "logical_date",
        RunOrder::DataIntervalStart => "data_interval_start",
        RunOrder::DataIntervalEnd => "data_interval_end",
        RunOrder::QueuedAt => "queued_at",
        RunOrder::StartDate => "start_date",
        RunOrder::EndDate => "end_date",
    };
    let order = Order {
        column,
        tie_breaks: &["id"],
        descending: q.descending,
    };
    page(
        conn,
        run_columns!(),
        " FROM dag_run WHERE 1 = 1",
        |f| run_filters(f, q),
        order,
        &q.paging,
        codec::run_row,
    )
    .await
}

// ---- task instances -----------------------------------------------------------------------

fn ti_filters(f: &mut Filters<'_>, q: &TiQuery) {
    if let Some(run_pk) = q.run_pk {
        f.push_eq("run_pk", run_pk);
    }
    if let Some(run_id) = &q.run_id {
        f.push_eq("run_id", run_id);
    }
    if let Some(dag_id) = &q.dag_id {
        // Through dag_run's (dag_id, ...) indexes, then task_instance's primary key.
        f.qb.push(" AND run_pk IN (SELECT id FROM dag_run WHERE dag_id = ")
            .push_bind(dag_id)
            .push(")");
    }
    f.push_tenants("tenant", &q.tenants);
    if !q.task_ids.is_empty() {
        f.push_in("task_id", q.task_ids.iter().cloned());
    }
    if let Some(map_index) = q.map_index {
        f.qb.push(" AND map_index = ").push_bind(map_index);
    }
    if !q.states.is_empty() {
        f.push_in("state", q.states.iter().map(|s| s.as_str().to_owned()));
    }
    if !q.pools.is_empty() {
        f.push_in("pool", q.pools.iter().cloned());
    }
    f.push_range("logical_date", &q.logical_date);
    f.push_range("start_date", &q.start_date);
    f.push_range("end_date", &q.end_date);
}

pub(crate) async fn task_instances_page<C: Db + ?Sized>(
    conn: &mut C,
    q: &TiQuery,
) -> Result<Page<TiRow>> {
    let column = match q.order_by {
        TiOrder::Run => "run_pk",
        TiOrder::DagId => "dag_id",
        TiOrder::RunId => "run_id",
        TiOrder::TaskId => "task_id",
        TiOrder::State => "state",
        TiOrder::TryNumber => "try_number",
        TiOrder::Pool => "pool",
        TiOrder::PriorityWeight => "priority_weight",
        TiOrder::LogicalDate => "logical_date",
        TiOrder::QueuedAt => "queued_at",
        TiOrder::StartDate => "start_date",
        TiOrder::EndDate => "end_date",
    };
    let order = Order {
        column,
        tie_breaks: &["run_pk", "task_id", "map_index"],
        descending: q.descending,
    };
    page(
        conn,
        ti_columns!(),
        " FROM task_instance WHERE 1 = 1",
        |f| ti_filters(f, q),
        order,
        &q.paging,
        codec::ti_row,
    )
    .await
}

// ---- import errors ------------------------------------------------------------------------

const IMPORT_ERROR_COLUMNS: &str = "id, tenant, filename, line, col, message, created_at";
const IMPORT_ERROR_FROM: &str = " FROM import_error WHERE 1 = 1";

fn import_error_row<R: StoreRow>(row: &R) -> Result<ImportErrorRow> {
    Ok(ImportErrorRow {
        id: row.int("id")?,
        error: codec::import_error_row(row)?,
        timestamp: codec::time_col(row, "created_at")?,
    })
}

fn import_error_filters(f: &mut Filters<'_>, q: &ImportErrorQuery) {
    f.push_tenants("tenant", &q.tenants);
    f.push_like("filename", &q.filename_pattern);
}

pub(crate) async fn import_errors_page<C: Db + ?Sized>(
    conn: &mut C,
    q: &ImportErrorQuery,
) -> Result<Page<ImportErrorRow>> {
    let column = match q.order_by {
        ImportErrorOrder::Position => "position",
        ImportErrorOrder::Id => "id",
        ImportErrorOrder::Filename => "filename",
        ImportErrorOrder::Timestamp => "created_at",
    };
    let order = Order {
        column,
        tie_breaks: &["id"],
        descending: q.descending,
    };
    page(
        conn,
        IMPORT_ERROR_COLUMNS,
        IMPORT_ERROR_FROM,
        |f| import_error_filters(f, q),
        order,
        &q.paging,
        import_error_row,
    )
    .await
}

pub(crate) async fn import_error<C: Db + ?Sized>(
    conn: &mut C,
    id: i64,
) -> Result<Option<ImportErrorRow>> {
    let row = query(format!(
        "SELECT {IMPORT_ERROR_COLUMNS}{IMPORT_ERROR_FROM} AND id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(import_error_row).transpose()
}

// ---- writes -------------------------------------------------------------------------------

/// In the caller's transaction; false when the run does not exist. The run's row is locked
/// first, then its instances (see [`runs::lock`]).
pub(crate) async fn mark_run_and_instances<C: Db + ?Sized>(
    conn: &mut C,
    run_pk: i64,
    state: RunState,
    now: DateTime<Utc>,
) -> Result<bool> {
    if !runs::lock(conn, run_pk).await? {
        return Ok(false);
    }
    let sql = format!(
        "SELECT task_id, map_index, state FROM task_instance WHERE run_pk = $1
         ORDER BY task_id, map_index{}",
        C::DIALECT.for_update()
    );
    let rows = query(sql).bind(run_pk).fetch_all(&mut *conn).await?;
    for row in &rows {
        let current: TaskState = codec::enum_col(row, "state")?;
        let new = match state {
            RunState::Success if current != TaskState::Success => Some(TaskState::Success),
            RunState::Failed if current == TaskState::Running => Some(TaskState::Failed),
            RunState::Failed if !current.is_terminal() => Some(TaskState::Skipped),
            _ => None,
        };
        if let Some(new) = new {
            let key = TiKey {
                run_pk,
                task_id: row.text("task_id")?,
                map_index: codec::map_index_col(row)?,
            };
            task_instances::set_state_in(conn, &key, new, now).await?;
        }
    }
    runs::set_state(conn, run_pk, state, now).await?;
    Ok(true)
}

/// A running run that timed out: `failed`, each instance `skip` picks set `skipped` (live
/// tries ended in the history). `None` when the run is not running; else the tasks whose
/// instance was queued or running, whose tries are to be stopped.
pub(crate) async fn time_out_run<C: Db + ?Sized>(
    conn: &mut C,
    run_pk: i64,
    skip: fn(TaskState) -> bool,
    now: DateTime<Utc>,
) -> Result<Option<Vec<String>>> {
    let sql = format!(
        "SELECT state FROM dag_run WHERE id = $1{}",
        C::DIALECT.for_update()
    );
    let Some(run) = query(sql).bind(run_pk).fetch_optional(&mut *conn).await? else {
        return Ok(None);
    };
    let state: RunState = codec::enum_col(&run, "state")?;
    if state != RunState::Running {
        return Ok(None);
    }
    let sql = format!(
        "SELECT task_id, map_index, state FROM task_instance WHERE run_pk = $1
         ORDER BY task_id, map_index{}",
        C::DIALECT.for_update()
    );
    let rows = query(sql).bind(run_pk).fetch_all(&mut *conn).await?;
    let mut live = Vec::new();
    for row in &rows {
        let current: TaskState = codec::enum_col(row, "state")?;
        if !skip(current) {
            continue;
        }
        let key = TiKey {
            run_pk,
            task_id: row.text("task_id")?,
            map_index: codec::map_index_col(row)?,
        };
        task_instances::set_state_in(conn, &key, TaskState::Skipped, now).await?;
        // A mapped task's live instances are named once: its tries are stopped by task.
        if current.is_active() && live.last() != Some(&key.task_id) {
            live.push(key.task_id);
        }
    }
    runs::set_state(conn, run_pk, RunState::Failed, now).await?;
    Ok(Some(live))
}

/// In the caller's transaction; unknown keys are skipped.
pub(crate) async fn force_ti_states<C: Db + ?Sized>(
    conn: &mut C,
    keys: &[TiKey],
    state: TaskState,
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut set = 0;
    for key in keys {
        if task_instances::set_state_in(conn, key, state, now).await? {
            set += 1;
        }
    }
    Ok(set)
}

pub(crate) const POOL_USAGE: &str = "
    SELECT pool, state, CAST(SUM(pool_slots) AS BIGINT) AS slots
    FROM task_instance WHERE state IN ('running', 'queued', 'scheduled')
    GROUP BY pool, state";

pub(crate) async fn pool_usage<C: Db + ?Sized>(conn: &mut C) -> Result<HashMap<String, PoolUsage>> {
    let rows = query(POOL_USAGE).fetch_all(conn).await?;
    let mut usage: HashMap<String, PoolUsage> = HashMap::new();
    for row in &rows {
        let state: TaskState = codec::enum_col(row, "state")?;
        let slots = row.int("slots")?;
        let entry = usage.entry(row.text("pool")?).or_default();
        match state {
            TaskState::Running => entry.running += slots,
            TaskState::Queued => entry.queued += slots,
            _ => entry.scheduled += slots,
        }
    }
    Ok(usage)
}

/// In the caller's transaction; the run's row is held until commit (see [`runs::lock`]), so
/// the run cannot be deleted under the note.
pub(crate) async fn set_note<C: Db + ?Sized>(
    conn: &mut C,
    run_pk: i64,
    task_id: Option<&str>,
    note: Option<&str>,
) -> Result<()> {
    if !runs::lock(conn, run_pk).await? {
        return Err(StoreError::NotFound(format!("run {run_pk}")));
    }
    let task_id = task_id.unwrap_or("");
    match note {
        Some(note) => {
            query(
                "INSERT INTO note (run_pk, task_id, note) VALUES ($1, $2, $3)
                 ON CONFLICT (run_pk, task_id) DO UPDATE SET note = excluded.note",
            )
            .bind(run_pk)
            .bind(task_id)
            .bind(note)
            .execute(conn)
            .await?;
        }
        None => {
            query("DELETE FROM note WHERE run_pk = $1 AND task_id = $2")
                .bind(run_pk)
                .bind(task_id)
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

pub(crate) async fn notes<C: Db + ?Sized>(conn: &mut C, run_pks: &[i64]) -> Result<Vec<NoteRow>> {
    if run_pks.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT run_pk, task_id, note FROM note WHERE {} ORDER BY run_pk, task_id",
        C::DIALECT.in_ints("run_pk", 1)
    );
    let rows = query(sql)
        .bind(Arg::Ints(run_pks.to_vec()))
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| {
            let task_id = row.text("task_id")?;
            Ok(NoteRow {
                run_pk: row.int("run_pk")?,
                task_id: (!task_id.is_empty()).then_some(task_id),
                note: row.text("note")?,
            })
        })
        .collect()
}
