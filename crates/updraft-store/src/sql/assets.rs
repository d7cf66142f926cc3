//! Assets: recording events and queueing them for consumers, the loaded DAGs' references,
//! asset-triggered runs with their consumed events, and the listings.

use chrono::{DateTime, Utc};

use super::api::{Filters, Order, page};
use super::codec::{self, StoreRow};
use super::{Arg, Db, query, runs};
use crate::{
    AssetEventQuery, AssetEventRow, AssetRefKind, AssetReference, AssetRow, NewAssetEvent, NewRun,
    NewTi, Paging, QueuedAssetEvent, Result, RunRow, StoreError,
};

const ASSET_COLUMNS: &str = "a.id, a.tenant, a.uri, a.name, a.extra, a.created_at, a.updated_at";
const EVENT_COLUMNS: &str = "e.id, e.asset_id, a.tenant, a.uri, e.extra, e.source_dag_id, \
     e.source_run_id, e.source_task_id, e.source_map_index, e.timestamp";

/// The asset's id, creating it (named `name`, else its URI) on first sight.
async fn ensure_asset<C: Db + ?Sized>(
    conn: &mut C,
    tenant: &str,
    uri: &str,
    name: Option<&str>,
    now: DateTime<Utc>,
) -> Result<i64> {
    let row = query(
        "INSERT INTO asset (tenant, uri, name, extra, created_at, updated_at)
         VALUES ($1, $2, $3, '{}', $4, $4)
         ON CONFLICT (tenant, uri) DO UPDATE SET tenant = excluded.tenant
         RETURNING id",
    )
    .bind(tenant)
    .bind(uri)
    .bind(name.unwrap_or(uri))
    .bind(now)
    .fetch_one(conn)
    .await?;
    row.int("id")
}

pub(crate) async fn record_events<C: Db + ?Sized>(
    conn: &mut C,
    events: &[NewAssetEvent],
) -> Result<Vec<AssetEventRow>> {
    let mut out = Vec::with_capacity(events.len());
    for event in events {
        let asset_id = ensure_asset(
            conn,
            &event.tenant,
            &event.uri,
            event.name.as_deref(),
            event.timestamp,
        )
        .await?;
        query("UPDATE asset SET updated_at = $2 WHERE id = $1")
            .bind(asset_id)
            .bind(event.timestamp)
            .execute(&mut *conn)
            .await?;
        let id = query(
            "INSERT INTO asset_event (asset_id, extra, source_dag_id, source_run_id,
                 source_task_id, source_map_index, timestamp)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING id",
        )
        .bind(asset_id)
        .bind(codec::to_json(&event.extra)?)
        .bind(event.source_dag_id.as_deref())
        .bind(event.source_run_id.as_deref())
        .bind(event.source_task_id.as_deref())
        .bind(event.source_map_index)
        .bind(event.timestamp)
        .fetch_one(&mut *conn)
        .await?
        .int("id")?;
        query(
            "INSERT INTO asset_dag_run_queue (target_dag_id, event_id)
             SELECT DISTINCT r.dag_id, $3
             FROM asset_reference r JOIN dag d ON d.dag_id = r.dag_id
             WHERE r.tenant = $1 AND r.uri = $2 AND r.kind = 'schedule'
               AND d.tenant = $1 AND d.is_active = $4 AND d.is_paused = $5",
        )
        .bind(&event.tenant)
        .bind(&event.uri)
        .bind(id)
        .bind(true)
        .bind(false)
        .execute(&mut *conn)
        .await?;
        out.push(AssetEventRow {
            id,
            asset_id,
            tenant: event.tenant.clone(),
            uri: event.uri.clone(),
            extra: serde_json::Value::Object(event.extra.clone()),
            source_dag_id: event.source_dag_id.clone(),
            source_run_id: event.source_run_id.clone(),
            source_task_id: event.source_task_id.clone(),
            source_map_index: event.source_map_index,
            timestamp: event.timestamp,
        });
    }
    Ok(out)
}

pub(crate) async fn replace_references<C: Db + ?Sized>(
    conn: &mut C,
    references: &[AssetReference],
    now: DateTime<Utc>,
) -> Result<()> {
    query("DELETE FROM asset_reference")
        .execute(&mut *conn)
        .await?;
    for r in references {
        ensure_asset(conn, &r.tenant, &r.uri, None, now).await?;
        query(
            "INSERT INTO asset_reference (tenant, dag_id, task_id, kind, uri)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
        )
        .bind(&r.tenant)
        .bind(&r.dag_id)
        .bind(&r.task_id)
        .bind(r.kind.as_str())
        .bind(&r.uri)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(crate) async fn references<C: Db + ?Sized>(conn: &mut C) -> Result<Vec<AssetReference>> {
    let rows = query(
        "SELECT tenant, dag_id, task_id, kind, uri FROM asset_reference
         ORDER BY tenant, uri, kind, dag_id, task_id",
    )
    .fetch_all(conn)
    .await?;
    codec::all(&rows, |row| {
        let kind = match row.text("kind")?.as_str() {
            "schedule" => AssetRefKind::Schedule,
            "outlet" => AssetRefKind::Outlet,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "column `kind`: unknown asset reference kind {other:?}"
                )));
            }
        };
        Ok(AssetReference {
            tenant: row.text("tenant")?,
            dag_id: row.text("dag_id")?,
            task_id: row.text("task_id")?,
            kind,
            uri: row.text("uri")?,
        })
    })
}

pub(crate) async fn queued<C: Db + ?Sized>(conn: &mut C) -> Result<Vec<QueuedAssetEvent>> {
    let rows = query(
        "SELECT q.target_dag_id, q.event_id, a.uri, e.timestamp
         FROM asset_dag_run_queue q
         JOIN asset_event e ON e.id = q.event_id
         JOIN asset a ON a.id = e.asset_id
         ORDER BY q.target_dag_id, q.event_id",
    )
    .fetch_all(conn)
    .await?;
    codec::all(&rows, |row| {
        Ok(QueuedAssetEvent {
            dag_id: row.text("target_dag_id")?,
            event_id: row.int("event_id")?,
            uri: row.text("uri")?,
            timestamp: codec::time_col(row, "timestamp")?,
        })
    })
}

/// Takes `consumed` off the DAG's queue and creates the run linked to them; `None` (to be
/// rolled back) when some were no longer queued.
pub(crate) async fn create_triggered_run<C: Db + ?Sized>(
    conn: &mut C,
    run: &NewRun,
    tis: &[NewTi],
    consumed: &[i64],
    now: DateTime<Utc>,
) -> Result<Option<RunRow>> {
    let dialect = C::DIALECT;
    let taken = query(format!(
        "DELETE FROM asset_dag_run_queue WHERE target_dag_id = $1 AND {}",
        dialect.in_ints("event_id", 2)
    ))
    .bind(&run.dag_id)
    .bind(Arg::Ints(consumed.to_vec()))
    .execute(&mut *conn)
    .await?;
    if taken != consumed.len() as u64 {
        return Ok(None);
    }
    let row = runs::create(conn, run, tis, now).await?;
    query(format!(
        "INSERT INTO dag_run_asset_event (run_pk, event_id)
         SELECT $1, e.id FROM asset_event e WHERE {}",
        dialect.in_ints("e.id", 2)
    ))
    .bind(row.id)
    .bind(Arg::Ints(consumed.to_vec()))
    .execute(&mut *conn)
    .await?;
    Ok(Some(row))
}

fn asset_row<R: StoreRow>(row: &R) -> Result<AssetRow> {
    Ok(AssetRow {
        id: row.int("id")?,
        tenant: row.text("tenant")?,
        uri: row.text("uri")?,
        name: row.text("name")?,
        extra: codec::json_col(row, "extra")?,
        created_at: codec::time_col(row, "created_at")?,
        updated_at: codec::time_col(row, "updated_at")?,
    })
}

fn event_row<R: StoreRow>(row: &R) -> Result<AssetEventRow> {
    Ok(AssetEventRow {
        id: row.int("id")?,
        asset_id: row.int("asset_id")?,
        tenant: row.text("tenant")?,
        uri: row.text("uri")?,
        extra: codec::json_col(row, "extra")?,
        source_dag_id: row.opt_text("source_dag_id")?,
        source_run_id: row.opt_text("source_run_id")?,
        source_task_id: row.opt_text("source_task_id")?,
        source_map_index: row.int("source_map_index")?,
        timestamp: codec::time_col(row, "timestamp")?,
    })
}

pub(crate) async fn assets<C: Db + ?Sized>(
    conn: &mut C,
    tenants: Option<&[String]>,
    paging: &Paging,
) -> Result<(Vec<AssetRow>, u64)> {
    let tenants = tenants.map(<[String]>::to_vec);
    let page = page(
        conn,
        ASSET_COLUMNS,
        " FROM asset a WHERE 1 = 1",
        |f: &mut Filters<'_>| f.push_tenants("a.tenant", &tenants),
        Order {
            column: "a.tenant",
            tie_breaks: &["a.uri"],
            descending: false,
        },
        paging,
        asset_row,
    )
    .await?;
    Ok((page.items, page.total))
}

pub(crate) async fn asset<C: Db + ?Sized>(conn: &mut C, id: i64) -> Result<Option<AssetRow>> {
    let row = query(format!(
        "SELECT {ASSET_COLUMNS} FROM asset a WHERE a.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(asset_row).transpose()
}

pub(crate) async fn events<C: Db + ?Sized>(
    conn: &mut C,
    q: &AssetEventQuery,
) -> Result<(Vec<AssetEventRow>, u64)> {
    let page = page(
        conn,
        EVENT_COLUMNS,
        " FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE 1 = 1",
        |f: &mut Filters<'_>| {
            f.push_tenants("a.tenant", &q.tenants);
            if let Some(id) = q.asset_id {
                f.push_eq("e.asset_id", id);
            }
            if let Some(dag_id) = &q.source_dag_id {
                f.push_eq("e.source_dag_id", dag_id);
            }
            if let Some(run_id) = &q.source_run_id {
                f.push_eq("e.source_run_id", run_id);
            }
        },
        Order {
            column: "e.id",
            tie_breaks: &[],
            descending: true,
        },
        &q.paging,
        event_row,
    )
    .await?;
    Ok((page.items, page.total))
}

pub(crate) async fn consumed<C: Db + ?Sized>(
    conn: &mut C,
    run_pk: i64,
) -> Result<Vec<AssetEventRow>> {
    let rows = query(format!(
        "SELECT {EVENT_COLUMNS} FROM dag_run_asset_event c
         JOIN asset_event e ON e.id = c.event_id
         JOIN asset a ON a.id = e.asset_id
         WHERE c.run_pk = $1 ORDER BY e.id"
    ))
    .bind(run_pk)
    .fetch_all(conn)
    .await?;
    codec::all(&rows, event_row)
}
