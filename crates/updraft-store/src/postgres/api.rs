//! The REST API's queries: paged, filtered, counted listings (each one `COUNT` and one page
//! `SELECT` over the same filters), marking runs, notes and pool usage.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgRow, Postgres};
use sqlx::{PgConnection, QueryBuilder};
use updraft_core::{RunState, TaskState};

use super::codec::{self, run_columns, ti_columns, ts};
use super::{runs, task_instances};
use crate::{
    DagOrder, DagQuery, DagRow, ImportErrorOrder, ImportErrorQuery, ImportErrorRow, NoteRow, Page,
    Paging, PoolRow, PoolUsage, Result, RunOrder, RunQuery, RunRow, StoreError, TiKey, TiOrder,
    TiQuery, TiRow, TimeRange,
};

type Builder = QueryBuilder<Postgres>;

/// `AND <column> IN (<values>)` as a JSON array bound once.
fn push_in(qb: &mut Builder, column: &str, values: &[&str]) -> Result<()> {
    qb.push(format_args!(
        " AND {column} IN (SELECT jsonb_array_elements_text("
    ));
    qb.push_bind(codec::to_json(values)?);
    qb.push("::jsonb))");
    Ok(())
}

fn push_tenants(qb: &mut Builder, column: &str, tenants: &Option<Vec<String>>) -> Result<()> {
    if let Some(tenants) = tenants {
        let names: Vec<&str> = tenants.iter().map(String::as_str).collect();
        push_in(qb, column, &names)?;
    }
    Ok(())
}

/// Airflow's `*_pattern` filters: a case-insensitive `ILIKE '%pattern%'`.
fn push_like(qb: &mut Builder, column: &str, pattern: &Option<String>) {
    if let Some(pattern) = pattern {
        qb.push(format_args!(" AND {column} ILIKE '%' || "));
        qb.push_bind(pattern.clone());
        qb.push(" || '%'");
    }
}

fn push_range(qb: &mut Builder, column: &str, range: &TimeRange) {
    for (op, bound) in [
        (">=", range.gte),
        (">", range.gt),
        ("<=", range.lte),
        ("<", range.lt),
    ] {
        if let Some(t) = bound {
            qb.push(format_args!(" AND {column} {op} "));
            qb.push_bind(ts(t));
        }
    }
}

/// How a listing is sorted: its column, then its tie breaks, all in one direction.
struct Order<'a> {
    column: &'a str,
    tie_breaks: &'a [&'a str],
    descending: bool,
}

fn push_order(qb: &mut Builder, order: &Order<'_>) {
    let dir = if order.descending { "DESC" } else { "ASC" };
    // NULLs sort as the smallest values either way, as in SQLite.
    let nulls = if order.descending {
        "NULLS LAST"
    } else {
        "NULLS FIRST"
    };
    qb.push(format_args!(" ORDER BY {} {dir} {nulls}", order.column));
    for tie_break in order.tie_breaks {
        qb.push(format_args!(", {tie_break} {dir}"));
    }
}

fn push_paging(qb: &mut Builder, paging: &Paging) {
    // PostgreSQL reads `LIMIT NULL` as "no limit".
    qb.push(" LIMIT ");
    qb.push_bind(paging.limit.map(i64::from));
    qb.push(" OFFSET ");
    qb.push_bind(i64::try_from(paging.offset).unwrap_or(i64::MAX));
}

async fn count(conn: &mut PgConnection, mut qb: Builder) -> Result<u64> {
    let row = qb
        .build()
        .persistent(codec::persistent())
        .fetch_one(&mut *conn)
        .await?;
    let n: i64 = codec::col(&row, "n")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// One page of a listing: `SELECT COUNT(*)` and `SELECT <columns>` from `from` (which ends in
/// a `WHERE`), both narrowed by `filters`; the page sorted by `order`.
async fn page<T>(
    conn: &mut PgConnection,
    columns: &str,
    from: &str,
    filters: impl Fn(&mut Builder) -> Result<()>,
    order: Order<'_>,
    paging: &Paging,
    row: fn(&PgRow) -> Result<T>,
) -> Result<Page<T>> {
    let mut counted = Builder::new(format!("SELECT COUNT(*) AS n{from}"));
    filters(&mut counted)?;
    let total = count(&mut *conn, counted).await?;
    let mut qb = Builder::new(format!("SELECT {columns}{from}"));
    filters(&mut qb)?;
    push_order(&mut qb, &order);
    push_paging(&mut qb, paging);
    let rows = qb
        .build()
        .persistent(codec::persistent())
        .fetch_all(&mut *conn)
        .await?;
    Ok(Page {
        items: codec::all(&rows, row)?,
        total,
    })
}

// ---- DAGs ---------------------------------------------------------------------------------

fn dag_filters(qb: &mut Builder, q: &DagQuery) -> Result<()> {
    push_tenants(qb, "d.tenant", &q.tenants)?;
    push_like(qb, "d.dag_id", &q.dag_id_pattern);
    if let Some(paused) = q.paused {
        qb.push(" AND d.is_paused = ");
        qb.push_bind(paused);
    }
    if let Some(active) = q.active {
        qb.push(" AND d.is_active = ");
        qb.push_bind(active);
    }
    if !q.tags.is_empty() {
        let mut tags: Vec<&str> = q.tags.iter().map(String::as_str).collect();
        tags.sort_unstable();
        tags.dedup();
        qb.push(
            " AND (SELECT COUNT(DISTINCT t.value)
                   FROM jsonb_array_elements_text(v.definition::jsonb -> 'tags') AS t(value)
                   WHERE t.value IN (SELECT jsonb_array_elements_text(",
        );
        qb.push_bind(codec::to_json(&tags)?);
        qb.push("::jsonb)))");
        if q.all_tags {
            qb.push(" = ");
            qb.push_bind(tags.len() as i64);
        } else {
            qb.push(" > 0");
        }
    }
    Ok(())
}

const DAG_FROM: &str =
    " FROM dag d JOIN dag_version v ON v.dag_id = d.dag_id AND v.version = d.version WHERE 1 = 1";

pub(super) async fn dags_page(conn: &mut PgConnection, q: &DagQuery) -> Result<Page<DagRow>> {
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
        &mut *conn,
        "d.version, d.is_paused, d.is_active, d.last_parsed_at, v.definition",
        DAG_FROM,
        |qb| dag_filters(qb, q),
        order,
        &q.paging,
        codec::dag_row,
    )
    .await
}

// ---- runs ---------------------------------------------------------------------------------

fn run_filters(qb: &mut Builder, q: &RunQuery) -> Result<()> {
    if let Some(dag_id) = &q.dag_id {
        qb.push(" AND dag_id = ");
        qb.push_bind(dag_id.clone());
    }
    push_tenants(qb, "tenant", &q.tenants)?;
    if !q.states.is_empty() {
        let names: Vec<&str> = q.states.iter().map(|s| s.as_str()).collect();
        push_in(qb, "state", &names)?;
    }
    if !q.run_types.is_empty() {
        let names: Vec<&str> = q.run_types.iter().map(|s| s.as_str()).collect();
        push_in(qb, "run_type", &names)?;
    }
    push_like(qb, "run_id", &q.run_id_pattern);
    push_range(qb, "logical_date", &q.logical_date);
    push_range(qb, "start_date", &q.start_date);
    push_range(qb, "end_date", &q.end_date);
    Ok(())
}

pub(super) async fn runs_page(conn: &mut PgConnection, q: &RunQuery) -> Result<Page<RunRow>> {
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
        &mut *conn,
        run_columns!(),
        " FROM dag_run WHERE 1 = 1",
        |qb| run_filters(qb, q),
        order,
        &q.paging,
        codec::run_row,
    )
    .await
}

// ---- task instances -----------------------------------------------------------------------

fn ti_filters(qb: &mut Builder, q: &TiQuery) -> Result<()> {
    if let Some(run_pk) = q.run_pk {
        qb.push(" AND run_pk = ");
        qb.push_bind(run_pk);
    }
    if let Some(run_id) = &q.run_id {
        qb.push(" AND run_id = ");
        qb.push_bind(run_id.clone());
    }
    if let Some(dag_id) = &q.dag_id {
        // Through dag_run's (dag_id, ...) indexes, then task_instance's primary key.
        qb.push(" AND run_pk IN (SELECT id FROM dag_run WHERE dag_id = ");
        qb.push_bind(dag_id.clone());
        qb.push(")");
    }
    push_tenants(qb, "tenant", &q.tenants)?;
    if !q.task_ids.is_empty() {
        let ids: Vec<&str> = q.task_ids.iter().map(String::as_str).collect();
        push_in(qb, "task_id", &ids)?;
    }
    if !q.states.is_empty() {
        let names: Vec<&str> = q.states.iter().map(|s| s.as_str()).collect();
        push_in(qb, "state", &names)?;
    }
    if !q.pools.is_empty() {
        let names: Vec<&str> = q.pools.iter().map(String::as_str).collect();
        push_in(qb, "pool", &names)?;
    }
    push_range(qb, "logical_date", &q.logical_date);
    push_range(qb, "start_date", &q.start_date);
    push_range(qb, "end_date", &q.end_date);
    Ok(())
}

pub(super) async fn task_instances_page(
    conn: &mut PgConnection,
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
        tie_breaks: &["run_pk", "task_id"],
        descending: q.descending,
    };
    page(
        &mut *conn,
        ti_columns!(),
        " FROM task_instance WHERE 1 = 1",
        |qb| ti_filters(qb, q),
        order,
        &q.paging,
        codec::ti_row,
    )
    .await
}

// ---- import errors ------------------------------------------------------------------------

const IMPORT_ERROR_COLUMNS: &str = "id, tenant, filename, line, col, message, created_at";
const IMPORT_ERROR_FROM: &str = " FROM import_error WHERE 1 = 1";

fn import_error_row(row: &PgRow) -> Result<ImportErrorRow> {
    Ok(ImportErrorRow {
        id: codec::col(row, "id")?,
        error: codec::import_error_row(row)?,
        timestamp: codec::time_col(row, "created_at")?,
    })
}

fn import_error_filters(qb: &mut Builder, q: &ImportErrorQuery) -> Result<()> {
    push_tenants(qb, "tenant", &q.tenants)?;
    push_like(qb, "filename", &q.filename_pattern);
    Ok(())
}

pub(super) async fn import_errors_page(
    conn: &mut PgConnection,
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
        &mut *conn,
        IMPORT_ERROR_COLUMNS,
        IMPORT_ERROR_FROM,
        |qb| import_error_filters(qb, q),
        order,
        &q.paging,
        import_error_row,
    )
    .await
}

pub(super) async fn import_error(
    conn: &mut PgConnection,
    id: i64,
) -> Result<Option<ImportErrorRow>> {
    let mut qb = Builder::new(format!("SELECT {IMPORT_ERROR_COLUMNS}{IMPORT_ERROR_FROM}"));
    qb.push(" AND id = ");
    qb.push_bind(id);
    let row = qb
        .build()
        .persistent(codec::persistent())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(import_error_row).transpose()
}

// ---- writes -------------------------------------------------------------------------------

pub(super) async fn mark_run(
    pool: &PgPool,
    run_pk: i64,
    state: RunState,
    now: DateTime<Utc>,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    // The run first, then its instances (see `runs::lock`).
    if !runs::lock(&mut tx, run_pk).await? {
        return Ok(false);
    }
    let rows = codec::query(
        "SELECT task_id, state FROM task_instance WHERE run_pk = $1 ORDER BY task_id FOR UPDATE",
    )
    .bind(run_pk)
    .fetch_all(&mut *tx)
    .await?;
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
                task_id: codec::col(row, "task_id")?,
            };
            task_instances::set_state_in(&mut tx, &key, new, now).await?;
        }
    }
    runs::set_state(&mut *tx, run_pk, state, now).await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn set_ti_states(
    pool: &PgPool,
    keys: &[TiKey],
    state: TaskState,
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut tx = pool.begin().await?;
    let mut set = 0;
    for key in keys {
        if task_instances::set_state_in(&mut tx, key, state, now).await? {
            set += 1;
        }
    }
    tx.commit().await?;
    Ok(set)
}

pub(super) async fn create_pool(conn: &mut PgConnection, row: &PoolRow) -> Result<()> {
    let done = codec::query("INSERT INTO pool (name, slots, description) VALUES ($1, $2, $3)")
        .bind(&row.name)
        .bind(row.slots)
        .bind(&row.description)
        .execute(&mut *conn)
        .await;
    match done {
        Ok(_) => Ok(()),
        Err(e) if codec::is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "pool {} already exists",
            row.name
        ))),
        Err(e) => Err(e.into()),
    }
}

pub(super) const POOL_USAGE: &str = "
    SELECT pool, state, SUM(pool_slots)::BIGINT AS slots
    FROM task_instance WHERE state IN ('running', 'queued', 'scheduled')
    GROUP BY pool, state";

pub(super) async fn pool_usage(conn: &mut PgConnection) -> Result<HashMap<String, PoolUsage>> {
    let rows = codec::query(POOL_USAGE).fetch_all(&mut *conn).await?;
    let mut usage: HashMap<String, PoolUsage> = HashMap::new();
    for row in &rows {
        let name: String = codec::col(row, "pool")?;
        let state: TaskState = codec::enum_col(row, "state")?;
        let slots: i64 = codec::col(row, "slots")?;
        let entry = usage.entry(name).or_default();
        match state {
            TaskState::Running => entry.running += slots,
            TaskState::Queued => entry.queued += slots,
            _ => entry.scheduled += slots,
        }
    }
    Ok(usage)
}

pub(super) async fn set_note(
    pool: &PgPool,
    run_pk: i64,
    task_id: Option<&str>,
    note: Option<&str>,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    // Held until commit, so the run cannot be deleted under the note.
    if !runs::lock(&mut tx, run_pk).await? {
        return Err(StoreError::NotFound(format!("run {run_pk}")));
    }
    let task_id = task_id.unwrap_or("");
    match note {
        Some(note) => {
            codec::query(
                "INSERT INTO note (run_pk, task_id, note) VALUES ($1, $2, $3)
                 ON CONFLICT (run_pk, task_id) DO UPDATE SET note = excluded.note",
            )
            .bind(run_pk)
            .bind(task_id)
            .bind(note)
            .execute(&mut *tx)
            .await?;
        }
        None => {
            codec::query("DELETE FROM note WHERE run_pk = $1 AND task_id = $2")
                .bind(run_pk)
                .bind(task_id)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn notes(conn: &mut PgConnection, run_pks: &[i64]) -> Result<Vec<NoteRow>> {
    if run_pks.is_empty() {
        return Ok(Vec::new());
    }
    let rows = codec::query(
        "SELECT run_pk, task_id, note FROM note
         WHERE run_pk IN (SELECT jsonb_array_elements_text($1::jsonb)::BIGINT) ORDER BY run_pk, task_id",
    )
    .bind(codec::to_json(run_pks)?)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            let task_id: String = codec::col(row, "task_id")?;
            Ok(NoteRow {
                run_pk: codec::col(row, "run_pk")?,
                task_id: (!task_id.is_empty()).then_some(task_id),
                note: codec::col(row, "note")?,
            })
        })
        .collect()
}
