//! Recording a load of the DAGs folder on SQLite: the loaded DAGs and their versions are
//! upserted in one statement each (rows handed over as a JSON array); the rest of the sync and
//! every read are shared (`crate::sql::dags`).

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;
use updraft_dag::ImportError;

use super::codec::{self, ts};
use crate::{LoadedDagRecord, Result, sql};

/// One transaction: upsert the loaded DAGs (a dag_id another tenant owns is left alone and
/// becomes an import error in the claiming file) and their versions, deactivate those whose
/// file is gone, replace the import errors.
pub(super) async fn sync(
    pool: &SqlitePool,
    loaded: &[LoadedDagRecord<'_>],
    errors: &[ImportError],
    paused_by_default: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    upsert_dags(&mut tx, loaded, paused_by_default, now).await?;
    let (loaded, foreign) = sql::dags::owned_claims(&mut *tx, loaded).await?;
    let errors = sql::dags::with_errors(errors, foreign);
    insert_versions(&mut tx, &loaded, now).await?;
    sql::dags::deactivate_missing(&mut *tx, &loaded, &errors).await?;
    sql::dags::replace_import_errors(&mut *tx, &errors, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Insert the new DAGs (paused per their own setting, else the default) and refresh the
/// existing ones of the same tenant (version, file, bundle), keeping their paused flag (another tenant's row is not
/// touched): one statement for the whole load.
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
                record.version,
                record.bundle.map(|b| b.name),
                record.bundle.and_then(|b| b.version)
            ])
        })
        .collect();
    // `WHERE true`: SQLite's grammar needs it between a SELECT and an upsert clause.
    sqlx::query(
        "INSERT INTO dag (dag_id, tenant, fileloc, is_paused, is_active, version, last_parsed_at,
             bundle_name, bundle_version)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 1, value ->> 4, ?2,
             value ->> 5, value ->> 6
         FROM json_each(?1) WHERE true
         ON CONFLICT (dag_id) DO UPDATE SET
             fileloc = excluded.fileloc,
             is_active = 1,
             version = excluded.version,
             last_parsed_at = excluded.last_parsed_at,
             bundle_name = excluded.bundle_name,
             bundle_version = excluded.bundle_version
         WHERE dag.tenant = excluded.tenant",
    )
    .bind(codec::to_json(&rows)?)
    .bind(ts(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// Versions are immutable: the first definition, source and bundle recorded for a version
/// stay. One statement for the whole load.
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
            record.source,
            record.bundle.map(|b| b.name),
            record.bundle.and_then(|b| b.version)
        ]));
    }
    sqlx::query(
        "INSERT INTO dag_version (dag_id, version, tenant, definition, source, created_at,
             bundle_name, bundle_version)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, ?2,
             value ->> 5, value ->> 6
         FROM json_each(?1) WHERE true
         ON CONFLICT (dag_id, version) DO NOTHING",
    )
    .bind(codec::to_json(&rows)?)
    .bind(ts(now))
    .execute(conn)
    .await?;
    Ok(())
}
