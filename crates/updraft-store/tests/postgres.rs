//! The store contract run against [`PgStore`], each test on a database of its own, plus
//! PostgreSQL-specific checks: concurrent migration, the statement-cache-free mode a
//! transaction-pooling PgBouncer needs, and durability across reconnect.
//!
//! Needs a PostgreSQL server: `UPDRAFT_TEST_POSTGRES_URL` names a database on it as a role
//! allowed to create databases (`scripts/test` starts a throwaway server and sets it). Without
//! it these tests fail: they never skip.

#[macro_use]
mod contract;

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::postgres::PgConnectOptions;
use updraft_store::{PgStore, PgStoreOptions, Store};

const URL_VAR: &str = "UPDRAFT_TEST_POSTGRES_URL";

fn server_url() -> String {
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
struct DropDatabase {
    name: String,
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

async fn admin() -> Result<sqlx::PgConnection, sqlx::Error> {
    use sqlx::Connection;
    sqlx::PgConnection::connect_with(&PgConnectOptions::from_str(&server_url())?).await
}

/// A new, empty database on the test server, dropped with the guard.
async fn fresh_database() -> (PgConnectOptions, DropDatabase) {
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

async fn fresh_with(options: &PgStoreOptions) -> (Box<dyn Store>, DropDatabase) {
    let (connect, guard) = fresh_database().await;
    let store = PgStore::connect_with(connect, options).await.unwrap();
    store.migrate().await.unwrap();
    (Box::new(store), guard)
}

async fn fresh() -> (Box<dyn Store>, DropDatabase) {
    fresh_with(&PgStoreOptions::default()).await
}

/// As behind a transaction-pooling PgBouncer: no prepared statements kept by name.
async fn fresh_uncached() -> (Box<dyn Store>, DropDatabase) {
    fresh_with(&PgStoreOptions {
        statement_cache: false,
        ..PgStoreOptions::default()
    })
    .await
}

mod cached {
    contract_tests!(super::fresh);
}

mod uncached {
    contract_tests!(super::fresh_uncached);
}

/// Stores migrating one new database at once (as processes starting together) all succeed:
/// the migrator's advisory lock makes them take turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_of_a_new_database_all_succeed() {
    let (connect, _guard) = fresh_database().await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let connect = connect.clone();
            tokio::spawn(async move {
                let store = PgStore::connect_with(connect, &PgStoreOptions::default()).await?;
                store.migrate().await?;
                store.pools().await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn data_survives_reconnect_and_is_visible_to_another_store() {
    let (connect, _guard) = fresh_database().await;
    let options = PgStoreOptions::default();
    let writer = PgStore::connect_with(connect.clone(), &options)
        .await
        .unwrap();
    writer.migrate().await.unwrap();
    let other = PgStore::connect_with(connect.clone(), &options)
        .await
        .unwrap();
    let run = contract::durable_write(&writer).await;
    contract::durable_check(&other, &run).await;
    writer.close().await;
    other.close().await;
    let reopened = PgStore::connect_with(connect, &options).await.unwrap();
    reopened.migrate().await.unwrap();
    contract::durable_check(&reopened, &run).await;
}
