//! The SQLite connection as a [`Db`] for the shared SQL: arguments bound (lists as JSON
//! arrays, read with `json_each`), and the shared row decoding re-exported for the SQL kept
//! here.

use sqlx::sqlite::{Sqlite, SqliteRow};
use sqlx::{AssertSqlSafe, SqliteConnection};

use crate::sql::{Arg, Db, Dialect, Query};

pub(super) use crate::sql::codec::{
    all, col, opt_ts, run_columns, run_row, ti_columns, ti_row, to_json, ts,
};

type SqliteQuery = sqlx::query::Query<'static, Sqlite, <Sqlite as sqlx::Database>::Arguments>;

fn prepare(query: Query) -> SqliteQuery {
    query
        .args
        .into_iter()
        .fold(sqlx::query(AssertSqlSafe(query.sql)), |q, arg| match arg {
            Arg::Int(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Texts(v) => q.bind(serde_json::Value::from(v).to_string()),
            Arg::Ints(v) => q.bind(serde_json::Value::from(v).to_string()),
        })
}

impl Db for SqliteConnection {
    type Row = SqliteRow;
    const DIALECT: Dialect = Dialect::Sqlite;

    async fn fetch_all(&mut self, query: Query) -> sqlx::Result<Vec<SqliteRow>> {
        prepare(query).fetch_all(self).await
    }

    async fn fetch_optional(&mut self, query: Query) -> sqlx::Result<Option<SqliteRow>> {
        prepare(query).fetch_optional(self).await
    }

    async fn execute(&mut self, query: Query) -> sqlx::Result<u64> {
        Ok(prepare(query).execute(self).await?.rows_affected())
    }
}
