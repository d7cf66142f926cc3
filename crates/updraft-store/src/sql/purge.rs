//! Housekeeping: Airflow's `db clean` ([`crate::AdminStore::purge_history`]).
//!
//! Inside the caller's transaction, delete in order: change-log rows of runs deleted before
//! (never the newest row: SQLite's `seq` is `MAX(seq) + 1`, so removing it would hand its
//! number out again, and on PostgreSQL the latest change must never go back), the old finished
//! runs (their task instances, tries and notes go by `ON DELETE CASCADE`; the change-log
//! triggers record their deletion, and those rows stay so live views learn of it), finished
//! scheduler jobs, and the DAG versions nothing uses any more. A dry run does the same and
//! rolls back, so its counts are exactly what a real run at that moment would delete.

use super::codec::StoreRow;
use super::{Db, Dialect, query};
use crate::{PurgeReport, Result};

/// Whether run `r` is old enough to go (`$1` = `before`, microseconds): finished before
/// `before`, and not the DAG's latest scheduled or backfill run (ordered as
/// `latest_scheduled`: greatest `data_interval_end`, then `data_interval_start`, then id),
/// whatever its age.
///
/// On PostgreSQL the conditions sit on the deleted row itself (not in a subquery), so under
/// READ COMMITTED a run that another transaction moved back to `queued` or `running` meanwhile
/// is re-checked and kept.
macro_rules! old_run {
    () => {
        "r.state IN ('success', 'failed')
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
                                      AND later.id > r.id))))))"
    };
}

/// SQLite: count what the old runs take with them, then delete them.
const COUNT_OLD_RUNS_SQLITE: &str = concat!(
    "SELECT
         (SELECT COUNT(*) FROM task_instance
          WHERE run_pk IN (SELECT r.id FROM dag_run AS r WHERE ",
    old_run!(),
    ")) AS task_instances,
         (SELECT COUNT(*) FROM task_try
          WHERE run_pk IN (SELECT r.id FROM dag_run AS r WHERE ",
    old_run!(),
    ")) AS tries"
);

const DELETE_OLD_RUNS_SQLITE: &str = concat!(
    "DELETE FROM dag_run WHERE id IN (SELECT r.id FROM dag_run AS r WHERE ",
    old_run!(),
    ")"
);

/// PostgreSQL: delete and count in one statement; its snapshot still shows the instances and
/// tries (the cascades run at its end), so the counts match the deletion.
const DELETE_OLD_RUNS_POSTGRES: &str = concat!(
    "WITH gone AS (DELETE FROM dag_run AS r WHERE ",
    old_run!(),
    " RETURNING r.id)
     SELECT (SELECT COUNT(*) FROM gone) AS runs,
            (SELECT COUNT(*) FROM task_instance WHERE run_pk IN (SELECT id FROM gone))
                AS task_instances,
            (SELECT COUNT(*) FROM task_try WHERE run_pk IN (SELECT id FROM gone)) AS tries"
);

/// Runs, task instances and tries deleted.
async fn delete_old_runs<C: Db + ?Sized>(conn: &mut C, before: i64) -> Result<(u64, u64, u64)> {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    match C::DIALECT {
        Dialect::Sqlite => {
            let row = query(COUNT_OLD_RUNS_SQLITE)
                .bind(before)
                .fetch_one(&mut *conn)
                .await?;
            let (task_instances, tries) = (row.int("task_instances")?, row.int("tries")?);
            let runs = query(DELETE_OLD_RUNS_SQLITE)
                .bind(before)
                .execute(conn)
                .await?;
            Ok((runs, count(task_instances), count(tries)))
        }
        Dialect::Postgres => {
            let row = query(DELETE_OLD_RUNS_POSTGRES)
                .bind(before)
                .fetch_one(conn)
                .await?;
            Ok((
                count(row.int("runs")?),
                count(row.int("task_instances")?),
                count(row.int("tries")?),
            ))
        }
    }
}

/// Delete everything [`crate::AdminStore::purge_history`] deletes, in the caller's transaction.
pub(crate) async fn delete_all<C: Db + ?Sized>(conn: &mut C, before: i64) -> Result<PurgeReport> {
    // Change-log rows of runs that no longer exist, recorded before this clean (the rows have
    // no time of their own; a follower has long read them).
    let run_changes = query(
        "DELETE FROM run_change
         WHERE NOT EXISTS (SELECT 1 FROM dag_run WHERE dag_run.id = run_change.run_pk)
           AND seq < (SELECT MAX(seq) FROM run_change)",
    )
    .execute(&mut *conn)
    .await?;

    let (runs, task_instances, tries) = delete_old_runs(conn, before).await?;

    let scheduler_jobs = query(
        "DELETE FROM scheduler_job
         WHERE state <> 'running' AND end_date IS NOT NULL AND end_date < $1",
    )
    .bind(before)
    .execute(&mut *conn)
    .await?;

    let dag_versions = query(
        "DELETE FROM dag_version
         WHERE NOT EXISTS (SELECT 1 FROM dag
                           WHERE dag.dag_id = dag_version.dag_id
                             AND dag.version = dag_version.version)
           AND NOT EXISTS (SELECT 1 FROM dag_run
                           WHERE dag_run.dag_id = dag_version.dag_id
                             AND dag_run.version = dag_version.version)",
    )
    .execute(conn)
    .await?;

    Ok(PurgeReport {
        runs,
        task_instances,
        tries,
        run_changes,
        scheduler_jobs,
        dag_versions,
    })
}
