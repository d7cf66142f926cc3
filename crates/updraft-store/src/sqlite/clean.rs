//! Housekeeping: Airflow's `db clean` ([`crate::Store::clean`]).
//!
//! One `BEGIN IMMEDIATE` transaction deletes, in order: change-log rows of runs deleted before
//! (never the newest row: SQLite's `seq` is `MAX(seq) + 1`, so removing it would hand its number
//! out again to a change a follower may think it has seen), the old finished runs (their task
//! instances, tries and notes go by `ON DELETE CASCADE`; the change-log triggers record their
//! deletion, and those rows stay so live views learn of it), finished scheduler jobs, and the
//! DAG versions nothing uses any more. A dry run does the same and rolls back, so its counts
//! are exactly what a real run at that moment would delete.

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;

use super::codec::ts;
use crate::{CleanReport, Result};

/// The runs [`clean`] deletes (`?1` = `before`, microseconds): finished before `before`, and
/// not the DAG's latest scheduled or backfill run (ordered as `latest_scheduled`: greatest
/// `data_interval_end`, then `data_interval_start`, then id), whatever its age.
macro_rules! old_runs {
    () => {
        "SELECT id FROM dag_run
         WHERE state IN ('success', 'failed')
           AND end_date IS NOT NULL AND end_date < ?1
           AND (run_type NOT IN ('scheduled', 'backfill')
                OR EXISTS (
                    SELECT 1 FROM dag_run AS later
                    WHERE later.dag_id = dag_run.dag_id
                      AND later.run_type IN ('scheduled', 'backfill')
                      AND (later.data_interval_end > dag_run.data_interval_end
                           OR (later.data_interval_end = dag_run.data_interval_end
                               AND (later.data_interval_start > dag_run.data_interval_start
                                    OR (later.data_interval_start = dag_run.data_interval_start
                                        AND later.id > dag_run.id))))))"
    };
}

pub(super) async fn clean(
    pool: &SqlitePool,
    before: DateTime<Utc>,
    dry_run: bool,
) -> Result<CleanReport> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let report = delete_all(&mut tx, ts(before)).await?;
    if dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(report)
}

async fn delete_all(conn: &mut SqliteConnection, before: i64) -> Result<CleanReport> {
    // Change-log rows of runs that no longer exist, recorded before this clean (the rows have
    // no time of their own; a follower has long read them).
    let run_changes = sqlx::query(
        "DELETE FROM run_change
         WHERE NOT EXISTS (SELECT 1 FROM dag_run WHERE dag_run.id = run_change.run_pk)
           AND seq < (SELECT MAX(seq) FROM run_change)",
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();

    let tries: i64 = sqlx::query_scalar(concat!(
        "SELECT COUNT(*) FROM task_try WHERE run_pk IN (",
        old_runs!(),
        ")"
    ))
    .bind(before)
    .fetch_one(&mut *conn)
    .await?;
    let task_instances: i64 = sqlx::query_scalar(concat!(
        "SELECT COUNT(*) FROM task_instance WHERE run_pk IN (",
        old_runs!(),
        ")"
    ))
    .bind(before)
    .fetch_one(&mut *conn)
    .await?;
    // Instances, tries and notes follow by ON DELETE CASCADE.
    let runs = sqlx::query(concat!(
        "DELETE FROM dag_run WHERE id IN (",
        old_runs!(),
        ")"
    ))
    .bind(before)
    .execute(&mut *conn)
    .await?
    .rows_affected();

    let scheduler_jobs = sqlx::query(
        "DELETE FROM scheduler_job
         WHERE state <> 'running' AND end_date IS NOT NULL AND end_date < ?1",
    )
    .bind(before)
    .execute(&mut *conn)
    .await?
    .rows_affected();

    let dag_versions = sqlx::query(
        "DELETE FROM dag_version
         WHERE NOT EXISTS (SELECT 1 FROM dag
                           WHERE dag.dag_id = dag_version.dag_id
                             AND dag.version = dag_version.version)
           AND NOT EXISTS (SELECT 1 FROM dag_run
                           WHERE dag_run.dag_id = dag_version.dag_id
                             AND dag_run.version = dag_version.version)",
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();

    Ok(CleanReport {
        runs,
        task_instances: task_instances as u64,
        tries: tries as u64,
        run_changes,
        scheduler_jobs,
        dag_versions,
    })
}
