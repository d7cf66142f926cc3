//! DAG sources: each source's last recorded sync, and the requests to sync now.

use chrono::{DateTime, Utc};

use super::codec::{self, StoreRow};
use super::{Db, query};
use crate::{Result, SourceRow};

const SOURCE_COLUMNS: &str = "name, tenant, kind, url, reference, revision, revision_url, \
     last_sync_at, last_success_at, failures, error, sync_requested_at";

/// Inserts or replaces the source's row; a pending request stays as it is.
pub(crate) async fn record<C: Db + ?Sized>(conn: &mut C, source: &SourceRow) -> Result<()> {
    query(
        "INSERT INTO dag_source (name, tenant, kind, url, reference, revision, revision_url,
             last_sync_at, last_success_at, failures, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (name) DO UPDATE SET
             tenant = excluded.tenant,
             kind = excluded.kind,
             url = excluded.url,
             reference = excluded.reference,
             revision = excluded.revision,
             revision_url = excluded.revision_url,
             last_sync_at = excluded.last_sync_at,
             last_success_at = excluded.last_success_at,
             failures = excluded.failures,
             error = excluded.error",
    )
    .bind(&source.name)
    .bind(source.tenant.as_deref())
    .bind(&source.kind)
    .bind(&source.url)
    .bind(source.reference.as_deref())
    .bind(source.revision.as_deref())
    .bind(source.revision_url.as_deref())
    .bind(source.last_sync_at)
    .bind(source.last_success_at)
    .bind(source.failures)
    .bind(source.error.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn all<C: Db + ?Sized>(conn: &mut C) -> Result<Vec<SourceRow>> {
    let rows = query(format!(
        "SELECT {SOURCE_COLUMNS} FROM dag_source ORDER BY name"
    ))
    .fetch_all(conn)
    .await?;
    codec::all(&rows, codec::source_row)
}

pub(crate) async fn one<C: Db + ?Sized>(conn: &mut C, name: &str) -> Result<Option<SourceRow>> {
    let row = query(format!(
        "SELECT {SOURCE_COLUMNS} FROM dag_source WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(codec::source_row).transpose()
}

/// A request already pending keeps its (earlier) time. False when no such source is recorded.
pub(crate) async fn request_sync<C: Db + ?Sized>(
    conn: &mut C,
    name: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let done = query(
        "UPDATE dag_source SET sync_requested_at = COALESCE(sync_requested_at, $2)
         WHERE name = $1",
    )
    .bind(name)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done > 0)
}

/// Clears every pending request and returns the sources it was for: one statement, so
/// schedulers taking requests at once each get different ones.
pub(crate) async fn take_requests<C: Db + ?Sized>(conn: &mut C) -> Result<Vec<String>> {
    let rows = query(
        "UPDATE dag_source SET sync_requested_at = NULL
         WHERE sync_requested_at IS NOT NULL
         RETURNING name",
    )
    .fetch_all(conn)
    .await?;
    let mut names = rows
        .iter()
        .map(|row| row.text("name"))
        .collect::<Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}
