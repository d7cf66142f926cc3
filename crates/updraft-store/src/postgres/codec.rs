//! The PostgreSQL connection as a [`Db`] for the shared SQL, and `query`/`query_as` for the SQL
//! kept here, both honouring the statement-cache choice.
//!
//! Arguments are bound with their PostgreSQL types (lists as arrays). Every statement is
//! prepared by name and cached, or left unnamed, as the store is configured (see
//! [`crate::sql::PERSISTENT`]); the shared row decoding is re-exported for the SQL kept here.

use sqlx::postgres::{PgRow, Postgres};
use sqlx::{AssertSqlSafe, PgConnection};

use crate::sql::{Arg, Db, Dialect, Query};

pub(super) use crate::sql::codec::{
    all, col, opt_ts, run_columns, run_row, ti_columns, ti_row, to_json, ts,
};

pub(super) use crate::sql::persistent;

/// `sqlx::query`, prepared by name or not as the store is configured.
pub(super) fn query<'q>(
    sql: &'static str,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql).persistent(persistent())
}

/// `sqlx::query_as`, prepared by name or not as the store is configured.
pub(super) fn query_as<'q, O>(
    sql: &'static str,
) -> sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments>
where
    O: for<'r> sqlx::FromRow<'r, PgRow>,
{
    sqlx::query_as(sql).persistent(persistent())
}

type PgQuery = sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments>;

fn prepare(query: Query) -> PgQuery {
    let q = sqlx::query(AssertSqlSafe(query.sql)).persistent(persistent());
    query.args.into_iter().fold(q, |q, arg| match arg {
        Arg::Int(v) => q.bind(v),
        Arg::Text(v) => q.bind(v),
        Arg::Bool(v) => q.bind(v),
        Arg::Texts(v) => q.bind(v),
        Arg::Ints(v) => q.bind(v),
    })
}

impl Db for PgConnection {
    type Row = PgRow;
    const DIALECT: Dialect = Dialect::Postgres;

    async fn fetch_all(&mut self, query: Query) -> sqlx::Result<Vec<PgRow>> {
        prepare(query).fetch_all(self).await
    }

    async fn fetch_optional(&mut self, query: Query) -> sqlx::Result<Option<PgRow>> {
        prepare(query).fetch_optional(self).await
    }

    async fn execute(&mut self, query: Query) -> sqlx::Result<u64> {
        Ok(prepare(query).execute(self).await?.rows_affected())
    }
}
