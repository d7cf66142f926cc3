//! Throwaway databases on the test PostgreSQL server, shared by the PostgreSQL test files
//! (`postgres.rs` directly, `pgbouncer.rs` through a PgBouncer in front of the same server).
//!
//! `UPDRAFT_TEST_POSTGRES_URL` names a database on the server as a role allowed to create
//! databases (`scripts/test` starts a throwaway server and sets it). Without it the tests
//! fail: they never skip.

#![allow(dead_code)] // each test file uses what it needs

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::postgres::PgConnectOptions;

pub const URL_VAR: &str = "UPDRAFT_TEST_POSTGRES_URL";

pub fn server_url() -> String {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{URL_VAR} is not set: the PostgreSQL store tests need a server. Run scripts/test \
             (it starts a throwaway PostgreSQL), or set {URL_VAR} to e.g. \
             postgres://postgres@127.0.0.1:5432/postgres (a role that may CREATE DATABASE)"
        ),
    }
}

/// Drops its database (and whatever is still connected to it) when the test ends.
pub struct DropDatabase {
    pub name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // The test's runtime may be shutting down: drop from a runtime of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut admin) = admin().await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A direct connection to the server's database named in `UPDRAFT_TEST_POSTGRES_URL`.
pub async fn admin() -> Result<sqlx::PgConnection, sqlx::Error> {
    use sqlx::Connection;
    sqlx::PgConnection::connect_with(&PgConnectOptions::from_str(&server_url())?).await
}

/// A new, empty database on the test server, dropped with the guard, and how to connect to
/// it directly.
pub async fn fresh_database() -> (PgConnectOptions, DropDatabase) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "updraft_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let mut admin = admin().await.expect("connect to UPDRAFT_TEST_POSTGRES_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .expect("CREATE DATABASE");
    let options = PgConnectOptions::from_str(&server_url())
        .unwrap()
        .database(&name);
    (options, DropDatabase { name })
}
