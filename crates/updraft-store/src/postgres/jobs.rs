//! Scheduler jobs: one row per scheduler process, kept alive by its heartbeat.
//!
//! A job is `running` until it stops cleanly (`stopped`) or another scheduler declares it
//! `dead` because its heartbeat went silent. Every change is a conditional `UPDATE` on the
//! state, so a job declared dead stays dead: its late heartbeat does not apply, which tells it
//! that its task instances are no longer its own.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::codec::{self, job_columns, ts};
use crate::{Result, SchedulerJobRow};

pub(super) async fn register(
    conn: &mut PgConnection,
    hostname: &str,
    pid: u32,
    now: DateTime<Utc>,
) -> Result<i64> {
    let (id,): (i64,) = codec::query_as(
        "INSERT INTO scheduler_job (hostname, pid, state, start_date, latest_heartbeat)
         VALUES ($1, $2, 'running', $3, $3)
         RETURNING id",
    )
    .bind(hostname)
    .bind(i64::from(pid))
    .bind(ts(now))
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

/// False when the job is no longer `running` (or unknown).
pub(super) async fn heartbeat(
    conn: &mut PgConnection,
    job_id: i64,
    now: DateTime<Utc>,
) -> Result<bool> {
    let done = codec::query(
        "UPDATE scheduler_job SET latest_heartbeat = $1 WHERE id = $2 AND state = 'running'",
    )
    .bind(ts(now))
    .bind(job_id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// A `running` job becomes `stopped`; a job already declared dead stays dead.
pub(super) async fn stop(conn: &mut PgConnection, job_id: i64, now: DateTime<Utc>) -> Result<()> {
    codec::query(
        "UPDATE scheduler_job SET state = 'stopped', end_date = $1
         WHERE id = $2 AND state = 'running'",
    )
    .bind(ts(now))
    .bind(job_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Silent `running` jobs other than `except` become `dead`; returns their ids, ascending.
pub(super) async fn reap(
    conn: &mut PgConnection,
    cutoff: DateTime<Utc>,
    except: i64,
    now: DateTime<Utc>,
) -> Result<Vec<i64>> {
    let rows: Vec<(i64,)> = codec::query_as(
        "UPDATE scheduler_job SET state = 'dead', end_date = $1
         WHERE state = 'running' AND id <> $2 AND latest_heartbeat < $3
         RETURNING id",
    )
    .bind(ts(now))
    .bind(except)
    .bind(ts(cutoff))
    .fetch_all(&mut *conn)
    .await?;
    let mut ids: Vec<i64> = rows.into_iter().map(|(id,)| id).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Newest (greatest id) first.
pub(super) async fn all(conn: &mut PgConnection, limit: u32) -> Result<Vec<SchedulerJobRow>> {
    let rows = codec::query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM scheduler_job ORDER BY id DESC LIMIT $1"
    ))
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    codec::all(&rows, codec::job_row)
}
