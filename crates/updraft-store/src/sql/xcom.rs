//! XComs, for [`crate::XComStore`]. Visible rows are those of their task instance's current
//! try (joined on `try_number`).

use chrono::{DateTime, Utc};

use super::codec::{self, StoreRow};
use super::{Arg, Db, Query, is_unique_violation, query};
use crate::{Result, StoreError, TryXComs, WriteMode, XComQuery, XComRow, XComWrite};

const COLUMNS: &str = "x.run_pk, x.task_id, x.map_index, x.key, x.value, x.timestamp";

/// Rows of `xcom AS x` visible (of the current try).
const VISIBLE: &str = "xcom AS x JOIN task_instance AS ti
     ON ti.run_pk = x.run_pk AND ti.task_id = x.task_id AND ti.map_index = x.map_index
        AND ti.try_number = x.try_number";

/// Records one try's pushes (see [`crate::XComStore::record_xcoms`]); false when the task
/// instance is no longer at that try.
pub(crate) async fn record<C: Db + ?Sized>(
    conn: &mut C,
    pushed: &TryXComs,
    now: DateTime<Utc>,
) -> Result<bool> {
    let current = query(
        "SELECT 1 AS one FROM task_instance
         WHERE run_pk = $1 AND task_id = $2 AND map_index = $3 AND try_number = $4",
    )
    .bind(pushed.run_pk)
    .bind(&pushed.task_id)
    .bind(pushed.map_index)
    .bind(pushed.try_number)
    .fetch_optional(&mut *conn)
    .await?;
    if current.is_none() {
        return Ok(false);
    }
    query("DELETE FROM xcom WHERE run_pk = $1 AND task_id = $2 AND map_index = $3")
        .bind(pushed.run_pk)
        .bind(&pushed.task_id)
        .bind(pushed.map_index)
        .execute(&mut *conn)
        .await?;
    for entry in &pushed.entries {
        query(
            "INSERT INTO xcom (run_pk, task_id, map_index, key, try_number, value, timestamp)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (run_pk, task_id, map_index, key) DO UPDATE SET
                 value = excluded.value, timestamp = excluded.timestamp",
        )
        .bind(pushed.run_pk)
        .bind(&pushed.task_id)
        .bind(pushed.map_index)
        .bind(&entry.key)
        .bind(pushed.try_number)
        .bind(&entry.value)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}

pub(crate) async fn page<C: Db + ?Sized>(
    conn: &mut C,
    q: &XComQuery,
) -> Result<(Vec<XComRow>, u64)> {
    let mut counted = query(format!("SELECT COUNT(*) AS n FROM {VISIBLE} WHERE "));
    push_filters::<C>(&mut counted, q);
    let total = counted.fetch_one(&mut *conn).await?.int("n")?;

    let mut rows = query(format!("SELECT {COLUMNS} FROM {VISIBLE} WHERE "));
    push_filters::<C>(&mut rows, q);
    rows.push(" ORDER BY x.task_id, x.map_index, x.key LIMIT ")
        .push_bind(C::DIALECT.limit(q.limit))
        .push(" OFFSET ")
        .push_bind(q.offset);
    let rows = rows.fetch_all(conn).await?;
    Ok((
        codec::all(&rows, xcom_row)?,
        u64::try_from(total).unwrap_or(0),
    ))
}

fn push_filters<C: Db + ?Sized>(qb: &mut Query, q: &XComQuery) {
    qb.push("x.run_pk = ").push_bind(q.run_pk);
    if let Some(task_ids) = &q.task_ids {
        let listed = C::DIALECT.in_texts("x.task_id", qb.next_param());
        qb.push(" AND ").push(&listed);
        qb.args.push(Arg::Texts(task_ids.clone()));
    }
    if let Some(map_index) = q.map_index {
        qb.push(" AND x.map_index = ").push_bind(map_index);
    }
    if let Some(key) = &q.key {
        qb.push(" AND x.key = ").push_bind(key);
    }
}

/// Writes one XCom for the current try (see [`crate::XComStore::write_xcom`]); in a
/// transaction.
pub(crate) async fn write<C: Db + ?Sized>(
    conn: &mut C,
    x: &XComWrite<'_>,
    mode: WriteMode,
    now: DateTime<Utc>,
) -> Result<XComRow> {
    let what = || {
        format!(
            "XCom `{}` of task `{}` (map index {})",
            x.key, x.task_id, x.map_index
        )
    };
    let try_number = query(
        "SELECT try_number FROM task_instance
             WHERE run_pk = $1 AND task_id = $2 AND map_index = $3",
    )
    .bind(x.run_pk)
    .bind(x.task_id)
    .bind(x.map_index)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("task instance `{}`", x.task_id)))?
    .int("try_number")?;
    // An earlier try's rows are invisible; they must not make a new one conflict.
    query(
        "DELETE FROM xcom
         WHERE run_pk = $1 AND task_id = $2 AND map_index = $3 AND try_number <> $4",
    )
    .bind(x.run_pk)
    .bind(x.task_id)
    .bind(x.map_index)
    .bind(try_number)
    .execute(&mut *conn)
    .await?;
    let done = match mode {
        WriteMode::Create | WriteMode::Upsert => {
            let conflict = if mode == WriteMode::Upsert {
                " ON CONFLICT (run_pk, task_id, map_index, key) DO UPDATE SET
                     value = excluded.value, timestamp = excluded.timestamp"
            } else {
                ""
            };
            query(format!(
                "INSERT INTO xcom (run_pk, task_id, map_index, key, try_number, value, timestamp)
                 VALUES ($1, $2, $3, $4, $5, $6, $7){conflict}"
            ))
            .bind(x.run_pk)
            .bind(x.task_id)
            .bind(x.map_index)
            .bind(x.key)
            .bind(try_number)
            .bind(x.value)
            .bind(now)
            .execute(&mut *conn)
            .await
        }
        WriteMode::Update => {
            query(
                "UPDATE xcom SET value = $5, timestamp = $6
                 WHERE run_pk = $1 AND task_id = $2 AND map_index = $3 AND key = $4",
            )
            .bind(x.run_pk)
            .bind(x.task_id)
            .bind(x.map_index)
            .bind(x.key)
            .bind(x.value)
            .bind(now)
            .execute(&mut *conn)
            .await
        }
    };
    match done {
        Ok(0) => Err(StoreError::NotFound(what())),
        Ok(_) => Ok(XComRow {
            run_pk: x.run_pk,
            task_id: x.task_id.to_owned(),
            map_index: x.map_index,
            key: x.key.to_owned(),
            value: x.value.to_owned(),
            timestamp: DateTime::from_timestamp_micros(codec::ts(now)).unwrap_or(now),
        }),
        Err(e) if is_unique_violation(&e) => {
            Err(StoreError::Conflict(format!("{} already exists", what())))
        }
        Err(e) => Err(e.into()),
    }
}

fn xcom_row(row: &impl StoreRow) -> Result<XComRow> {
    Ok(XComRow {
        run_pk: row.int("run_pk")?,
        task_id: row.text("task_id")?,
        map_index: row.int("map_index")?,
        key: row.text("key")?,
        value: row.text("value")?,
        timestamp: codec::time_col(row, "timestamp")?,
    })
}
