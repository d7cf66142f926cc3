//! Pools: named slot budgets shared by task instances.

use updraft_dag::DEFAULT_POOL;

use super::{Db, codec, is_unique_violation, query};
use crate::{PoolRow, Result, StoreError};

/// Ordered by name.
pub(crate) async fn all<C: Db + ?Sized>(conn: &mut C) -> Result<Vec<PoolRow>> {
    let rows = query("SELECT name, slots, description, tenant FROM pool ORDER BY name")
        .fetch_all(conn)
        .await?;
    codec::all(&rows, codec::pool_row)
}

/// Creates the pool, or changes an existing one's slots and description (never its tenant).
pub(crate) async fn upsert<C: Db + ?Sized>(conn: &mut C, row: &PoolRow) -> Result<()> {
    query(
        "INSERT INTO pool (name, slots, description, tenant) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET slots = excluded.slots,
                                          description = excluded.description",
    )
    .bind(&row.name)
    .bind(row.slots)
    .bind(&row.description)
    .bind(row.tenant.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

/// An existing name (of any tenant's pool) is a [`StoreError::Conflict`].
pub(crate) async fn create<C: Db + ?Sized>(conn: &mut C, row: &PoolRow) -> Result<()> {
    let done = query("INSERT INTO pool (name, slots, description, tenant) VALUES ($1, $2, $3, $4)")
        .bind(&row.name)
        .bind(row.slots)
        .bind(&row.description)
        .bind(row.tenant.as_deref())
        .execute(conn)
        .await;
    match done {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "pool {} already exists",
            row.name
        ))),
        Err(e) => Err(e.into()),
    }
}

/// `default_pool` cannot be deleted (tasks fall back to it).
pub(crate) async fn delete<C: Db + ?Sized>(conn: &mut C, name: &str) -> Result<bool> {
    if name == DEFAULT_POOL {
        return Err(StoreError::Invalid(format!(
            "{DEFAULT_POOL} cannot be deleted"
        )));
    }
    let done = query("DELETE FROM pool WHERE name = $1")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(done > 0)
}
