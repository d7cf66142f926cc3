//! The `sql` check (Airflow's `SqlSensor`): the query's first row's first cell, read as
//! Python's `bool` reads it (NULL, 0, 0.0, false and "" are false; no row is false), ends the
//! wait when true. `sqlite` connections name the database file in `host` (as Airflow's
//! SQLite connection), opened read-only; `postgres` connections give host, port, login,
//! password and the database in `schema`. One connection per poke, closed after it.

use sqlx::{Column as _, Connection as _, Row as _, TypeInfo as _, ValueRef as _};

use super::{PokeFailure, PokeResult, SqlQuery};

pub(super) async fn poke(query: &SqlQuery) -> Result<(PokeResult, String), PokeFailure> {
    let conn = &query.connection;
    let truthy = match conn.conn_type.as_str() {
        "sqlite" => sqlite(conn, &query.query).await,
        "postgres" | "postgresql" => postgres(conn, &query.query).await,
        other => Err(format!(
            "connection {} is of type {other:?}: a sql sensor needs a sqlite or postgres connection",
            conn.conn_id
        )),
    }
    .map_err(|e| PokeFailure::Error(format!("sql sensor on {}: {e}", conn.conn_id)))?;
    Ok(match truthy {
        Some(true) => (PokeResult::Done, "the first cell is true".to_owned()),
        Some(false) => (PokeResult::NotYet, "the first cell is false".to_owned()),
        None => (PokeResult::NotYet, "the query returned no row".to_owned()),
    })
}

async fn sqlite(conn: &updraft_secrets::Connection, sql: &str) -> Result<Option<bool>, String> {
    let file = conn
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .ok_or("the connection has no host (the database file)")?;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .read_only(true);
    let mut db = sqlx::SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| e.to_string())?;
    // The DAG author's query, run as written (Airflow's SqlSensor does the same).
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_optional(&mut db)
        .await
        .map_err(|e| e.to_string());
    let _ = db.close().await;
    row?.map(|r| first_cell_sqlite(&r)).transpose()
}

async fn postgres(conn: &updraft_secrets::Connection, sql: &str) -> Result<Option<bool>, String> {
    let mut options = sqlx::postgres::PgConnectOptions::new_without_pgpass()
        .host(conn.host.as_deref().unwrap_or("localhost"))
        .port(conn.port.unwrap_or(5432));
    if let Some(login) = conn.login.as_deref() {
        options = options.username(login);
    }
    if let Some(password) = conn.password.as_deref() {
        options = options.password(password);
    }
    if let Some(database) = conn.schema.as_deref().filter(|s| !s.is_empty()) {
        options = options.database(database);
    }
    // Unnamed statements: the connection may go through PgBouncer.
    options = options.statement_cache_capacity(0);
    let mut db = sqlx::PgConnection::connect_with(&options)
        .await
        .map_err(|e| e.to_string())?;
    // The DAG author's query, run as written (Airflow's SqlSensor does the same).
    let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_optional(&mut db)
        .await
        .map_err(|e| e.to_string());
    let _ = db.close().await;
    row?.map(|r| first_cell_pg(&r)).transpose()
}

fn first_cell_sqlite(row: &sqlx::sqlite::SqliteRow) -> Result<bool, String> {
    if row.columns().is_empty() {
        return Ok(false);
    }
    if row.try_get_raw(0).map_err(|e| e.to_string())?.is_null() {
        return Ok(false);
    }
    if let Ok(i) = row.try_get::<i64, _>(0) {
        return Ok(i != 0);
    }
    if let Ok(f) = row.try_get::<f64, _>(0) {
        return Ok(f != 0.0);
    }
    if let Ok(s) = row.try_get::<String, _>(0) {
        return Ok(!s.is_empty());
    }
    if let Ok(b) = row.try_get::<Vec<u8>, _>(0) {
        return Ok(!b.is_empty());
    }
    Ok(true)
}

fn first_cell_pg(row: &sqlx::postgres::PgRow) -> Result<bool, String> {
    let Some(column) = row.columns().first() else {
        return Ok(false);
    };
    if row.try_get_raw(0).map_err(|e| e.to_string())?.is_null() {
        return Ok(false);
    }
    let get_err = |e: sqlx::Error| e.to_string();
    Ok(match column.type_info().name() {
        "BOOL" => row.try_get::<bool, _>(0).map_err(get_err)?,
        "INT2" => row.try_get::<i16, _>(0).map_err(get_err)? != 0,
        "INT4" => row.try_get::<i32, _>(0).map_err(get_err)? != 0,
        "INT8" => row.try_get::<i64, _>(0).map_err(get_err)? != 0,
        "FLOAT4" => row.try_get::<f32, _>(0).map_err(get_err)? != 0.0,
        "FLOAT8" => row.try_get::<f64, _>(0).map_err(get_err)? != 0.0,
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => {
            !row.try_get::<String, _>(0).map_err(get_err)?.is_empty()
        }
        // NUMERIC and anything else: its text is compared with zero where it is a number.
        _ => match row.try_get::<String, _>(0) {
            Ok(text) => !(text.is_empty() || text.parse::<f64>().is_ok_and(|v| v == 0.0)),
            Err(_) => true,
        },
    })
}
