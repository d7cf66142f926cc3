//! Housekeeping: Airflow's `db clean` ([`crate::Store::clean`]). Mirrors `sqlite/clean.rs`.
//!
//! One transaction deletes, in order: change-log rows of runs deleted before (never the newest
//! row, so the latest change never goes back), the old finished runs (their task instances,
//! tries and notes go by `ON DELETE CASCADE`; the change-log trigger records their deletion,
//! and those rows stay so live views learn of it), finished scheduler jobs, and the DAG
//! versions nothing uses any more. A dry run does the same and rolls back, so its counts are
//! exactly what a real run at that moment would delete.
//!
//! The run conditions sit on the deleted row itself (not in a subquery), so under READ
//! COMMITTED a run that another transaction moved back to `queued` or `running` meanwhile is
//! re-checked and kept. The counts of instances and tries come from the same statement as the
//! deletion (its snapshot still shows them; the cascades run at its end), so they match.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use sqlx::postgres::PgPool;

use super::codec::{self, ts};
use crate::{CleanReport, Result};

pub(super) async fn clean(
    pool: &PgPool,
    before: DateTime<Utc>,
    dry_run: bool,
) -> Result<CleanReport> {
    let mut tx = pool.begin().await?;
    let report = delete_all(&mut tx, ts(before)).await?;
    if dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(report)
}

async fn delete_all(conn: &mut PgConnection, before: i64) -> Result<CleanReport> {
    // Change-log rows of runs that no longer exist, recorded before this clean (the rows have
    // no time of their own; a follower has long read them).
    let run_changes = codec::query(
        "DELETE FROM run_change
         WHERE NOT EXISTS (SELECT 1 FROM dag_run WHERE dag_run.id = run_change.run_pk)
           AND seq < (SELECT MAX(seq) FROM run_change)",
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();

    // Finished before `before`, and not the DAG's latest scheduled or backfill run (ordered as
    // `latest_scheduled`: greatest `data_interval_end`, then `data_interval_start`, then id),
    // whatever its age. Instances, tries and notes follow by ON DELETE CASCADE.
    let (runs, task_instances, tries): (i64, i64, i64) = codec::query_as(
        "WITH gone AS (
             DELETE FROM dag_run AS r
             WHERE r.state IN ('success', 'failed')
               AND r.end_date IS NOT NULL AND r.end_date < $1
               AND (r.run_type NOT IN ('scheduled', 'backfill')
                    OR EXISTS (
                        SELECT 1 FROM dag_run AS later
                        WHERE later.dag_id = r.dag_id
                          AND later.run_type IN ('scheduled', 'backfill')
                          AND (later.data_interval_end > r.data_interval_end
                               OR (later.data_interval_end = r.data_interval_end
                                   AND (later.data_interval_start > r.data_interval_start
                                        OR (later.data_interval_start = r.data_interval_start
                                            AND later.id > r.id))))))
             RETURNING r.id
         )
         SELECT (SELECT COUNT(*) FROM gone),
                (SELECT COUNT(*) FROM task_instance WHERE run_pk IN (SELECT id FROM gone)),
                (SELECT COUNT(*) FROM task_try WHERE run_pk IN (SELECT id FROM gone))",
    )
    .bind(before)
    .fetch_one(&mut *conn)
    .await?;

    let scheduler_jobs = codec::query(
        "DELETE FROM scheduler_job
         WHERE state <> 'running' AND end_date IS NOT NULL AND end_date < $1",
    )
    .bind(before)
    .execute(&mut *conn)
    .await?
    .rows_affected();

    let dag_versions = codec::query(
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
        runs: runs as u64,
        task_instances: task_instances as u64,
        tries: tries as u64,
        run_changes,
        scheduler_jobs,
        dag_versions,
    })
}
