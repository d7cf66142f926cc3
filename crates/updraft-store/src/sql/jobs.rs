//! Scheduler jobs: one row per scheduler process, kept alive by its heartbeat.
//!
//! A job is `running` until it stops cleanly (`stopped`) or another scheduler declares it
//! `dead` because its heartbeat went silent. Every change is a conditional `UPDATE` on the
//! state, so a job declared dead stays dead: its late heartbeat does not apply, which tells it
//! that its task instances are no longer its own.

use chrono::{DateTime, Utc};

use super::codec::{self, StoreRow, job_columns};
use super::{Db, query};
use crate::{Result, SchedulerJobRow};

pub(crate) async fn register<C: Db + ?Sized>(
    conn: &mut C,
    hostname: &str,
    pid: u32,
    now: DateTime<Utc>,
) -> Result<i64> {
    let row = query(
        "INSERT INTO scheduler_job (hostname, pid, state, start_date, latest_heartbeat)
         VALUES ($1, $2, 'running', $3, $3)
         RETURNING id",
    )
    .bind(hostname)
    .bind(pid)
    .bind(now)
    .fetch_one(conn)
    .await?;
    row.int("id")
}

/// False when the job is no longer `running` (or unknown).
pub(crate) async fn heartbeat<C: Db + ?Sized>(
    conn: &mut C,
    job_id: i64,
    now: DateTime<Utc>,
) -> Result<bool> {
    let done =
        query("UPDATE scheduler_job SET latest_heartbeat = $1 WHERE id = $2 AND state = 'running'")
            .bind(now)
            .bind(job_id)
            .execute(conn)
            .await?;
    Ok(done > 0)
}

/// A `running` job becomes `stopped`; a job already declared dead stays dead.
pub(crate) async fn stop<C: Db + ?Sized>(
    conn: &mut C,
    job_id: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    query(
        "UPDATE scheduler_job SET state = 'stopped', end_date = $1
         WHERE id = $2 AND state = 'running'",
    )
    .bind(now)
    .bind(job_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Silent `running` jobs other than `except` become `dead`; returns their ids, ascending.
pub(crate) async fn reap<C: Db + ?Sized>(
    conn: &mut C,
    cutoff: DateTime<Utc>,
    except: i64,
    now: DateTime<Utc>,
) -> Result<Vec<i64>> {
    let rows = query(
        "UPDATE scheduler_job SET state = 'dead', end_date = $1
         WHERE state = 'running' AND id <> $2 AND latest_heartbeat < $3
         RETURNING id",
    )
    .bind(now)
    .bind(except)
    .bind(cutoff)
    .fetch_all(conn)
    .await?;
    let mut ids = rows
        .iter()
        .map(|row| row.int("id"))
        .collect::<Result<Vec<i64>>>()?;
    ids.sort_unstable();
    Ok(ids)
}

/// Newest (greatest id) first.
pub(crate) async fn all<C: Db + ?Sized>(conn: &mut C, limit: u32) -> Result<Vec<SchedulerJobRow>> {
    let rows = query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM scheduler_job ORDER BY id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    codec::all(&rows, codec::job_row)
}
