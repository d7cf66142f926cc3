//! The dialect-neutral layer both backends share: every statement that reads the same on
//! SQLite and PostgreSQL is written once here, in the submodules by subject (`dags`, `runs`,
//! `task_instances`, `jobs`, `pools`, `ui`, `api`, `purge`, `users`, `secrets`,
//! `sources`, `xcom`, `assets`), and the row decoding in
//! `codec`.
//!
//! The SQL uses numbered `$N` placeholders, which both drivers bind by number. What differs
//! between the dialects (list parameters, `ILIKE`, where NULLs sort, "no limit", row locks) is
//! asked of [`Dialect`]. The code runs on any connection that implements [`Db`]: each backend
//! implements it once for its connection type (binding [`Arg`]s, and on PostgreSQL honouring
//! the statement-cache switch), and chooses the connection and transaction around each call.
//!
//! Left per backend, because the SQL truly differs: the scheduler's critical sections, the
//! batched statements of the hot path (queueing, recording reports, applying transitions),
//! the batched DAG sync, migrations and connection setup.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

pub(crate) mod api;
pub(crate) mod assets;
pub(crate) mod codec;
pub(crate) mod dags;
pub(crate) mod jobs;
pub(crate) mod pools;
pub(crate) mod purge;
pub(crate) mod reschedules;
pub(crate) mod runs;
pub(crate) mod secrets;
pub(crate) mod sources;
pub(crate) mod task_instances;
pub(crate) mod ui;
pub(crate) mod users;
pub(crate) mod xcom;

tokio::task_local! {
    /// Whether the statements of the current call may be prepared by name and kept on their
    /// connection (sqlx's default), or must be unnamed and parsed at each execution, which a
    /// transaction-pooling PgBouncer needs. Set around every store call from the backend's
    /// choice; only PostgreSQL's connection reads it.
    pub(crate) static PERSISTENT: bool;
}

/// [`PERSISTENT`] for the current call (kept by name when unset).
pub(crate) fn persistent() -> bool {
    PERSISTENT.try_with(|p| *p).unwrap_or(true)
}

/// The SQL dialect of a backend, for the few fragments that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `column IN` the text list bound at `$param` (an [`Arg::Texts`]).
    pub fn in_texts(self, column: &str, param: usize) -> String {
        match self {
            Dialect::Sqlite => format!("{column} IN (SELECT value FROM json_each(${param}))"),
            Dialect::Postgres => format!("{column} = ANY(${param}::text[])"),
        }
    }

    /// `column NOT IN` the text list bound at `$param` (an [`Arg::Texts`]).
    pub fn not_in_texts(self, column: &str, param: usize) -> String {
        match self {
            Dialect::Sqlite => format!("{column} NOT IN (SELECT value FROM json_each(${param}))"),
            Dialect::Postgres => format!("{column} <> ALL(${param}::text[])"),
        }
    }

    /// `column IN` the integer list bound at `$param` (an [`Arg::Ints`]).
    pub fn in_ints(self, column: &str, param: usize) -> String {
        match self {
            Dialect::Sqlite => format!("{column} IN (SELECT value FROM json_each(${param}))"),
            Dialect::Postgres => format!("{column} = ANY(${param}::bigint[])"),
        }
    }

    /// A table `alias(value)` of the texts bound at `$param` (an [`Arg::Texts`]), for `FROM`.
    pub fn texts_table(self, param: usize, alias: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_each(${param}) AS {alias}"),
            Dialect::Postgres => format!("unnest(${param}::text[]) AS {alias}(value)"),
        }
    }

    /// The case-insensitive `LIKE` (SQLite's `LIKE` already ignores ASCII case).
    pub fn ilike(self) -> &'static str {
        match self {
            Dialect::Sqlite => "LIKE",
            Dialect::Postgres => "ILIKE",
        }
    }

    /// What follows `ASC`/`DESC` so NULLs sort as the smallest values, as SQLite sorts them.
    pub fn nulls_smallest(self, descending: bool) -> &'static str {
        match (self, descending) {
            (Dialect::Sqlite, _) => "",
            (Dialect::Postgres, true) => " NULLS LAST",
            (Dialect::Postgres, false) => " NULLS FIRST",
        }
    }

    /// The value of a `LIMIT` parameter: `None` is no limit (SQLite reads a negative limit
    /// so, PostgreSQL a NULL one).
    pub fn limit(self, limit: Option<u32>) -> Arg {
        match (self, limit) {
            (_, Some(n)) => Arg::Int(Some(i64::from(n))),
            (Dialect::Sqlite, None) => Arg::Int(Some(-1)),
            (Dialect::Postgres, None) => Arg::Int(None),
        }
    }

    /// A table named with the index its rows must be read through: SQLite's planner, without
    /// statistics on a young database, would otherwise pick a plainer index and sort;
    /// PostgreSQL's planner chooses by its own statistics.
    pub fn indexed_by(self, table: &str, index: &str) -> String {
        match self {
            Dialect::Sqlite => format!("{table} INDEXED BY {index}"),
            Dialect::Postgres => table.to_owned(),
        }
    }

    /// ` FOR UPDATE` where rows can be locked (PostgreSQL); SQLite's `BEGIN IMMEDIATE`
    /// already holds the whole database.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }
}

/// A value bound to a statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(bool),
    /// A list of texts: a JSON array on SQLite, a `text[]` on PostgreSQL.
    Texts(Vec<String>),
    /// A list of integers: a JSON array on SQLite, a `bigint[]` on PostgreSQL.
    Ints(Vec<i64>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(Some(v))
    }
}

impl From<i32> for Arg {
    fn from(v: i32) -> Arg {
        Arg::Int(Some(i64::from(v)))
    }
}

impl From<u32> for Arg {
    fn from(v: u32) -> Arg {
        Arg::Int(Some(i64::from(v)))
    }
}

impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::Int(v)
    }
}

impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::Bool(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(Some(v.to_owned()))
    }
}

impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(Some(v.clone()))
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(Some(v))
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::Text(v.map(str::to_owned))
    }
}

impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::Text(v)
    }
}

/// Timestamps are stored as microseconds since the Unix epoch, UTC.
impl From<DateTime<Utc>> for Arg {
    fn from(v: DateTime<Utc>) -> Arg {
        Arg::Int(Some(codec::ts(v)))
    }
}

impl From<Option<DateTime<Utc>>> for Arg {
    fn from(v: Option<DateTime<Utc>>) -> Arg {
        Arg::Int(v.map(codec::ts))
    }
}

/// A statement and its arguments: written whole with `$N` placeholders and [`Query::bind`],
/// or built up with [`Query::push`] and [`Query::push_bind`] (which numbers its placeholder).
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub sql: Cow<'static, str>,
    pub args: Vec<Arg>,
}

/// A statement to bind and run.
pub(crate) fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

impl Query {
    /// Bind the next `$N`.
    pub fn bind(mut self, arg: impl Into<Arg>) -> Query {
        self.args.push(arg.into());
        self
    }

    /// Append SQL text.
    pub fn push(&mut self, sql: &str) -> &mut Query {
        self.sql.to_mut().push_str(sql);
        self
    }

    /// Append a placeholder for `arg`.
    pub fn push_bind(&mut self, arg: impl Into<Arg>) -> &mut Query {
        let n = self.next_param();
        self.args.push(arg.into());
        let _ = write!(self.sql.to_mut(), "${n}");
        self
    }

    /// The number the next bound argument's placeholder will have.
    pub fn next_param(&self) -> usize {
        self.args.len() + 1
    }

    pub async fn fetch_all<C: Db + ?Sized>(self, conn: &mut C) -> sqlx::Result<Vec<C::Row>> {
        conn.fetch_all(self).await
    }

    pub async fn fetch_optional<C: Db + ?Sized>(
        self,
        conn: &mut C,
    ) -> sqlx::Result<Option<C::Row>> {
        conn.fetch_optional(self).await
    }

    pub async fn fetch_one<C: Db + ?Sized>(self, conn: &mut C) -> sqlx::Result<C::Row> {
        conn.fetch_optional(self)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// Runs the statement; returns the number of rows it changed.
    pub async fn execute<C: Db + ?Sized>(self, conn: &mut C) -> sqlx::Result<u64> {
        conn.execute(self).await
    }
}

/// A connection the shared SQL runs on (a plain connection or one inside a transaction):
/// implemented once per backend.
pub(crate) trait Db: Send {
    type Row: codec::StoreRow;
    const DIALECT: Dialect;

    fn fetch_all(
        &mut self,
        query: Query,
    ) -> impl Future<Output = sqlx::Result<Vec<Self::Row>>> + Send;

    fn fetch_optional(
        &mut self,
        query: Query,
    ) -> impl Future<Output = sqlx::Result<Option<Self::Row>>> + Send;

    fn execute(&mut self, query: Query) -> impl Future<Output = sqlx::Result<u64>> + Send;
}

/// Whether `err` is a UNIQUE / PRIMARY KEY violation.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_binds_are_numbered_after_the_bound_ones() {
        let mut q = query("SELECT 1 WHERE a = $1").bind(1_i64);
        q.push(" AND b = ")
            .push_bind("x")
            .push(" AND c = ")
            .push_bind(true);
        assert_eq!(q.sql, "SELECT 1 WHERE a = $1 AND b = $2 AND c = $3");
        assert_eq!(
            q.args,
            [
                Arg::Int(Some(1)),
                Arg::Text(Some("x".into())),
                Arg::Bool(true)
            ]
        );
    }

    #[test]
    fn no_limit_reads_as_each_dialect_wants() {
        assert_eq!(Dialect::Sqlite.limit(None), Arg::Int(Some(-1)));
        assert_eq!(Dialect::Postgres.limit(None), Arg::Int(None));
        assert_eq!(Dialect::Postgres.limit(Some(3)), Arg::Int(Some(3)));
    }
}
