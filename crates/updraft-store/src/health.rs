//! What a store has met going wrong with its database, kept for the health check and for the
//! processes that must stop: whether its last write failed (a full disk, an I/O error, the
//! server gone), and whether the database was found corrupt.
//!
//! Every store method's outcome passes through [`Health::observe`] (see `crate::backend`):
//! a database error saying the file or a relation is corrupt becomes
//! [`StoreError::DatabaseCorrupt`] naming the database and how to recover, and is remembered
//! for [`crate::AdminStore::corruption_found`]; a write's outcome is kept for
//! [`crate::AdminStore::write_failure`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::StoreError;

/// Whether an observed call wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// Which database a store speaks to: their error codes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    /// Numeric result codes (extended ones included).
    Sqlite,
    /// Five-character SQLSTATEs.
    Postgres,
}

/// One store's record of its database's failures. Shared by the store's clones.
#[derive(Debug)]
pub(crate) struct Health {
    engine: Engine,
    /// The database as messages name it: an SQLite file's path, a PostgreSQL URL without its
    /// password.
    database: String,
    /// What to do about a corrupt database of this kind.
    recovery: String,
    /// Writes' outcomes, for [`Health::write_failure`].
    writes: Mutex<Writes>,
    /// The first corruption met (the database's words), once met.
    corrupt: watch::Sender<Option<String>>,
}

impl Health {
    pub(crate) fn new(engine: Engine, database: String, recovery: String) -> Health {
        Health {
            engine,
            database,
            recovery,
            writes: Mutex::new(Writes::default()),
            corrupt: watch::Sender::new(None),
        }
    }

    /// The advice for an SQLite database file at `path`.
    pub(crate) fn sqlite_recovery(path: &str) -> String {
        format!(
            "stop every updraft process using it, keep a copy of the file (with its -wal and \
             -shm files), then restore it from a backup, or rescue what SQLite can still read \
             with `sqlite3 '{path}' .recover | sqlite3 '{path}.recovered'` and move \
             '{path}.recovered' into its place (`updraft db check` checks the result)"
        )
    }

    /// The advice for a PostgreSQL database.
    pub(crate) fn postgres_recovery() -> String {
        "a relation's pages are damaged: restore the database from a backup (or, for a damaged \
         index, REINDEX it) following PostgreSQL's documentation, then restart updraft"
            .to_string()
    }

    /// `result`, with a corrupt-database error turned into [`StoreError::DatabaseCorrupt`]
    /// (and remembered); for a write, the failed-write flag follows the outcome.
    pub(crate) fn observe<T>(
        &self,
        access: Access,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match result {
            Ok(value) => {
                if access == Access::Write {
                    self.writes().succeeded();
                }
                Ok(value)
            }
            Err(e) => {
                if let Some(detail) = corruption(self.engine, &e) {
                    return Err(self.corrupt(detail));
                }
                if access == Access::Write && refuses_writes(self.engine, &e) {
                    self.writes().failed(&self.database, e.to_string());
                }
                Err(e)
            }
        }
    }

    /// The [`StoreError::DatabaseCorrupt`] for this database, remembered as met.
    pub(crate) fn corrupt(&self, detail: String) -> StoreError {
        self.corrupt.send_if_modified(|met| {
            if met.is_some() {
                return false;
            }
            // The caller reports it (a service stops with it): logged only for debugging.
            tracing::debug!(database = %self.database, "the database is corrupt: {detail}");
            *met = Some(detail.clone());
            true
        });
        self.corrupt_error(detail)
    }

    fn corrupt_error(&self, detail: String) -> StoreError {
        StoreError::DatabaseCorrupt {
            database: self.database.clone(),
            detail,
            recovery: self.recovery.clone(),
        }
    }

    fn writes(&self) -> std::sync::MutexGuard<'_, Writes> {
        self.writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The last write error while writes are failing; see [`Writes::failure`]. `probe` is a
    /// small write, tried only when nothing else tells.
    pub(crate) async fn write_failure(
        &self,
        probe: impl Future<Output = Result<(), StoreError>>,
    ) -> Option<String> {
        match self.writes().failure() {
            Failure::None => return None,
            Failure::Recent(error) => return Some(error),
            Failure::Unknown => {}
        }
        // A success is recorded by the caller's observation of the probe.
        let probed = probe.await;
        probed.err().map(|e| e.to_string())
    }

    /// Resolves with [`StoreError::DatabaseCorrupt`] once corruption has been met.
    pub(crate) async fn corruption_found(&self) -> StoreError {
        let mut met = self.corrupt.subscribe();
        let detail = match met.wait_for(Option::is_some).await {
            Ok(detail) => Some(detail.clone().unwrap_or_default()),
            // The sender lives as long as `self`: never reached while borrowed.
            Err(_) => None,
        };
        match detail {
            Some(detail) => self.corrupt_error(detail),
            None => std::future::pending().await,
        }
    }
}

/// The database's own words when `e` says its file or a relation is corrupt: SQLite's
/// `SQLITE_CORRUPT` and `SQLITE_NOTADB` (with their extended codes), PostgreSQL's
/// `data_corrupted` (XX001) and `index_corrupted` (XX002).
fn corruption(engine: Engine, e: &StoreError) -> Option<String> {
    let db = database_error(e)?;
    let code = db.code()?;
    let corrupt = match engine {
        Engine::Sqlite => code
            .parse::<i32>()
            .is_ok_and(|code| matches!(code & 0xff, SQLITE_CORRUPT | SQLITE_NOTADB)),
        Engine::Postgres => matches!(code.as_ref(), "XX001" | "XX002"),
    };
    corrupt.then(|| db.message().to_string())
}

const SQLITE_CORRUPT: i32 = 11;
const SQLITE_NOTADB: i32 = 26;

fn database_error(e: &StoreError) -> Option<&(dyn sqlx::error::DatabaseError + 'static)> {
    match e {
        StoreError::Database(sqlx::Error::Database(db))
        | StoreError::Migrate(
            sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(db))
            | sqlx::migrate::MigrateError::ExecuteMigration(sqlx::Error::Database(db), _),
        ) => Some(db.as_ref()),
        _ => None,
    }
}

/// Whether `e` (from a write) says the database is not taking writes, rather than refusing
/// this one: constraint violations, PostgreSQL's serialization failures and deadlocks, and the
/// store's own refusals (conflict, not found, invalid) say nothing about the database's health.
fn refuses_writes(engine: Engine, e: &StoreError) -> bool {
    match e {
        StoreError::Database(sqlx::Error::Database(db)) => {
            let constraint = !matches!(db.kind(), sqlx::error::ErrorKind::Other);
            // PostgreSQL's class 40 is "transaction rollback".
            let transaction_rollback =
                engine == Engine::Postgres && db.code().is_some_and(|code| code.starts_with("40"));
            !constraint && !transaction_rollback
        }
        StoreError::Database(
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::InvalidSavePointStatement
            | sqlx::Error::BeginFailed,
        ) => true,
        StoreError::Migrate(_) => true,
        _ => false,
    }
}

/// How long a failed write keeps the database reported unhealthy, whatever succeeds
/// meanwhile: on a full disk small writes can still land in space SQLite's WAL already holds
/// while larger ones fail, so one success does not mean that writes work. The scheduler retries
/// a failed step within this (its backoff stops at 5 s), so a disk that stays full stays
/// reported.
const FAILURE_HOLD: Duration = Duration::from_secs(10);

/// The outcomes of a store's writes.
#[derive(Debug, Default)]
struct Writes {
    /// The last failed write: when, and its error.
    failed: Option<(Instant, String)>,
    /// Whether a write succeeded after it.
    succeeded_since: bool,
}

/// What [`Writes`] say about the database's writes now.
enum Failure {
    /// No failure, or one followed by a success and older than [`FAILURE_HOLD`].
    None,
    /// A failure within [`FAILURE_HOLD`].
    Recent(String),
    /// The last write failed longer ago, and nothing wrote since: only trying tells.
    Unknown,
}

impl Writes {
    fn failed(&mut self, database: &str, error: String) {
        if self.failed.is_none() || self.succeeded_since {
            tracing::warn!(database, "writes to the database fail: {error}");
        }
        self.failed = Some((Instant::now(), error));
        self.succeeded_since = false;
    }

    fn succeeded(&mut self) {
        self.succeeded_since = true;
    }

    fn failure(&mut self) -> Failure {
        let Some((at, error)) = &self.failed else {
            return Failure::None;
        };
        if at.elapsed() < FAILURE_HOLD {
            return Failure::Recent(error.clone());
        }
        if self.succeeded_since {
            tracing::info!("writes to the database work again");
            self.failed = None;
            return Failure::None;
        }
        Failure::Unknown
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    /// A database error with a given code, as a driver would report it.
    #[derive(Debug)]
    struct Coded {
        code: &'static str,
        kind: sqlx::error::ErrorKind,
    }

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "error {}", self.code)
        }
    }

    impl std::error::Error for Coded {}

    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            "the database's words"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.code))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            match self.kind {
                sqlx::error::ErrorKind::UniqueViolation => sqlx::error::ErrorKind::UniqueViolation,
                _ => sqlx::error::ErrorKind::Other,
            }
        }
    }

    fn error(code: &'static str) -> StoreError {
        coded(code, sqlx::error::ErrorKind::Other)
    }

    fn coded(code: &'static str, kind: sqlx::error::ErrorKind) -> StoreError {
        StoreError::Database(sqlx::Error::Database(Box::new(Coded { code, kind })))
    }

    #[test]
    fn corrupt_databases_are_told_by_their_codes() {
        // SQLite: SQLITE_CORRUPT, SQLITE_CORRUPT_INDEX (extended), SQLITE_NOTADB.
        for code in ["11", "779", "26"] {
            assert!(corruption(Engine::Sqlite, &error(code)).is_some(), "{code}");
        }
        // SQLITE_FULL, SQLITE_IOERR_FSYNC.
        for code in ["13", "1034"] {
            assert!(corruption(Engine::Sqlite, &error(code)).is_none(), "{code}");
        }
        // PostgreSQL: data_corrupted, index_corrupted; not disk_full nor internal_error.
        for code in ["XX001", "XX002"] {
            assert!(
                corruption(Engine::Postgres, &error(code)).is_some(),
                "{code}"
            );
        }
        for code in ["53100", "XX000", "11"] {
            assert!(
                corruption(Engine::Postgres, &error(code)).is_none(),
                "{code}"
            );
        }
    }

    #[test]
    fn corruption_is_named_and_remembered() {
        let health = Health::new(
            Engine::Sqlite,
            "/data/u.db".into(),
            Health::sqlite_recovery("/data/u.db"),
        );
        let e = health.observe::<()>(Access::Read, Err(error("11")));
        let message = e.unwrap_err().to_string();
        assert!(message.contains("/data/u.db is corrupt"), "{message}");
        assert!(message.contains("the database's words"), "{message}");
        assert!(health.corrupt.borrow().is_some());
    }

    #[test]
    fn only_the_database_failing_counts_as_writes_failing() {
        let health = Health::new(Engine::Postgres, "db".into(), String::new());
        for refusal in [
            coded("23505", sqlx::error::ErrorKind::UniqueViolation),
            error("40001"),
            StoreError::Conflict("exists".into()),
        ] {
            let _ = health.observe::<()>(Access::Write, Err(refusal));
        }
        // A failing read says nothing of writes either.
        let _ = health.observe::<()>(Access::Read, Err(error("53100")));
        assert!(matches!(health.writes().failure(), Failure::None));
        let _ = health.observe::<()>(Access::Write, Err(error("53100")));
        assert!(matches!(health.writes().failure(), Failure::Recent(_)));
        // A success does not end a recent failure.
        let _ = health.observe(Access::Write, Ok(()));
        assert!(matches!(health.writes().failure(), Failure::Recent(_)));
    }
}
