//! DAGs, their versions and import errors.

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;
use updraft_dag::{Dag, ImportError};

use super::codec::{self, ts};
use crate::{DagRow, LoadedDagRecord, Result};

/// One transaction: upsert the loaded DAGs and their versions, deactivate the rest, replace
/// the import errors.
pub(super) async fn sync(
    pool: &SqlitePool,
    loaded: &[LoadedDagRecord<'_>],
    errors: &[ImportError],
    paused_by_default: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    upsert_dags(&mut tx, loaded, paused_by_default, now).await?;
    insert_versions(&mut tx, loaded, now).await?;
    deactivate_missing(&mut tx, loaded).await?;
    replace_import_errors(&mut tx, errors, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Insert the new DAGs (paused per their own setting, else the default) and refresh the
/// existing ones, keeping their paused flag: one statement for the whole load.
async fn upsert_dags(
    conn: &mut SqliteConnection,
    loaded: &[LoadedDagRecord<'_>],
    paused_by_default: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    if loaded.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = loaded
        .iter()
        .map(|record| {
            let dag = record.dag;
            let paused = dag.is_paused_upon_creation.unwrap_or(paused_by_default);
            serde_json::json!([
                dag.dag_id,
                dag.tenant,
                dag.fileloc,
                i64::from(paused),
                record.version
            ])
        })
        .collect();
    // `WHERE true`: SQLite's grammar needs it between a SELECT and an upsert clause.
    sqlx::query(
        "INSERT INTO dag (dag_id, tenant, fileloc, is_paused, is_active, version, last_parsed_at)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 1, value ->> 4, ?2
         FROM json_each(?1) WHERE true
         ON CONFLICT (dag_id) DO UPDATE SET
             tenant = excluded.tenant,
             fileloc = excluded.fileloc,
             is_active = 1,
             version = excluded.version,
             last_parsed_at = excluded.last_parsed_at",
    )
    .bind(codec::to_json(&rows)?)
    .bind(ts(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// Versions are immutable: the first definition and source recorded for a version stay. One
/// statement for the whole load.
async fn insert_versions(
    conn: &mut SqliteConnection,
    loaded: &[LoadedDagRecord<'_>],
    now: DateTime<Utc>,
) -> Result<()> {
    if loaded.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::with_capacity(loaded.len());
    for record in loaded {
        let dag = record.dag;
        rows.push(serde_json::json!([
            dag.dag_id,
            record.version,
            dag.tenant,
            codec::to_json(dag)?,
            record.source
        ]));
    }
    sqlx::query(
        "INSERT INTO dag_version (dag_id, version, tenant, definition, source, created_at)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, ?2
         FROM json_each(?1) WHERE true
         ON CONFLICT (dag_id, version) DO NOTHING",
    )
    .bind(codec::to_json(&rows)?)
    .bind(ts(now))
    .execute(conn)
    .await?;
    Ok(())
}

async fn deactivate_missing(
    conn: &mut SqliteConnection,
    loaded: &[LoadedDagRecord<'_>],
) -> Result<()> {
    let ids: Vec<&str> = loaded.iter().map(|r| r.dag.dag_id.as_str()).collect();
    sqlx::query(
        "UPDATE dag SET is_active = 0
         WHERE is_active = 1 AND dag_id NOT IN (SELECT value FROM json_each(?1))",
    )
    .bind(codec::to_json(&ids)?)
    .execute(conn)
    .await?;
    Ok(())
}

/// The errors of this load replace the recorded ones; an error found again (same tenant, file,
/// place and message) keeps its id and first-recorded timestamp.
async fn replace_import_errors(
    conn: &mut SqliteConnection,
    errors: &[ImportError],
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query("UPDATE import_error SET position = -1")
        .execute(&mut *conn)
        .await?;
    for (position, e) in (0_i64..).zip(errors) {
        let kept = sqlx::query(
            "UPDATE import_error SET position = ?1
             WHERE id = (SELECT id FROM import_error
                         WHERE position = -1 AND tenant = ?2 AND filename = ?3
                           AND line IS ?4 AND col IS ?5 AND message = ?6
                         ORDER BY id LIMIT 1)",
        )
        .bind(position)
        .bind(&e.tenant)
        .bind(&e.filename)
        .bind(e.line.map(i64::from))
        .bind(e.column.map(i64::from))
        .bind(&e.message)
        .execute(&mut *conn)
        .await?;
        if kept.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO import_error (tenant, filename, line, col, message, position,
                     created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .bind(&e.tenant)
            .bind(&e.filename)
            .bind(e.line.map(i64::from))
            .bind(e.column.map(i64::from))
            .bind(&e.message)
            .bind(position)
            .bind(ts(now))
            .execute(&mut *conn)
            .await?;
        }
    }
    sqlx::query("DELETE FROM import_error WHERE position = -1")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn all(pool: &SqlitePool) -> Result<Vec<DagRow>> {
    let rows = sqlx::query(
        "SELECT d.version, d.is_paused, d.is_active, d.last_parsed_at, v.definition
         FROM dag d JOIN dag_version v ON v.dag_id = d.dag_id AND v.version = d.version
         ORDER BY d.dag_id",
    )
    .fetch_all(pool)
    .await?;
    codec::all(&rows, codec::dag_row)
}

pub(super) async fn heads(pool: &SqlitePool) -> Result<Vec<crate::DagHead>> {
    let rows: Vec<(String, String, bool, bool)> =
        sqlx::query_as("SELECT dag_id, version, is_paused, is_active FROM dag ORDER BY dag_id")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(dag_id, version, is_paused, is_active)| crate::DagHead {
            dag_id,
            version,
            is_paused,
            is_active,
        })
        .collect())
}

pub(super) async fn one(pool: &SqlitePool, dag_id: &str) -> Result<Option<DagRow>> {
    let row = sqlx::query(
        "SELECT d.version, d.is_paused, d.is_active, d.last_parsed_at, v.definition
         FROM dag d JOIN dag_version v ON v.dag_id = d.dag_id AND v.version = d.version
         WHERE d.dag_id = ?1",
    )
    .bind(dag_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(codec::dag_row).transpose()
}

pub(super) async fn version(pool: &SqlitePool, dag_id: &str, version: &str) -> Result<Option<Dag>> {
    let row = sqlx::query("SELECT definition FROM dag_version WHERE dag_id = ?1 AND version = ?2")
        .bind(dag_id)
        .bind(version)
        .fetch_optional(pool)
        .await?;
    row.as_ref()
        .map(|r| codec::json_col(r, "definition"))
        .transpose()
}

pub(super) async fn source(
    pool: &SqlitePool,
    dag_id: &str,
    version: &str,
) -> Result<Option<String>> {
    let row = sqlx::query("SELECT source FROM dag_version WHERE dag_id = ?1 AND version = ?2")
        .bind(dag_id)
        .bind(version)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(|r| codec::col(r, "source")).transpose()
}

pub(super) async fn set_paused(pool: &SqlitePool, dag_id: &str, paused: bool) -> Result<bool> {
    let done = sqlx::query("UPDATE dag SET is_paused = ?1 WHERE dag_id = ?2")
        .bind(paused)
        .bind(dag_id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// In the order they were handed to the last [`sync`].
pub(super) async fn import_errors(pool: &SqlitePool) -> Result<Vec<ImportError>> {
    let rows = sqlx::query(
        "SELECT tenant, filename, line, col, message FROM import_error ORDER BY position",
    )
    .fetch_all(pool)
    .await?;
    codec::all(&rows, codec::import_error_row)
}
