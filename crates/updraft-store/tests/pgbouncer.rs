//! The store contract run against [`PgStore`] through a PgBouncer in transaction pooling mode,
//! each test on a database of its own: proves that the PostgreSQL backend keeps no session
//! state between transactions (no named prepared statements with the statement cache off, no
//! `SET`, no temporary tables, no session advisory locks), so that every method works when
//! each of its transactions, and each statement outside one, may run on a different server
//! connection. The store uses several connections, so concurrent transactions go to different
//! server connections too; a first check proves the URL really is a transaction pooler.
//!
//! Every scenario runs but migration (see `contract_tests!(@transaction_pooled ..)`): each
//! database is created and migrated over a direct connection first, as an installation behind
//! PgBouncer would (see [`PgStoreOptions::statement_cache`]).
//!
//! What "no session state" takes with sqlx: it sends a statement with parameters in two round
//! trips, Parse + Describe + Sync and then Bind + Execute + Sync, even unnamed (statement cache
//! off). Inside a transaction both reach the same server connection; outside one, PgBouncer may
//! hand the Bind to another server connection, which fails ("unnamed prepared statement does
//! not exist") or, worse, binds to another client's unnamed statement there. So behind a
//! transaction pooler every statement with parameters has to run inside a transaction.
//!
//! Needs a PostgreSQL server and a PgBouncer in transaction pooling mode in front of it:
//! `UPDRAFT_TEST_POSTGRES_URL` names a database on the server as a role allowed to create
//! databases, and `UPDRAFT_TEST_PGBOUNCER_URL` the PgBouncer, which must forward every database
//! name to that server (`* = host=.. port=..`); `scripts/test` starts both and sets both.
//! Without them these tests fail: they never skip.

#[macro_use]
mod contract;
mod pg_support;

use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::PgConnectOptions;
use updraft_store::{AdminStore, PgStore, PgStoreOptions, Store};

use pg_support::{DropDatabase, fresh_database};

const BOUNCER_VAR: &str = "UPDRAFT_TEST_PGBOUNCER_URL";

fn bouncer_url() -> String {
    match std::env::var(BOUNCER_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{BOUNCER_VAR} is not set: the PgBouncer store tests need a PgBouncer in transaction \
             pooling mode in front of the server of UPDRAFT_TEST_POSTGRES_URL. Run scripts/test \
             (it starts a throwaway PostgreSQL and PgBouncer), or set {BOUNCER_VAR} to e.g. \
             postgres://postgres@127.0.0.1:6432/postgres (forwarding every database)"
        ),
    }
}

/// How to reach database `name` through the bouncer.
fn through_bouncer(name: &str) -> PgConnectOptions {
    PgConnectOptions::from_str(&bouncer_url())
        .expect("UPDRAFT_TEST_PGBOUNCER_URL is a PostgreSQL URL")
        .database(name)
        .statement_cache_capacity(0)
}

/// A fresh database, migrated over a direct connection, and a store on it through the bouncer
/// with the statement cache off (as an installation behind PgBouncer is configured).
async fn fresh_bounced() -> (Box<dyn Store>, DropDatabase) {
    let (direct, guard) = fresh_database().await;
    let migrator = PgStore::connect_with(direct, &PgStoreOptions::default())
        .await
        .unwrap();
    migrator.migrate().await.unwrap();
    migrator.close().await;
    let store = bounced_store(&guard.name).await;
    (Box::new(store), guard)
}

/// A store on database `name` through the bouncer, with the statement cache off.
async fn bounced_store(name: &str) -> PgStore {
    PgStore::connect_with(
        through_bouncer(name),
        &PgStoreOptions {
            statement_cache: false,
            max_connections: 6,
            ..PgStoreOptions::default()
        },
    )
    .await
    .unwrap()
}

mod bounced {
    contract_tests!(@transaction_pooled super::fresh_bounced);
}

/// The bouncer pools transactions, not sessions: the server connection a client's statement
/// ran on goes back to the pool at once (another client's transaction gets it: it is the only
/// one this new database's pool has), and that client's next statement runs on another.
#[tokio::test]
async fn the_bouncer_pools_transactions() {
    let (_direct, guard) = fresh_database().await;
    async fn backend_pid(conn: &mut sqlx::PgConnection) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .persistent(false)
            .fetch_one(conn)
            .await
            .unwrap()
    }
    let mut a = sqlx::PgConnection::connect_with(&through_bouncer(&guard.name))
        .await
        .unwrap();
    let mut b = sqlx::PgConnection::connect_with(&through_bouncer(&guard.name))
        .await
        .unwrap();
    let first = backend_pid(&mut a).await;
    let mut tx = b.begin().await.unwrap();
    let held = backend_pid(&mut tx).await;
    assert_eq!(
        held, first,
        "another client got the server connection of a's finished statement (session pooling \
         would keep it for a: is {BOUNCER_VAR} a PgBouncer with pool_mode = transaction?)"
    );
    let second = backend_pid(&mut a).await;
    assert_ne!(
        second, held,
        "a's next statement runs on another server connection"
    );
    assert_eq!(
        backend_pid(&mut tx).await,
        held,
        "a transaction keeps its server connection"
    );
    tx.rollback().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Two schedulers (two stores, as two processes) behind the bouncer taking their
/// one-transaction steps at once never overflow a pool: the advisory lock is transaction
/// scoped, so it holds whichever server connection each transaction gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_bounced_schedulers_step_without_overflowing_a_pool() {
    let (a, guard) = fresh_bounced().await;
    let b = bounced_store(&guard.name).await;
    contract::concurrent_steps_never_overflow_a_pool(
        std::sync::Arc::from(a),
        std::sync::Arc::new(b),
    )
    .await;
}
