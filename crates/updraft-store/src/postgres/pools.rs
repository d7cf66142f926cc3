//! Pools: named slot budgets shared by task instances.

use sqlx::PgConnection;
use updraft_dag::DEFAULT_POOL;

use super::codec;
use crate::{PoolRow, Result, StoreError};

/// Ordered by name.
pub(super) async fn all(conn: &mut PgConnection) -> Result<Vec<PoolRow>> {
    let rows = codec::query("SELECT name, slots, description FROM pool ORDER BY name")
        .fetch_all(&mut *conn)
        .await?;
    codec::all(&rows, codec::pool_row)
}

pub(super) async fn upsert(conn: &mut PgConnection, row: &PoolRow) -> Result<()> {
    codec::query(
        "INSERT INTO pool (name, slots, description) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET slots = excluded.slots,
                                          description = excluded.description",
    )
    .bind(&row.name)
    .bind(row.slots)
    .bind(&row.description)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `default_pool` cannot be deleted (tasks fall back to it).
pub(super) async fn delete(conn: &mut PgConnection, name: &str) -> Result<bool> {
    if name == DEFAULT_POOL {
        return Err(StoreError::Invalid(format!(
            "{DEFAULT_POOL} cannot be deleted"
        )));
    }
    let done = codec::query("DELETE FROM pool WHERE name = $1")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() > 0)
}
