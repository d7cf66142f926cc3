//! Recording a load of the DAGs folder on PostgreSQL: one upsert per loaded DAG and version;
//! the rest of the sync and every read are shared (`crate::sql::dags`).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use sqlx::postgres::PgPool;
use updraft_dag::ImportError;

use super::codec::{self, ts};
use crate::{LoadedDagRecord, Result, sql};

/// One transaction: upsert the loaded DAGs (a dag_id another tenant owns is left alone and
/// becomes an import error in the claiming file) and their versions, deactivate those whose
/// file is gone, replace the import errors.
pub(super) async fn sync(
    pool: &PgPool,
    loaded: &[LoadedDagRecord<'_>],
    errors: &[ImportError],
    paused_by_default: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    for record in loaded {
        upsert_dag(&mut tx, record, paused_by_default, now).await?;
    }
    let (loaded, foreign) = sql::dags::owned_claims(&mut *tx, loaded).await?;
    let errors = sql::dags::with_errors(errors, foreign);
    for record in &loaded {
        insert_version(&mut tx, record, now).await?;
    }
    sql::dags::deactivate_missing(&mut *tx, &loaded, &errors).await?;
    sql::dags::replace_import_errors(&mut *tx, &errors, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Insert a new DAG (paused per its own setting, else the default) or refresh an existing one
/// of the same tenant (version, file, bundle), keeping its paused flag (another tenant's row is not touched; the upsert
/// waits for a registration of the same dag_id not committed yet).
async fn upsert_dag(
    conn: &mut PgConnection,
    record: &LoadedDagRecord<'_>,
    paused_by_default: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    let dag = record.dag;
    let paused = dag.is_paused_upon_creation.unwrap_or(paused_by_default);
    codec::query(
        "INSERT INTO dag (dag_id, tenant, fileloc, is_paused, is_active, version, last_parsed_at,
             bundle_name, bundle_version)
         VALUES ($1, $2, $3, $4, TRUE, $5, $6, $7, $8)
         ON CONFLICT (dag_id) DO UPDATE SET
             fileloc = excluded.fileloc,
             is_active = TRUE,
             version = excluded.version,
             last_parsed_at = excluded.last_parsed_at,
             bundle_name = excluded.bundle_name,
             bundle_version = excluded.bundle_version
         WHERE dag.tenant = excluded.tenant",
    )
    .bind(&dag.dag_id)
    .bind(&dag.tenant)
    .bind(&dag.fileloc)
    .bind(paused)
    .bind(record.version)
    .bind(ts(now))
    .bind(record.bundle.map(|b| b.name))
    .bind(record.bundle.and_then(|b| b.version))
    .execute(conn)
    .await?;
    Ok(())
}

/// Versions are immutable: the first definition, source and bundle recorded for a version
/// stay.
async fn insert_version(
    conn: &mut PgConnection,
    record: &LoadedDagRecord<'_>,
    now: DateTime<Utc>,
) -> Result<()> {
    let dag = record.dag;
    codec::query(
        "INSERT INTO dag_version (dag_id, version, tenant, definition, source, created_at,
             bundle_name, bundle_version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (dag_id, version) DO NOTHING",
    )
    .bind(&dag.dag_id)
    .bind(record.version)
    .bind(&dag.tenant)
    .bind(codec::to_json(dag)?)
    .bind(record.source)
    .bind(ts(now))
    .bind(record.bundle.map(|b| b.name))
    .bind(record.bundle.and_then(|b| b.version))
    .execute(conn)
    .await?;
    Ok(())
}
