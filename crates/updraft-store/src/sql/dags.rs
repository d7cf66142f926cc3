//! DAGs, their versions and import errors. (Upserting the loaded DAGs and their versions
//! stays with each backend, which batch it differently.)

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use updraft_dag::{Dag, FOLDER_ERROR_FILENAME, ImportError};

use super::codec::{self, StoreRow};
use super::{Arg, Db, Dialect, query};
use crate::{DagHead, DagRow, LoadedDagRecord, Result};

/// dag_id → tenant of every registered DAG (active or not): the tenant that owns the dag_id.
pub(crate) async fn owners<C: Db + ?Sized>(conn: &mut C) -> Result<HashMap<String, String>> {
    let rows = query("SELECT dag_id, tenant FROM dag")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| Ok((row.text("dag_id")?, row.text("tenant")?)))
        .collect()
}

/// Splits `loaded` (already upserted, see the backends' `upsert`) into the records whose
/// dag_id their tenant owns and, for the others, an import error in their file: a dag_id
/// belongs to the tenant that first registered it, whatever a load (of this scheduler or
/// another) says. Reads the rows inside the caller's transaction, after its upsert, so a
/// registration committed by another scheduler in the meantime counts.
pub(crate) async fn owned_claims<'a, C: Db + ?Sized>(
    conn: &mut C,
    loaded: &[LoadedDagRecord<'a>],
) -> Result<(Vec<LoadedDagRecord<'a>>, Vec<ImportError>)> {
    if loaded.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let ids: Vec<String> = loaded.iter().map(|r| r.dag.dag_id.clone()).collect();
    let sql = format!(
        "SELECT dag_id, tenant FROM dag WHERE {}",
        C::DIALECT.in_texts("dag_id", 1)
    );
    let rows = query(sql).bind(Arg::Texts(ids)).fetch_all(conn).await?;
    let mut owners = HashMap::with_capacity(rows.len());
    for row in &rows {
        owners.insert(row.text("dag_id")?, row.text("tenant")?);
    }
    let (mut owned, mut foreign) = (Vec::new(), Vec::new());
    for record in loaded {
        let dag = record.dag;
        match owners.get(&dag.dag_id) {
            Some(tenant) if *tenant != dag.tenant => {
                foreign.push(updraft_dag::foreign_claim_error(dag, &dag.fileloc, None));
            }
            _ => owned.push(record.clone()),
        }
    }
    Ok((owned, foreign))
}

/// `errors` and `more`, sorted by file then position (as a DAG bag sorts them).
pub(crate) fn with_errors(errors: &[ImportError], more: Vec<ImportError>) -> Vec<ImportError> {
    let mut all = errors.to_vec();
    if more.is_empty() {
        return all;
    }
    all.extend(more);
    all.sort_by(|a, b| {
        (&a.filename, a.line, a.column, &a.message).cmp(&(
            &b.filename,
            b.line,
            b.column,
            &b.message,
        ))
    });
    all
}

/// DAGs absent from `loaded` become inactive, unless their file is still there but failed to
/// load: an import error of this load names their file, or a folder above it (one that could
/// not be read). A folder-wide error ([`FOLDER_ERROR_FILENAME`]: the folder could not be read
/// in full) keeps every DAG. Such DAGs stay scheduled on their last good version, as in
/// Airflow; only a deleted file deactivates its DAGs.
pub(crate) async fn deactivate_missing<C: Db + ?Sized>(
    conn: &mut C,
    loaded: &[LoadedDagRecord<'_>],
    errors: &[ImportError],
) -> Result<()> {
    if errors.iter().any(|e| e.filename == FOLDER_ERROR_FILENAME) {
        return Ok(());
    }
    let ids: Vec<String> = loaded.iter().map(|r| r.dag.dag_id.clone()).collect();
    let mut failed: Vec<String> = errors.iter().map(|e| e.filename.clone()).collect();
    failed.sort();
    failed.dedup();
    let sql = format!(
        "UPDATE dag SET is_active = FALSE
         WHERE is_active AND {}
           AND NOT EXISTS (SELECT 1 FROM {}
                           WHERE dag.fileloc = failed.value
                              OR substr(dag.fileloc, 1, length(failed.value) + 1)
                                 = failed.value || '/')",
        C::DIALECT.not_in_texts("dag_id", 1),
        C::DIALECT.texts_table(2, "failed"),
    );
    query(sql)
        .bind(Arg::Texts(ids))
        .bind(Arg::Texts(failed))
        .execute(conn)
        .await?;
    Ok(())
}

/// The errors of this load replace the recorded ones; an error found again (same tenant, file,
/// place and message) keeps its id and first-recorded timestamp.
pub(crate) async fn replace_import_errors<C: Db + ?Sized>(
    conn: &mut C,
    errors: &[ImportError],
    now: DateTime<Utc>,
) -> Result<()> {
    if C::DIALECT == Dialect::Postgres {
        // Concurrent loads take turns replacing the list (released at commit). On SQLite the
        // write transaction already holds the database.
        query("LOCK TABLE import_error IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *conn)
            .await?;
    }
    query("UPDATE import_error SET position = -1")
        .execute(&mut *conn)
        .await?;
    for (position, e) in (0_i64..).zip(errors) {
        let kept = query(
            "UPDATE import_error SET position = $1
             WHERE id = (SELECT id FROM import_error
                         WHERE position = -1 AND tenant = $2 AND filename = $3
                           AND line IS NOT DISTINCT FROM $4 AND col IS NOT DISTINCT FROM $5
                           AND message = $6
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
        if kept == 0 {
            query(
                "INSERT INTO import_error (tenant, filename, line, col, message, position,
                     created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&e.tenant)
            .bind(&e.filename)
            .bind(e.line.map(i64::from))
            .bind(e.column.map(i64::from))
            .bind(&e.message)
            .bind(position)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
    }
    query("DELETE FROM import_error WHERE position = -1")
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn heads<C: Db + ?Sized>(conn: &mut C) -> Result<Vec<DagHead>> {
    let rows = query("SELECT dag_id, version, is_paused, is_active FROM dag ORDER BY dag_id")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(DagHead {
                dag_id: row.text("dag_id")?,
                version: row.text("version")?,
                is_paused: row.flag("is_paused")?,
                is_active: row.flag("is_active")?,
            })
        })
        .collect()
}

pub(crate) async fn all<C: Db + ?Sized>(conn: &mut C) -> Result<Vec<DagRow>> {
    let rows = query(
        "SELECT d.version, d.is_paused, d.is_active, d.last_parsed_at, d.bundle_name, d.bundle_version, v.definition
         FROM dag d JOIN dag_version v ON v.dag_id = d.dag_id AND v.version = d.version
         ORDER BY d.dag_id",
    )
    .fetch_all(conn)
    .await?;
    codec::all(&rows, codec::dag_row)
}

pub(crate) async fn one<C: Db + ?Sized>(conn: &mut C, dag_id: &str) -> Result<Option<DagRow>> {
    let row = query(
        "SELECT d.version, d.is_paused, d.is_active, d.last_parsed_at, d.bundle_name, d.bundle_version, v.definition
         FROM dag d JOIN dag_version v ON v.dag_id = d.dag_id AND v.version = d.version
         WHERE d.dag_id = $1",
    )
    .bind(dag_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(codec::dag_row).transpose()
}

pub(crate) async fn version<C: Db + ?Sized>(
    conn: &mut C,
    dag_id: &str,
    version: &str,
) -> Result<Option<Dag>> {
    let row = query("SELECT definition FROM dag_version WHERE dag_id = $1 AND version = $2")
        .bind(dag_id)
        .bind(version)
        .fetch_optional(conn)
        .await?;
    row.as_ref()
        .map(|r| codec::json_col(r, "definition"))
        .transpose()
}

pub(crate) async fn source<C: Db + ?Sized>(
    conn: &mut C,
    dag_id: &str,
    version: &str,
) -> Result<Option<String>> {
    let row = query("SELECT source FROM dag_version WHERE dag_id = $1 AND version = $2")
        .bind(dag_id)
        .bind(version)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(|r| r.text("source")).transpose()
}

pub(crate) async fn set_paused<C: Db + ?Sized>(
    conn: &mut C,
    dag_id: &str,
    paused: bool,
) -> Result<bool> {
    let done = query("UPDATE dag SET is_paused = $1 WHERE dag_id = $2")
        .bind(paused)
        .bind(dag_id)
        .execute(conn)
        .await?;
    Ok(done > 0)
}

/// In the order they were handed to the last sync.
pub(crate) async fn import_errors<C: Db + ?Sized>(conn: &mut C) -> Result<Vec<ImportError>> {
    let rows =
        query("SELECT tenant, filename, line, col, message FROM import_error ORDER BY position")
            .fetch_all(conn)
            .await?;
    codec::all(&rows, codec::import_error_row)
}
